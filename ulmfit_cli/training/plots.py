"""PNG pictures of a run: the per-epoch curves, every layer group's learning rate, a confusion matrix.

matplotlib is imported inside the functions (`ulmfit --help` must not pay for it) and drawn with the Agg
canvas on a bare `Figure`, never through pyplot: no display, no global figure state, nothing left open.
The caller decides what a failure means (stages warn and keep the model; `evaluate` reports it).
"""

from __future__ import annotations

import os
from pathlib import Path

from .schedule import EpochPlan, lr_trace

HISTORY_PNG, LR_PNG, DIAGNOSTICS_PNG = "history.png", "lr_schedule.png", "diagnostics.png"
MAX_POINTS = 4000  # per line of the rate plot: enough for a 1000-pixel-wide picture


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save(fig, path: Path) -> None:
    """Write beside the target and rename, so a failed or interrupted write never leaves half a PNG."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def history(
    rows: list[dict], path: Path, title: str, metric: str | None = None, best: tuple[int, bool] | None = None
) -> None:
    """Training and validation loss per epoch, and beside them `metric` (default: perplexity for an LM, else
    accuracy). `best`: (epoch, whether its weights are the ones kept), marked on both panels."""
    epochs = [r["epoch"] for r in rows]
    metric = metric or ("perplexity" if any("perplexity" in r for r in rows) else "accuracy")
    fig, (loss_ax, metric_ax) = _figure(10, 4, ncols=2)
    for key, style in (("train_loss", "o-"), ("valid_loss", "s-")):
        if any(key in r for r in rows):
            loss_ax.plot(epochs, [r.get(key, float("nan")) for r in rows], style, label=key, markersize=4)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    loss_ax.legend()
    metric_ax.plot(epochs, [r.get(metric, float("nan")) for r in rows], "o-", color="C2", markersize=4)
    metric_ax.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    if best is not None:
        epoch, is_kept = best
        label = f"best epoch {epoch}" + (" (kept)" if is_kept else " (last kept: --keep last)")
        for ax in (loss_ax, metric_ax):
            ax.axvline(epoch, color="C3", linestyle="--", linewidth=1, label=label)
        value = next((r.get(metric, float("nan")) for r in rows if r["epoch"] == epoch), float("nan"))
        metric_ax.plot([epoch], [value], "*", color="C3", markersize=12)
        metric_ax.legend()
        loss_ax.legend()
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    _save(fig, path)


def diagnostics(rows: list[dict], path: Path, title: str) -> None:
    """Per block (x, bottom first), the epoch's mean gradient norm (log scale) and the cosine similarity of the
    block's output to its input; one line per epoch, darker later. Vanishing gradients show as a line falling
    towards block 1, collapse as similarities near 1 in the top blocks. Frozen blocks have no gradient point."""
    from matplotlib import colormaps

    fig, (grad_ax, cos_ax) = _figure(10, 4, ncols=2)
    cmap = colormaps["viridis_r"]
    for j, r in enumerate(rows):
        colour = cmap(0.15 + 0.85 * j / max(len(rows) - 1, 1))
        for ax, key in ((grad_ax, "grad_norm"), (cos_ax, "layer_cos")):
            values = [float("nan") if v is None else v for v in r[key]]
            ax.plot(range(1, len(values) + 1), values, "o-", color=colour, markersize=3, label=f"epoch {r['epoch']}")
    grad_ax.set_yscale("log")
    grad_ax.set(xlabel="block", ylabel="gradient norm (before clipping)", title="gradient norm per block")
    cos_ax.set(xlabel="block", ylabel="cos(output, input)", title="similarity of consecutive layers' outputs")
    for ax in (grad_ax, cos_ax):
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = cos_ax.get_legend_handles_labels()
    keep = sorted({0, len(handles) - 1})  # first and last epoch: the colour tells the ones between
    cos_ax.legend([handles[i] for i in keep], [labels[i] for i in keep], fontsize="small")
    fig.suptitle(title)
    _save(fig, path)


def lr_schedule(
    plan: list[EpochPlan], names: list[str], steps_per_epoch: int, cut_frac: float, ratio: float, path: Path, title: str
) -> None:
    """Each group's rate at every optimizer step, on a log scale (discriminative rates differ by a factor per
    group). A frozen group has no line, so gradual unfreezing shows as groups starting later; dotted lines
    mark the epochs."""
    total = len(plan) * steps_per_epoch
    every = max(1, total // MAX_POINTS)  # STLR is smooth; epoch ends are kept so every restart stays sharp
    steps, rates = [], []
    for i, r in enumerate(lr_trace(plan, steps_per_epoch, cut_frac, ratio)):
        if i % every == 0 or i % steps_per_epoch in (0, steps_per_epoch - 1):
            steps.append(i + 1)
            rates.append(r)
    fig, (ax,) = _figure(10, 4.5)
    for g in reversed(range(len(names))):  # top group first in the legend, as in --print-schedule's columns
        ax.plot(steps, [r[g] if r[g] > 0 else float("nan") for r in rates], label=names[g], linewidth=1.2)
    for e in range(1, len(plan)):
        ax.axvline(e * steps_per_epoch + 0.5, color="grey", linestyle=":", linewidth=0.8)
    ax.set_yscale("log")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title=title)
    ax.legend(title="layer group", fontsize="small")
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    """Rows the true class, columns the predicted one; each cell shows its count, coloured by its share of the
    row (recall on the diagonal), so rare classes read as clearly as frequent ones."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    side = min(4 + 0.5 * n, 30)
    fig, (ax,) = _figure(side + 1.5, side)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="share of the true class")
    ax.set_xticks(range(n), classes, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 30:  # beyond that the numbers no longer fit their cells; the colours still tell the story
        for i in range(n):
            for j in range(n):
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color=colour, fontsize="small")
    _save(fig, path)


def lr_find(lrs: list[float], losses: list[float], lr: float, loss: float, path: Path, title: str) -> None:
    """The range test's smoothed loss against the rate (log scale), the suggested rate marked."""
    fig, (ax,) = _figure(6, 4)
    ax.plot(lrs, losses)
    ax.plot([lr], [loss], "o", color="red", label=f"suggested {lr:.2g}")
    ax.set_xscale("log")
    ax.set(xlabel="learning rate (top layer group)", ylabel="smoothed training loss", title=title)
    ax.legend()
    _save(fig, path)


def learning_curve(curve: list[dict], path: Path, title: str, percent: bool = True) -> None:
    """Test error (%, or the MAE when not `percent`) against the number of labelled examples (log scale): per
    variant the mean over the seeds as a line, the lowest to the highest seed as a band (the paper's Figure 3)."""
    scale = 100 if percent else 1
    fig, (ax,) = _figure(7, 4.5)
    for i, v in enumerate(dict.fromkeys(r["variant"] for r in curve)):
        rows = [r for r in curve if r["variant"] == v]
        n = [r["n"] for r in rows]
        ax.plot(n, [scale * r["error_mean"] for r in rows], "o-", color=f"C{i}", label=v, markersize=4)
        if any(r["seeds"] > 1 for r in rows):
            lo, hi = [scale * r["error_min"] for r in rows], [scale * r["error_max"] for r in rows]
            ax.fill_between(n, lo, hi, color=f"C{i}", alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set(xlabel="labelled training examples", ylabel="test error (%)" if percent else "test MAE", title=title)
    ax.legend(title="seeds: band = lowest to highest")
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)
