"""Metrics and threshold tuning, table-driven against hand-computed values."""

import numpy as np
import pytest

from ulmfit_cli.config import RunConfig
from ulmfit_cli.errors import ConfigError
from ulmfit_cli.metrics import classification_report, multilabel_report, regression_report, tune_thresholds
from ulmfit_cli.tasks import _label_set


def test_single_label_report():
    res = classification_report(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), ["a", "b", "c"])
    assert res["accuracy"] == 0.5 and res["n"] == 4
    a, b, c = res["per_class"]
    assert (a["precision"], a["recall"], a["support"]) == (1.0, 0.5, 2)
    assert b["precision"] == pytest.approx(1 / 3) and b["recall"] == 1.0 and c["f1"] == 0.0
    assert res["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def test_multi_label_report_micro_macro_and_unused_labels():
    true = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]], dtype=bool)
    pred = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    res = multilabel_report(true, pred, ["a", "b", "c"], np.array([0.5, 0.3, 0.5]))
    # a: tp 2; b: tp 1, fp 1, fn 1; c: never true nor predicted, left out of macro-F1
    assert res["micro_f1"] == pytest.approx(2 * 3 / (4 + 4))
    assert res["macro_f1"] == pytest.approx((1.0 + 0.5) / 2)
    assert res["exact_match"] == pytest.approx(1 / 3)
    assert [r["support"] for r in res["per_class"]] == [2, 2, 0] and res["per_class"][1]["threshold"] == 0.3


@pytest.mark.parametrize(
    "probs, true, expected",
    [
        ([0.9, 0.3, 0.2], [1, 1, 0], 0.3),  # F1 = 1 for t in (0.2, 0.3]: the grid value nearest 0.5
        ([0.9, 0.8, 0.7], [0, 0, 0], 0.5),  # no validation positives: 0.5
        ([0.01, 0.02, 0.6], [1, 1, 0], 0.5),  # positives never reached: F1 0 everywhere, 0.5
        ([0.6, 0.7, 0.9], [1, 1, 1], 0.5),  # F1 = 1 up to 0.6: 0.5 is among the best
        ([0.1, 0.15, 0.05], [1, 0, 0], 0.1),  # only 0.1 separates the positive
    ],
)
def test_thresholds_maximise_each_labels_f1(probs, true, expected):
    cuts = tune_thresholds(np.array(probs)[:, None], np.array(true, dtype=bool)[:, None])
    assert cuts.tolist() == [expected]


def test_regression_report():
    res = regression_report(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0]))
    assert res["mae"] == 0.5 and res["rmse"] == 1.0 and res["r2"] == pytest.approx(1 - 1.0 / 1.25) and res["n"] == 4


@pytest.mark.parametrize(
    "cell, delim, labels",
    [
        ("nat-gas crude", " ", ["crude", "nat-gas"]),
        ("a  b a ", " ", ["a", "b"]),
        ("a|b", "|", ["a", "b"]),
        ("a b", None, ["a b"]),  # a string without --label-delim is one label
        (["b", "a", "b", None, " "], None, ["a", "b"]),  # a list column
        ([], None, []),
    ],
)
def test_label_sets(cell, delim, labels):
    assert _label_set(cell, delim) == labels


def test_label_delim_must_be_a_string_and_not_with_regression():
    with pytest.raises(ConfigError, match="`--label-delim` must be a non-empty string"):
        RunConfig(label_delim="").validate()
    with pytest.raises(ConfigError, match="cannot be combined"):
        RunConfig(label_delim=" ", regression=True).validate()
