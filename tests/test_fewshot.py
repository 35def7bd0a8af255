"""A classifier from a handful of labels (issue 37): the step floor, the contrastive step's pairs and loss, the
no-better-than-the-majority warning, and tiny data that trains end to end on a tiny pretrained model."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import hf_tiny
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import log_reporter
from ulmfit_cli import tasks
from ulmfit_cli.config import resolve
from ulmfit_cli.training.contrastive import cosine_similarity_loss, pairs
from ulmfit_cli.training.stage_parts import passes_per_epoch

labels = st.lists(st.integers(0, 5), min_size=2, max_size=40).map(np.array)


@settings(max_examples=60, deadline=None)
@given(y=labels, n=st.integers(1, 60), seed=st.integers(0, 2**32 - 1))
def test_pairs_are_what_they_say_half_of_one_class_and_reproducible(y, n, seed):
    out = pairs(y, n, np.random.default_rng(seed))
    assert out.shape == (n, 3)
    i, j, same = out.T
    assert (i != j).all() and (i < len(y)).all() and (j < len(y)).all()
    assert (same == (y[i] == y[j])).all()  # the flag is the truth about the two rows
    counts = np.bincount(y)
    many, twos = (counts > 0).sum() > 1, (counts >= 2).any()
    expected = (n // 2 if many else n) if twos else 0
    assert same.sum() == expected
    assert (pairs(y, n, np.random.default_rng(seed)) == out).all()


def test_pairs_mix_both_kinds_in_every_stretch():
    """Positives and negatives are shuffled together: a batch of pairs is never all of one kind (a run of all
    positives, then all negatives, trained the body on one half of the loss at a time)."""
    y = np.repeat(np.arange(4), 8)
    same = pairs(y, 16 * 40, np.random.default_rng(0))[:, 2].reshape(40, 16)
    assert ((same.sum(1) > 0) & (same.sum(1) < 16)).all()


def test_the_loss_is_sentence_transformers_cosine_similarity_loss():
    import torch

    u, v = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # cos = 0 (label 1: error 1) and 1 (label 0: error 1)
    assert float(cosine_similarity_loss(u, v, torch.tensor([1, 0]))) == pytest.approx(1.0)
    assert float(cosine_similarity_loss(u, v, torch.tensor([0, 1]))) == pytest.approx(0.0)


@settings(max_examples=100, deadline=None)
@given(epochs=st.integers(0, 30), steps=st.integers(1, 50), floor=st.integers(0, 500))
def test_the_step_floor_reads_the_rows_the_fewest_times_that_reach_it(epochs, steps, floor):
    cfg = resolve("finetune-clf", "tiny", {"epochs": epochs, "min_steps": floor})
    log = log_reporter()
    passes = passes_per_epoch(cfg, steps, 10, log)
    if epochs == 0 or epochs * steps >= floor:
        assert passes == 1 and log.lines == []
    else:
        assert epochs * steps * passes >= floor > epochs * steps * (passes - 1)
        assert f"reads them {passes} times ({passes * steps} steps)" in log.lines[0]


@settings(max_examples=100, deadline=None)
@given(
    y=st.lists(st.integers(0, 3), min_size=1, max_size=30).map(np.array),
    vy=st.lists(st.integers(0, 3), min_size=0, max_size=30).map(np.array),
    acc=st.floats(0, 1),
)
def test_the_majority_warning_fires_exactly_when_the_classifier_is_no_better(y, vy, acc):
    classes = ["a", "b", "c", "d"]
    base = tasks.majority_baseline(tasks.SINGLE, y, vy, classes)
    if len(vy) == 0:
        assert base is None
        return
    top = np.bincount(y, minlength=4).argmax()
    assert base["class"] == classes[top] and base["accuracy"] == pytest.approx((vy == top).mean())
    msg = tasks.no_better_than_majority({"accuracy": acc}, base)
    assert (msg is not None) == (acc <= base["accuracy"])
    if msg:
        assert f"{acc:.1%}" in msg and f"{base['accuracy']:.1%}" in msg and repr(base["class"]) in msg
    assert tasks.majority_baseline(tasks.MULTI, y, vy, classes) is None


# ---- end to end, on a tiny random encoder ------------------------------------------------------------------

WORDS = ["apple", "river", "guitar", "planet", "candle"]


def _synthetic(path: Path, n_classes: int, per_class: int, seed: int) -> None:
    """A task a tiny model can learn: the class is the one keyword a text holds, among filler words."""
    rng = random.Random(seed)
    filler = " ".join(hf_tiny.CORPUS).lower().replace(".", "").replace(",", "").split()
    rows = []
    for c in range(n_classes):
        for _ in range(per_class):
            words = rng.sample(filler, 4)
            words.insert(rng.randrange(5), WORDS[c])
            rows.append((" ".join(words), f"class{c}"))
    rng.shuffle(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory, ulmfit) -> Path:
    root = tmp_path_factory.mktemp("fewshot")
    hf_tiny.write_encoder(root / "bert", "bert", seed=4)
    r = ulmfit("import-hf", root / "bert", "--out", root / "lm")
    assert r.returncode == 0, r.stderr
    return root


@pytest.mark.parametrize("n_classes, per_class", [(2, 4), (5, 2)])
def test_tiny_data_trains_better_than_chance_with_the_contrastive_step(encoder_run, ulmfit, tmp_path, n_classes,
                                                                       per_class):  # fmt: skip
    _synthetic(tmp_path / "train.csv", n_classes, per_class, seed=1)
    _synthetic(tmp_path / "test.csv", n_classes, 20, seed=2)
    args = [
        "--preset",
        "tiny",
        "--min-steps",
        "80",
        "--contrastive-steps",
        "40",
        "--lr",
        "3e-3",
        "--bs",
        "8",
        "--contrastive-lr",
        "3e-3",
    ]  # a tiny random model learns at rates a pretrained one would not take
    r = ulmfit("finetune-clf", encoder_run / "lm", tmp_path / "train.csv", "--out", tmp_path / "clf", *args, "--json")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "clf" / "manifest.json").read_text())
    assert m["contrastive"]["steps"] == 40 and m["contrastive"]["loss_last"] < m["contrastive"]["loss_first"]
    s = json.loads(r.stdout.splitlines()[-1])  # training's time: the contrastive step and the loop after it
    assert 0 < m["contrastive"]["time_s"] < s["train_s"] <= s["wall_s"]
    assert m["config"]["epochs"] == 4 and m["passes_per_epoch"] == 20  # one step a pass (fewer rows than --bs)
    r = ulmfit("evaluate", tmp_path / "clf", tmp_path / "test.csv", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] > 1.5 / n_classes  # chance: 1 / n_classes


@pytest.mark.parametrize("n_classes, per_class", [(2, 4), (5, 2)])
def test_the_head_alone_is_the_linear_head_fitted_and_every_engine_reads_it(encoder_run, ulmfit, tmp_path, n_classes,
                                                                          per_class):  # fmt: skip
    """After the contrastive step, one epoch of the head alone: --head auto makes it the linear head, fitted as a
    logistic regression (no steps of the loop) and recorded as `linear`; it learns the keyword on a handful of rows,
    and the onnx engine gives torch's probabilities."""
    _synthetic(tmp_path / "train.csv", n_classes, per_class, seed=1)
    _synthetic(tmp_path / "test.csv", n_classes, 20, seed=2)
    clf = tmp_path / "clf"
    r = ulmfit("finetune-clf", encoder_run / "lm", tmp_path / "train.csv", "--out", clf, "--preset", "tiny",
               "--contrastive-steps", "40", "--contrastive-lr", "3e-3", "--epochs", "1", "--bs", "8",
               "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((clf / "manifest.json").read_text())
    assert m["config"]["head"] == "linear" and len(m["history"]) == 1 and "fitting the linear head" in r.stderr
    s = json.loads(r.stdout.splitlines()[-1])  # no loop, yet training took time: the step and the fit
    assert 0 < m["contrastive"]["time_s"] <= s["train_s"] <= s["wall_s"]
    assert "step 20/" not in r.stderr  # the loop's progress: no steps were taken
    r = ulmfit("evaluate", clf, tmp_path / "test.csv", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] > 1.5 / n_classes  # chance: 1 / n_classes

    def probs(*flags):
        r = ulmfit("predict", clf, tmp_path / "test.csv", "--format", "jsonl", *flags)
        assert r.returncode == 0, r.stderr
        return np.array([list(json.loads(x)["probs"].values()) for x in r.stdout.splitlines()])

    np.testing.assert_allclose(probs("--engine", "onnx"), probs(), atol=1e-5, rtol=0)


def _imbalanced(path: Path, seed: int) -> None:
    """Three texts of class0 to one of class1, the keyword telling them apart."""
    _synthetic(path, 2, 30, seed)
    rows = list(csv.reader(open(path, encoding="utf-8")))
    header, body = rows[0], rows[1:]
    ones = [r for r in body if r[1] == "class1"][:10]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *[r for r in body if r[1] == "class0"], *ones])


