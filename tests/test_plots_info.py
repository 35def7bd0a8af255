"""Pictures of every stage, `evaluate --confusion-png` and `ulmfit info`, through the real CLI (tiny runs)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import _one_line_error

from conftest import SAMPLE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STAGE_PLOTS = {"history": "history.png", "lr_schedule": "lr_schedule.png"}

# A full disk, simulated where it cannot touch the weights: every PNG write fails, nothing else does.
DISK_FULL = """
import matplotlib.figure

def _savefig(self, *args, **kwargs):
    raise OSError(28, "No space left on device (injected by the test)")

matplotlib.figure.Figure.savefig = _savefig
"""


def assert_png(path, width=None):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000, path
    from matplotlib.image import imread

    img = imread(path)  # (H, W, 4), floats in [0, 1]
    assert img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 300
    assert width is None or img.shape[1] == width
    assert img[..., :3].std() > 0.05, f"{path} is blank"


@pytest.fixture
def disk_full_cli(cli_env, tmp_path):
    """Like `cli`, with PNG writes failing (a sitecustomize on PYTHONPATH)."""
    site = tmp_path / "disk-full"
    site.mkdir()
    (site / "sitecustomize.py").write_text(DISK_FULL)
    env = {**cli_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), cli_env.get("PYTHONPATH")]))}

    def run(*args):
        cmd = [sys.executable, "-m", "ulmfit_cli", *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)

    return run


# ---- pictures of the three stages --------------------------------------------------------------------------


def _classifier(pipeline, out, epochs: int) -> list:
    """Arguments of a short tiny finetune-clf run on the session's fine-tuned LM, with a --json summary."""
    return ["finetune-clf", pipeline["ft"], SAMPLE / "trec_train.csv", "--out", out, "--preset", "tiny"] + [
        "--epochs", str(epochs), "--json", "--quiet",
    ]  # fmt: skip


def test_every_stage_draws_its_curves_and_rate_schedule(pipeline):
    for key in ("lm", "ft", "clf"):
        m = json.loads((pipeline[key] / "manifest.json").read_text())
        assert m["plots"] == STAGE_PLOTS, key
        for name in STAGE_PLOTS.values():
            assert_png(pipeline[key] / name, width=1000)
        assert not list(pipeline[key].glob(".*.tmp")), "half-written picture left behind"


def test_json_summary_lists_the_pictures_written_in_the_run_folder(ulmfit, pipeline, tmp_path):
    out = tmp_path / "c"
    r = ulmfit(*_classifier(pipeline, out, epochs=2))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["plots"] == {k: str(out / name) for k, name in STAGE_PLOTS.items()}
    assert json.loads((out / "manifest.json").read_text())["plots"] == STAGE_PLOTS  # relative to the folder
    for path in summary["plots"].values():
        assert_png(Path(path))


def test_a_picture_that_cannot_be_written_never_costs_the_trained_model(disk_full_cli, pipeline, tmp_path):
    out = tmp_path / "c"
    r = disk_full_cli(*_classifier(pipeline, out, epochs=1))
    assert r.returncode == 0, r.stderr
    assert "warning: could not draw history.png (OSError" in r.stderr  # shown even with --quiet
    assert "warning: could not draw lr_schedule.png" in r.stderr
    assert json.loads(r.stdout)["plots"] == {}
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["plots"] == {} and (out / "model.safetensors").stat().st_size > 0
    assert not [p.name for p in out.iterdir() if "png" in p.name], "no picture, not even half of one"
    assert not list(tmp_path.glob(".c.partial*"))


# ---- evaluate --confusion-png ------------------------------------------------------------------------------


def test_evaluate_draws_the_confusion_matrix_only_where_asked(cli, pipeline, tmp_path):
    before = sorted(p.name for p in pipeline["clf"].iterdir())
    png = tmp_path / "cm.png"
    r = cli("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--json", "--confusion-png", png, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["plots"] == {"confusion": str(png)}
    assert_png(png)
    cm = res["confusion"]  # rows: true class, columns: predicted
    assert len(cm) == len(res["per_class"]) == 6 and sum(map(sum, cm)) == res["n"] == 500
    for i, c in enumerate(res["per_class"]):
        assert sum(cm[i]) == c["support"]
        assert cm[i][i] == round(c["recall"] * c["support"])
    assert sum(cm[i][i] for i in range(6)) == round(res["accuracy"] * 500)
    # without the option nothing is drawn, and the run folder is never written to
    r = cli("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["plots"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png"]
    assert sorted(p.name for p in pipeline["clf"].iterdir()) == before


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("cm.svg", "ending in .png, got"),
        ("missing/cm.png", "does not exist; create it first"),
        ("d.png", "is a folder"),
    ],
)
def test_confusion_png_that_cannot_be_written_is_refused_before_any_work(ulmfit, pipeline, tmp_path, name, fragment):
    (tmp_path / "d.png").mkdir()
    r = ulmfit("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--confusion-png", tmp_path / name)
    _one_line_error(r, 2, "`--confusion-png`", fragment)
    assert r.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["d.png"]


