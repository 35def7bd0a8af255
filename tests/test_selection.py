"""Choosing epochs on validation (issue 13): the best epoch's weights are the ones published, --patience stops
early (never while groups are still frozen), --keep last publishes the last, and a run killed mid-way resumes to
the same history and the same published weights. The loop is driven in-process with a small model and injected
validation metrics, so the epoch that must win is known; the stage wiring is checked on the session's tiny run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import log_reporter
from ulmfit_cli.cli.report import Reporter
from ulmfit_cli.config import RunConfig
from ulmfit_cli.training.loop import Selection, fit
from ulmfit_cli.training.schedule import unfreeze_plan

# ---- the rule, on any sequence of validation rows ---------------------------------------------------------

metric = st.one_of(st.floats(0, 1, allow_nan=False), st.just(math.nan))
rows_st = st.lists(st.tuples(metric, st.floats(0.01, 5)), min_size=1, max_size=12).map(
    lambda xs: [{"epoch": i + 1, "accuracy": a, "valid_loss": v} for i, (a, v) in enumerate(xs)]
)


@settings(max_examples=200, deadline=None)
@given(rows=rows_st, higher=st.booleans())
def test_best_is_the_first_epoch_with_the_best_metric_then_the_lowest_loss(rows, higher):
    sel = Selection("accuracy", higher)
    b = sel.best(rows)
    finite = [i for i, r in enumerate(rows) if math.isfinite(r["accuracy"])]
    if not finite:
        assert b is None
        return
    sign = 1 if higher else -1
    top = max(sign * rows[i]["accuracy"] for i in finite)
    tied = [i for i in finite if sign * rows[i]["accuracy"] == top]
    low = min(rows[i]["valid_loss"] for i in tied)
    assert b == next(i for i in tied if rows[i]["valid_loss"] == low)


@settings(max_examples=200, deadline=None)
@given(rows=rows_st, patience=st.integers(0, 4), from_epoch=st.integers(0, 6))
def test_patience_counts_epochs_after_the_best_and_from_the_first_fully_unfrozen_one(rows, patience, from_epoch):
    sel = Selection("accuracy", True, patience=patience, from_epoch=from_epoch)
    b = sel.best(rows)
    counted = [i for i in range(len(rows)) if i >= from_epoch and b is not None and i > b]
    assert sel.should_stop(rows) == (patience > 0 and len(counted) >= patience)


# ---- the training loop, with validation metrics injected ----------------------------------------------------


class Tiny(torch.nn.Module):
    """Two layer groups and a dropout (so the RNG state matters to a resumed run)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.drop = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3), torch.nn.Dropout(0.3)

    def forward(self, x):
        return self.b(self.drop(torch.relu(self.a(x))))

    def reset(self):
        pass


DATA = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
TARGET = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(1))
CFG = RunConfig(lr=0.05, epochs=8)


def _train(metrics, select=None, ckpt_dir=None, resume=False, fail_at=None, gradual=False):
    """fit() over len(metrics) epochs of 5 steps, validation accuracy injected from `metrics`. Returns the
    history, the final weights and the weights as they were at each validation."""
    torch.manual_seed(0)
    model = Tiny()
    groups = [list(model.a.parameters()), list(model.b.parameters())]
    plan = unfreeze_plan(2, len(metrics), CFG.lr, CFG.lr_factor, gradual)
    seen, current = [], [0]

    def batches(epoch):
        current[0] = epoch
        for s in range(5):
            if fail_at == (epoch, s):
                raise RuntimeError("killed")  # as SIGKILL: nothing saved beyond the last checkpoint
            yield DATA[s * 8 : s * 8 + 8], TARGET[s * 8 : s * 8 + 8]

    def loss_fn(batch):
        loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
        return loss, loss.item()

    def evaluate():
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"valid_loss": 1.0, "accuracy": metrics[current[0]]}

    ckpt = dict(ckpt_dir=ckpt_dir, checkpoint_every=3, resume=resume)
    history = fit(model, groups, ["a", "b"], plan, 5, batches, loss_fn, evaluate, CFG, Reporter(True), **ckpt,
                  select=select)  # fmt: skip
    return history, model.state_dict(), seen


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


