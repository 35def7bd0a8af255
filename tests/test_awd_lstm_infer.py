"""The fastai-free AWD-LSTM classifier (models/awd_lstm_infer.py) against the training-time fastai model: the same
logits to 1e-5 on random weights (any batch of mixed lengths, with padding, documents longer and shorter than
bptt) and on a trained tiny run; loading a run for inference imports no fastai; `--quantize int8` keeps
predictions close."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ulmfit_cli.config import RunConfig
from ulmfit_cli.data.batches import classifier_batches
from ulmfit_cli.data.tokenizer import PAD_ID
from ulmfit_cli.models import awd_lstm, awd_lstm_infer
from ulmfit_cli.runfolder import artifacts as A

BPTT, MAX_LEN, VOCAB, N_CLASS = 8, 44, 60, 5  # max_len not a whole number of chunks


def _randomize(model) -> None:
    """Random batch-norm statistics and affine weights, so the head is not close to the identity."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


@pytest.fixture(scope="module", params=[0.5, 0.0], ids=["drop_mult0.5", "drop_mult0"])
def pair(request):
    """fastai's classifier with random weights, eval mode, and ours with its state dict loaded. drop_mult 0
    removes the first head Dropout from fastai's module tree, which shifts the keys."""
    cfg = RunConfig(emb_sz=16, n_hid=24, n_layers=3, bptt=BPTT, max_len=MAX_LEN, lin_ftrs=10,
                    drop_mult=request.param)  # fmt: skip
    torch.manual_seed(0)
    ref = awd_lstm.build_classifier(cfg, VOCAB, N_CLASS)
    _randomize(ref)
    ref.eval()
    light = awd_lstm_infer.build_classifier(cfg, VOCAB, N_CLASS)
    light.load_state_dict(ref.state_dict())  # strict: every key maps
    light.eval()
    return ref, light


def fastai_batch_ok(x: torch.Tensor, r: int, bptt: int) -> bool:
    """Whether fastai's SentenceEncoder + masked_concat_pool treat row `r` of a chunk-padded batch as that
    document alone. They do not where (a) a chunk holding its text starts on one of its trailing pads while a
    shorter row is real there, so the count `real_bs` stops before row r (its outputs become zeros), or (b) the
    row is at most width % bptt tokens long in a batch wider than bptt, so pooling's "last" lands on a leading
    pad (a zero vector). See awd_lstm_infer's docstring."""
    real = (x != PAD_ID).numpy()
    width, n = x.shape[1], int(real[r].sum())
    lead = int(real[r].argmax())
    for i in range(0, width, bptt):
        if i + bptt > lead and i < lead + n and r >= real[:, i].sum():
            return False
    return not (width > bptt and n <= width % bptt)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, MAX_LEN), min_size=1, max_size=12), st.integers(1, 6), st.integers(0, 2**31))
def test_same_logits_as_fastai_on_any_batch(pair, lens, bs, seed):
    ref, light = pair
    rng = np.random.default_rng(seed)
    docs = [rng.integers(2, VOCAB, n) for n in lens]  # ids 0 and 1 (<unk>/<pad>) never inside a text here
    with torch.no_grad():
        alone = [ref(torch.from_numpy(d)[None])[0][0] for d in docs]  # fastai, one document per batch
        for idx, x, _ in classifier_batches(docs, None, bs, BPTT, PAD_ID):
            ours, theirs = light(x)[0], ref(x)[0]
            for row, i in enumerate(idx):
                # ours never depends on the batch: always fastai's logits for the document alone; and with
                # whole-chunk padding and max_len rounded to chunks, fastai's batched forward is the same
                assert fastai_batch_ok(x, row, BPTT)
                torch.testing.assert_close(ours[row], alone[i], atol=1e-5, rtol=0)
                torch.testing.assert_close(ours[row], theirs[row], atol=1e-5, rtol=0)


