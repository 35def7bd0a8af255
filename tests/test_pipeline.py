"""`ulmfit pipeline --both-directions`: a forward and a backward classifier from given LMs, in-process, and the
folder it writes used as their ensemble by `predict` and `evaluate`."""

from __future__ import annotations

import json

import pytest
from test_learning_curve import _slice

from conftest import SAMPLE, one_line_error
from ulmfit_cli.errors import ConfigError


@pytest.fixture(scope="module")
def both(pipeline, tmp_path_factory):
    """A tiny backward LM (tokenizer only, random weights: `pretrain --epochs 0 --backwards`), then the pipeline
    of both directions from it and the session's forward LM on 100 TREC questions."""
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.config import resolve
    from ulmfit_cli.data.readers import Source
    from ulmfit_cli.runfolder.artifacts import open_run
    from ulmfit_cli.training.stages import train_lm_stage
    from ulmfit_cli.workflows.pipeline import Pipeline, run

    tmp = tmp_path_factory.mktemp("pipeline")
    bwd = tmp / "lm-bwd"
    cfg = resolve("pretrain", "tiny", {"epochs": 0, "backwards": True})
    train_lm_stage(
        "pretrain", cfg, [Source(path=str(SAMPLE / "books.txt"))], bwd, cache_dir=tmp, reporter=Reporter(True)
    )
    data = {
        "train": _slice(SAMPLE / "trec_train.csv", tmp / "train.csv", 100),
        "test": _slice(SAMPLE / "trec_test.csv", tmp / "test.csv", 30),
    }

    def make(parents, out, **over):
        return Pipeline(
            train=Source(path=str(data["train"])),
            out=out,
            preset="tiny",
            corpus=[],
            parents=[open_run(p, ("pretrain",), "test") for p in parents],
            texts=[],
            test=Source(path=str(data["test"])),
            both=True,
            pretrain_flags={},
            lm_flags={"epochs": 1},
            clf_flags={"epochs": 1},
            cache_dir=tmp,
            **over,
        )

    out = tmp / "both"
    summary = run(make([pipeline["lm"], bwd], out), Reporter(True))
    return {"out": out, "summary": summary, "make": make, "parents": [pipeline["lm"], bwd], **data}


def test_both_directions_trains_each_and_scores_the_ensemble(both):
    s, out = both["summary"], both["out"]
    assert set(s["test"]) == {"fwd", "bwd", "ensemble"}
    for name in ("fwd", "bwd"):
        manifest = json.loads((out / name / "clf" / "manifest.json").read_text())
        assert manifest["config"]["backwards"] is (name == "bwd")
        assert not (out / name / "lm").exists()  # started from the given LMs: nothing pretrained
    assert json.loads((out / "ensemble.json").read_text())["runs"] == ["fwd/clf", "bwd/clf"]


def test_pipeline_folder_is_the_ensemble_for_evaluate_and_predict(both, cli):
    from ulmfit_cli.cli.common import open_models
    from ulmfit_cli.data.readers import Source
    from ulmfit_cli.inference.predictor import evaluate

    out, test = both["out"], Source(path=str(both["test"]))
    folder = open_models(out, None, None, "evaluate")  # what `evaluate OUT` and `predict OUT` open
    assert [r.path for r in folder] == [out / "fwd" / "clf", out / "bwd" / "clf"]
    a = evaluate(folder, test, None, None)
    b = evaluate(open_models(out / "fwd" / "clf", [out / "bwd" / "clf"], None, "evaluate"), test, None, None)
    assert a["confusion"] == b["confusion"] and len(a["runs"]) == 2
    assert a["accuracy"] == pytest.approx(both["summary"]["test"]["ensemble"]["accuracy"])
    r = cli("predict", out, "-", stdin="What is the capital of France ?\n")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["probs"]) == {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}


