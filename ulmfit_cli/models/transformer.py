"""A decoder-only (GPT-shaped) transformer with ULMFiT's layer groups, built from torch's own pieces.

Choices that decide how deep models train are flags (Xiong et al. 2020, "On Layer Normalization in the
Transformer Architecture"): `norm_position` pre (default), post, or residual (ResiDual, Xie et al. 2023,
arXiv 2304.14802: a Post-LN stream plus an un-normalised dual stream, see `Body`), `norm` layernorm or rmsnorm
(Gopher), used for every norm of the model whatever its position.
`attention` softmax uses `F.scaled_dot_product_attention` (fused/flash kernels where the hardware has them);
linear is Katharopoulos et al. 2020 ("Transformers are RNNs"), phi(x) = elu(x) + 1, causal by prefix sums, so
its cost grows linearly with the sequence length. Input and output embeddings are tied.

Shapes: B batch, T time, C = emb_sz channels, H heads, D = C / H per head, V vocabulary.
The classifier pads at the end: with causal attention a real token never sees a later pad, so padding cannot
change real positions, and pooling masks the pads out.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import RunConfig
from .heads import classifier_head

PAD_ID = 1
MAX_BLOCK_GROUPS = 4  # blocks are split into at most this many layer groups, whatever the depth


def _norm(cfg: RunConfig) -> nn.Module:
    return nn.RMSNorm(cfg.emb_sz) if cfg.norm == "rmsnorm" else nn.LayerNorm(cfg.emb_sz)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: RunConfig, dropout: float):
        super().__init__()
        self.n_heads, self.linear = cfg.n_heads, cfg.attention == "linear"
        self.qkv = nn.Linear(cfg.emb_sz, 3 * cfg.emb_sz)
        self.proj = nn.Linear(cfg.emb_sz, cfg.emb_sz)
        self.dropout = dropout

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, H, T, D)
        if self.linear:
            y = linear_attention(q, k, v)
        else:
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return F.dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)), self.dropout, self.training)


def linear_attention(q, k, v, eps: float = 1e-6):
    """Causal linear attention: y_t = phi(q_t) S_t / (phi(q_t) z_t), S_t = sum_{s<=t} phi(k_s) v_s^T,
    z_t = sum_{s<=t} phi(k_s). (B, H, T, D) -> (B, H, T, D); memory O(T D^2), time linear in T.
    Computed in fp32 even under bf16/fp16 autocast: the prefix sums lose too much in 8 mantissa bits."""
    with torch.autocast(q.device.type, enabled=False):
        return _linear_attention(q.float(), k.float(), v.float(), eps).to(v.dtype)


def _linear_attention(q, k, v, eps: float):
    q, k = F.elu(q) + 1, F.elu(k) + 1
    kv = torch.einsum("bhtd,bhte->bhtde", k, v).cumsum(dim=2)  # (B, H, T, D, D)
    z = k.cumsum(dim=2)  # (B, H, T, D)
    num = torch.einsum("bhtd,bhtde->bhte", q, kv)
    den = (q * z).sum(-1, keepdim=True) + eps
    return num / den


class Block(nn.Module):
    """One attention and one feed-forward sublayer f. Pre-LN: x + f(LN(x)). Post-LN and ResiDual: LN(x + f(x)),
    and ResiDual also adds each f(x) to the dual stream d (the paper's x^d, left un-normalised)."""

    def __init__(self, cfg: RunConfig, dropout: float):
        super().__init__()
        self.pre = cfg.norm_position == "pre"
        self.norm1, self.norm2 = _norm(cfg), _norm(cfg)
        self.attn = CausalSelfAttention(cfg, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.emb_sz, cfg.n_hid), nn.GELU(), nn.Linear(cfg.n_hid, cfg.emb_sz), nn.Dropout(dropout)
        )

    def forward(self, x, d=None):  # (B, T, C), and the dual stream (B, T, C) or None -> the same pair
        if self.pre:  # Pre-LN: the residual stream is never normalised; gradients well-behaved at any depth
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x)), d
        a = self.attn(x)
        x = self.norm1(x + a)  # Post-LN (Vaswani et al. 2017)
        m = self.mlp(x)
        if d is not None:  # ResiDual, eq. (3) of the paper: x^d_{k+1} = x^d_k + f_k(x^a_k), per sublayer
            d = d + a + m
        return self.norm2(x + m), d


class Body(nn.Module):
    """Token and position embeddings, the blocks, and a final norm: tokens (B, T) -> (B, T, C).

    Pre-LN ends with LN(x_N); Post-LN with x_N (already normalised). ResiDual ends with x^a_N + LN(x^d_N):
    the Post-LN stream x^a plus the normalised dual stream, which starts from the embedded input
    (x^a_1 = x^d_1 = x_1, as the paper and its reference code, microsoft/ResiDual, `res = x`)."""

    def __init__(self, cfg: RunConfig, vocab_sz: int, dropout: float):
        super().__init__()
        self.ctx, self.dual = cfg.bptt, cfg.norm_position == "residual"
        self.tok_emb = nn.Embedding(vocab_sz, cfg.emb_sz, padding_idx=PAD_ID)
        self.pos_emb = nn.Embedding(cfg.bptt, cfg.emb_sz)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(cfg, dropout) for _ in range(cfg.n_layers))
        self.norm_f = nn.Identity() if cfg.norm_position == "post" else _norm(cfg)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def forward(self, x):
        T = x.shape[1]
        h = self.drop(self.tok_emb(x) + self.pos_emb(torch.arange(T, device=x.device)))
        d = h if self.dual else None
        for block in self.blocks:
            h, d = block(h, d)
        return h + self.norm_f(d) if self.dual else self.norm_f(h)

    def reset(self):  # no state between batches; the training loop calls this for every backbone
        pass


