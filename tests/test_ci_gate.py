"""`ulmfit evaluate --fail-under METRIC=BOUND` / `--fail-over`: the gate a CI job puts on a model (issue 36, part 7).
The results are printed either way; the exit code is 1, with one line naming the metric, its value and the bound,
exactly when a bound is missed; a malformed or unknown gate is refused before any work (exit 2)."""

from __future__ import annotations

import json

import pytest

from conftest import SAMPLE, one_line_error


@pytest.fixture(scope="module")
def scored(pipeline, ulmfit) -> dict:
    r = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
@pytest.mark.parametrize("offset", [-0.2, -1e-4, 1e-4, 0.2])
def test_the_gate_fails_exactly_when_the_bound_is_missed(pipeline, ulmfit, scored, metric, offset):
    value = scored[metric]
    bound = round(value + offset, 6)
    r = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--json", "--fail-under", f"{metric}={bound}")
    assert json.loads(r.stdout)[metric] == value  # the results come out, pass or fail
    if value < bound:
        one_line_error(r, 1, f"{metric} {value:.4f} is below the bound of --fail-under {metric}={bound:g}")
    else:
        assert r.returncode == 0 and r.stderr.count("ulmfit: error") == 0, r.stderr
    r = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--json", "--fail-over", f"{metric}={bound}")
    assert r.returncode == (1 if value > bound else 0), r.stderr


def test_several_gates_name_every_miss(pipeline, ulmfit, scored):
    r = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--fail-under", "accuracy=1.01",
               "--fail-under", "macro_f1=1.01", "--fail-under", "accuracy=0")  # fmt: skip
    one_line_error(r, 1, "accuracy", "macro_f1", "below")


@pytest.mark.parametrize(
    "gate, words",
    [
        ("accuracy", "takes METRIC=BOUND"),
        ("accuracy=high", "takes METRIC=BOUND"),
        ("accuracy=nan", "takes METRIC=BOUND"),
        ("mae=0.5", "reports accuracy, macro_f1; not 'mae'"),
        ("acuracy=0.5", "not 'acuracy'"),
    ],
)
def test_a_bad_gate_is_refused_before_any_work(pipeline, ulmfit, gate, words):
    r = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--fail-under", gate)
    one_line_error(r, 2, words)
    assert r.stdout == ""  # nothing evaluated