def test_rerun_reuses_every_stage_and_changed_settings_are_refused(both):
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.workflows.pipeline import run

    before = {p: p.stat().st_mtime_ns for p in both["out"].glob("*/*/model.safetensors")}
    again = run(both["make"](both["parents"], both["out"]), Reporter(True))
    assert again["test"] == both["summary"]["test"]
    assert {p: p.stat().st_mtime_ns for p in both["out"].glob("*/*/model.safetensors")} == before
    changed = both["make"](both["parents"], both["out"])
    changed.clf_flags = {"epochs": 2}
    with pytest.raises(ConfigError, match="other settings.*--overwrite to train again what they change"):
        run(changed, Reporter(True))


def test_overwrite_trains_again_from_the_first_changed_stage_and_keeps_those_before(both, tmp_path):
    """A changed classifier setting under --overwrite keeps both directions' fine-tuned LMs (they would come out
    the same) and trains the classifiers again, and a stale checkpoint of a changed stage is discarded rather
    than resumed; a changed LM setting or other training data would discard the LMs and the classifiers."""
    import shutil

    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.data.readers import Source
    from ulmfit_cli.workflows.pipeline import _key, _stale, configs, run

    out = tmp_path / "p"
    shutil.copytree(both["out"], out)

    def stamps():
        return {p.parent.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.glob("*/*/model.safetensors")}

    before = stamps()
    assert set(before) == {"fwd/lm-ft", "fwd/clf", "bwd/lm-ft", "bwd/clf"}
    (out / "fwd" / ".clf.partial").mkdir()  # an old interrupted classifier: not to be resumed with new settings
    p = both["make"](both["parents"], out, overwrite=True)
    p.clf_flags = {"epochs": 2}
    summary = run(p, Reporter(True))
    after = stamps()
    assert {k for k in before if after[k] == before[k]} == {"fwd/lm-ft", "bwd/lm-ft"}
    assert not (out / "fwd" / ".clf.partial").exists()
    history = json.loads((out / "fwd" / "clf" / "manifest.json").read_text())["history"]
    assert len(history) == 2 and set(summary["test"]) == {"fwd", "bwd", "ensemble"}
    # what a changed LM setting, or other data, would discard (the keys alone; training them again is above)
    saved = {"command": "pipeline", **_key(p, {d: configs(p, d) for d in ("fwd", "bwd")})}
    p.lm_flags = {"epochs": 1, "lr": 1e-3}
    lm_changed = _stale(saved, _key(p, {d: configs(p, d) for d in ("fwd", "bwd")}))
    assert {n for n in lm_changed if not n.startswith(".")} >= {"fwd/lm-ft", "fwd/clf", "bwd/lm-ft", "bwd/clf"}
    assert "fwd/lm" not in lm_changed and "fwd/.lm-ft.partial" in lm_changed
    p.lm_flags = both["make"](both["parents"], out).lm_flags
    p.train = Source(path=str(both["test"]))  # other labelled data: its texts feed finetune-lm too
    assert {"fwd/lm-ft", "bwd/clf"} <= set(_stale(saved, _key(p, {d: configs(p, d) for d in ("fwd", "bwd")})))
    assert _stale(saved, saved) == ["ensemble.json"]


def test_both_directions_needs_a_backward_parent(both, ulmfit, tmp_path):
    lm = both["parents"][0]
    r = ulmfit("pipeline", both["train"], "--parent", lm, "--parent", lm, "--both-directions", "--out", tmp_path / "p")
    one_line_error(r, 2, "--parent", "backward")
    r = ulmfit("pipeline", both["train"], "--out", tmp_path / "p")
    one_line_error(r, 2, "--corpus", "--parent")


