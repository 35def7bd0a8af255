"""A long document read as overlapping windows (`--long windows`, --backbone hf): the split, and the pooling of
the windows' vectors into the document's.

A document comes as the classifier reads it: its start token, its content and (an encoder's) end token, padded at
the end. Window w reads the start token, the content tokens from w * stride on (at most `window - ends` of them)
and the end token, so each window is framed as the model was trained to read a text, and is pooled as the head
pools a document. Consecutive windows share `window - ends - stride` content tokens; the last window ends with the
content. A document no longer than one window is one window: the same ids as head-tail reads.

Both functions are plain tensor operations with no Python loop or branch on the data, so `export --onnx` traces
them with dynamic batch and time axes and the graph splits and pools as the torch model does.
"""

from __future__ import annotations

import torch

WINDOW_POOLS = ("mean-max", "tokens")


def n_windows(n_content, window: int, stride: int, ends: int):
    """How many windows a document of `n_content` content tokens (an int, a numpy array or a tensor) is read in."""
    over = n_content - (window - ends)  # content tokens past the first window
    return (over * (over > 0) + stride - 1) // stride + 1


def split_windows(x, window: int, stride: int, ends: int, pad: int):
    """x (B, T), each row a start token, content and (ends == 2) an end token, padded at the end with `pad` ->
    windows (B, W, L) padded at the end with `pad`, L = min(T, window), and valid (B, W): the windows each document
    has (W = ceil(T / stride), enough for the longest row; the others read the start and end tokens alone)."""
    span = window - ends
    lens = (x != pad).sum(1)  # (B,)
    n_content = (lens - ends).clamp(min=0)
    starts = torch.arange(0, x.shape[1], stride, device=x.device)  # (W,)
    j = torch.arange(x.shape[1], device=x.device)[:window]  # (L,) the slots of a window
    k = (n_content[:, None] - starts[None]).clamp(min=0, max=span)  # (B, W) content tokens of each window
    padded = torch.nn.functional.pad(x, (0, window), value=pad)  # room for the last start's slots
    content = padded[:, starts[:, None] + j[None]]  # (B, W, L): slot j >= 1 reads content token start + j - 1
    first = x[:, :1, None]  # (B, 1, 1)
    last = x.gather(1, (lens - 1).clamp(min=0)[:, None])[:, :, None]  # (B, 1, 1): an encoder's end token
    slot, k = j[None, None], k[:, :, None]
    out = torch.where((slot >= 1) & (slot <= k), content, torch.full_like(content, pad))
    if ends == 2:
        out = torch.where(slot == k + 1, last, out)
    out = torch.where(slot == 0, first, out)
    valid = torch.arange(starts.shape[0], device=x.device)[None] < n_windows(n_content, window, stride, ends)[:, None]
    return out, valid


def pool_windows(v, counts, valid, how: str, pooling: str):
    """The windows' vectors v (B, W, F), the tokens each pooled (B, W) and which are the document's (B, W) ->
    the document's vector: mean-max (B, 2F), the mean and max over its windows; tokens (B, F), the pooling over
    every token of its windows at once (concat's F = 3C: the last window's last token, the max, the mean weighted
    by the windows' tokens; mean: that weighted mean; cls: the first window's, the document's own [CLS])."""
    m = valid.unsqueeze(-1)  # (B, W, 1)
    if how == "mean-max":
        mean = v.masked_fill(~m, 0.0).sum(1) / m.sum(1).clamp(min=1)
        return torch.cat([mean, v.masked_fill(~m, float("-inf")).max(1).values], 1)
    if pooling == "cls":
        return v[:, 0]
    w = (counts * valid).to(v.dtype).unsqueeze(-1)  # (B, W, 1)

    def weighted(part):
        return (part.masked_fill(~m, 0.0) * w).sum(1) / w.sum(1).clamp(min=1)

    if pooling == "mean":
        return weighted(v)
    c = v.shape[2] // 3
    last = v.gather(1, (valid.sum(1) - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, c)).squeeze(1)  # (B, C)
    mx = v[..., c : 2 * c].masked_fill(~m, float("-inf")).max(1).values
    return torch.cat([last, mx, weighted(v[..., 2 * c :])], 1)
