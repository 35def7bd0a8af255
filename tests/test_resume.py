"""Nothing lost: SIGKILL, Ctrl-C, SIGTERM and NaN mid-run, then --resume ends exactly where an uninterrupted
run ends."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import SAMPLE

# bs 4 makes the tiny runs long enough (over a hundred steps an epoch, a checkpoint every 25) to be stopped
# mid-epoch reliably; the inputs are the first 600 questions and the first 400 lines of the samples (`inputs`),
# which keeps these runs about a third as long as on the whole samples.
CLF = (
    "finetune-clf",
    "{parent}",
    "{train}",
    "--preset",
    "tiny",
    "--epochs",
    "4",
    "--bs",
    "4",
    "--checkpoint-every",
    "25",
    "--quiet",
)
LM = (
    "pretrain",
    "{books}",
    "--preset",
    "tiny",
    "--epochs",
    "3",
    "--bs",
    "4",
    "--checkpoint-every",
    "25",
    "--quiet",
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inputs")
    heads = {"train": ("trec_train.csv", 601), "books": ("books.txt", 400)}
    for name, n in heads.values():
        lines = (SAMPLE / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (root / name).write_text("".join(lines[:n]), encoding="utf-8")
    return {key: root / name for key, (name, _) in heads.items()}


def _args(template, parent, out, inputs):
    subs = {"{parent}": parent, **{f"{{{k}}}": v for k, v in inputs.items()}}
    return [str(subs.get(a, a)) for a in template] + ["--out", str(out)]


def _history(out):
    return json.loads((out / "manifest.json").read_text())["history"]


def _start(args, env) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ulmfit_cli", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_when(proc, partial, epoch, sig):
    """Wait until the run has checkpointed mid-epoch `epoch` (0-based), then send `sig`."""
    deadline = time.time() + 300
    while time.time() < deadline:
        pos = partial / "ckpt" / "position.json"
        try:
            p = json.loads(pos.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            p = None
        if p and p["epoch"] == epoch and p["step"] > 0:
            proc.send_signal(sig)
            return proc.wait(timeout=120)
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be stopped: {proc.stderr.read()}")
        time.sleep(0.005)
    pytest.fail("no checkpoint appeared")


@pytest.fixture(scope="module")
def reference(pipeline, ulmfit, inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    out = {}
    for name, template in (("clf", CLF), ("lm", LM)):
        r = ulmfit(*_args(template, pipeline["ft"], root / name, inputs))
        assert r.returncode == 0, r.stderr
        out[name] = _history(root / name)
    return out


@pytest.mark.parametrize("kind,epoch", [("clf", 1), ("lm", 1)], ids=["classifier-mid-unfreezing", "language-model"])
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(
    kind, epoch, reference, pipeline, inputs, ulmfit, cli_env, tmp_path
):
    args = _args(CLF if kind == "clf" else LM, pipeline["ft"], tmp_path / "run", inputs)
    proc = _start(args, cli_env)
    assert _stop_when(proc, tmp_path / ".run.partial", epoch, signal.SIGKILL) == -signal.SIGKILL
    assert not (tmp_path / "run").exists()  # never half-written
    r = ulmfit(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert _history(tmp_path / "run") == reference[kind]
    assert not (tmp_path / ".run.partial").exists() and not (tmp_path / "run" / "ckpt").exists()


@pytest.mark.parametrize(
    "kind,sig,code,said",
    [("clf", signal.SIGINT, 130, "interrupted"), ("lm", signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c-classifier", "sigterm-language-model"],
)
def test_ctrl_c_or_sigterm_checkpoints_exits_130_or_143_and_resumes_exactly(
    kind, sig, code, said, reference, pipeline, inputs, ulmfit, cli_env, tmp_path
):
    """SIGTERM (schedulers, `timeout`, container stops) is handled as Ctrl-C: the step in progress finishes, a
    checkpoint is written, the exit code is 143."""
    args = _args(CLF if kind == "clf" else LM, pipeline["ft"], tmp_path / "run", inputs)
    proc = _start(args, cli_env)
    assert _stop_when(proc, tmp_path / ".run.partial", 2 if kind == "clf" else 1, sig) == code
    err = proc.stderr.read()
    assert said in err and "--resume" in err and "Traceback" not in err
    r = ulmfit(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert _history(tmp_path / "run") == reference[kind]


def test_nan_loss_stops_with_exit_1_naming_the_step_and_keeps_the_checkpoint(ulmfit, inputs, tmp_path):
    args = [
        "pretrain",
        inputs["books"],
        "--preset",
        "tiny",
        "--lr",
        "1e4",
        "--checkpoint-every",
        "5",
        "--out",
        tmp_path / "lm",
    ]
    r = ulmfit(*args)
    assert r.returncode == 1
    line = r.stderr.strip().splitlines()[-1]
    assert "loss became" in line and "step" in line and "lower --lr" in line
    assert (tmp_path / ".lm.partial" / "ckpt" / "model.safetensors").exists()
    # the kept checkpoint is usable: resuming at a sane rate finishes the run
    r = ulmfit(*args[:-2], "--out", tmp_path / "lm", "--resume", "--lr", "1e-3")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "lm" / "manifest.json").exists()


def test_resume_with_nothing_to_resume(ulmfit, tmp_path):
    r = ulmfit("pretrain", SAMPLE / "books.txt", "--preset", "tiny", "--out", tmp_path / "lm", "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_an_interrupted_run_is_not_silently_discarded(ulmfit, tmp_path):
    (tmp_path / ".lm.partial" / "ckpt").mkdir(parents=True)
    r = ulmfit("pretrain", SAMPLE / "books.txt", "--preset", "tiny", "--out", tmp_path / "lm")
    assert r.returncode == 2 and "--resume" in r.stderr and "--overwrite" in r.stderr
    assert (tmp_path / ".lm.partial" / "ckpt").exists()


def test_resume_refuses_changed_settings(ulmfit, inputs, tmp_path):
    args = ["pretrain", inputs["books"], "--preset", "tiny", "--lr", "1e4", "--checkpoint-every", "5"]
    args += ["--out", tmp_path / "lm"]
    assert ulmfit(*args).returncode == 1
    r = ulmfit(*args, "--resume", "--bptt", "16")
    assert r.returncode == 2 and "--bptt 32 -> 16" in r.stderr
