"""The AWD-LSTM classifier for inference, from torch's own modules only: no import of fastai's package.

Training builds fastai's `get_text_classifier` (awd_lstm.py); its weights load here unchanged. At inference
fastai's dropouts are the identity and `WeightDropout` uses its raw hidden-to-hidden weights, so the model is an
embedding, `n_layers` plain `nn.LSTM`s (which `torch.ao.quantization.quantize_dynamic` and ONNX know), concat
pooling and the ULMFiT head (batch-norm, dropout, linear, twice, as fastai's `LinBnDrop`).

Keys (`fastai_keys`): `0.module.encoder.weight` -> `encoder.weight` (the tied `encoder_dp.emb.weight` is the
same tensor), `0.module.rnns.L.weight_hh_l0_raw` -> `rnns.L.weight_hh_l0`, `0.module.rnns.L.module.X` ->
`rnns.L.X`, `1.layers.*` -> `head.*`.

Input: token ids (B, T) with padding anywhere outside each row's text: fastai's chunked padding (whole `bptt`
chunks before the text, the rest after; batches.pad_chunks), padding first, or padding last. Each row is moved to
the left and the LSTMs run from a zero state, bptt steps at a time (see `features`). That is what fastai's
SentenceEncoder (BPT3C) computes at inference: it feeds a row chunk by chunk from its first real token, carrying
the hidden state, and the LSTM is causal, so padding after the text never changes a real position. Documents
are cut to `max_len` by the caller (predictor.docs_of), so no chunk is ever dropped by fastai's `max_len` either.

Each document's logits here are fastai's for that document alone, never dependent on the batch. With our
batches (batches.pad_chunks pads to whole `bptt` chunks) and the encoder's `max_len` rounded up to whole chunks
(awd_lstm.build_classifier), fastai's batched forward is exactly that too, row for row (tested). With fastai's own
ragged padding it is not, in two cases of mixed-length batches wider than bptt: (a) SentenceEncoder feeds chunk i
to the first `real_bs` rows, counting rows not padded at column i, which assumes those rows come first; a row
whose trailing padding covers column i breaks the count and a shorter row below it gets zeros for that chunk;
(b) `masked_concat_pool` finds the "last" token by counting pads in the last bptt columns, which for a row at
most width % bptt tokens long lands on a leading pad (a zero vector). tests/test_awd_lstm_infer.py shows (b).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import RunConfig
from .awd_lstm import CLF_DROPS, PAD_ID


def fastai_keys(state: dict) -> dict:
    """fastai's classifier state dict -> this module's (see the module docstring)."""
    out = {}
    for k, v in state.items():
        if k == "0.module.encoder_dp.emb.weight":
            out.setdefault("encoder.weight", v)
        elif k.startswith("0.module."):
            k = k.removeprefix("0.module.").replace(".module.", ".")
            out[k.replace("weight_hh_l0_raw", "weight_hh_l0")] = v
        else:
            out[k.replace("1.layers.", "head.", 1)] = v
    return out


def _lin_bn_drop(n_in: int, n_out: int, p: float, act: bool) -> nn.Sequential:
    """fastai's LinBnDrop(n_in, n_out, p=p, act=ReLU or None): BatchNorm1d, Dropout (only where p != 0, which
    shifts the Linear's index), Linear without bias, then the activation."""
    layers = [nn.BatchNorm1d(n_in)] + ([nn.Dropout(p)] if p != 0 else []) + [nn.Linear(n_in, n_out, bias=False)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if act else []))