def test_a_failed_confusion_picture_still_prints_the_results_then_exits_1(disk_full_cli, pipeline, tmp_path):
    png = tmp_path / "cm.png"
    r = disk_full_cli("evaluate", pipeline["clf"], SAMPLE / "trec_test.csv", "--json", "--confusion-png", png)
    _one_line_error(r, 1, str(png), "No space left on device", "the results are complete")
    res = json.loads(r.stdout)
    assert res["n"] == 500 and res["plots"] == {}
    assert list(tmp_path.iterdir()) == [tmp_path / "disk-full"]


# ---- ulmfit info -------------------------------------------------------------------------------------------


def _info(ulmfit, run):
    r = ulmfit("info", run, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_info_json_matches_the_manifest(cli, pipeline):
    parents = {"lm": [], "ft": [("lm", "pretrain")], "clf": [("ft", "finetune-lm"), ("lm", "pretrain")]}
    for key, chain in parents.items():
        m = json.loads((pipeline[key] / "manifest.json").read_text())
        d = _info(cli, pipeline[key])
        assert d["stage"] == m["stage"] and d["backbone"] == m["backbone"] == "awd-lstm"
        assert d["parents"] == [{"path": str(pipeline[k].resolve()), "stage": s, "status": "ok"} for k, s in chain]
        sizes = {k: m["config"][k] for k in ("emb_sz", "n_hid", "n_layers")}
        assert d["sizes"] == sizes == {"emb_sz": 32, "n_hid": 64, "n_layers": 2}
        assert d["tokenizer"] == {"kind": m["config"]["tokenizer"], "vocab_size": m["vocab_size"]}
        assert d["inputs"] == m["inputs"] and d["inputs"][0]["fingerprint"].startswith("sha256:")
        assert d["final"] == m["final"] and d["epochs"] == len(m["history"])
        assert (d["wall_s"], d["seed"], d["versions"], d["created"]) == (m["wall_s"], 42, m["versions"], m["created"])
        assert d["plots"] == {k: str(pipeline[key] / name) for k, name in m["plots"].items()}
        assert ("classes" in d) == (key == "clf") and ("tokens" in d) == (key != "clf")
    assert _info(cli, pipeline["clf"])["classes"] == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


def test_info_table_shows_the_manifest(ulmfit, pipeline):
    m = json.loads((pipeline["clf"] / "manifest.json").read_text())
    r = ulmfit("info", pipeline["clf"])
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()

    def row(field):
        found = [line for line in lines if line.startswith(f"│ {field} ")]
        assert found, f"no {field!r} row in\n{r.stdout}"
        return found[0]

    assert "finetune-clf" in row("stage") and m["created"] in row("stage")
    assert "finetune-lm" in row("parents") and str(pipeline["ft"].resolve()) in row("parents") and "(ok)" in r.stdout
    assert str(pipeline["lm"].resolve()) in r.stdout
    assert "emb_sz 32, n_hid 64, n_layers 2" in row("sizes")
    assert f"bpe, vocab_size {m['vocab_size']}" in row("tokenizer")
    assert m["inputs"][0]["fingerprint"] in row("inputs") and "trec_train.csv" in row("inputs")
    assert f"accuracy {m['final']['accuracy']:.4g}" in row("final")
    assert f"valid_loss {m['final']['valid_loss']:.4g}" in row("final")
    assert f"{m['wall_s']} s" in row("wall time") and f"torch {m['versions']['torch']}" in row("versions")
    assert str(pipeline["clf"] / "lr_schedule.png") in r.stdout and "6: ABBR, DESC" in row("classes")


def test_info_follows_parents_and_says_which_changed_or_went(cli, ulmfit, pipeline, tmp_path):
    runs = {k: tmp_path / k for k in ("lm", "ft", "clf")}
    for k, p in runs.items():
        shutil.copytree(pipeline[k], p)
    for child, parent in (("clf", "ft"), ("ft", "lm")):  # point the copies at each other
        m = json.loads((runs[child] / "manifest.json").read_text())
        m["parent"]["path"] = str(runs[parent])
        (runs[child] / "manifest.json").write_text(json.dumps(m))

    def statuses():
        return [(p["stage"], p["status"]) for p in _info(cli, runs["clf"])["parents"]]

    assert statuses() == [("finetune-lm", "ok"), ("pretrain", "ok")]
    w = runs["ft"] / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")  # the parent was retrained since
    assert statuses() == [("finetune-lm", "changed"), ("pretrain", "ok")]
    (runs["lm"] / "model.safetensors").unlink()
    assert statuses() == [("finetune-lm", "changed"), ("pretrain", "incomplete")]
    shutil.rmtree(runs["lm"])
    assert statuses() == [("finetune-lm", "changed"), ("pretrain", "missing")]
    shutil.rmtree(runs["ft"])
    assert statuses() == [("finetune-lm", "missing")]
    assert "(missing)" in ulmfit("info", runs["clf"]).stdout


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda p: p.mkdir(), "no manifest.json; not a run folder"),
        (lambda p: p.write_text("hello"), "is a file, not a run folder"),
        (lambda p: None, "no such run folder"),
    ],
)
def test_info_on_something_that_is_not_a_run_folder(ulmfit, tmp_path, make, fragment):
    make(tmp_path / "x")
    r = ulmfit("info", tmp_path / "x")
    _one_line_error(r, 2, str(tmp_path / "x"), fragment)
    assert r.stdout == ""
