"""`ulmfit learning-curve`: the subsamples (property tests), and one tiny curve run in-process, interrupted after
its first point and finished by a rerun that must skip that point; the real CLI then finds it finished."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli import tasks
from ulmfit_cli.cli.common import set_pairs
from ulmfit_cli.errors import ConfigError
from ulmfit_cli.workflows.learning_curve import parse_sizes, parse_variants, sampling_order


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=2, max_size=7),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_subsamples_are_nested_stratified_and_seeded(counts, seed, data):
    labels = [f"c{k}" for k, n in enumerate(counts) for _ in range(n)]
    order = sampling_order(labels, tasks.SINGLE, seed)
    assert sorted(order) == list(range(len(labels)))  # every row once: any size is a prefix, so they nest
    assert list(order) == list(sampling_order(labels, tasks.SINGLE, seed))  # seeded
    n = data.draw(st.integers(1, len(labels)))
    took = Counter(labels[i] for i in order[:n])
    total, k = len(labels), len(counts)
    for cls, c in zip((f"c{j}" for j in range(k)), counts):
        if n >= k:
            assert took[cls] >= 1  # every class, once the size allows
        share = n * c / total
        assert share - (k - 1) * c / total - 1e-9 <= took[cls] < share + 1 + 1e-9, (cls, took[cls], share)


def test_multi_label_and_regression_subsamples_are_plain_permutations():
    labels = [["a", "b"], ["a"], ["b"], ["c"]]
    assert sorted(sampling_order(labels, tasks.MULTI, 1)) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "text, sizes",
    [("100,200,all", [100, 200, "all"]), ("all, 50,50 ,20", [20, 50, "all"]), ("ALL", ["all"])],
)
def test_parse_sizes(text, sizes):
    assert parse_sizes(text) == sizes


@pytest.mark.parametrize("text", ["1", "ten", "100,,200", "-5", "0.5"])
def test_parse_sizes_refuses(text):
    with pytest.raises(ConfigError, match="--sizes"):
        parse_sizes(text)


def test_parse_variants():
    assert parse_variants("semi-supervised,random") == ["random", "semi-supervised"]
    with pytest.raises(ConfigError, match="--variants"):
        parse_variants("random,pretrained")


@pytest.mark.parametrize(
    "pairs, expected",
    [
        (["lr=0.01"], {"lr": 0.01}),
        (["lin-ftrs=100", "--gradual-unfreezing=false"], {"lin_ftrs": 100, "gradual_unfreezing": False}),
        (["label_delim= "], {"label_delim": " "}),
    ],
)
def test_set_pairs(pairs, expected):
    assert set_pairs(pairs, "--clf-set") == expected


@pytest.mark.parametrize("pair", ["lr", "nosuch=1", "epochs=two", "gradual_unfreezing=maybe", "stage=pretrain"])
def test_set_pairs_refuses(pair):
    with pytest.raises(ConfigError, match="--clf-set"):
        set_pairs([pair], "--clf-set")


def _slice(src: Path, dst: Path, rows: int) -> Path:
    with open(src, encoding="utf-8", newline="") as f:
        table = list(csv.reader(f))
    with open(dst, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(table[: rows + 1])
    return dst


FLAGS = ["--sizes", "20,40", "--seeds", "1", "--preset", "tiny", "--epochs", "1"]


def _curve(lm: Path, train: Path, test: Path, out: Path, lr: float | None = None):
    """The Curve the CLI builds from FLAGS (and --lr), so that a CLI rerun finds the same settings."""
    from ulmfit_cli.config import resolve
    from ulmfit_cli.data.readers import Source
    from ulmfit_cli.runfolder.artifacts import open_run
    from ulmfit_cli.workflows.learning_curve import VARIANTS, Curve

    run = open_run(lm, ("pretrain",), "test")
    shared = {"seed": None, "bptt": None, "valid_pct": None, "device": None, "precision": None}
    return Curve(
        parent=run,
        train=Source(path=str(train)),
        test=Source(path=str(test)),
        unlabelled=[],
        sizes=[20, 40],
        seeds=1,
        variants=list(VARIANTS),
        lm_cfg=resolve("finetune-lm", "tiny", shared, run.config),
        clf_cfg=resolve("finetune-clf", "tiny", {**shared, "epochs": 1, "lr": lr}, run.config),
        out=out,
    )


class Stop(KeyboardInterrupt):
    pass


def test_curve_interrupted_after_a_point_resumes_and_writes_table_and_png(pipeline, tmp_path, ulmfit, monkeypatch):
    """Stopped (as Ctrl-C stops it) once its first point is recorded, the rerun skips that point and finishes."""
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.workflows.learning_curve import run

    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    train = _slice(SAMPLE / "trec_train.csv", tmp_path / "train.csv", 100)
    test = _slice(SAMPLE / "trec_test.csv", tmp_path / "test.csv", 20)
    out = tmp_path / "curve"
    curve = _curve(pipeline["lm"], train, test, out)

    def stop(point):
        raise Stop

    with pytest.raises(Stop):
        run(curve, Reporter(quiet=True), on_point=stop)
    (first,) = (out / "points").glob("*.json")
    assert first.name == "random-n20-s42.json"
    before = (first.stat().st_mtime_ns, first.read_text())
    sample = [json.loads(line) for line in (out / "data" / "train-n20-s42.jsonl").read_text().splitlines()]
    assert len(sample) == 20 and len({r["label"] for r in sample}) == 6  # all six TREC classes in 20 rows

    # another learning rate is another curve: refused before any work, unless --overwrite
    with pytest.raises(ConfigError, match="changed: finetune_clf"):
        run(_curve(pipeline["lm"], train, test, out, lr=0.05), Reporter(quiet=True))
    assert (first.stat().st_mtime_ns, first.read_text()) == before

    recorded = []
    run(curve, Reporter(quiet=True), on_point=recorded.append)  # the rerun finishes the curve in-process
    assert [(p["variant"], p["size"]) for p in recorded] == [
        ("supervised", 20), ("semi-supervised", 20), ("random", 40), ("supervised", 40), ("semi-supervised", 40)
    ]  # fmt: skip
    assert (first.stat().st_mtime_ns, first.read_text()) == before  # skipped, not retrained

    # the CLI with the same flags finds the same settings: nothing left to train, the results on stdout
    r = ulmfit("learning-curve", pipeline["lm"], train, "--test", test, "--out", out, *FLAGS, "--json")
    assert r.returncode == 0, r.stderr
    assert "6 of 6 points were finished before and kept" in r.stderr
    summary = json.loads(r.stdout)  # stdout is the JSON alone
    points = summary["points"]
    assert [(p["variant"], p["size"]) for p in points] == [
        (v, n) for n in (20, 40) for v in ("random", "supervised", "semi-supervised")
    ]
    assert all(0 <= p["error"] <= 1 and abs(p["error"] + p["score"] - 1) < 1e-6 for p in points)
    assert all(p["epochs"] == p["kept_epoch"] == 1 for p in points)  # which epoch's weights were scored
    assert {r["variant"] for r in summary["curve"]} == {"random", "supervised", "semi-supervised"}
    with open(out / "learning_curve.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["metric"] for r in rows} == {"accuracy"}
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["lm-semi-s42"]  # per-point runs cleaned up

    # asked for one size of the folder: the summary holds what was asked, the picture the folder's whole curve
    drawn = []
    monkeypatch.setattr("ulmfit_cli.training.plots.learning_curve", lambda curve, *args: drawn.append(curve))
    part = run(dataclasses.replace(curve, sizes=[40]), Reporter(quiet=True))
    assert {p["size"] for p in part["points"]} == {40}
    assert {(r["variant"], r["size"]) for r in drawn[0]} == {
        (v, n) for n in (20, 40) for v in ("random", "supervised", "semi-supervised")
    }

    # --overwrite with another classifier rate: every point again, from the same semi-supervised LM (kept)
    lm_weights = out / "runs" / "lm-semi-s42" / "model.safetensors"
    lm_before = (lm_weights.stat().st_mtime_ns, lm_weights.read_bytes())
    again = []
    other = dataclasses.replace(_curve(pipeline["lm"], train, test, out, lr=0.05), overwrite=True)
    run(other, Reporter(quiet=True), on_point=again.append)
    assert len(again) == 6 and first.stat().st_mtime_ns != before[0]  # every point trained again
    assert (lm_weights.stat().st_mtime_ns, lm_weights.read_bytes()) == lm_before  # the LM was not
    assert all(json.loads(p.read_text())["score"] >= 0 for p in (out / "points").glob("*.json"))


def test_overwrite_keeps_the_fine_tuned_lms_only_when_what_they_read_is_unchanged(tmp_path):
    from ulmfit_cli.workflows.learning_curve import OWNED, _stale

    (tmp_path / "runs" / "lm-semi-s42").mkdir(parents=True)
    (tmp_path / "runs" / "clf-random-n20-s42").mkdir()
    (tmp_path / "runs" / ".clf-semi-supervised-n20-s42.partial").mkdir()
    (tmp_path / "runs" / ".lm-sup-n20-s42.partial").mkdir()
    key = {"parent": "p", "train": "t", "test": "x", "unlabelled": [], "columns": {}, "finetune_lm": {"lr": 1},
           "finetune_clf": {"lr": 2}}  # fmt: skip
    clf_only = ["points", "learning_curve.csv", "learning_curve.png", "runs/clf-random-n20-s42",
                "runs/.clf-semi-supervised-n20-s42.partial"]  # fmt: skip
    assert _stale(tmp_path, {**key, "finetune_clf": {"lr": 3}}, key) == clf_only
    assert _stale(tmp_path, {**key, "test": "y"}, key) == clf_only
    for changed in ("parent", "train", "unlabelled", "columns", "finetune_lm"):
        assert _stale(tmp_path, {**key, changed: "other"}, key) == list(OWNED), changed


def test_bad_sizes_is_one_line_error(ulmfit, tmp_path):
    r = ulmfit("learning-curve", tmp_path, tmp_path / "t.csv", "--test", tmp_path / "t.csv", "--sizes", "10,x")
    one_line_error(r, 2, "--sizes")


def test_workdir_refuses_other_settings_and_overwrite_starts_again(tmp_path):
    from ulmfit_cli.errors import RunFolderError
    from ulmfit_cli.runfolder.workdir import Workdir

    out = tmp_path / "curve"
    Workdir(out, "learning-curve", {"lr": 1}, False, ("points",))
    (out / "points").mkdir()
    (out / "points" / "random-n20-s42.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    Workdir(out, "learning-curve", {"lr": 1}, False, ("points",))  # same settings: the points stay
    assert (out / "points" / "random-n20-s42.json").exists()
    with pytest.raises(ConfigError, match=r"changed: lr\); add --overwrite"):
        Workdir(out, "learning-curve", {"lr": 2}, False, ("points",))
    Workdir(out, "learning-curve", {"lr": 2}, True, ("points",))
    assert not (out / "points").exists() and (out / "notes.txt").read_text() == "mine"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(RunFolderError, match="not a learning-curve folder"):
        Workdir(tmp_path / "other", "learning-curve", {}, True, ("points",))


def test_workdir_with_a_damaged_settings_file_is_refused_and_overwrite_starts_again(tmp_path):
    """Its error says to add --overwrite, and --overwrite then does start again (it used to fail the same way)."""
    from ulmfit_cli.errors import RunFolderError
    from ulmfit_cli.runfolder.workdir import Workdir

    out = tmp_path / "curve"
    Workdir(out, "learning-curve", {"lr": 1}, False, ("points",))
    (out / "points").mkdir()
    (out / "settings.json").write_text('{"lr": ')  # cut short
    with pytest.raises(RunFolderError, match="not valid JSON.*add --overwrite"):
        Workdir(out, "learning-curve", {"lr": 1}, False, ("points",))
    Workdir(out, "learning-curve", {"lr": 1}, True, ("points",))
    assert not (out / "points").exists()
    assert json.loads((out / "settings.json").read_text()) == {"command": "learning-curve", "lr": 1}


def test_a_nan_loss_in_a_point_names_the_flag_and_what_overwrite_keeps(pipeline, tmp_path, monkeypatch):
    """The classifier's advice says --overwrite keeps the fine-tuned LMs (it does: _stale), not that it starts
    the folder again; an LM's change does start it again."""
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.errors import TrainingError
    from ulmfit_cli.workflows.learning_curve import run

    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    train = _slice(SAMPLE / "trec_train.csv", tmp_path / "train.csv", 100)
    test = _slice(SAMPLE / "trec_test.csv", tmp_path / "test.csv", 20)
    curve = dataclasses.replace(_curve(pipeline["lm"], train, test, tmp_path / "curve", lr=1e30), variants=["random"])
    with pytest.raises(TrainingError) as e:
        run(curve, Reporter(quiet=True))
    assert "--clf-set lr=1e+29 and --overwrite (the fine-tuned LMs are kept)" in str(e.value), str(e.value)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 30), min_size=1, max_size=6), seed=st.integers(0, 2**16), data=st.data())
