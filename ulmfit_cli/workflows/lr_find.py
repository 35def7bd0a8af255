"""`ulmfit lr-find`: the learning-rate range test (Smith 2015; fastai's `Learner.lr_find`), for one stage.

The rate grows exponentially from `start_lr` to `end_lr` over `num_it` optimizer steps of the stage's model and
data; the loss is smoothed as fastai's Recorder does (exponential moving average, beta 0.98, debiased) and the
test stops once the smoothed loss exceeds 4x its minimum (fastai's stop_div). Every rule reads the curve as
fastai's lr_find slices it (from step num_it // 10 to the last 5) and all are reported; the suggestion is
RULE's:
  bottom    the bottom of fastai's valley: the last, lowest point of the longest run of falling loss. --lr is the
            peak of the stage's slanted triangular schedule, and Smith's range test puts a one-cycle peak where
            the loss stops falling, not halfway down (fastai's valley, made for a constant rate, is 4-10x lower
            there); a long run is needed, so a noise dip on a flat stretch is not taken
  lowest    the rate at the lowest smoothed loss (on a flat, noisy curve that can be any rate)
  minimum   fastai's `minimum`: that rate / 10 (fastai v1's advice)
  valley    fastai's `valley` (its default): halfway into the longest stretch of falling loss
  slide     fastai's `slide`: where the slope starts to change quickly, from the divergence end
  steep     fastai's `steep`: where the loss falls fastest against log(rate)

Unlike fastai's lr_find, which gives every parameter group the same rate, the rate tested is the top layer
group's and each lower group gets it divided by --lr-factor per group, as the stage trains: what is found is
the stage's `--lr`. Every group is trainable (finetune-clf's gradual unfreezing opens all groups after its
first epochs and spends most of its steps so; fastai's notebooks run lr_find on the unfrozen classifier as
well). Nothing is written: no run folder, and the parent is only read.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from .. import tasks
from ..config import RunConfig
from ..data.batches import LMStream, classifier_batches
from ..data.readers import Source, open_corpus
from ..data.tokenizer import PAD_ID, encode_stream, load_tokenizer
from ..errors import InputError
from ..models import backbone
from ..runfolder import artifacts
from ..training import stage_parts as parts
from ..training.schedule import discriminative_lrs

BETA = 0.98  # fastai Recorder's smoothing
DIVERGE = 4.0  # fastai LRFinder: stop once the smoothed loss is above 4x its minimum


def longest_valley(losses: list[float]) -> tuple[int, int]:
    """fastai's valley analysis: (start, end) of the longest strictly decreasing subsequence of the loss, end its
    last (lowest) point (O(n^2), n <= a few hundred)."""
    n = len(losses)
    lds, max_start, max_end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end, max_start = i, i - lds[i]
    return max_start, max_end


def valley(lrs: list[float], losses: list[float]) -> int:
    """fastai's `valley`: the index halfway into the longest valley (a third, then a sixth of its length)."""
    start, end = longest_valley(losses)
    sections = (end - start) / 3
    return start + int(sections) + int(sections / 2)


def steep(lrs: list[float], losses: list[float]) -> int:
    """fastai's `steep`: the start of the step where the loss falls fastest against log(rate)."""
    grads = np.diff(np.asarray(losses)) / np.diff(np.log(np.asarray(lrs)))
    return int(np.argmin(grads))


def slide(lrs: list[float], losses: list[float], lr_diff: int = 15, thresh: float = 0.005) -> float:
    """fastai's `slide` (interval slide rule): walking back from the end, the rate `lr_diff` steps before the
    first pair of points whose loss slopes differ by at most `thresh`. A rate, not an index. (fastai fails on a
    curve of `lr_diff` points or fewer; here the interval shrinks to fit.)"""
    grad = np.gradient(np.asarray(losses, dtype=float))
    r, left = -1, -1 - min(lr_diff, len(losses) - 2)
    found = lrs[left]
    while left >= -len(losses) and abs(grad[r] - grad[left]) > thresh:
        found = lrs[left]
        r, left = r - 1, left - 1
    return float(found)


