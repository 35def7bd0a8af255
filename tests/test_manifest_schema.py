"""A damaged run folder (a manifest without a key a command needs, or with a value of the wrong type) is one line
naming the key, exit 2, for every command that opens a run, never a KeyError (issue 27, case 2)."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE, one_line_error
from ulmfit_cli.runfolder.artifacts import MANIFEST_SCHEMA, OPTIONAL_SCHEMA

REQUIRED = sorted({*MANIFEST_SCHEMA["every run"], *MANIFEST_SCHEMA["finetune-clf"]})
WRONG = [42, "x", [1], {"a": 1}, True, None, 1.5]


def _damaged(clf, tmp_path, change):
    run = tmp_path / "clf"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(clf, run)
    m = json.loads((run / "manifest.json").read_text())
    change(m)
    (run / "manifest.json").write_text(json.dumps(m))
    return run


READERS = {
    "predict": lambda run: ["predict", run, SAMPLE / "trec_test.csv"],
    "evaluate": lambda run: ["evaluate", run, SAMPLE / "trec_test.csv"],
    "info": lambda run: ["info", run],
    "export": lambda run: ["export", run, "--onnx", run.parent / "m.onnx"],
}


@pytest.mark.parametrize("key", [k for k in REQUIRED if k != "stage"])
@pytest.mark.parametrize("command", READERS)
def test_a_missing_key_is_one_line(pipeline, ulmfit, tmp_path, key, command):
    run = _damaged(pipeline["clf"], tmp_path, lambda m: m.pop(key))
    one_line_error(ulmfit(*READERS[command](run)), 2, "manifest.json is damaged or from another version", repr(key))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted({*REQUIRED, *OPTIONAL_SCHEMA} - {"stage"})), value=st.sampled_from(WRONG))
def test_a_value_of_the_wrong_type_is_one_line(pipeline, ulmfit, tmp_path, key, value):
    types = {**MANIFEST_SCHEMA["every run"], **MANIFEST_SCHEMA["finetune-clf"], **OPTIONAL_SCHEMA}[key]
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
        return  # not a wrong value for this key
    run = _damaged(pipeline["clf"], tmp_path, lambda m: m.__setitem__(key, value))
    one_line_error(ulmfit("predict", run, SAMPLE / "trec_test.csv"), 2, "damaged", repr(key))


def test_the_schemas_task_names_are_the_tasks():
    from ulmfit_cli import tasks
    from ulmfit_cli.runfolder.artifacts import TASKS

    assert TASKS == (tasks.SINGLE, tasks.MULTI, tasks.REGRESSION)


def test_classes_and_task_are_checked(pipeline, ulmfit, tmp_path):
    for change, what in [
        (lambda m: m.__setitem__("classes", []), "'classes'"),
        (lambda m: m.__setitem__("classes", [1, 2]), "'classes'"),
        (lambda m: m.__setitem__("task", "ranking"), "unknown task"),
        (lambda m: m.update(task="regression", target=None), "'target'"),
    ]:
        run = _damaged(pipeline["clf"], tmp_path, change)
        one_line_error(ulmfit("evaluate", run, SAMPLE / "trec_test.csv"), 2, "damaged", what)
    run = _damaged(pipeline["ft"], tmp_path, lambda m: m.pop("config"))  # a parent too
    one_line_error(ulmfit("finetune-clf", run, SAMPLE / "trec_train.csv", "--out", tmp_path / "c"), 2, "'config'")
