"""Inputs that are not regular files (issue 27, case 5): a shell's process substitution `<(...)` (a /dev/fd/N pipe)
and `-` (stdin) are read once into a temporary file and then read as the file would be, by every command that
takes input: tables (CSV, TSV, JSON lines) by their first line, plain text otherwise. Real processes: the pipe
and the descriptor are the point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import SAMPLE, _env

TREC = SAMPLE / "trec_train.csv"


def _commands(p, tmp):
    return {
        "finetune-clf": (["finetune-clf", p["ft"], "{IN}", "--out", tmp / "c", "--epochs", "1"], TREC),
        "finetune-lm": (["finetune-lm", p["lm"], "{IN}", "--out", tmp / "l"], SAMPLE / "books.txt"),
        "finetune-lm table": (["finetune-lm", p["lm"], "{IN}", "--out", tmp / "l2"], TREC),
        "evaluate": (["evaluate", p["clf"], "{IN}", "--json"], SAMPLE / "trec_test.csv"),
        "inspect": (["inspect", "{IN}", "--json"], TREC),
        "lr-find": (["lr-find", p["ft"], "{IN}", "--stage", "finetune-clf", "--json"], TREC),
        "pretrain": (["pretrain", "{IN}", "--out", tmp / "p", "--epochs", "0"], SAMPLE / "books.txt"),
        "predict": (["predict", p["clf"], "{IN}", "--format", "label"], SAMPLE / "trec_test.csv"),
        "pipeline": (["pipeline", "{IN}", "--parent", p["lm"], "--out", tmp / "pl", "--clf-set", "epochs=1"], TREC),
        "learning-curve": (
            [
                "learning-curve",
                p["ft"],
                "{IN}",
                "--test",
                SAMPLE / "trec_test.csv",
                "--out",
                tmp / "lc",
                "--sizes",
                "60",
                "--seeds",
                "1",
                "--variants",
                "supervised",
                "--clf-set",
                "epochs=1",
            ],
            TREC,
        ),  # fmt: skip
    }


def _run(args, cache_dir, how, data):
    args = [str(a) for a in args]
    if how == "stdin":
        cmd = [sys.executable, "-m", "ulmfit_cli", *[("-" if a == "{IN}" else a) for a in args]]
        with open(data, "rb") as f:
            return subprocess.run(cmd, stdin=f, capture_output=True, env=_env(cache_dir), timeout=600)
    cmd = " ".join(f'<(cat "{data}")' if a == "{IN}" else f'"{a}"' for a in [sys.executable, "-m", "ulmfit_cli", *args])
    return subprocess.run(["bash", "-c", cmd], capture_output=True, env=_env(cache_dir), timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["substitution", "stdin"])
@pytest.mark.parametrize(
    "name",
    [
        "finetune-clf",
        "finetune-lm",
        "finetune-lm table",
        "evaluate",
        "inspect",
        "lr-find",
        "pretrain",
        "predict",
        "learning-curve",
        "pipeline",
    ],  # fmt: skip
)
def test_pipes_and_stdin_read_as_the_file(pipeline, cli, cache_dir, tmp_path, how, name):
    args, data = _commands(pipeline, tmp_path)[name]
    args = (
        [*args, "--preset", "tiny"]
        if name.startswith(("finetune", "lr-find", "pretrain", "learning", "pipeline"))
        else args
    )
    r = _run(args, cache_dir, how, data)
    assert r.returncode == 0, r.stderr.decode()
    if name == "evaluate":  # the same figures as from the file itself
        direct = cli(*[data if a == "{IN}" else a for a in args])
        assert json.loads(r.stdout)["accuracy"] == json.loads(direct.stdout)["accuracy"]
    if name == "inspect":
        rep = json.loads(r.stdout)
        assert rep["files"][0]["rows"] == sum(1 for _ in open(data)) - 1  # a table, its header read as one
    if name == "predict":  # a pipe is streamed as plain text, a line each (predict's documented behaviour)
        assert len(r.stdout.splitlines()) == sum(1 for _ in open(data))
    if name == "finetune-clf":
        m = json.loads((tmp_path / "c" / "manifest.json").read_text())
        assert m["inputs"][0]["source"] in ("stdin",) or m["inputs"][0]["source"].startswith("/dev/fd/")


@pytest.mark.slow
def test_an_empty_pipe_is_one_line_naming_it(pipeline, cache_dir):
    cmd = f'"{sys.executable}" -m ulmfit_cli evaluate "{pipeline["clf"]}" <(true)'
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=_env(cache_dir), timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "/dev/fd/" in r.stderr and "nothing came through it" in r.stderr