def test_fastai_pools_a_pad_where_ours_pools_the_text(pair):
    """Why pad_chunks pads whole chunks: with fastai's ragged padding, a 2-token document batched with a 19-token
    one (bptt 8: 19 % 8 = 3) pools a pad in fastai's model; ours pools the text whatever the padding."""
    ref, light = pair
    x = torch.tensor([list(range(2, 21)), [PAD_ID] * 16 + [5, 6, PAD_ID]])  # fastai's layout, 19 wide
    assert not fastai_batch_ok(x, 1, BPTT)
    with torch.no_grad():
        out, mask = ref[0](x)
        from fastai.text.models.core import masked_concat_pool

        assert torch.all(masked_concat_pool(out, mask, BPTT)[1, :16] == 0)  # fastai's "last" is a zero vector
        ours = light.features(x)[1, :16]
        assert torch.all(ours != 0)
        torch.testing.assert_close(ours, light.features(torch.tensor([[5, 6]]))[0, :16])


def test_trained_run_same_logits_as_fastai(pipeline):
    """The tiny pipeline's classifier, loaded as `predict` loads it and as training built it, on TREC questions
    and on documents longer than bptt (several questions joined), batched by length as predict batches."""
    from ulmfit_cli.config import from_dict
    from ulmfit_cli.inference.predictor import docs_of, load_classifier

    run = A.open_run(pipeline["clf"], ("finetune-clf",), "test")
    cfg, tok, light = load_classifier(run, "cpu")
    assert isinstance(light, awd_lstm_infer.AWDLSTMClassifier)
    texts = _trec_texts()
    texts = texts[:120] + [" ".join(texts[i : i + k]) for i, k in zip(range(0, 60, 6), [2, 3, 5, 8, 12, 20] * 2)]
    docs = docs_of(tok, texts, cfg)
    assert max(map(len, docs)) > 2 * cfg.bptt and min(map(len, docs)) < cfg.bptt
    ref = awd_lstm.build_classifier(from_dict(run.config), tok.get_vocab_size(), len(run.manifest["classes"]))
    A.load_weights(ref, run.file("weights"))
    ref.eval()
    checked = 0
    with torch.no_grad():
        for idx, x, _ in classifier_batches(docs, None, 16, cfg.bptt, PAD_ID):
            ours, theirs = light(x)[0], ref(x)[0]
            for row in range(len(idx)):
                torch.testing.assert_close(ours[row], theirs[row], atol=1e-5, rtol=0)
                checked += 1
    assert checked == len(docs)


def _trec_texts() -> list[str]:
    import csv
    from pathlib import Path

    with open(Path(__file__).resolve().parents[1] / "sample_data" / "trec_test.csv", newline="") as f:
        return [r["text"] for r in csv.DictReader(f)]


def test_loading_for_inference_imports_no_fastai(pipeline):
    code = (
        "import sys\nfrom pathlib import Path\nimport torch\nfrom ulmfit_cli.runfolder import artifacts as A\n"
        "from ulmfit_cli.inference.predictor import load_classifier\n"
        f"run = A.open_run(Path({str(pipeline['clf'])!r}), ('finetune-clf',), 'test')\n"
        "cfg, tok, model = load_classifier(run, 'cpu')\n"
        "print(tuple(model(torch.tensor([[2, 40, 41, 42]]))[0].shape))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastai', 'datasets', 'fastcore', 'pandas'}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    n_class = len(A.open_run(pipeline["clf"], ("finetune-clf",), "test").manifest["classes"])
    assert r.stdout.splitlines() == [f"(1, {n_class})", "[]"]


def test_quantize_int8_predicts_close_to_fp32(pipeline, cli):
    """The same labels on (nearly) every TREC question, probabilities close; a kind we lack is a usage error."""
    import json

    from conftest import one_line_error

    stdin = "\n".join(_trec_texts()[:200]) + "\n"
    fp32, int8 = (cli("predict", pipeline["clf"], "-", *q, stdin=stdin) for q in ([], ["--quantize", "int8"]))
    assert fp32.returncode == 0 and int8.returncode == 0, int8.stderr
    a, b = ([json.loads(line) for line in r.stdout.splitlines()] for r in (fp32, int8))
    assert len(a) == len(b) == 200
    assert sum(x["label"] == y["label"] for x, y in zip(a, b)) >= 194
    assert max(abs(x["probs"][k] - y["probs"][k]) for x, y in zip(a, b) for k in x["probs"]) < 0.1
    assert a != b  # the int8 path really ran
    one_line_error(cli("predict", pipeline["clf"], "-", "--quantize", "int4", stdin="x\n"), 2, "--quantize", "int8")