ACC = [0.3, 0.5, 0.7, 0.6, 0.65, 0.7, 0.4, 0.5]  # best: epoch 3 (epoch 6 ties it on accuracy and loss: earlier)


@settings(max_examples=60, deadline=None)
@given(n_valid=st.one_of(st.none(), st.integers(0, 5000)), keep=st.sampled_from(["auto", "best", "last"]))
@example(n_valid=199, keep="auto")
@example(n_valid=200, keep="auto")
@example(n_valid=10, keep="best")
def test_keep_auto_chooses_the_best_epoch_only_with_enough_validation_documents(n_valid, keep):
    from ulmfit_cli.training.stage_parts import MIN_VALID_TO_CHOOSE, kept, report_kept, selection

    cfg = RunConfig(stage="finetune-clf", preset="tiny", epochs=4, keep=keep)
    sel = selection("finetune-clf", cfg, "single-label", n_valid)
    few = keep == "auto" and n_valid is not None and n_valid < MIN_VALID_TO_CHOOSE
    assert sel.keep == ("last" if few else "best" if keep == "auto" else keep)
    assert sel.few_valid == (n_valid if few else None)
    history = [{"epoch": e, "accuracy": a, "valid_loss": 1.0} for e, a in enumerate([0.5, 0.9, 0.6, 0.7], 1)]
    assert kept(sel, history, 4)["kept_epoch"] == (4 if sel.keep == "last" else 2)
    log = log_reporter()
    report_kept(sel, history, log)
    assert (f"{n_valid} validation documents are too few" in log.lines[0]) == few
    lm = selection("finetune-lm", RunConfig(stage="finetune-lm", preset="tiny", keep=keep))  # tokens: always enough
    assert lm.keep == ("best" if keep == "auto" else keep)


def test_the_best_epochs_weights_are_kept_and_last_keeps_the_last():
    history, final, seen = _train(ACC, Selection("accuracy", True))
    assert len(history) == len(ACC) and _same(final, seen[2]) and not _same(final, seen[-1])
    _, final_last, seen_last = _train(ACC, Selection("accuracy", True, keep="last"))
    assert _same(final_last, seen_last[-1])
    assert _same(seen_last[2], seen[2])  # choosing changes what is published, never the training


def test_patience_stops_after_n_epochs_without_a_new_best_but_not_while_groups_are_frozen():
    history, final, seen = _train(ACC, Selection("accuracy", True, patience=2))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5] and _same(final, seen[2])
    # gradual unfreezing over 2 groups: epoch 1 trains the head alone and does not count
    falling = [0.9, 0.5, 0.4, 0.3, 0.2, 0.1]
    history, final, seen = _train(falling, Selection("accuracy", True, patience=2, from_epoch=1), gradual=True)
    assert len(history) == 3 and _same(final, seen[0])
    history, _, _ = _train(falling, Selection("accuracy", True, patience=2, from_epoch=5), gradual=True)
    assert len(history) == 6  # every epoch before from_epoch is free


def test_no_validation_metric_keeps_the_last_epoch():
    history, final, seen = _train([math.nan] * 3, Selection("accuracy", True, patience=1))
    assert len(history) == 3 and _same(final, seen[-1])


@pytest.mark.parametrize("fail_at", [(3, 4), (5, 1)], ids=["after-the-best", "while-waiting-out-patience"])
def test_a_killed_run_resumes_to_the_same_history_and_the_same_published_weights(fail_at, tmp_path):
    select = Selection("accuracy", True, patience=3)
    ref_history, ref_final, _ = _train(ACC, select)
    with pytest.raises(RuntimeError):
        _train(ACC, select, ckpt_dir=tmp_path, fail_at=fail_at)
    pos = json.loads((tmp_path / "ckpt" / "position.json").read_text())
    assert pos["best_weights_epoch"] == 2 and (tmp_path / "ckpt" / "best.safetensors").exists()
    history, final, seen = _train(ACC, select, ckpt_dir=tmp_path, resume=True)
    assert history == ref_history and _same(final, ref_final)


