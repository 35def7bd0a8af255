"""Multi-label, regression and ensembles, through the real CLI on tiny models.

Multi-label data: sample_data/reuters_*.csv (real Reuters-21578 topics, space-separated). Regression data:
the TREC questions of sample_data with their word count as the target (a real text, a derived number that a
tiny LSTM can learn, so "better than predicting the mean" is a fair check).
"""

import csv
import json
import shutil

import numpy as np
import pytest

from conftest import SAMPLE, one_line_error
from ulmfit_cli.data.batches import split_valid
from ulmfit_cli.metrics import THRESHOLD_GRID

TINY = ("--preset", "tiny", "--quiet")


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def _manifest(run):
    return json.loads((run / "manifest.json").read_text())


def _predict(cli, *args, stdin=None):
    r = cli("predict", *args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def _with_manifest(run, dest, **changes):
    """A copy of run folder `run` whose manifest has `changes` (same weights and tokenizer)."""
    shutil.copytree(run, dest)
    m = {**_manifest(run), **changes}
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


@pytest.fixture(scope="module")
def multi(ulmfit, pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "clf"
    r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "reuters_train.csv", "--label-delim", " ", "--out", out,
            "--epochs", "4", *TINY)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def word_counts(tmp_path_factory):
    root = tmp_path_factory.mktemp("regression")
    for split in ("train", "test"):
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows((text, len(text.split())) for text, _ in _rows(SAMPLE / f"trec_{split}.csv"))
    return root


@pytest.fixture(scope="module")
def regressor(ulmfit, pipeline, word_counts):
    out = word_counts / "reg"
    r = ulmfit("finetune-clf", pipeline["ft"], word_counts / "train.csv", "--regression", "--out", out, "--epochs", "6",
            *TINY)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


# ---- multi-label -----------------------------------------------------------------------------------------


def test_multi_label_run_has_the_label_set_thresholds_and_micro_f1(multi):
    m = _manifest(multi)
    rows = _rows(SAMPLE / "reuters_train.csv")
    assert m["task"] == "multi-label" and m["config"]["label_delim"] == " "
    assert m["classes"] == sorted({c for _, labels in rows for c in labels.split(" ")})
    assert set(m["thresholds"]) == set(m["classes"])
    assert all(t in THRESHOLD_GRID for t in m["thresholds"].values())
    # labels absent from the validation rows keep 0.5; the tuned ones differ somewhere
    _, valid = split_valid(len(rows), 0.1, 42)
    seen = {c for i in valid for c in rows[i][1].split(" ")}
    assert all(t == 0.5 for c, t in m["thresholds"].items() if c not in seen)
    assert any(t != 0.5 for t in m["thresholds"].values())
    for row in m["history"]:
        assert 0 <= row["micro_f1"] <= 1 and "accuracy" not in row
    assert m["final"]["micro_f1"] == m["thresholds_valid"]["micro_f1_at_0.5"]


def test_multi_label_predict_lists_the_labels_above_their_thresholds(cli, multi, tmp_path):
    cuts = _manifest(multi)["thresholds"]
    lines = _predict(cli, multi, SAMPLE / "reuters_test.csv")
    assert len(lines) == 100
    for obj in lines:
        assert set(obj["probs"]) == set(cuts) and all(0 <= p <= 1 for p in obj["probs"].values())
        assert obj["labels"] == [c for c, p in obj["probs"].items() if p >= cuts[c]]
    assert any(obj["labels"] for obj in lines)
    # the thresholds come from the run folder: at 0 every label is predicted
    zero = _with_manifest(multi, tmp_path / "zero", thresholds={c: 0.0 for c in cuts})
    assert all(obj["labels"] == sorted(cuts) for obj in _predict(cli, zero, SAMPLE / "reuters_test.csv"))
    # an ensemble averages the probabilities (identical weights here) and the thresholds
    both = _predict(cli, multi, SAMPLE / "reuters_test.csv", "--ensemble", zero)
    for one, avg in zip(lines, both):
        assert avg["probs"] == one["probs"]
        assert avg["labels"] == [c for c, p in one["probs"].items() if p >= cuts[c] / 2]


def test_multi_label_evaluate_agrees_with_predict(cli, ulmfit, multi):
    r = ulmfit("evaluate", multi, SAMPLE / "reuters_test.csv", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["task"] == "multi-label" and res["n"] == 100
    assert 0 <= res["micro_f1"] <= 1 and 0 <= res["macro_f1"] <= 1
    truth = [set(labels.split(" ")) for _, labels in _rows(SAMPLE / "reuters_test.csv")]
    assert sum(row["support"] for row in res["per_class"]) == sum(map(len, truth))
    predicted = [set(obj["labels"]) for obj in _predict(cli, multi, SAMPLE / "reuters_test.csv")]
    tp = sum(len(t & p) for t, p in zip(truth, predicted))
    micro = 2 * tp / (sum(map(len, truth)) + sum(map(len, predicted)))
    assert res["micro_f1"] == pytest.approx(micro)
    table = ulmfit("evaluate", multi, SAMPLE / "reuters_test.csv")
    assert f"micro-F1 {res['micro_f1']:.4f}" in table.stdout and "threshold" in table.stdout


def test_a_list_column_is_multi_label_without_a_delimiter(ulmfit, pipeline, multi, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(json.dumps({"text": t, "label": ls.split(" ")}) + "\n" for t, ls in _rows(SAMPLE / "reuters_train.csv"))
    )
    r = ulmfit("finetune-clf", pipeline["ft"], data, "--out", tmp_path / "c", "--epochs", "4", *TINY)
    assert r.returncode == 0, r.stderr
    lists, split = _manifest(tmp_path / "c"), _manifest(multi)
    assert lists["task"] == "multi-label" and lists["classes"] == split["classes"]
    assert [{k: v for k, v in row.items() if k != "time_s"} for row in lists["history"]] == [
        {k: v for k, v in row.items() if k != "time_s"} for row in split["history"]
    ]


# ---- regression ------------------------------------------------------------------------------------------


def test_regression_learns_better_than_the_mean(cli, ulmfit, regressor, word_counts):
    m = _manifest(regressor)
    assert m["task"] == "regression" and m["classes"] is None
    train = np.array([float(y) for _, y in _rows(word_counts / "train.csv")])
    assert m["target"]["mean"] == pytest.approx(train.mean(), rel=0.05) and m["target"]["std"] > 0
    assert all({"mae", "rmse", "valid_loss"} <= set(row) for row in m["history"])
    values = [obj["value"] for obj in _predict(cli, regressor, word_counts / "test.csv")]
    truth = np.array([float(y) for _, y in _rows(word_counts / "test.csv")])
    r = ulmfit("evaluate", regressor, word_counts / "test.csv", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["task"] == "regression" and res["n"] == len(truth) == len(values)
    assert res["mae"] == pytest.approx(np.abs(np.array(values) - truth).mean())
    assert res["rmse"] == pytest.approx(np.sqrt(((np.array(values) - truth) ** 2).mean()))
    assert res["mae"] < np.abs(truth - train.mean()).mean()  # better than always answering the training mean
    assert f"MAE {res['mae']:.4f}" in ulmfit("evaluate", regressor, word_counts / "test.csv").stdout


def test_regression_names_the_first_non_numeric_row(ulmfit, pipeline, tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("text,label\nhow many ?,1\n,5\nhow far ?,2.5\nwho ?,three\nwhat ?,4\n")
    r = ulmfit("finetune-clf", pipeline["ft"], p, "--regression", "--out", tmp_path / "c", *TINY)
    one_line_error(r, 2, "bad.csv", "row 4", "'three'", "--regression")
    assert not (tmp_path / "c").exists() and not (tmp_path / ".c.partial").exists()


def test_regression_and_label_delim_cannot_be_combined(ulmfit, pipeline, tmp_path):
    r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "reuters_train.csv", "--regression", "--label-delim", " ",
            "--out", tmp_path / "c")  # fmt: skip
    one_line_error(r, 2, "`--regression` and `--label-delim`")


# ---- ensembles -------------------------------------------------------------------------------------------


def test_an_ensemble_averages_the_probabilities_of_its_runs(cli, ulmfit, pipeline, tmp_path):
    other = tmp_path / "seed7"
    r = ulmfit("finetune-clf", pipeline["ft"], SAMPLE / "trec_train.csv", "--out", other, "--seed", "7",
            "--epochs", "2", *TINY)  # fmt: skip
    assert r.returncode == 0, r.stderr
    texts = "What is the capital of France ?\nWho wrote Hamlet ?\nHow many legs has a spider ?\n"
    a, b = (_predict(cli, run, "-", stdin=texts) for run in (pipeline["clf"], other))
    both = _predict(cli, pipeline["clf"], "-", "--ensemble", other, stdin=texts)
    assert a != b  # two different models
    for x, y, avg in zip(a, b, both):
        for c, p in avg["probs"].items():
            assert p == pytest.approx((x["probs"][c] + y["probs"][c]) / 2, abs=2e-6)
        assert avg["label"] == max(avg["probs"], key=avg["probs"].get)
    r = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--ensemble", other, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n"] == 500 and res["runs"] == [str(pipeline["clf"]), str(other)] and 0 <= res["accuracy"] <= 1


def test_an_ensemble_needs_one_task_and_the_same_classes(cli, ulmfit, pipeline, multi, tmp_path):
    r = cli("predict", pipeline["clf"], "-", "--ensemble", multi, stdin="hello ?\n")
    one_line_error(r, 2, "multi-label run cannot be averaged", "single-label")
    classes = _manifest(pipeline["clf"])["classes"]
    swapped = _with_manifest(pipeline["clf"], tmp_path / "swapped", classes=classes[::-1])
    r = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--ensemble", swapped)
    one_line_error(r, 2, "swapped", "classes differ", f"{classes[0]!r} vs {classes[-1]!r}")