@pytest.mark.parametrize("learns", [False, True])
def test_the_majority_warning_on_the_command_line(encoder_run, ulmfit, tmp_path, learns):
    """Where the classifier cannot have learnt (a rate of 1e-9: a fresh head answers at random) it ends below the
    75% of always answering class0 and says so, with both numbers; where it learns the keyword, it says nothing.
    Either way the manifest records the baseline."""
    _imbalanced(tmp_path / "train.csv", seed=3)
    flags = ["--min-steps", "150", "--lr", "3e-3"] if learns else ["--epochs", "1", "--lr", "1e-9"]
    r = ulmfit("finetune-clf", encoder_run / "lm", tmp_path / "train.csv", "--out", tmp_path / "clf", "--preset",
               "tiny", "--valid-pct", "0.5", "--bs", "8", *flags)  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "clf" / "manifest.json").read_text())
    base, final = m["majority_baseline"], m["history"][m["kept_epoch"] - 1]["accuracy"]
    assert base["class"] == "class0" and base["documents"] == 20
    warned = "no better than always answering the most common class 'class0'" in r.stderr
    assert warned == (final <= base["accuracy"])
    assert warned != learns, (final, base)
    if warned:
        assert f"{final:.1%}" in r.stderr and f"{base['accuracy']:.1%}" in r.stderr


