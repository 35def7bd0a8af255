"""`ulmfit export --onnx`: the exported graph, fed as its JSON says, gives `predict`'s probabilities (onnxruntime)
for both backbones and their variants, with padding, short and long documents (longer than bptt and than max_len);
bad requests are one-line errors before any work."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort  # in the `dev` and `export` extras
import pytest
import torch

from conftest import SAMPLE, one_line_error
from ulmfit_cli.config import from_dict
from ulmfit_cli.models import inference_classifier
from ulmfit_cli.runfolder import artifacts as A


def _texts() -> list[str]:
    with open(SAMPLE / "trec_test.csv", newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)][:40]
    return texts + [" ".join(texts[:k]) for k in (2, 4, 9, 30)]  # up to several hundred tokens (past MAX_LEN)


MAX_LEN = 128  # the copies cut documents here (the same weights), so the longest texts above are cut


def _variant(clf: Path, tmp: Path, task: str | None = None, **changes) -> Path:
    """A copy of the tiny pipeline's classifier with config `changes` and max_len MAX_LEN; with another backbone
    or task, random weights of that shape (the export must match predict for any weights)."""
    out = tmp / "run"
    shutil.copytree(clf, out)
    m = json.loads((out / "manifest.json").read_text())
    m["config"].update(max_len=MAX_LEN, **changes)
    m["backbone"] = m["config"]["backbone"]
    if task:
        m["task"] = task
        m["thresholds"] = {c: 0.3 for c in m["classes"]} if task == "multi-label" else None
        m["target"] = {"mean": 3.0, "std": 2.0} if task == "regression" else None
    if changes.keys() - {"backwards"} or task:
        torch.manual_seed(0)
        n_out = 1 if task == "regression" else len(m["classes"])
        model = inference_classifier(from_dict(m["config"]), m["vocab_size"], n_out)
        for bn in (x for x in model.modules() if isinstance(x, torch.nn.BatchNorm1d)):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
        A.save_weights(model, out / m["files"]["weights"])
    (out / "manifest.json").write_text(json.dumps(m))
    return out


VARIANTS = {
    "awd-lstm": {},
    "awd-lstm-backwards": dict(backwards=True),
    "awd-lstm-multi-label": dict(task="multi-label"),
    "transformer": dict(backbone="transformer", n_heads=2),
    "transformer-linear-post-rms-regression": dict(
        backbone="transformer", n_heads=4, attention="linear", norm_position="post", norm="rmsnorm",
        task="regression", backwards=True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", VARIANTS)
def test_onnx_gives_predicts_probabilities(pipeline, cli, ulmfit, tmp_path, name):
    from tokenizers import Tokenizer

    run = _variant(pipeline["clf"], tmp_path, **VARIANTS[name])
    r = ulmfit("export", run, "--onnx", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stdout)
    meta = json.loads(Path(files["meta"]).read_text())
    texts = _texts()
    tok = Tokenizer.from_file(files["tokenizer"])
    docs = [[meta["bos_id"], *tok.encode(t, add_special_tokens=False).ids] for t in texts]
    assert max(map(len, docs)) > meta["max_len"] > meta["bptt"] > min(map(len, docs))
    ids = np.full((len(docs), max(map(len, docs))), meta["pad_id"], dtype=np.int64)
    for i, d in enumerate(docs):
        ids[i, : len(d)] = d
    session = ort.InferenceSession(files["onnx"])
    got = np.concatenate([session.run(["output"], {"input_ids": ids[i : i + 7]})[0] for i in range(0, len(ids), 7)])
    pred = cli("predict", run, "-", stdin="\n".join(texts) + "\n")
    assert pred.returncode == 0, pred.stderr
    lines = [json.loads(line) for line in pred.stdout.splitlines()]
    if meta["task"] == "regression":
        np.testing.assert_allclose(got, [p["value"] for p in lines], atol=1e-5 * 2.0, rtol=0)
    else:
        want = np.array([[p["probs"][c] for c in meta["classes"]] for p in lines])
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)  # predict rounds to 6 decimals
        assert got.std(0).max() > 1e-3  # the documents really get different outputs


def test_bad_requests_are_one_line_errors(pipeline, ulmfit, tmp_path):
    one_line_error(ulmfit("export", pipeline["clf"], "--onnx", tmp_path / "m.txt"), 2, "--onnx", ".onnx")
    one_line_error(ulmfit("export", pipeline["clf"], "--onnx", tmp_path / "no" / "m.onnx"), 2, "does not exist")
    one_line_error(ulmfit("export", pipeline["ft"], "--onnx", tmp_path / "m.onnx"), 2, "finetune-clf")
    assert list(tmp_path.iterdir()) == []