RULES = ("bottom", "lowest", "minimum", "valley", "slide", "steep")
RULE = "bottom"


def suggest(lrs: list[float], losses: list[float], num_it: int, rule: str = RULE) -> dict:
    """Every rule's rate from the recorded (rate, smoothed loss) pairs, on fastai's slice [num_it // 10 : -5];
    `suggested_lr` is `rule`'s."""
    lo, hi = num_it // 10, len(lrs) - 5
    if hi - lo < 3:
        raise InputError(
            f"the loss diverged after {len(lrs)} of {num_it} steps, too early to suggest a rate; "
            "lower --start-lr or give more steps with --num-it"
        )
    xs, ys = lrs[lo:hi], losses[lo:hi]
    low = int(np.argmin(ys))
    rates = {
        "bottom": xs[longest_valley(ys)[1]],
        "lowest": xs[low],
        "minimum": xs[low] / 10,
        "valley": xs[valley(xs, ys)],
        "slide": slide(xs, ys),
        "steep": xs[steep(xs, ys)],
    }
    lr = rates[rule]
    return {
        "rule": rule,
        "suggested_lr": lr,
        "suggested_loss": float(np.interp(np.log(lr), np.log(xs), ys)),
        "suggestions": rates,
        "steep_lr": rates["steep"],
    }


def range_test(model, groups, batches, loss_fn, cfg: RunConfig, start_lr: float, end_lr: float, num_it: int):
    """Train `num_it` steps at exponentially growing rates; returns (top group's rates, smoothed losses)."""
    import torch

    from .. import dist
    from ..training.loop import make_optimizer

    device = next(model.parameters()).device
    for p in model.parameters():
        p.requires_grad_(True)
    params = [p for g in groups for p in g]
    opt = make_optimizer(groups, cfg)
    mults = discriminative_lrs(1.0, len(groups), cfg.lr_factor, parts.head_mult(cfg))
    lrs, losses, avg, best = [], [], 0.0, math.inf
    model.train()
    model.reset()
    for i, batch in enumerate(itertools.islice(batches, num_it)):
        lr = start_lr * (end_lr / start_lr) ** (i / num_it)  # fastai SchedExp at pos = train_iter / num_it
        for pg, m in zip(opt.param_groups, mults):
            pg["lr"] = lr * m
        with dist.autocast(device, cfg.precision):
            loss, shown = loss_fn(dist.to_device(batch, device))
        if not math.isfinite(shown):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        avg = BETA * avg + (1 - BETA) * shown
        smooth = avg / (1 - BETA ** (i + 1))
        lrs.append(lr)
        losses.append(smooth)
        best = min(best, smooth)
        if smooth > DIVERGE * best:
            break
    return lrs, losses


def _cycle(make):
    """Batches without end: `make(epoch)` again and again (a short dataset is gone through several times)."""
    for epoch in itertools.count():
        yield from make(epoch)


def lm_setup(cfg: RunConfig, parent: artifacts.Run | None, sources: list[Source], text_col: str, num_it: int, reporter):
    """The LM, its groups, batches and loss for pretrain (no parent: a tokenizer is trained, in memory only) or
    finetune-lm. Only the first tokens the test needs are encoded: (num_it + 1) windows of every row."""
    from ..training.loop import lm_loss

    corpora = [open_corpus(s, text_col) for s in sources]
    words = parts.word_vocab(parent)
    if words is not None:
        tok = parts.target_vocab(words, corpora, reporter)
    elif parent is not None:
        tok = load_tokenizer(parent.file("tokenizer"))
    else:
        tok = parts.sample_tokenizer(cfg, corpora, reporter)
    need = ((num_it + 1) * cfg.bptt + 2) * cfg.bs
    ids = encode_stream(tok, (t for c in corpora for b in c.batches() for t in b), need)
    stream = LMStream(ids, cfg.bs, cfg.bptt, cfg.backwards)
    if len(stream) == 0:
        raise InputError(f"the corpus has {len(ids)} tokens, too few for --bs {cfg.bs} x --bptt {cfg.bptt}")
    model = parts.place(parts.parent_lm(cfg, parent, words, tok), cfg)
    bb = backbone(cfg.backbone)
    _, groups = bb.lm_groups(model)
    reporter.info(f"lr-find: {len(ids):,} tokens, {len(stream)} batches of {cfg.bs} x {cfg.bptt}")
    objective = bb.lm_objective(cfg, tok) or (lambda batches, seed: batches)  # an encoder's masking, as the stage's
    return model, groups, _cycle(lambda e: objective(stream.batches(e % cfg.bptt), cfg.seed + e)), lm_loss(model, cfg)