class AWDLSTMClassifier(nn.Module):
    """tokens (B, T) -> (logits (B, C),), as fastai's classifier in eval mode."""

    def __init__(self, vocab_sz: int, emb_sz: int, n_hid: int, n_layers: int, n_class: int, lin_ftrs: int,
                 output_p: float, chunk: int = 0, pad_id: int = PAD_ID):  # fmt: skip
        super().__init__()
        self.pad_id, self.chunk, self.engine = pad_id, chunk, None
        self.torch_threads: int | None = None  # torch's threads during forward, when an engine does the heavy part
        self.encoder = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_id)
        sizes = [emb_sz] + [n_hid] * (n_layers - 1) + [emb_sz]
        self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], 1, batch_first=True) for i in range(n_layers))
        self.head = nn.Sequential(
            _lin_bn_drop(3 * emb_sz, lin_ftrs, output_p, True), _lin_bn_drop(lin_ftrs, n_class, 0.1, False)
        )

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Accepts fastai's keys (the run folder's safetensors) as well as this module's own."""
        return super().load_state_dict(fastai_keys(state_dict), strict=strict, assign=assign)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) -> concat pooling [last real token, masked max, masked mean] (B, 3 * emb_sz).

        Batches wider than `chunk` run at most `chunk` steps at a time, as fastai's BPT3C does: the LSTMs carry
        their states, pooling accumulates per chunk, and each chunk runs only the rows whose text reaches it and
        ends where the shortest of them ends (a batch's short documents stop at their last token instead of
        running over padding). `chunk` 0 is one pass (the ONNX graph). The result does not depend on `chunk`
        (the LSTMs are causal). An engine that runs several threads (onnx_engine.Recurrence.parts) gets the rows
        dealt out by length, longest first, one part per thread, and each part runs all its chunks and pooling on
        its own."""
        B, T = x.shape
        real = x != self.pad_id
        lens = real.sum(1)  # (B,)
        lead = (real.long().cumsum(1) == 0).sum(1)  # pads before each row's text
        pos = torch.arange(T, device=x.device)
        x = x.gather(1, (lead.unsqueeze(1) + pos).clamp(max=T - 1))  # each row's text first
        k = self.engine.parts(B) if self.engine is not None else 1
        if k < 2:
            return self._features(x, lens, pos)
        rows = lens.argsort(descending=True)
        parts = [rows[p::k] for p in range(k)]  # dealt like cards: each part gets long and short rows alike
        outs = self.engine.map(lambda r: self._features(x[r], lens[r], pos), parts)
        out = torch.empty((B, outs[0].shape[1]), dtype=outs[0].dtype, device=x.device)
        for r, o in zip(parts, outs):
            out[r] = o
        return out

    def _features(self, x: torch.Tensor, lens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """`features` of left-aligned rows `x` with text lengths `lens`.

        A chunk runs at most `chunk` steps and stops where the text of its shortest row ends, so no row ever runs
        a padded step and pooling needs no mask: each chunk's rows all read text to its last step. Chunks of
        fixed length left each row up to `chunk` - 1 padded steps in its last chunk (half a chunk on average: 16 of
        the 352 tokens of a mean IMDb review at CHUNK 32)."""
        B, T = x.shape
        if self.chunk <= 0 or T <= self.chunk:
            return self._pool_one_pass(x, lens, pos)
        order = lens.argsort(descending=True)  # longest first: the rows still reading form a prefix
        x, lens = x[order], lens[order]
        ends = lens.tolist()
        states: list = [None] * len(self.rnns)
        C = self.rnns[-1].hidden_size
        last, total = x.new_zeros((B, C), dtype=torch.float32), x.new_zeros((B, C), dtype=torch.float32)
        mx = torch.full((B, C), float("-inf"), device=x.device)
        i, n = 0, B
        while n and ends[n - 1] <= i:  # rows without text (blank inputs) read nothing
            n -= 1
        while n:
            e = min(i + self.chunk, ends[n - 1])  # rows 0..n-1 all read text from i to e
            h, states = self.recur(x[:n, i:e], [None if s is None else (s[0][:, :n], s[1][:, :n]) for s in states])
            mx[:n] = torch.maximum(mx[:n], h.max(1).values.float())
            total[:n] += h.sum(1).float()
            i = e
            m = n
            while n and ends[n - 1] <= i:  # rows whose text ends here: their last token is this chunk's last
                n -= 1
            last[n:m] = h[n:m, -1].float()
        out = torch.cat([last, mx, total / lens.unsqueeze(1)], 1)
        return out[order.argsort()]

    def recur(self, x: torch.Tensor, states: list) -> tuple[torch.Tensor, list]:
        """Token ids (n, t) and each LSTM's (h, c) (None: a zero state) -> the last LSTM's outputs (n, t, emb_sz)
        and the LSTMs' states after the chunk. `engine` (onnx_engine.Recurrence) runs it in onnxruntime instead."""
        if self.engine is not None:
            return self.engine(x, states)
        h, out = self.encoder(x), []
        for rnn, st in zip(self.rnns, states):
            h, st = rnn(h, st)
            out.append(st)
        return h, out

    def _pool_one_pass(self, x, lens, pos):
        """The whole (left-aligned) batch in one pass of each LSTM: short batches, and the ONNX graph."""
        B = x.shape[0]
        h = self.recur(x, [None] * len(self.rnns))[0]
        keep = (pos < lens.unsqueeze(1)).unsqueeze(-1)  # (B, T, 1)
        last = h.gather(1, (lens - 1).clamp(min=0).view(B, 1, 1).expand(B, 1, h.shape[2])).squeeze(1)
        mx = h.masked_fill(~keep, float("-inf")).max(1).values
        mean = h.masked_fill(~keep, 0.0).sum(1) / lens.unsqueeze(1).to(h.dtype)
        return torch.cat([last, mx, mean], 1)

    def forward(self, x: torch.Tensor):
        if self.torch_threads is None:
            return (self.head(self.features(x)),)
        before = torch.get_num_threads()
        torch.set_num_threads(self.torch_threads)
        try:
            return (self.head(self.features(x)),)
        finally:
            torch.set_num_threads(before)


# Steps per chunk at inference, at most (chunks also end where a row's text ends, so this no longer sets how many
# padded steps run: none do). Chosen when it did: 100 IMDb reviews, `small`, batch 64, CPU seconds at chunk
# 10/18/35/70: torch 4.71/4.51/4.43/4.58, onnxruntime int8 2.15/2.17/2.20/2.30.
CHUNK = 32


def build_classifier(cfg: RunConfig, vocab_sz: int, n_class: int) -> AWDLSTMClassifier:
    """The inference twin of awd_lstm.build_classifier (same sizes, same head; dropouts only decide whether
    fastai put a Dropout module in the head, which shifts its keys)."""
    output_p = CLF_DROPS["output_p"] * cfg.drop_mult
    chunk = min(cfg.bptt, CHUNK)
    return AWDLSTMClassifier(vocab_sz, cfg.emb_sz, cfg.n_hid, cfg.n_layers, n_class, cfg.lin_ftrs, output_p, chunk)
