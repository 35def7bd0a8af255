"""`--track tensorboard|mlflow` (issue 28): what training logs is read back with each tool's own reader (TensorBoard's
EventAccumulator; the MLflow client against a real tracking server this module starts on 127.0.0.1 with a
temporary SQLite store), and a tracker that goes away mid-run leaves the training result intact."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import SAMPLE, _env, one_line_error

TRAIN = SAMPLE / "trec_train.csv"


def scalars(logdir: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return {tag: ea.Scalars(tag) for tag in ea.Tags()["scalars"]}, ea


def test_tensorboard_event_files_hold_steps_rates_epochs_and_settings(pipeline, ulmfit, tmp_path):
    run = tmp_path / "clf"
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--out", run, "--preset", "tiny", "--epochs", "4",
               "--track", "tensorboard", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "manifest.json").read_text())
    found, ea = scalars(run / "tensorboard")
    steps = len(found["train/loss"])
    assert steps > 0 and [e.step for e in found["train/loss"]] == list(range(1, steps + 1))
    groups = [k for k in found if k.startswith("lr/")]
    assert len(groups) >= 3 and all(len(found[g]) == steps for g in groups)
    # gradual unfreezing: the top group trains from the first step, the bottom one only in the last epoch
    top, bottom = found["lr/head"], found["lr/embed"]
    assert top[0].value > 0 and bottom[0].value == 0 and bottom[-1].value > 0
    assert [e.value for e in found["train/trainable_groups"]] == [1, 2, 3, 4]
    assert [round(e.value, 6) for e in found["valid/accuracy"]] == [round(h["accuracy"], 6) for h in m["history"]]
    assert [round(e.value, 5) for e in found["valid/valid_loss"]] == [round(h["valid_loss"], 5) for h in m["history"]]
    assert found["final/accuracy"][0].value == pytest.approx(m["final"]["accuracy"])
    assert "settings/text_summary" in ea.Tags()["tensors"]
    assert ea.PluginTagToContent("hparams"), "the settings as the HParams plugin's hyperparameters"


def test_the_head_trains_at_its_own_rate_in_the_real_loop(pipeline, ulmfit, tmp_path):
    """--head-lr-mult reaches the optimizer: at every step where both train, the head's rate is the group below's
    times the factor times the multiplier (read from the rates the loop set, as the tracker saw them)."""
    run = tmp_path / "clf"
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--out", run, "--preset", "tiny", "--epochs", "3", "--lr", "0.01",
               "--head-lr-mult", "4", "--track", "tensorboard", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "manifest.json").read_text())["config"]["head_lr_mult"] == 4
    found, _ = scalars(run / "tensorboard")
    pairs = [(h.value, b.value) for h, b in zip(found["lr/head"], found["lr/lstm2"]) if b.value > 0]
    assert pairs and all(h == pytest.approx(b * 2.6 * 4, rel=1e-4) for h, b in pairs)
    assert max(e.value for e in found["lr/head"]) == pytest.approx(0.04, rel=0.05)  # STLR's peak of 0.01 x 4


def test_track_dir_puts_events_under_the_run_name(pipeline, ulmfit, tmp_path):
    r = ulmfit("finetune-lm", pipeline["lm"], TRAIN, "--out", tmp_path / "ft", "--preset", "tiny", "--track",
               "tensorboard", "--track-dir", tmp_path / "tb", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    found, _ = scalars(tmp_path / "tb" / "ft")
    assert "valid/perplexity" in found and len(found["train/loss"]) > 0
    assert not (tmp_path / "ft" / "tensorboard").exists()


def test_an_unknown_or_missing_tracker_is_one_line_before_any_work(pipeline, ulmfit, tmp_path, monkeypatch):
    from ulmfit_cli.training import tracking

    out = tmp_path / "clf"
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--out", out, "--track", "wandb")
    one_line_error(r, 2, "--track", "tensorboard or mlflow", "'wandb'")
    monkeypatch.setitem(tracking.KINDS, "mlflow", "no_such_module_for_ulmfit_tests")
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--out", out, "--track", "mlflow")
    one_line_error(r, 2, "--track mlflow", "pip install")
    assert not out.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    store, artifacts = f"sqlite:///{tmp / 'mlflow.db'}", str(tmp / "artifacts")
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", store, "--default-artifact-root", artifacts]  # fmt: skip
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - the server's life
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc, uri
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    _stop(proc)
    raise RuntimeError(f"the MLflow server did not start: {(tmp / 'server.log').read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    proc, uri = _start_server(tmp_path_factory.mktemp("mlflow"))
    yield uri
    _stop(proc)


def _runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ulmfit")
    return client, (client.search_runs([exp.experiment_id]) if exp is not None else [])


def test_mlflow_gets_params_step_metrics_final_metrics_and_artifacts(pipeline, ulmfit, tmp_path, mlflow_server,
                                                                    monkeypatch):  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ulmfit")
    run = tmp_path / "clf-mlflow"
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--out", run, "--preset", "tiny", "--epochs", "2",
               "--lr", "0.03", "--track", "mlflow", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # stdout is the summary alone (MLflow's run links go to stderr)
    m = json.loads((run / "manifest.json").read_text())
    client, runs = _runs(mlflow_server)
    (found,) = [x for x in runs if x.data.tags.get("ulmfit.out") == str(run.resolve())]
    assert found.info.status == "FINISHED" and found.info.run_name == "clf-mlflow"
    assert found.data.params["lr"] == "0.03" and found.data.params["stage"] == "finetune-clf"
    losses = client.get_metric_history(found.info.run_id, "train/loss")
    assert len(losses) > 0 and sorted(x.step for x in losses) == list(range(1, len(losses) + 1))
    acc = sorted(client.get_metric_history(found.info.run_id, "valid/accuracy"), key=lambda x: x.step)
    assert [round(x.value, 6) for x in acc] == [round(h["accuracy"], 6) for h in m["history"]]
    assert found.data.metrics["final/accuracy"] == pytest.approx(m["final"]["accuracy"])
    names = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"manifest.json", "history.png"} <= names


def test_mlflow_nests_a_pipelines_stages_under_one_parent(ulmfit, tmp_path, mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ulmfit-pipeline")
    out = tmp_path / "pipe"
    r = ulmfit("pipeline", TRAIN, "--corpus", SAMPLE / "books.txt", "--out", out, "--preset", "tiny",
               "--pretrain-set", "max_tokens=20000", "--test", SAMPLE / "trec_test.csv", "--track", "mlflow",
               "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("ulmfit-pipeline").experiment_id])
    (parent,) = [x for x in runs if x.data.tags.get("ulmfit.command") == "pipeline"]
    children = {x.info.run_name: x for x in runs if x.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"fwd/lm", "fwd/lm-ft", "fwd/clf"}
    assert all(c.info.status == "FINISHED" for c in [parent, *children.values()])
    assert "test/fwd/accuracy" in parent.data.metrics


def test_a_tracking_server_killed_mid_run_leaves_the_training_result_intact(pipeline, ulmfit, tmp_path):
    """The server dies while finetune-clf trains: one warning on stderr, training goes on, exit 0, the run
    folder is whole and its result the same as a run without tracking."""
    proc, uri = _start_server(tmp_path)
    env = {**_env(tmp_path), "MLFLOW_TRACKING_URI": uri}
    args = [sys.executable, "-m", "ulmfit_cli", "finetune-clf", str(pipeline["ft"]), str(TRAIN), "--preset", "tiny",
            "--epochs", "12", "--json"]  # fmt: skip
    try:
        run = subprocess.Popen([*args, "--out", str(tmp_path / "tracked"), "--track", "mlflow"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline and run.poll() is None:  # until the run has logged an epoch
            _, runs = _runs(uri)
            if runs and "valid/accuracy" in runs[0].data.metrics:
                break
            time.sleep(0.2)
        assert run.poll() is None, "the run ended before the server could be killed"
    finally:
        _stop(proc)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    warnings = [line for line in err.splitlines() if "warning: --track mlflow" in line]
    assert len(warnings) == 1, err
    plain = ulmfit(*args[3:], "--out", tmp_path / "plain")  # the same run, untracked (in this process: 1 thread)
    assert plain.returncode == 0, plain.stderr
    tracked, untracked = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("tracked", "plain"))
    assert tracked["history"] == untracked["history"]
    assert (tmp_path / "tracked" / "model.safetensors").read_bytes() == (
        tmp_path / "plain" / "model.safetensors"
    ).read_bytes()


def test_a_learning_curves_points_are_tracked_under_its_folder(pipeline, ulmfit, tmp_path):
    """learning-curve's runs are scratch (deleted without --keep-runs), so their events go under OUT/tensorboard,
    one folder per point's LM and classifier."""
    out = tmp_path / "curve"
    r = ulmfit("learning-curve", pipeline["lm"], TRAIN, "--test", SAMPLE / "trec_test.csv", "--out", out,
               "--sizes", "100", "--seeds", "1", "--variants", "supervised", "--preset", "tiny", "--track",
               "tensorboard", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    folders = sorted(p.parent.relative_to(out / "tensorboard") for p in (out / "tensorboard").rglob("events.*"))
    assert [f.name for f in folders] == ["clf-supervised-n100-s42", "lm-sup-n100-s42"], folders
    clf, _ = scalars(out / "tensorboard" / folders[0])
    lm, _ = scalars(out / "tensorboard" / folders[1])
    assert "valid/accuracy" in clf and "valid/perplexity" in lm