@pytest.mark.parametrize("in_workdir", [False, True], ids=["stage-alone", "stage-of-pipeline"])
def test_an_interrupted_stage_says_how_to_continue(in_workdir, tmp_path, capsys):
    """A stage run as its own command says to rerun it with --resume; a stage of `pipeline` (or `learning-curve`),
    which have no --resume and resume their stages when rerun, says to rerun the command."""
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.runfolder.artifacts import ON_ITS_OWN
    from ulmfit_cli.runfolder.workdir import Workdir
    from ulmfit_cli.training.stage_parts import writing

    out = tmp_path / "work" / "run"

    def stage(resume, overwrite, caller=ON_ITS_OWN):
        with writing(out, overwrite, resume, Reporter(quiet=True), caller) as w:
            (w.tmp / "ckpt").mkdir()
            (w.tmp / "ckpt" / "position.json").write_text("{}")  # a checkpoint worth keeping
            raise KeyboardInterrupt

    (tmp_path / "work").mkdir()
    with pytest.raises(KeyboardInterrupt):
        if in_workdir:
            Workdir(tmp_path / "work", "pipeline", {}, False, ()).stage(
                out, stage, "pipeline", Reporter(quiet=True), "--clf-set"
            )
        else:
            stage(False, False)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"checkpoint kept in {tmp_path / 'work' / '.run.partial'}" in line
    assert ("--resume" in line) != in_workdir and "rerun the same command" in line


@pytest.mark.parametrize("stage,flag", [("lm_flags", "--lm-set"), ("clf_flags", "--clf-set")])
def test_a_nan_loss_in_a_stage_names_the_pipeline_flag_for_a_lower_rate(both, tmp_path, stage, flag):
    """A stage alone says to rerun it with --resume and a lower --lr; inside `pipeline` neither flag exists:
    the advice names the command's setting flag for that stage, with a rate ten times lower."""
    import dataclasses

    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.errors import TrainingError
    from ulmfit_cli.workflows.pipeline import run

    p = both["make"](both["parents"][:1], tmp_path / "p")
    p = dataclasses.replace(p, both=False, **{stage: {**getattr(p, stage), "lr": 1e30}})
    with pytest.raises(TrainingError) as e:
        run(p, Reporter(True))
    msg = str(e.value)
    assert "loss became" in msg and f"{flag} lr=1e+29 and --overwrite" in msg, msg
    assert "--resume" not in msg and "--lr" not in msg


def test_distill_into_adds_a_student_of_both_directions_that_a_rerun_reuses(both, pipeline, ulmfit, tmp_path):
    """--distill-into: the last step distils the classifiers (both directions, averaged) into a student from the
    given parent, scored on --test beside them; a rerun reuses it; a changed --distill-set trains it again alone."""
    args = ("pipeline", both["train"], "--parent", both["parents"][0], "--parent", both["parents"][1],
            "--both-directions", "--test", both["test"], "--out", tmp_path / "p", "--preset", "tiny",
            "--lm-set", "epochs=1", "--clf-set", "epochs=1", "--distill-into", pipeline["ft"],
            "--distill-set", "epochs=2", "--json", "--cache-dir", tmp_path / "cache")  # fmt: skip
    r = ulmfit(*args)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert set(summary["test"]) == {"fwd", "bwd", "ensemble", "student"}
    m = json.loads((tmp_path / "p" / "student" / "manifest.json").read_text())
    assert len(m["distilled"]["teachers"]) == 2 and len(m["history"]) == 2
    assert m["classes"] == json.loads((tmp_path / "p" / "fwd" / "clf" / "manifest.json").read_text())["classes"]
    again = ulmfit(*args)
    assert again.returncode == 0 and "reusing" in again.stderr and "distill:" not in again.stderr, again.stderr
    changed = ulmfit(*args[:-5], "--distill-set", "epochs=1", "--json", "--overwrite", "--cache-dir", args[-1])
    assert changed.returncode == 0, changed.stderr
    assert "reusing" in changed.stderr and "reusing the teacher's outputs" in changed.stderr  # teachers kept
    assert len(json.loads((tmp_path / "p" / "student" / "manifest.json").read_text())["history"]) == 1