def clf_setup(cfg: RunConfig, parent: artifacts.Run, src: Source, text_col: str, label_col: str, reporter):
    """The classifier (encoder from the parent LM), its groups, batches of the training split and its loss."""
    from ..inference.predictor import docs_of

    _, task, classes, (texts, labels), _ = parts.clf_tables(cfg, src, None, text_col, label_col)
    tok = load_tokenizer(parent.file("tokenizer"))
    docs = docs_of(tok, texts, cfg)
    target = tasks.target_stats(labels) if task == tasks.REGRESSION else None
    y = tasks.encode(task, labels, classes, target)
    bb = backbone(cfg.backbone)
    model = parts.build_classifier(cfg, parent, tok.get_vocab_size(), tasks.n_outputs(task, classes))
    parts.place(model, cfg)
    _, groups = bb.classifier_groups(model)
    reporter.info(f"lr-find: {len(docs)} training documents, {task}, {-(-len(docs) // cfg.bs)} batches per pass")

    def batches(e):
        rng = np.random.default_rng([cfg.seed, e])
        return ((x, yb) for _, x, yb in classifier_batches(docs, y, cfg.bs, cfg.bptt, PAD_ID, rng, bb.pad_batch))

    def loss_fn(batch):
        x, yb = batch
        loss = tasks.loss(task, model(x)[0], yb)
        return loss, loss.item()

    return model, groups, _cycle(batches), loss_fn


def lr_find(
    stage: str,
    cfg: RunConfig,
    parent: artifacts.Run | None,
    sources: list[Source],
    *,
    text_col: str = "text",
    label_col: str = "label",
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    rule: str = RULE,
    png: Path | None = None,
    reporter,
) -> dict:
    """Run the range test for `stage`; returns the suggestion, the curve and (when `png`) the picture's path."""
    if not 0 < start_lr < end_lr:
        raise InputError(f"`--start-lr` ({start_lr}) must be > 0 and below `--end-lr` ({end_lr})")
    if rule not in RULES:
        raise InputError(f"`--rule` must be one of {', '.join(RULES)}, got {rule!r}")
    if num_it < 10:
        raise InputError(f"`--num-it` must be >= 10, got {num_it}")
    from .. import dist

    dist.seed_all(cfg.seed)
    if stage == "finetune-clf":
        model, groups, batches, loss_fn = clf_setup(cfg, parent, sources[0], text_col, label_col, reporter)
    else:
        model, groups, batches, loss_fn = lm_setup(cfg, parent, sources, text_col, num_it, reporter)
    lrs, losses = range_test(model, groups, batches, loss_fn, cfg, start_lr, end_lr, num_it)
    found = suggest(lrs, losses, num_it, rule)
    out = {
        "stage": stage,
        **found,
        "group_lrs": discriminative_lrs(found["suggested_lr"], len(groups), cfg.lr_factor, parts.head_mult(cfg)),
        "lr_factor": cfg.lr_factor,
        "head_lr_mult": parts.head_mult(cfg),
        "preset_lr": cfg.lr,
        "steps": len(lrs),
        "num_it": num_it,
        "lrs": lrs,
        "losses": losses,
        "png": None,
    }
    if png is not None:
        from ..training import plots

        plots.lr_find(lrs, losses, found["suggested_lr"], found["suggested_loss"], png, f"lr-find: {stage}")
        out["png"] = str(png)
    return out