def test_the_contrastive_step_needs_classes_and_a_backbone_that_has_it():
    from ulmfit_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="needs single-label classes"):
        resolve("finetune-clf", "tiny", {"contrastive_steps": 5, "regression": True})
    with pytest.raises(ConfigError, match="needs --backbone transformer or hf"):
        resolve("finetune-clf", "tiny", {"contrastive_steps": 5})
    with pytest.raises(ConfigError, match="`--head linear` needs --backbone transformer or hf"):
        resolve("finetune-clf", "tiny", {"head": "linear"})


def test_the_step_floor_keeps_the_epochs_and_their_checkpoints(encoder_run, ulmfit, tmp_path, monkeypatch):
    """8 rows make one step a pass: --epochs 3 --min-steps 60 reads them 20 times an epoch. Three epochs, so three
    validation rows and one checkpoint at each epoch end, plus one every --checkpoint-every steps of the run."""
    from ulmfit_cli.training import checkpoint

    saved = []
    real = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda folder, model, opt, state: (
        saved.append((state.epoch, state.step)), real(folder, model, opt, state)))  # fmt: skip
    _synthetic(tmp_path / "train.csv", 2, 4, seed=1)
    r = ulmfit("finetune-clf", encoder_run / "lm", tmp_path / "train.csv", "--out", tmp_path / "clf", "--preset",
               "tiny", "--epochs", "3", "--min-steps", "60", "--checkpoint-every", "25", "--bs", "8")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "clf" / "manifest.json").read_text())
    assert m["config"]["epochs"] == 3 and len(m["history"]) == 3 and m["passes_per_epoch"] == 20
    assert saved == [(1, 0), (1, 5), (2, 0), (2, 10), (3, 0)]  # epoch ends, and steps 25 and 50 of the run


