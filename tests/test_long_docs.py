"""Long documents on a Hugging Face backbone (`finetune-clf --long windows`, models/windows.py): the split covers
every token, a document's windows never depend on its batch, the body never reads more than --bs windows of
--window tokens at once, and every reader (predict, --engine onnx, export --onnx) gives the same probabilities.
Tiny random checkpoints of hf_tiny, offline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import hf_tiny
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import one_line_error

PAD = -1
WINDOW, STRIDE = 16, 12  # the decoders' windows in the end-to-end runs: 15 content tokens, 3 shared


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("long")
    hf_tiny.write_model(root / "llama", "llama", seed=1)
    hf_tiny.write_encoder(root / "bert", "bert", seed=4)
    rng = np.random.default_rng(0)
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:  # documents of 3 to 30 sentences
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(48):
            sents = rng.choice(hf_tiny.CORPUS, size=int(rng.integers(3, 30)))
            w.writerow([" ".join(sents), "long" if len(sents) > 15 else "short"])
    with open(root / "test.csv", "w", newline="", encoding="utf-8") as f:  # many windows, one token, one window
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([[" ".join(hf_tiny.CORPUS), "long"], ["a", "short"], [hf_tiny.CORPUS[0], "short"]])
    return root


def _cfg(work: Path, family: str, **kw):
    from ulmfit_cli.config import RunConfig

    config = json.loads((work / family / "config.json").read_text())
    base = dict(stage="finetune-clf", backbone="hf", tokenizer="hf", hf_config=config, n_layers=2, alpha=0, beta=0,
                max_len=128)  # fmt: skip
    return RunConfig(**{**base, "long": "windows", **kw}).validate()


# ---- the split ---------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    lens=st.lists(st.integers(0, 90), min_size=1, max_size=4),
    window=st.integers(3, 24),
    stride_frac=st.floats(0.01, 1.0),
    ends=st.sampled_from([1, 2]),
)
def test_windows_cover_every_token_and_overlap_by_window_less_stride(lens, window, stride_frac, ends):
    """Each document's windows: the start token, then content tokens from w * stride on, then (encoders) the end
    token; at most `window` tokens; together every content token; consecutive ones sharing window - ends - stride;
    the same windows whatever documents share its batch."""
    import torch

    from ulmfit_cli.models.hf import pad_batch
    from ulmfit_cli.models.windows import n_windows, split_windows

    span = window - ends
    stride = max(1, min(span, round(span * stride_frac)))
    docs = [np.array([7, *range(100, 100 + n), *([9] if ends == 2 else [])]) for n in lens]
    x = torch.tensor(pad_batch(docs, 0, 0))
    out, valid = split_windows(x, window, stride, ends, PAD)
    assert out.shape[2] <= window
    for r, n in enumerate(lens):
        alone, alone_valid = split_windows(x[r : r + 1, : len(docs[r])], window, stride, ends, PAD)
        wins = [w[w != PAD].tolist() for w, ok in zip(out[r], valid[r]) if ok]
        assert wins == [w[w != PAD].tolist() for w, ok in zip(alone[0], alone_valid[0]) if ok]
        assert len(wins) == n_windows(n, window, stride, ends)
        content = []
        for i, w in enumerate(wins):
            assert len(w) <= window and w[0] == 7 and (ends == 1 or w[-1] == 9)
            body = w[1 : len(w) - (ends - 1)]
            assert body == list(range(100 + i * stride, 100 + min(n, i * stride + span)))
            if i:
                assert len(set(body) & set(content[-1])) == span - stride
            content.append(body)
        assert sorted(set(t for c in content for t in c)) == list(range(100, 100 + n))


def test_pooling_tokens_without_overlap_is_the_pooling_of_the_whole_sequence():
    """--window-pool tokens with windows that do not overlap pools as one pass over every window's tokens would:
    the last window's last state, the max and the token-weighted mean."""
    import torch

    from ulmfit_cli.models.hf import pool
    from ulmfit_cli.models.windows import pool_windows

    torch.manual_seed(0)
    h = torch.randn(1, 3, 6, 4)  # one document, 3 windows of up to 6 tokens
    mask = torch.tensor([[True] * 6, [True] * 6, [True] * 4 + [False] * 2])
    v = pool(h[0], mask, "concat", skip_first=False)[None]  # (1, 3, 12)
    counts, valid = mask.sum(1)[None], torch.tensor([[True, True, True]])
    got = pool_windows(v, counts, valid, "tokens", "concat")
    flat = h[0][mask]  # (16, 4): every real token in order
    want = torch.cat([flat[-1], flat.max(0).values, flat.mean(0)])
    assert torch.allclose(got[0], want, atol=1e-6)
    both = pool_windows(v, counts, valid, "mean-max", "concat")
    assert torch.allclose(both[0], torch.cat([v[0].mean(0), v[0].max(0).values]))