# ---- the stages: manifest, summary, info, picture ---------------------------------------------------------


def test_a_classifier_run_records_and_shows_the_kept_epoch(pipeline, ulmfit):
    m = json.loads((pipeline["clf"] / "manifest.json").read_text())
    accs = [r["accuracy"] for r in m["history"]]
    assert m["selection"] == {"metric": "accuracy", "keep": "best", "patience": 0}
    assert m["best_epoch"] == m["kept_epoch"] == int(np.argmax(accs)) + 1  # first of the ties; loss breaks them
    assert m["best"] == m["history"][m["best_epoch"] - 1] and m["stopped_early"] is False
    r = ulmfit("info", pipeline["clf"], "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["best_epoch"] == m["best_epoch"]
    lines = ulmfit("info", pipeline["clf"]).stdout.splitlines()
    best = next(line for line in lines if "best epoch" in line)
    assert f"{m['best_epoch']} (accuracy {m['best']['accuracy']:.4g})" in best
    assert any(f"epoch {m['kept_epoch']} (--keep best)" in line for line in lines)
    lm = json.loads((pipeline["ft"] / "manifest.json").read_text())
    assert lm["selection"]["metric"] == "valid_loss" and lm["kept_epoch"] == len(lm["history"])


def test_keep_and_patience_are_checked_with_their_flag_names(ulmfit, pipeline, tmp_path):
    r = ulmfit("finetune-clf", pipeline["ft"], "x.csv", "--keep", "first", "--patience", "-1", "--out", tmp_path / "c")
    assert r.returncode == 2 and "`--keep` must be auto, best or last" in r.stderr
    assert "`--patience` must be >= 0" in r.stderr


def test_under_torchrun_both_processes_keep_and_stop_on_the_same_epoch(pipeline, ulmfit, cli_env, tmp_path):
    """Two CPU processes choose the epoch from the same (main process's) validation row, so they stop together
    (one stopping alone would hang the other in its next gradient average), and the published weights are the
    best epoch's: evaluated again on the same validation file they score that epoch's accuracy. The validation
    labels are wrong on purpose (each question's class moved to the next one), so learning lowers the metric and
    the best epoch comes before the last: otherwise "best" and "last" could not be told apart here."""
    import csv
    import subprocess
    import sys
    from pathlib import Path

    from conftest import SAMPLE

    with open(SAMPLE / "trec_test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:150]
    classes = sorted({r["label"] for r in rows})
    valid = tmp_path / "valid.csv"
    with open(valid, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((r["text"], classes[(classes.index(r["label"]) + 1) % len(classes)]) for r in rows)
    out, torchrun = tmp_path / "ddp", Path(sys.executable).parent / "torchrun"
    flags = ["--preset", "tiny", "--device", "cpu", "--keep", "best", "--patience", "1", "--epochs", "8"]
    r = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "ulmfit_cli", "finetune-clf",
         str(pipeline["ft"]), str(SAMPLE / "trec_train.csv"), "--valid", str(valid), *flags, "--out", str(out),
         "--quiet"],
        capture_output=True, text=True, env=cli_env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    accs = [row["accuracy"] for row in m["history"]]
    assert m["complete"] and m["best_epoch"] == m["kept_epoch"] == int(np.argmax(accs)) + 1
    assert m["best_epoch"] < len(accs) and m["stopped_early"] == (len(accs) < 8)
    again = ulmfit("evaluate", out, valid, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["accuracy"] == pytest.approx(accs[m["best_epoch"] - 1], abs=1 / 150 + 1e-9)
    assert abs(json.loads(again.stdout)["accuracy"] - accs[-1]) > 1 / 150  # not the last epoch's weights
