"""Imbalanced classes (issue 28): `--class-weights balanced`, `--metric`, the macro-F1 of every validation row, and
inspect's advice."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli import tasks
from ulmfit_cli.metrics import classification_report, macro_f1, macro_f1_multi

TRAIN = SAMPLE / "trec_train.csv"


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 500), min_size=2, max_size=12), seed=st.integers(0, 2**16))
def test_balanced_single_label_weights_equalise_the_classes(counts, seed):
    """Each class's total weight is the same (n / classes), so the mean weight of an example is 1."""
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    w = tasks.class_weights(tasks.SINGLE, y, len(counts))
    per_class = np.array([w[c] * n for c, n in enumerate(counts)])
    assert np.allclose(per_class, len(y) / len(counts), rtol=1e-5)
    assert np.isclose(w[y].mean(), 1.0, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(2, 200), labels=st.integers(1, 8))
def test_balanced_multi_label_weights_are_negatives_over_positives(data, n, labels):
    y = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=labels, max_size=labels), min_size=n,
                                    max_size=n)), dtype=np.float32)  # fmt: skip
    w = tasks.class_weights(tasks.MULTI, y, labels)
    pos = y.sum(0)
    for j in range(labels):
        assert np.isclose(w[j], (n - pos[j]) / max(pos[j], 1), rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 200), classes=st.integers(2, 7))
def test_the_validation_rows_macro_f1_is_evaluates(data, n, classes):
    y = np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    pred = np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    want = classification_report(y, pred, [str(c) for c in range(classes)])["macro_f1"]
    assert macro_f1(y, pred, classes) == want
    logits = np.eye(classes, dtype=np.float32)[pred]
    row = tasks.valid_metrics(tasks.SINGLE, logits, y, None)
    assert row["macro_f1"] == want and row["accuracy"] == float((pred == y).mean())
    multi = tasks.valid_metrics(tasks.MULTI, logits * 2 - 1, np.eye(classes, dtype=np.float32)[y], None)
    assert multi["macro_f1"] == macro_f1_multi(np.eye(classes, dtype=bool)[y], np.eye(classes, dtype=bool)[pred])


def test_the_weighted_loss_is_the_weighted_mean_of_example_losses():
    torch.manual_seed(0)
    logits, y = torch.randn(50, 4), torch.randint(0, 4, (50,))
    w = torch.tensor(tasks.class_weights(tasks.SINGLE, y.numpy(), 4))
    each = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.isclose(tasks.loss(tasks.SINGLE, logits, y, w), (each * w[y]).sum() / w[y].sum())


def imbalanced(tmp_path, keep_every: int = 8):
    """TREC's training sample with every class but DESC and ENTY cut to one row in `keep_every`."""
    rows = list(csv.DictReader(TRAIN.open()))
    kept, seen = [], {}
    for r in rows:
        seen[r["label"]] = seen.get(r["label"], 0) + 1
        if r["label"] in ("DESC", "ENTY") or seen[r["label"]] % keep_every == 0:
            kept.append(r)
    path = tmp_path / "imbalanced.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows({"text": r["text"], "label": r["label"]} for r in kept)
    return path, [r["label"] for r in kept]


def test_finetune_clf_records_the_weights_and_chooses_by_the_metric(pipeline, ulmfit, tmp_path):
    train, labels = imbalanced(tmp_path)
    run = tmp_path / "clf"
    r = ulmfit("finetune-clf", pipeline["ft"], train, "--out", run, "--preset", "tiny", "--epochs", "5",
               "--class-weights", "balanced", "--metric", "macro_f1", "--keep", "best", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "manifest.json").read_text())
    classes = m["classes"]
    # the weights come from the training rows the run used (the validation share held out of them)
    assert set(m["class_weights"]) == set(classes)
    w = np.array([m["class_weights"][c] for c in classes])
    assert w[classes.index("ABBR")] > 3 * w[classes.index("DESC")]
    assert m["selection"]["metric"] == "macro_f1"
    scores = [h["macro_f1"] for h in m["history"]]
    assert m["best_epoch"] == 1 + max(range(len(scores)), key=lambda i: (scores[i], -m["history"][i]["valid_loss"]))


def test_a_metric_or_weighting_the_task_lacks_is_one_line_before_training(pipeline, ulmfit, tmp_path):
    out = tmp_path / "clf"
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--out", out, "--metric", "mae", "--preset", "tiny")
    one_line_error(r, 2, "`--metric mae`", "single-label", "macro_f1")
    r = ulmfit("finetune-clf", pipeline["ft"], TRAIN, "--out", out, "--metric", "f2", "--preset", "tiny")
    one_line_error(r, 2, "`--metric`", "macro_f1", "'f2'")
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("text,label\n" + "".join(f"text number {i},{i % 7}\n" for i in range(60)))
    r = ulmfit("finetune-clf", pipeline["ft"], numbers, "--out", out, "--regression", "--class-weights", "balanced",
               "--preset", "tiny")  # fmt: skip
    one_line_error(r, 2, "--class-weights balanced", "regression")
    assert not out.exists() and not (tmp_path / ".clf.partial").exists()


def test_inspect_suggests_the_flags_for_imbalanced_classes_only(ulmfit, tmp_path):
    train, _ = imbalanced(tmp_path, keep_every=12)
    r = ulmfit("inspect", train)
    assert "--class-weights balanced" in r.stdout + r.stderr and "--metric macro_f1" in r.stdout + r.stderr
    even = tmp_path / "even.csv"
    even.write_text("text,label\n" + "".join(f"some text {i},{'ab'[i % 2]}\n" for i in range(100)))
    r = ulmfit("inspect", even)
    assert "--class-weights" not in r.stdout + r.stderr
