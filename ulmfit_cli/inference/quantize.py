"""`--quantize int8`: torch's dynamic quantization of a loaded classifier's Linear and LSTM layers.

Weights are stored as int8 with one scale per tensor; activations are quantized on the fly per batch, so nothing
needs calibrating. It runs on the CPU only (torch's quantized kernels). A transformer's attention projections
(q, k, v and the output projection) stay fp32: their errors pass through the softmax, and quantizing them cost
the tiny TREC transformer 0.4-0.6 points where the feed-forward layers and the head alone cost none.
"""

from __future__ import annotations

from ..errors import ConfigError

KINDS = ("int8",)


def check(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"`--quantize` must be one of {', '.join(KINDS)}, got {kind!r}")


def quantize(model, kind: str):
    """`model` (on the CPU, in eval mode) with its nn.Linear and nn.LSTM layers quantized dynamically, except
    attention's (modules under an `attn`)."""
    import warnings

    import torch
    import torch.nn as nn

    check(kind)
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; the API still works
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        names = [
            name
            for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.LSTM)) and "attn" not in name.split(".")
        ]
        return quantize_dynamic(model, dict.fromkeys(names, default_dynamic_qconfig), dtype=torch.qint8)