@settings(max_examples=100, deadline=None)
@given(counts=st.lists(st.integers(1, 100), min_size=1, max_size=8), bs=st.integers(2, 64))
def test_auto_steps_draw_setfits_pairs_for_few_rows_and_none_for_many(counts, bs):
    from ulmfit_cli.training.contrastive import AUTO_MAX, FEW, auto_steps

    y = np.repeat(np.arange(len(counts)), counts)
    steps = auto_steps(y, bs)
    different = sum(a * b for i, a in enumerate(counts) for b in counts[i + 1 :])
    if len(counts) < 2 or sum(counts) > FEW * len(counts):  # a rare class among many rows is not few labels
        assert steps == 0
    else:
        assert steps == min(AUTO_MAX, -(-2 * different // bs))
        assert steps * bs >= min(AUTO_MAX * bs, 2 * different)  # every cross-class pair's worth, twice


@pytest.mark.parametrize("per_class, few", [(4, True), (66, False)])  # 66: 65 or more of each in training
def test_auto_pairs_few_rows_then_trains_the_head_alone_and_leaves_more_rows_alone(encoder_run, ulmfit, tmp_path,
                                                                                   per_class, few):  # fmt: skip
    """--contrastive-steps -1 (the hf presets' default): with at most 64 rows of the rarest class, SetFit's pair
    count and one epoch of the head; with more (after the held-out row), neither."""
    from ulmfit_cli.training.contrastive import auto_steps

    _synthetic(tmp_path / "train.csv", 2, per_class, seed=1)
    r = ulmfit("finetune-clf", encoder_run / "lm", tmp_path / "train.csv", "--out", tmp_path / "clf", "--preset",
               "tiny", "--contrastive-steps", "-1", "--contrastive-lr", "3e-3", "--epochs", "3", "--bs", "8",
               "--valid-pct", "0.01")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "clf" / "manifest.json").read_text())
    if few:  # every row trains (none held out) and the warning, if any, speaks of the training rows
        assert m["contrastive"]["steps"] == auto_steps(np.repeat([0, 1], per_class), 8) > 0
        assert m["config"]["epochs"] == 1 and "then one epoch the classifier's head" in r.stderr
        assert f"{2 * per_class} training and 0 validation documents" in r.stderr
        assert m["majority_baseline"]["on"] == "training" and m["majority_baseline"]["documents"] == 2 * per_class
        assert m["config"]["head"] == "linear"  # --head auto, recorded as what it chose
    else:
        assert "contrastive" not in m and m["config"]["epochs"] == 3 and m["config"]["head"] == "ulmfit"
        assert f"{2 * per_class - 1} training and 1 validation documents" in r.stderr


