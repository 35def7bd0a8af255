"""A running stage owns its output folder (issue 27): a second process on the same --out, with or without
--overwrite or --resume, is refused before any work and the first run completes intact; a killed holder leaves
no lock behind. Real processes: the lock is the kernel's (flock), per process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import SAMPLE, _env, one_line_error


def _start(args, cache_dir):
    return subprocess.Popen(
        [sys.executable, "-m", "ulmfit_cli", *map(str, args)],
        env=_env(cache_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_lock(out, proc, timeout=120):
    lock = out.parent / f".{out.name}.lock"
    t0 = time.time()
    while not (lock.exists() and lock.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.05)
    return lock


@pytest.mark.slow
@pytest.mark.parametrize("second", [[], ["--overwrite"], ["--resume"]])
def test_a_second_process_is_refused_and_the_first_run_is_intact(pipeline, cli, cache_dir, tmp_path, second):
    out = tmp_path / "c8"
    args = [
        "finetune-clf",
        pipeline["ft"],
        SAMPLE / "trec_train.csv",
        "--out",
        out,
        "--preset",
        "tiny",
        "--epochs",
        "4",
    ]
    first = _start([*args, "--quiet"], cache_dir)
    lock = _wait_for_lock(out, first)
    r = cli(*args[:-2], "--epochs", "2", *second)
    one_line_error(r, 2, f"{out} is being written by process {first.pid}", "choose another --out")
    assert first.wait(timeout=300) == 0, first.communicate()
    m = json.loads((out / "manifest.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert m["config"] == config and config["epochs"] == 4 and len(m["history"]) == 4
    assert cli("predict", out, SAMPLE / "trec_test.csv", "--format", "label").returncode == 0  # its weights load
    assert not lock.exists()


@pytest.mark.slow
def test_a_killed_holder_leaves_no_lock(pipeline, cli, cache_dir, tmp_path):
    out = tmp_path / "c9"
    args = ["finetune-clf", pipeline["ft"], SAMPLE / "trec_train.csv", "--out", out, "--preset", "tiny"]
    first = _start([*args, "--epochs", "50", "--quiet"], cache_dir)
    _wait_for_lock(out, first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    r = cli(*args, "--epochs", "1", "--overwrite")  # the lock file is still there, its lock is not
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "manifest.json").read_text())["config"]["epochs"] == 1


def test_out_that_is_a_file_is_refused_and_kept(pipeline, ulmfit, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    for extra in ([], ["--overwrite"]):
        r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "trec_train.csv", "--out", f, "--preset", "tiny", *extra)
        one_line_error(r, 2, "is a file")
        assert f.read_text() == "mine"


@pytest.mark.slow
def test_a_second_pipeline_on_the_same_folder_is_refused(pipeline, cli, cache_dir, tmp_path):
    """pipeline and learning-curve hold their work folder for their whole life, as a stage holds its run."""
    out = tmp_path / "p"
    args = ["pipeline", SAMPLE / "trec_train.csv", "--parent", pipeline["lm"], "--out", out, "--preset", "tiny"]
    first = _start([*args, "--quiet"], cache_dir)
    _wait_for_lock(out, first)
    r = cli(*args, "--overwrite")
    one_line_error(r, 2, f"{out} is being written by process {first.pid}")
    assert first.wait(timeout=600) == 0, first.communicate()
    assert (out / "settings.json").exists()
    r = cli(*args)  # finished: the lock is gone, the rerun reuses everything
    assert r.returncode == 0, r.stderr
