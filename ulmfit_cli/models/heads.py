"""The linear head (`--head linear`, and `--head auto` where the few-labels recipe trains the head alone): one
linear layer on the L2-normalized pooled features, fitted as scikit-learn's LogisticRegression() fits SetFit's head.

Why: with 8-32 labelled rows a class, the paper's head (batch norm, dropout, a hidden layer) trained 200 steps on the
contrastively trained body's features memorizes the rows; the L2-regularised logistic regression on normalized
features generalizes better (measured on the same bodies: bench/README.md, "Few labels").
Normalized, because the contrastive step trains the features' directions (a cosine loss) and because the
regularisation then means the same for every checkpoint, whatever the scale of its hidden states.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def classifier_head(cfg, n_in: int, n_class: int) -> nn.Module:
    """The head on `n_in` pooled features that `cfg.head` names: the linear one, or the paper's (batch norm,
    dropout, --lin-ftrs hidden units, twice) for ulmfit and auto (finetune-clf records auto resolved)."""
    if cfg.head == "linear":
        return LinearHead(n_in, n_class)
    return nn.Sequential(
        nn.BatchNorm1d(n_in), nn.Dropout(0.4 * cfg.drop_mult), nn.Linear(n_in, cfg.lin_ftrs), nn.ReLU(inplace=True),
        nn.BatchNorm1d(cfg.lin_ftrs), nn.Dropout(0.1), nn.Linear(cfg.lin_ftrs, n_class),
    )  # fmt: skip


class LinearHead(nn.Module):
    def __init__(self, n_in: int, n_class: int):
        super().__init__()
        self.linear = nn.Linear(n_in, n_class)

    def forward(self, x):  # (B, F) pooled features -> (B, n_class) logits
        return self.linear(F.normalize(x.float(), dim=1))


C = 1.0  # scikit-learn's default inverse regularisation strength, SetFit's head's


def fit_logistic(head: LinearHead, x: torch.Tensor, y: torch.Tensor, weights=None, c: float = C) -> float:
    """Fit `head` to features `x` (N, F) and class ids `y` (N,) by L-BFGS on scikit-learn's LogisticRegression(C=c)
    objective (multinomial cross-entropy summed over the rows, each weighted by its class's `weights` where given
    as class_weight weighs them, plus ||W||^2 / 2c; the bias is not penalized). Deterministic, full-batch, a
    fraction of a second for a few hundred rows. Returns the mean cross-entropy."""
    if head.linear.out_features == 2:  # scikit-learn fits two classes as one logistic, w = w1 - w0: the same
        c = c / 2  # penalty on the softmax's (w0, w1) = (-w/2, w/2) is ||w||^2 / 4c, so halve c to match it
    with torch.enable_grad():
        nn.init.zeros_(head.linear.weight)  # a convex problem: the start only sets how long L-BFGS takes
        nn.init.zeros_(head.linear.bias)
        x, y = x.detach().float(), y.long()
        opt = torch.optim.LBFGS(
            head.parameters(), lr=1, max_iter=1000, tolerance_grad=1e-6, tolerance_change=1e-10,
            history_size=20, line_search_fn="strong_wolfe",
        )  # fmt: skip

        def closure():
            opt.zero_grad()
            w = head.linear.weight
            loss = F.cross_entropy(head(x), y, weight=weights, reduction="sum") + w.pow(2).sum() / (2 * c)
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            return float(F.cross_entropy(head(x), y))