@pytest.mark.parametrize("multi", [False, True])
def test_valid_pct_0_trains_on_every_row(encoder_run, ulmfit, tmp_path, multi):
    """--valid-pct 0 holds out nothing (it held out one row): every row trains, the epochs have no validation
    metrics, the last is kept, and a multi-label run keeps its thresholds at 0.5 (nothing to tune them on)."""
    _synthetic(tmp_path / "train.csv", 3, 5, seed=4)
    extra = ["--label-delim", " "] if multi else []
    r = ulmfit("finetune-clf", encoder_run / "lm", tmp_path / "train.csv", "--out", tmp_path / "clf", "--preset",
               "tiny", "--valid-pct", "0", "--contrastive-steps", "0", *extra)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "15 training and 0 validation documents" in r.stderr
    m = json.loads((tmp_path / "clf" / "manifest.json").read_text())
    assert m["kept_epoch"] == len(m["history"]) == m["config"]["epochs"]
    assert all(set(row) <= {"epoch", "train_loss"} for row in m["history"])
    if multi:
        assert set(m["thresholds"].values()) == {0.5}
    r = ulmfit("evaluate", tmp_path / "clf", tmp_path / "train.csv", "--json")
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def tiny_classifiers(encoder_run):
    """An encoder and a decoder classifier, random, built in-process (their pooling differs: mean and concat)."""
    import torch

    from ulmfit_cli.config import RunConfig
    from ulmfit_cli.models import hf

    hf_tiny.write_model(encoder_run / "gpt2", "gpt2", seed=1)
    out = []
    for folder in ("bert", "gpt2"):
        config = json.loads((encoder_run / folder / "config.json").read_text())
        cfg = RunConfig(stage="finetune-clf", backbone="hf", tokenizer="hf", hf_config=config, n_layers=2, bs=5)
        torch.manual_seed(0)
        out.append((cfg, hf.build_classifier(cfg, None, 3)))
    return out


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=23), seed=st.integers(0, 2**16))
def test_features_in_shares_and_the_frozen_cache_are_each_documents_own(tiny_classifiers, lengths, seed):
    """The contrastive step's forwards in shares of similar length, and the head's features computed once, give
    every document, in its own place, the features it gets alone: the pads beside it change nothing."""
    import torch

    from ulmfit_cli.models import hf
    from ulmfit_cli.training.contrastive import head_features, pooled

    rng = np.random.default_rng(seed)
    docs = [np.concatenate([[0], rng.integers(5, 300, size=k - 1)]).astype(np.int64) for k in lengths]
    for cfg, model in tiny_classifiers:
        model.eval()
        with torch.no_grad():
            alone = torch.cat([model.features(torch.as_tensor(hf.pad_batch([d], 0, 0))) for d in docs])
            shared = pooled(model, docs, hf.pad_batch, cfg.bptt, torch.device("cpu"))
        cached = head_features(model.train(), docs, cfg, hf.pad_batch)
        assert model.training  # left as it was found
        assert torch.allclose(shared, alone, atol=1e-5) and torch.allclose(cached, alone, atol=1e-5)
        with torch.no_grad():  # and the head on them is the classifier's own answer
            model.eval()
            assert torch.allclose(model.head(cached), model(torch.as_tensor(hf.pad_batch(docs, 0, 0)))[0], atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(2, 9), min_size=2, max_size=5), dim=st.integers(2, 12),
       weighted=st.booleans(), seed=st.integers(0, 2**16))  # fmt: skip
def test_the_linear_head_is_scikit_learns_logistic_regression(counts, dim, weighted, seed):
    """The few-labels head is SetFit's: scikit-learn's LogisticRegression() (C=1, class_weight as
    --class-weights balanced gives it) on the normalized features, two classes or more, to its probabilities."""
    from sklearn.linear_model import LogisticRegression

    from ulmfit_cli.models.heads import LinearHead, fit_logistic
    from ulmfit_cli.tasks import SINGLE, class_weights

    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    x = rng.normal(size=(len(y), dim)) + 2 * rng.normal(size=(len(counts), dim))[y]  # the classes' means apart
    w = torch.as_tensor(class_weights(SINGLE, y, len(counts))) if weighted else None
    head = LinearHead(dim, len(counts))
    fit_logistic(head, torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y), w)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = LogisticRegression(tol=1e-10, max_iter=10_000, class_weight="balanced" if weighted else None).fit(xn, y)
    with torch.no_grad():
        p = torch.softmax(head(torch.as_tensor(x, dtype=torch.float32)), 1).numpy()
    np.testing.assert_allclose(p, ref.predict_proba(xn), atol=2e-3)