def test_per_class_samples_hold_exactly_k_of_every_class_nested_and_seeded(counts, seed, data):
    from ulmfit_cli.workflows.learning_curve import per_class_rows

    labels = [f"c{k}" for k, n in enumerate(counts) for _ in range(n)]
    random.Random(seed).shuffle(labels)
    k = data.draw(st.integers(1, min(counts)))
    rows = per_class_rows(labels, k, seed)
    assert Counter(labels[i] for i in rows) == {f"c{j}": k for j in range(len(counts))}  # stratified, exactly
    assert list(rows) == list(per_class_rows(labels, k, seed))  # reproducible
    smaller = per_class_rows(labels, data.draw(st.integers(1, k)), seed)
    assert set(smaller) <= set(rows)  # a seed's smaller samples lie inside its larger ones
    if max(math.comb(c, k) for c in counts) >= 20:  # other seeds draw other rows (chance alone: below 20**-10)
        others = [set(per_class_rows(labels, k, seed + d)) for d in range(1, 11)]
        assert any(o != set(rows) for o in others)


def test_per_class_refuses_a_class_too_small_and_other_tasks():
    from ulmfit_cli.workflows.learning_curve import check_per_class

    labels = ["a"] * 10 + ["b"] * 3
    check_per_class(labels, tasks.SINGLE, [2, 3])
    with pytest.raises(ConfigError, match=r"`--per-class 4`: class 'b' has only 3 training rows"):
        check_per_class(labels, tasks.SINGLE, [2, 4])
    with pytest.raises(ConfigError, match="needs single-label classes"):
        check_per_class([["a"], ["b"]], tasks.MULTI, [1])