# ---- the model ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_a_document_of_one_window_reads_as_head_tail_does(work, family):
    import torch

    from ulmfit_cli.models import hf

    end = [2] if family == "bert" else []
    doc = np.array([0, 50, 60, 70, *end])
    x = torch.tensor(hf.pad_batch([doc], 0, 0))
    feats = {}
    for long in ("head-tail", "windows"):
        torch.manual_seed(0)
        m = hf.build_classifier(_cfg(work, family, long=long, window=8, stride=4, window_pool="tokens"), None, 2)
        with torch.no_grad():
            feats[long] = m.eval().features(x)
    assert torch.allclose(feats["head-tail"], feats["windows"], atol=1e-6)


def test_the_body_never_reads_more_than_bs_windows_whatever_the_length(work):
    """Memory is bounded by the window: documents 50 windows long reach the body as at most --bs rows of at most
    --window tokens, in training (with gradients) and in prediction alike."""
    import torch

    from ulmfit_cli.data.batches import classifier_batches
    from ulmfit_cli.inference.predictor import predict_logits
    from ulmfit_cli.models import hf

    cfg = _cfg(work, "llama", window=WINDOW, stride=STRIDE, bs=4, max_len=50 * WINDOW)
    torch.manual_seed(0)
    model = hf.build_classifier(cfg, None, 2)
    seen = []
    inner = model.body.forward

    def spy(*a, **kw):
        seen.append(tuple(kw["input_ids"].shape))
        return inner(*a, **kw)

    model.body.forward = spy
    rng = np.random.default_rng(0)
    docs = [np.concatenate([[0], rng.integers(5, 300, size=n)]) for n in (50 * WINDOW, 3, 30 * WINDOW, 700, 9)]
    predict_logits(model.eval(), docs, cfg, bs=5)
    model.train()  # with gradients: documents 10 windows long, and short ones
    few = [docs[1], docs[4], docs[0][: 10 * STRIDE]]
    for _, x, _ in classifier_batches(
        few, np.zeros(3, np.int64), 3, cfg.bptt, 0, np.random.default_rng(0), hf.pad_batch
    ):
        model(x)[0].sum().backward()
    assert len(seen) > 2 * (50 * WINDOW // STRIDE) // cfg.bs
    assert all(rows <= cfg.bs and cols <= WINDOW for rows, cols in seen), max(seen)


# ---- through the CLI ---------------------------------------------------------------------------------------

FLAGS = {  # a decoder's windows pooled by mean and max; an encoder's by its tokens (the default), no overlap
    "llama": ("--window", WINDOW, "--stride", STRIDE, "--window-pool", "mean-max"),
    "bert": ("--window", 12, "--stride", 10),
}
POOLED = {"llama": "mean-max", "bert": "tokens"}


def _train(work, ulmfit, tmp_path, family) -> Path:
    lm, ft, clf = tmp_path / "lm", tmp_path / "ft", tmp_path / "clf"
    assert ulmfit("import-hf", work / family, "--out", lm, "-q").returncode == 0
    r = ulmfit("finetune-lm", lm, work / "train.csv", "--out", ft, "--preset", "tiny", "-q")  # long text, chunks
    assert r.returncode == 0, r.stderr
    r = ulmfit(
        "finetune-clf", ft, work / "train.csv", "--out", clf, "--preset", "tiny", "--epochs", "2", "--bs", "8",
        "--long", "windows", *FLAGS[family], "--max-len", 400, "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return clf


def _probs(r) -> np.ndarray:
    assert r.returncode == 0, r.stderr
    return np.array([list(json.loads(line)["probs"].values()) for line in r.stdout.splitlines()])


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_windows_train_and_every_engine_gives_the_same_probabilities(work, ulmfit, tmp_path, family):
    pytest.importorskip("onnxruntime")
    clf = _train(work, ulmfit, tmp_path, family)
    m = json.loads((clf / "manifest.json").read_text())
    assert m["config"]["long"] == "windows" and m["config"]["window"] == FLAGS[family][1]
    assert m["config"]["window_pool"] == POOLED[family]
    assert all(np.isfinite(row["train_loss"]) for row in m["history"])
    test = work / "test.csv"
    torch_probs = _probs(ulmfit("predict", clf, test, "--format", "jsonl"))
    assert torch_probs.shape == (3, 2) and np.isfinite(torch_probs).all()
    onnx_probs = _probs(ulmfit("predict", clf, test, "--format", "jsonl", "--engine", "onnx"))
    assert np.abs(torch_probs - onnx_probs).max() < 1e-5
    alone = _probs(ulmfit("predict", clf, test, "--format", "jsonl", "--batch-size", 1))  # no batch beside it
    assert np.abs(alone - torch_probs).max() < 1e-5
    r = ulmfit("evaluate", clf, test, "--json")
    assert r.returncode == 0 and 0 <= json.loads(r.stdout)["accuracy"] <= 1, r.stderr
    r = ulmfit("inspect", test, "--parent", clf, "--json", "-q")  # windows a document, and the cap
    assert r.returncode == 0, r.stderr
    w = json.loads(r.stdout)["files"][0]["tokens"]["windows"]
    assert w["window"] == FLAGS[family][1] and 1 <= w["p50"] <= w["max"] <= w["cap"] and w["max"] > 10
    one_line_error(ulmfit("export", clf, "--hf", tmp_path / "hf"), 2, "--long windows", "--onnx")
    assert not (tmp_path / "hf").exists()
    _exported_graph_agrees(ulmfit, clf, test, tmp_path, torch_probs)


def _exported_graph_agrees(ulmfit, clf: Path, test: Path, tmp_path: Path, torch_probs: np.ndarray) -> None:
    """export --onnx, fed as its JSON says (whole documents, cut to max_len by head and tail): predict's
    probabilities; the graph splits the windows itself."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from ulmfit_cli.models.hf import cut_doc

    r = ulmfit("export", clf, "--onnx", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["long"] == "windows" and meta["window"] > 0 and meta["stride"] > 0
    tok = Tokenizer.from_file(str(tmp_path / "m.tokenizer.json"))
    end = [] if meta["end_id"] is None else [meta["end_id"]]
    with open(test, newline="", encoding="utf-8") as f:
        texts = [row[0] for row in csv.reader(f)][1:]
    docs = [cut_doc(np.array([meta["bos_id"], *tok.encode(t, add_special_tokens=False).ids, *end]), meta["max_len"])
            for t in texts]  # fmt: skip
    ids = np.full((len(docs), max(map(len, docs))), meta["pad_id"], np.int64)
    for i, d in enumerate(docs):
        ids[i, : len(d)] = d
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(["output"], {"input_ids": ids})[0]
    assert np.abs(out - torch_probs).max() < 1e-5


def test_bad_window_settings_are_one_line_before_any_work(work, ulmfit, tmp_path):
    lm = tmp_path / "lm"
    assert ulmfit("import-hf", work / "llama", "--out", lm, "-q").returncode == 0
    train, out = work / "train.csv", tmp_path / "c"

    def clf(*flags):
        return ulmfit("finetune-clf", lm, train, "--out", out, "--preset", "tiny", "--long", "windows", *flags)

    one_line_error(clf("--window", 16, "--stride", 16), 2, "`--stride` must be at most", "(15), got 16")
    one_line_error(clf("--window", 300), 2, "`--window` must be at most the model's 256 positions")
    one_line_error(clf("--window", 2), 2, "`--window` must be >= 3")
    one_line_error(clf("--stride", 0), 2, "`--stride` must be >= 1")
    one_line_error(clf("--window-pool", "sum"), 2, "`--window-pool` must be mean-max or tokens")
    one_line_error(clf("--head", "hf"), 2, "`--long windows`", "--head ulmfit")
    one_line_error(ulmfit("finetune-clf", lm, train, "--out", out, "--long", "pages"), 2, "`--long` must be")
    one_line_error(ulmfit("finetune-clf", lm, train, "--out", out, "--max-len", 1000), 2, "--long windows")
    assert not out.exists()
    r = clf("--window", 16, "--stride", 15, "--max-len", 1000, "--print-config")  # stride = what a window holds
    assert r.returncode == 0 and "stride = 15" in r.stdout and "max_len = 1000" in r.stdout, r.stderr


def test_windows_need_a_hugging_face_backbone():
    from ulmfit_cli.config import RunConfig
    from ulmfit_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="`--long windows` reads a Hugging Face checkpoint's windows"):
        RunConfig(stage="finetune-clf", backbone="awd-lstm", long="windows").validate()
