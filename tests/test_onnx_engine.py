"""`--engine onnx` (onnx_engine.py): the AWD-LSTM's LSTMs in onnxruntime give torch's logits to 1e-5 on short
documents and on documents several chunks long, batched by length as predict batches; the graph is cached
outside the run folder, written whole, and reused; int8 stays close; wrong requests are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import one_line_error
from ulmfit_cli.errors import ConfigError
from ulmfit_cli.inference import onnx_engine
from ulmfit_cli.inference.predictor import Predictor, docs_of, load_classifier, predict_logits
from ulmfit_cli.runfolder import artifacts as A


def _texts() -> list[str]:
    import csv
    from pathlib import Path

    with open(Path(__file__).resolve().parents[1] / "sample_data" / "trec_test.csv", newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)][:100]
    # and documents of several chunks: questions joined, up to 30 of them
    return texts + [" ".join(texts[i : i + k]) for i, k in zip(range(0, 70, 7), [2, 3, 5, 8, 12, 20, 30] * 2)]


@pytest.fixture(scope="module")
def onnx_run(pipeline, tmp_path_factory):
    cache = tmp_path_factory.mktemp("engine-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ULMFIT_CACHE", str(cache))
        run = A.open_run(pipeline["clf"], ("finetune-clf",), "test")
        before = sorted(p.name for p in run.path.iterdir())
        cfg, tok, ref = load_classifier(run, "cpu")
        cfg_o, _, onnx32 = load_classifier(run, "cpu", engine="onnx")
        _, _, onnx8 = load_classifier(run, "cpu", "int8", engine="onnx")
        yield {"run": run, "cfg": cfg, "tok": tok, "ref": ref, "fp32": onnx32, "int8": onnx8, "cache": cache,
               "before": before}  # fmt: skip


def test_same_logits_as_torch_short_and_long(onnx_run):
    cfg, ref, onnx32 = onnx_run["cfg"], onnx_run["ref"], onnx_run["fp32"]
    docs = docs_of(onnx_run["tok"], _texts(), cfg)
    assert max(map(len, docs)) > 3 * cfg.bptt and min(map(len, docs)) < cfg.bptt
    assert onnx32.engine is not None and ref.engine is None
    with torch.inference_mode():
        for bs in (1, 16, 64):  # one document, short batches, and chunks where rows drop out as texts end
            a, b = predict_logits(ref, docs, cfg, bs), predict_logits(onnx32, docs, cfg, bs)
            np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
        chunk = ref.chunk
        try:  # chunks shorter than the batches' padding: trailing chunks of padding alone are skipped, not run
            ref.chunk = onnx32.chunk = cfg.bptt // 3
            np.testing.assert_allclose(predict_logits(onnx32, docs, cfg, 16), a, atol=1e-5, rtol=0)
            np.testing.assert_allclose(predict_logits(ref, docs, cfg, 16), a, atol=1e-5, rtol=0)
        finally:
            ref.chunk = onnx32.chunk = chunk


def test_threads_split_rows_same_logits(onnx_run):
    """At --threads 2 the onnx engine deals each batch's rows out to two threads of one onnxruntime thread each,
    every part running its own chunks and pooling: the same logits, in the same order, as one thread running the
    whole batch."""
    cfg, run, ref = onnx_run["cfg"], onnx_run["run"], onnx_run["ref"]
    docs = docs_of(onnx_run["tok"], _texts(), cfg)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _, _, split = load_classifier(run, "cpu", engine="onnx")
        assert split.engine.pool is not None
    finally:
        torch.set_num_threads(before)
    dealt, run_parts = [], split.engine.map

    def counted(fn, parts):
        dealt.append(len(parts))
        return run_parts(fn, parts)

    split.engine.map = counted
    chunk = split.chunk
    try:
        with torch.inference_mode():
            for bs in (1, 17, 64):  # too few rows to split, 9 + 8 rows, and chunks where rows drop out
                for split.chunk in (chunk, cfg.bptt // 3):  # one pass for the short documents, and chunked
                    a, b = predict_logits(ref, docs, cfg, bs), predict_logits(split, docs, cfg, bs)
                    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
    finally:
        split.chunk = chunk
    assert dealt and set(dealt) == {2}  # batches of 17 and 64 rows were split in two; batches of 1 were not
    split.engine.pool.shutdown()


def test_int8_close_to_fp32(onnx_run):
    cfg = onnx_run["cfg"]
    docs = docs_of(onnx_run["tok"], _texts(), cfg)
    with torch.inference_mode():
        a, b = predict_logits(onnx_run["ref"], docs, cfg, 32), predict_logits(onnx_run["int8"], docs, cfg, 32)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.95
    assert 0 < np.abs(a - b).max() < 1.0  # the int8 graph really ran, and stays near


def test_graph_cached_whole_outside_the_run(onnx_run, monkeypatch):
    run, cache = onnx_run["run"], onnx_run["cache"]
    assert sorted(p.name for p in run.path.iterdir()) == onnx_run["before"]  # nothing written into the run
    files = sorted(p.name for p in (cache / "onnx").iterdir())
    assert len(files) == 2 and all(f.endswith(".onnx") and not f.startswith(".") for f in files)  # no temp left
    monkeypatch.setenv("ULMFIT_CACHE", str(cache))
    path = onnx_engine.graph_file(run, None, None)  # no model: the cached graph is found, not exported again
    assert path.name in files and not path.name.endswith(".int8.onnx")


def test_bad_engine_requests(pipeline, cli, monkeypatch):
    with pytest.raises(ConfigError, match="AWD-LSTM"):
        onnx_engine.check("onnx", "transformer")
    monkeypatch.setattr(onnx_engine.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'ulmfit-cli\[export\]'"):
        onnx_engine.check("onnx", "awd-lstm")
    onnx_engine.check("torch", "transformer")  # torch needs nothing more
    one_line_error(cli("predict", pipeline["clf"], "-", "--engine", "tf", stdin="x\n"), 2, "--engine", "onnx")


def test_predict_cli_with_onnx_engine(pipeline, cli):
    """The whole command: the same probabilities as the torch engine in-process (predict rounds to 6 places)."""
    texts = _texts()[:40]
    r = cli("predict", pipeline["clf"], "-", "--engine", "onnx", stdin="\n".join(texts) + "\n")
    assert r.returncode == 0, r.stderr
    got = [json.loads(line)["probs"] for line in r.stdout.splitlines()]
    run = A.open_run(pipeline["clf"], ("finetune-clf",), "test")
    want = Predictor([run], 64)(texts)
    classes = run.manifest["classes"]
    np.testing.assert_allclose([[p[c] for c in classes] for p in got], want, atol=2e-6, rtol=0)
