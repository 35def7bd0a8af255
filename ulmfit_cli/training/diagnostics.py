"""Training diagnostics of a stack of blocks, cheap enough to leave on: per block, the gradient norm and the
cosine similarity between the block's output and its input (the previous block's output), averaged per epoch.

The two things the normalisation choice is said to trade (Xie et al. 2023, ResiDual, section 2): Post-LN's
gradients shrink towards the bottom blocks (vanishing), Pre-LN's blocks add ever less to a growing residual
stream, so consecutive outputs grow alike (representation collapse: the similarity tends to 1 with depth).

Both are summed on the model's device as tensors and read once per epoch, so a GPU step never waits for them.
The gradient norm is taken after data-parallel averaging and before clipping; a frozen block (gradual
unfreezing) has none that epoch (None).
"""

from __future__ import annotations

import math


class LayerDiagnostics:
    def __init__(self, blocks: list):
        import torch.nn.functional as F

        self.blocks = list(blocks)
        n = len(self.blocks)
        self._cos, self._grad = [0.0] * n, [0.0] * n
        self._n_cos, self._n_grad = [0] * n, [0] * n

        def hook(i: int):
            def record(module, args, out):  # args[0] is the block's input, out its output (or (output, dual))
                if module.training:
                    x, y = args[0].detach(), (out[0] if isinstance(out, tuple) else out).detach()
                    self._cos[i] = self._cos[i] + F.cosine_similarity(x.float(), y.float(), dim=-1).mean()
                    self._n_cos[i] += 1

            return record

        self._handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(self.blocks)]

    def after_backward(self) -> None:
        """Add each block's gradient norm (sqrt of the sum of its parameters' squared norms) for this step."""
        import torch

        for i, b in enumerate(self.blocks):
            grads = [p.grad for p in b.parameters() if p.grad is not None]
            if grads:
                self._grad[i] = self._grad[i] + torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                self._n_grad[i] += 1

    def epoch(self) -> dict:
        """The epoch's means per block, bottom block first, and start the next epoch from zero."""

        def means(sums, counts):
            return [None if c == 0 else _finite(float(s) / c) for s, c in zip(sums, counts)]

        row = {"grad_norm": means(self._grad, self._n_grad), "layer_cos": means(self._cos, self._n_cos)}
        n = len(self.blocks)
        self._cos, self._grad, self._n_cos, self._n_grad = [0.0] * n, [0.0] * n, [0] * n, [0] * n
        return row

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _finite(v: float) -> float | None:
    # 6 significant digits, not decimals: a vanishing gradient (Post-LN's bottom blocks: 1e-7) must not read as 0.
    # JSON has no NaN; a diverged epoch reads as null.
    return float(f"{v:.6g}") if math.isfinite(v) else None
