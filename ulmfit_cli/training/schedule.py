"""Pure functions for the ULMFiT schedule: STLR, discriminative rates and the gradual-unfreezing plan.

Nothing here touches torch, so the plan can be printed (`--print-schedule`) and tested before any training.
Layer groups are numbered from the bottom (0 = closest to the input) to the top (n - 1 = the head).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass


def discriminative_lrs(lr: float, n_groups: int, factor: float, head_mult: float = 1.0) -> list[float]:
    """eta_l = eta_(l+1) / factor, the top group getting `lr` (recipe section 2), whatever the group count; a
    classifier's top group (its fresh head) gets `lr * head_mult` instead, the groups below keeping theirs.

    Unlike fastai's `slice(lo, hi)`, which spaces rates geometrically between two ends, the factor is per group.
    """
    lrs = [lr / factor ** (n_groups - 1 - g) for g in range(n_groups)]
    return [*lrs[:-1], lrs[-1] * head_mult] if lrs else lrs


def stlr(t: int, total: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """Slanted triangular multiplier for step t (0-based) of a phase of `total` steps (Howard & Ruder eq. 3).

    cut = floor(T * cut_frac); p = t / cut below it, else 1 - (t - cut) / (cut * (1 / cut_frac - 1));
    returns (1 + p * (ratio - 1)) / ratio, so the peak is 1 and the ends are 1 / ratio.
    Two guards the paper's formula needs for short phases: cut is at least 1 step (a phase of fewer than
    1 / cut_frac steps would otherwise divide by zero), and p never goes below 0 (with cut floored, the decay
    would otherwise overshoot below eta_max / ratio, and even below zero).
    """
    if total <= 0:
        raise ValueError("a phase needs at least one step")
    cut = max(1, math.floor(total * cut_frac))
    if t < cut:
        p = t / cut
    else:
        p = 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    p = max(0.0, p)
    return (1 + p * (ratio - 1)) / ratio


@dataclass(frozen=True)
class EpochPlan:
    epoch: int  # 0-based
    phase: int  # epochs of one phase share one STLR cycle
    trainable: tuple[int, ...]  # group indices that train this epoch
    peak_lrs: tuple[float, ...]  # per group; 0.0 for frozen groups


def unfreeze_plan(
    n_groups: int, epochs: int, lr: float, factor: float, gradual: bool, head_mult: float = 1.0
) -> list[EpochPlan]:
    """Gradual unfreezing (recipe section 3): epoch e trains the top e + 1 groups, one STLR cycle per epoch;
    once every group is unfrozen, the remaining epochs form one last phase with one STLR cycle over them all.
    Without `gradual`, every epoch trains every group in a single phase.
    """
    lrs = discriminative_lrs(lr, n_groups, factor, head_mult)
    plan = []
    for e in range(epochs):
        k = min(e + 1, n_groups) if gradual else n_groups
        phase = min(e, n_groups - 1) if gradual else 0
        trainable = tuple(range(n_groups - k, n_groups))
        peaks = tuple(lrs[g] if g in trainable else 0.0 for g in range(n_groups))
        plan.append(EpochPlan(e, phase, trainable, peaks))
    return plan


def phase_steps(plan: list[EpochPlan], steps_per_epoch: int) -> dict[int, int]:
    """Total optimizer steps of each phase: the T of its STLR cycle."""
    totals: dict[int, int] = {}
    for p in plan:
        totals[p.phase] = totals.get(p.phase, 0) + steps_per_epoch
    return totals


def lr_trace(plan: list[EpochPlan], steps_per_epoch: int, cut_frac: float, ratio: float) -> Iterator[tuple[float, ...]]:
    """The rate of every group at every optimizer step of the run (0.0 while frozen), as loop.fit sets it:
    each phase runs one STLR cycle over its T steps, restarting when gradual unfreezing opens a new phase.
    Lazy: a long pretraining run has millions of steps."""
    totals = phase_steps(plan, steps_per_epoch)
    phase, t = None, 0
    for ep in plan:
        if ep.phase != phase:
            phase, t = ep.phase, 0
        for _ in range(steps_per_epoch):
            mult = stlr(t, totals[phase], cut_frac, ratio)
            yield tuple(peak * mult for peak in ep.peak_lrs)
            t += 1