class TransformerLM(nn.Module):
    def __init__(self, cfg: RunConfig, vocab_sz: int):
        super().__init__()
        self.body = Body(cfg, vocab_sz, 0.1 * cfg.drop_mult)
        self.head = nn.Linear(cfg.emb_sz, vocab_sz, bias=False)
        self.head.weight = self.body.tok_emb.weight  # tied

    def forward(self, x):  # (B, T) -> logits (B, T, V), and the hidden states twice (the LSTM's interface)
        h = self.body(x)
        return self.head(h), h, h

    def reset(self):
        pass


class TransformerClassifier(nn.Module):
    """Chunks of `bptt` tokens through the body (BPT3C-style, each chunk on its own), then concat pooling
    [last real token, masked max, masked mean] over the whole document and the ULMFiT head."""

    def __init__(self, cfg: RunConfig, vocab_sz: int, n_class: int):
        super().__init__()
        self.body = Body(cfg, vocab_sz, 0.1 * cfg.drop_mult)
        self.head = classifier_head(cfg, 3 * cfg.emb_sz, n_class)

    def features(self, x):  # (B, T) padded at the end -> (B, 3C)
        mask = x != PAD_ID  # (B, T)
        h = torch.cat([self.body(x[:, i : i + self.body.ctx]) for i in range(0, x.shape[1], self.body.ctx)], 1)
        lens = mask.sum(1).clamp(min=1)  # (B,)
        last = h[torch.arange(x.shape[0]), lens - 1]
        m = mask.unsqueeze(-1)
        mx = h.masked_fill(~m, float("-inf")).max(1).values
        mean = (h * m).sum(1) / lens.unsqueeze(-1)
        return torch.cat([last, mx, mean], 1)

    def forward(self, x):
        return (self.head(self.features(x)),)

    def reset(self):
        pass


# ---- the backbone interface shared with awd_lstm -------------------------------------------------------------


def build_lm(cfg: RunConfig, vocab_sz: int) -> TransformerLM:
    return TransformerLM(cfg, vocab_sz)


def build_classifier(cfg: RunConfig, vocab_sz: int, n_class: int) -> TransformerClassifier:
    return TransformerClassifier(cfg, vocab_sz, n_class)


def _block_groups(n_layers: int) -> list[list[int]]:
    k = min(n_layers, MAX_BLOCK_GROUPS)
    return [list(a) for a in np.array_split(np.arange(n_layers), k)]


def group_names(kind: str, cfg: RunConfig) -> list[str]:
    return _names(kind, cfg.n_layers)


def _names(kind: str, n_layers: int) -> list[str]:
    blocks = [f"blocks{g[0] + 1}-{g[-1] + 1}" if len(g) > 1 else f"block{g[0] + 1}" for g in _block_groups(n_layers)]
    return [*blocks, "embed+norm"] if kind == "lm" else ["embed", *blocks, "head"]


def _blocks(body: Body) -> list[list]:
    return [[p for i in g for p in body.blocks[i].parameters()] for g in _block_groups(len(body.blocks))]


def _embed(body: Body) -> list:
    return [body.tok_emb.weight, body.pos_emb.weight]


def lm_groups(model: TransformerLM):
    """Blocks bottom-up, then embeddings + final norm on top (the tied head is the embedding), as awd_lstm.
    ResiDual's final norm of the dual stream sits where Pre-LN's final norm does, so the groups are the same."""
    b = model.body
    return _names("lm", len(b.blocks)), [*_blocks(b), _embed(b) + list(b.norm_f.parameters())]


def classifier_groups(model: TransformerClassifier):
    b = model.body
    head = list(b.norm_f.parameters()) + list(model.head.parameters())
    return _names("classifier", len(b.blocks)), [_embed(b), *_blocks(b), head]


def diagnosed_layers(model) -> list:
    """The blocks whose gradient norms and output similarity the training loop records (diagnostics.py)."""
    return list(model.body.blocks)


def encoder_of_lm(lm: TransformerLM) -> Body:
    return lm.body


def encoder_of_classifier(clf: TransformerClassifier) -> Body:
    return clf.body


def lm_objective(cfg: RunConfig, tok):
    """Next-token prediction on the stream as it is: nothing to do to a batch (see hf.lm_objective)."""
    return None


def cut_doc(doc: np.ndarray, max_len: int) -> np.ndarray:
    """A document's first `max_len` tokens (see predictor.docs_of)."""
    return doc[:max_len]


def pad_batch(docs: list[np.ndarray], pad_id: int, bptt: int) -> np.ndarray:
    """Pad at the end (see the module docstring); rows need no order."""
    out = np.full((len(docs), max(len(d) for d in docs)), pad_id, dtype=np.int64)
    for r, d in enumerate(docs):
        out[r, : len(d)] = d
    return out