def test_per_class_curve_from_the_command_line(pipeline, tmp_path, ulmfit, monkeypatch):
    """--per-class 2,3 --seeds 2 --variants random,parent: every point trains on exactly K rows of each of the six
    classes, the same rows for both variants; the table has the spread over the seeds."""
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    train = _slice(SAMPLE / "trec_train.csv", tmp_path / "train.csv", 200)
    test = _slice(SAMPLE / "trec_test.csv", tmp_path / "test.csv", 20)
    out = tmp_path / "curve"
    flags = ["--seeds", "2", "--variants", "random,parent", "--preset", "tiny", "--epochs", "1", "--json"]
    r = ulmfit("learning-curve", pipeline["lm"], train, "--test", test, "--out", out, "--per-class", "2,3", *flags)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert sorted((p["variant"], p["size"], p["n"], p["seed"]) for p in summary["points"]) == sorted(
        (v, k, 6 * k, s) for v in ("random", "parent") for k in (2, 3) for s in (42, 43)
    )
    assert all(p["per_class"] for p in summary["points"])
    for k in (2, 3):
        for s in (42, 43):
            sample = [json.loads(x) for x in (out / "data" / f"train-k{k}-s{s}.jsonl").read_text().splitlines()]
            assert set(Counter(row["label"] for row in sample).values()) == {k}
    assert all(row["error_std"] is not None and row["seeds"] == 2 for row in summary["curve"])
    r = ulmfit("learning-curve", pipeline["lm"], train, "--test", test, "--out", tmp_path / "c2", "--per-class",
               "2,999", "--preset", "tiny")  # fmt: skip
    one_line_error(r, 2, "`--per-class 999`: class")
