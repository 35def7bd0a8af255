"""The transformer backbone on tiny models: shapes, causality, normalisation choices, padding, layer groups."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import SAMPLE
from ulmfit_cli.config import resolve
from ulmfit_cli.models import transformer as T
from ulmfit_cli.training.schedule import unfreeze_plan
from ulmfit_cli.training.stage_parts import print_plan

V = 300


def cfg(**kw):
    return resolve("pretrain", "tiny", {"backbone": "transformer", **kw})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(1)


def test_shapes_and_tied_embeddings():
    lm = T.build_lm(cfg(), V)
    logits, h, _ = lm(torch.randint(0, V, (3, 17)))
    assert logits.shape == (3, 17, V) and h.shape == (3, 17, 32)
    assert lm.head.weight is lm.body.tok_emb.weight
    clf = T.build_classifier(cfg(), V, 5).eval()
    assert clf(torch.randint(2, V, (4, 50)))[0].shape == (4, 5)  # longer than the context (bptt 32): chunked


@pytest.mark.parametrize(
    "kw",
    [{}, {"attention": "linear"}, {"norm_position": "residual"}, {"norm_position": "residual", "attention": "linear"}],
    ids=["softmax", "linear", "residual", "residual-linear"],
)
def test_changing_a_future_token_never_changes_earlier_outputs(kw):
    lm = T.build_lm(cfg(**kw), V).eval()
    x = torch.randint(0, V, (2, 20))
    y = x.clone()
    y[:, 12] = (y[:, 12] + 7) % V
    a, b = lm(x)[0], lm(y)[0]
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-5)
    assert not torch.allclose(a[:, 12:], b[:, 12:], atol=1e-5)


def test_linear_attention_matches_its_quadratic_definition():
    q, k, v = torch.randn(3, 2, 2, 9, 4).unbind(0)
    phi_q, phi_k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    w = (phi_q @ phi_k.transpose(-1, -2)).tril()  # (B, H, T, T), causal
    expected = (w @ v) / w.sum(-1, keepdim=True)
    assert torch.allclose(T.linear_attention(q, k, v), expected, atol=1e-5)


def test_norm_choices_change_the_structure():
    pre, post = T.build_lm(cfg(norm_position="pre"), V), T.build_lm(cfg(norm_position="post"), V)
    rms = T.build_lm(cfg(norm="rmsnorm"), V)
    dual = T.build_lm(cfg(norm_position="residual", norm="rmsnorm"), V)
    assert isinstance(pre.body.norm_f, nn.LayerNorm) and isinstance(post.body.norm_f, nn.Identity)
    assert pre.body.blocks[0].pre and not post.body.blocks[0].pre
    assert isinstance(rms.body.blocks[0].norm1, nn.RMSNorm)
    assert dual.body.dual and not dual.body.blocks[0].pre  # --norm is the kind of every norm, the final one too
    assert all(isinstance(m, nn.RMSNorm) for m in (dual.body.norm_f, dual.body.blocks[1].norm2))


def _paper_residual(body: T.Body, x: torch.Tensor) -> torch.Tensor:
    """ResiDual straight from the paper (Xie et al. 2023, section 3), in plain torch, one sublayer f_k at a time:
    x^a_{k+1} = LN(x^a_k + f_k(x^a_k)), x^d_{k+1} = x^d_k + f_k(x^a_k), x^a_1 = x^d_1 = x_1, and the output
    x^a_N + LN(x^d_N). Attention is written out (masked softmax), not torch's fused kernel."""
    xa = xd = body.tok_emb(x) + body.pos_emb(torch.arange(x.shape[1]))  # (B, T, C)
    B, T_, C = xa.shape
    ln = lambda n, h: nn.functional.layer_norm(h, (C,), n.weight, n.bias, n.eps)  # noqa: E731

    def attn(m, h):
        H = m.n_heads
        q, k, v = (t.view(B, T_, H, C // H).transpose(1, 2) for t in m.qkv(h).split(C, -1))
        w = (q @ k.transpose(-1, -2) / (C // H) ** 0.5).masked_fill(torch.ones(T_, T_).triu(1).bool(), -1e9)
        return m.proj((w.softmax(-1) @ v).transpose(1, 2).reshape(B, T_, C))

    def ffn(m, h):
        return m[2](nn.functional.gelu(m[0](h)))

    for b in body.blocks:
        for f, m, norm in ((attn, b.attn, b.norm1), (ffn, b.mlp, b.norm2)):  # f_k: each sublayer on its own
            out = f(m, xa)
            xa, xd = ln(norm, xa + out), xd + out
    return xa + ln(body.norm_f, xd)


def test_residual_matches_the_papers_equations():
    body = T.build_lm(cfg(norm_position="residual", n_layers=3), V).body.eval()
    for p in body.parameters():  # away from LayerNorm's identity init, so a swapped or missing norm shows
        nn.init.normal_(p, std=0.3)
    x = torch.randint(0, V, (2, 11))
    assert torch.allclose(body(x), _paper_residual(body, x), atol=1e-4)
    post = T.build_lm(cfg(norm_position="post", n_layers=3), V).body.eval()
    post.load_state_dict({k: v for k, v in body.state_dict().items() if not k.startswith("norm_f")})
    assert not torch.allclose(post(x), body(x), atol=1e-2)  # the dual stream is really there


@pytest.mark.parametrize("position", ["pre", "post", "residual"])
def test_weights_round_trip_through_safetensors(position, tmp_path):
    from ulmfit_cli.runfolder import artifacts as A

    c = cfg(norm_position=position, attention="linear")
    lm, again = T.build_lm(c, V).eval(), T.build_lm(c, V).eval()
    A.save_weights(lm, tmp_path / "w.safetensors")
    A.load_weights(again, tmp_path / "w.safetensors")
    x = torch.randint(0, V, (2, 9))
    assert torch.equal(lm(x)[0], again(x)[0])
    clf = T.build_classifier(c, V, 3).eval()
    clf.body.load_state_dict(T.encoder_of_lm(again).state_dict())  # the classifier takes the LM's encoder
    assert torch.equal(clf.body(x), lm.body(x))


@pytest.mark.parametrize(
    "kw",
    [{}, {"norm_position": "post"}, {"norm": "rmsnorm"}, {"attention": "linear"}, {"norm_position": "residual"}],
    ids=["pre-layernorm", "post-layernorm", "pre-rmsnorm", "linear-attention", "residual-layernorm"],
)
def test_every_variant_learns_real_text(kw):
    from ulmfit_cli.data.tokenizer import encode_stream, train_tokenizer

    lines = [line for line in (SAMPLE / "books.txt").read_text().splitlines() if line.strip()][:300]
    tok = train_tokenizer(lines, "bpe", V)
    ids = torch.from_numpy(encode_stream(tok, lines).astype(np.int64))[: 16 * 33].view(16, 33)
    lm = T.build_lm(cfg(**kw), V)
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = nn.functional.cross_entropy(lm(ids[:, :-1])[0].reshape(-1, V), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("position", ["pre", "post", "residual"])
def test_padding_does_not_change_the_pooled_features(position):
    clf = T.build_classifier(cfg(norm_position=position), V, 3).eval()
    docs = [np.arange(2, 42), np.arange(5, 15)]  # 40 tokens (two chunks) and 10
    batch = torch.from_numpy(T.pad_batch(docs, T.PAD_ID, 32))
    alone = [clf.features(torch.from_numpy(d[None].astype(np.int64))) for d in docs]
    together = clf.features(batch)
    assert torch.allclose(together[0], alone[0][0], atol=1e-5)
    assert torch.allclose(together[1], alone[1][0], atol=1e-5)


@pytest.mark.parametrize(
    "n_layers,expected,position", [(2, 4, "pre"), (4, 6, "post"), (12, 6, "pre"), (5, 6, "residual")]
)
def test_layer_groups_match_the_printed_schedule(n_layers, expected, position):
    flags = {"backbone": "transformer", "n_layers": n_layers, "epochs": 8, "norm_position": position}
    c = resolve("finetune-clf", "tiny", flags)
    model = T.build_classifier(c, V, 3)
    names, groups = T.classifier_groups(model)
    assert len(groups) == expected  # embed, at most 4 block groups, head
    in_groups = [id(p) for g in groups for p in g]
    assert sorted(in_groups) == sorted(id(p) for p in model.parameters())  # each parameter in exactly one group
    rows = print_plan("finetune-clf", c)
    plan = unfreeze_plan(len(groups), c.epochs, c.lr, c.lr_factor, True)
    for row, p in zip(rows, plan):
        assert [row[n] for n in names] == list(p.peak_lrs)
    assert rows[-1][names[0]] == pytest.approx(c.lr / c.lr_factor ** (expected - 1))


def test_the_whole_pipeline_through_the_cli(cli, ulmfit, tmp_path):
    import json

    lm, ft, clf = tmp_path / "lm", tmp_path / "ft", tmp_path / "clf"
    arch = ("--backbone", "transformer", "--norm", "rmsnorm")
    steps = [
        ("pretrain", SAMPLE / "books.txt", *arch, "--max-steps", "60", "--out", lm),
        ("finetune-lm", lm, SAMPLE / "trec_train.csv", "--max-steps", "20", "--out", ft),
        ("finetune-clf", ft, SAMPLE / "trec_train.csv", "--epochs", "3", "--out", clf),
    ]  # shortened: only the plumbing is checked here
    for step in steps:
        r = ulmfit(*step, "--preset", "tiny", "--quiet")
        assert r.returncode == 0, r.stderr
    m = json.loads((clf / "manifest.json").read_text())
    assert m["backbone"] == "transformer" and m["config"]["norm"] == "rmsnorm"
    r = ulmfit("evaluate", clf, SAMPLE / "trec_test.csv", "--json", "--backbone", "transformer")
    assert r.returncode == 0 and json.loads(r.stdout)["n"] == 500
    r = cli("predict", clf, "-", stdin="Who wrote Hamlet ?\n")
    assert r.returncode == 0 and json.loads(r.stdout)["label"]
    r = ulmfit("finetune-clf", ft, SAMPLE / "trec_train.csv", "--out", tmp_path / "x", "--backbone", "awd-lstm")
    assert r.returncode == 2 and "--backbone" in r.stderr and "transformer" in r.stderr
    r = cli("predict", clf, "-", "--backbone", "awd-lstm", stdin="hi\n")
    assert r.returncode == 2 and "holds a transformer model" in r.stderr


@pytest.mark.parametrize("position", ["post", "residual"])
def test_other_norm_positions_through_the_cli(cli, ulmfit, tmp_path, position):
    """Pre-LN has the full pipeline above. ResiDual runs the same three stages, shortened; Post-LN (whose
    blocks ResiDual shares) goes from pretraining straight to the classifier, to keep the suite short."""
    import json

    lm, ft, clf = tmp_path / "lm", tmp_path / "ft", tmp_path / "clf"
    arch = ("--backbone", "transformer", "--norm-position", position)
    steps = [("pretrain", SAMPLE / "books.txt", *arch, "--max-steps", "30", "--out", lm)]
    if position == "residual":
        steps.append(("finetune-lm", lm, SAMPLE / "trec_train.csv", "--max-steps", "10", "--out", ft))
    steps.append(("finetune-clf", steps[-1][-1], SAMPLE / "trec_train.csv", "--epochs", "2", "--out", clf))
    for step in steps:
        r = ulmfit(*step, "--preset", "tiny", "--quiet")
        assert r.returncode == 0, r.stderr
    m = json.loads((clf / "manifest.json").read_text())
    assert m["config"]["norm_position"] == position and len(m["history"]) == 2
    pre = json.loads((lm / "manifest.json").read_text())["history"][0]  # diagnostics, one value per block
    assert all(v > 0 for v in pre["grad_norm"]) and all(-1 <= v <= 1 for v in pre["layer_cos"])
    assert len(pre["grad_norm"]) == len(pre["layer_cos"]) == 2
    first, second = m["history"]  # gradual unfreezing: the head alone, then the top block too
    assert first["grad_norm"] == [None, None] and second["grad_norm"][0] is None and second["grad_norm"][1] > 0
    assert m["plots"]["diagnostics"] == "diagnostics.png" and (clf / "diagnostics.png").stat().st_size > 0
    r = cli("predict", clf, "-", stdin="Who wrote Hamlet ?\nHow far is the moon ?\n")
    assert r.returncode == 0 and len([json.loads(line)["label"] for line in r.stdout.splitlines()]) == 2


def test_linear_attention_stays_fp32_under_bf16_autocast():
    """Mixed precision must not run the prefix sums in bf16 (8 mantissa bits lose long sums)."""
    from ulmfit_cli.models.transformer import linear_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 300, 8, generator=g) for _ in range(3))
    ref = linear_attention(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = linear_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert mixed.dtype == torch.bfloat16
    inputs_rounded = linear_attention(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float())
    assert torch.allclose(
        mixed.float(), inputs_rounded, rtol=0, atol=6e-3
    )  # only the output is rounded (bf16 sums: 0.016)
    assert (mixed.float() - ref).abs().max() < 0.05


def test_int8_keeps_attention_fp32():
    """--quantize int8 on a transformer: the feed-forward layers and the head become int8, attention's
    projections stay fp32 (quantizing them cost the tiny TREC run 0.4-0.6 points), and the logits stay close."""
    from ulmfit_cli.inference.quantize import quantize

    clf = T.build_classifier(cfg(), V, 3).eval()
    x = torch.randint(2, V, (4, 11))
    with torch.no_grad():
        want = clf(x)[0]
        q = quantize(clf, "int8")
        got = q(x)[0]
    kinds = {name: type(m).__module__ for name, m in q.named_modules() if name.endswith(("qkv", "proj", "mlp.0"))}
    assert kinds and all(("quantized" in k) == name.endswith("mlp.0") for name, k in kinds.items()), kinds
    assert "quantized" in type(q.head[-1]).__module__
    assert 0 < (got - want).abs().max() < 0.5
