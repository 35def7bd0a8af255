"""The contrastive step before the classifier (SetFit's idea, Tunstall et al. 2022): with a handful of labelled
rows, first teach the pretrained body that texts of one class belong together and texts of two classes apart,
then train the classifier on top.

Pairs are drawn from the labelled rows, half of one class and half of two (SetFit balances them the same way),
each pair's two texts pooled as the classifier pools them, and the loss is sentence-transformers'
CosineSimilarityLoss: the squared difference between the pair's cosine similarity and 1 (same class) or 0. The
body trains by ULMFiT's layer groups, every group at once at one rate (--contrastive-lr), on one slanted
triangular cycle; the head is not touched. Its turn comes next: where every epoch trains the head alone, it reads
the body's features computed once (head_features), as SetFit fits its head on frozen embeddings; the linear head
(--head auto's choice there) is fitted whole as a logistic regression (fit_linear_head), the paper's by loop.fit.
"""

from __future__ import annotations

import numpy as np

from ..config import RunConfig
from .loop import make_optimizer
from .schedule import stlr


def pairs(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` pairs (i, j, same) of row indices, i != j, in random order: half of one class (drawn over the classes
    that have two rows or more, the class first, so a large class does not crowd out the others), half of two
    different classes; (n, 3) int64. A task where no class has two rows gets only the second kind, and one class
    alone only the first."""
    classes = np.unique(y)
    rows = {c: np.flatnonzero(y == c) for c in classes}
    twos = [c for c in classes if len(rows[c]) >= 2]
    n_same = n // 2 if len(classes) > 1 else n
    if not twos:
        n_same = 0
    out = np.zeros((n, 3), dtype=np.int64)
    for k in range(n):
        if k < n_same:
            c = twos[rng.integers(len(twos))]
            i, j = rng.choice(rows[c], size=2, replace=False)
            out[k] = (i, j, 1)
        else:
            a, b = rng.choice(classes, size=2, replace=False)
            out[k] = (rng.choice(rows[a]), rng.choice(rows[b]), 0)
    return out[rng.permutation(n)]  # the kinds mixed: every batch of pairs has both


FEW = 64  # labelled rows a class, on average, up to which --contrastive-steps -1 (auto) runs the step
AUTO_MAX = 500  # auto's ceiling on steps: SetFit's pair count grows with the square of the rows


def few(counts) -> bool:
    """Whether a task's labelled rows (`counts`: rows per class) are few enough for the few-labels recipe: two
    classes or more, with at most FEW rows a class on average. The average, not the rarest class: 1,000 TREC-6
    questions hold 18 of ABBR, but their other classes have rows enough to fine-tune the whole model on."""
    counts = [int(c) for c in counts if c > 0]
    return len(counts) >= 2 and sum(counts) <= FEW * len(counts)


def auto_steps(y: np.ndarray, bs: int) -> int:
    """--contrastive-steps -1: as many pairs as SetFit draws by default (every pair of rows of two different
    classes, twice: as many positive pairs again), `bs` pairs a step, at most AUTO_MAX steps; none unless the
    rows are `few` (with more, the classifier alone has rows enough)."""
    counts = np.bincount(y)
    counts = counts[counts > 0]
    if not few(counts):
        return 0
    different = (counts.sum() ** 2 - (counts**2).sum()) // 2
    return int(min(AUTO_MAX, -(-2 * different // bs)))


def applies(cfg: RunConfig, task: str) -> bool:
    """Whether a run can take the step: classes to pair, and a backbone and head that pool (the AWD-LSTM's does
    not; --head hf pools as transformers does)."""
    from ..tasks import SINGLE

    return task == SINGLE and cfg.backbone != "awd-lstm" and cfg.head != "hf"  # --head hf: transformers' pooling


def steps_of(cfg: RunConfig, y: np.ndarray) -> int:
    return auto_steps(y, cfg.bs) if cfg.contrastive_steps < 0 else cfg.contrastive_steps


def head_alone(cfg: RunConfig, pair_steps: int) -> bool:
    """Whether, after `pair_steps` contrastive steps, every epoch trains the head alone (on the body's features,
    computed once): one epoch, which gradual unfreezing gives to the head (the top group of the two or more every
    backbone with the step has). --head auto is then linear."""
    return pair_steps > 0 and cfg.epochs == 1 and cfg.gradual_unfreezing


def fit_linear_head(model, frozen, y: np.ndarray, weights, evaluate, reporter) -> list[dict]:
    """The linear head fitted to the body's features `frozen` (models/heads.py: SetFit's logistic regression,
    `weights` per class as --class-weights gives them), validated as an epoch's end would be; the one-row
    history loop.fit would return."""
    import time

    import torch

    from ..models.heads import fit_logistic

    t0 = time.time()
    reporter.info(f"fitting the linear head to the features of the {len(y)} labelled documents (logistic regression)")
    train_loss = fit_logistic(model.head, frozen, torch.as_tensor(y, device=frozen.device), weights)
    model.eval()
    with torch.no_grad():
        metrics = evaluate()
    row = {"epoch": 1, "train_loss": train_loss, **metrics}
    seconds = time.time() - t0
    reporter.trained_outside_loop(seconds)
    reporter.epoch_end({**row, "time_s": round(seconds, 1)})
    for p in model.parameters():
        p.requires_grad_(True)
    return [row]


def cosine_similarity_loss(u, v, same):
    """sentence-transformers' CosineSimilarityLoss: mean squared error of cos(u, v) against the pair's label."""
    import torch.nn.functional as F

    return F.mse_loss(F.cosine_similarity(u.float(), v.float()), same.float())


SHARES = 2  # a step's texts go through the body in this many forwards of similar lengths


def pooled(model, texts: list[np.ndarray], pad, bptt: int, device):
    """model.features of `texts` (in their order), computed in SHARES forwards of texts of similar length: the
    pairs are drawn at random, so one forward of them all would pad every text to the longest of the step."""
    import torch

    from ..data.tokenizer import PAD_ID

    order = np.argsort([len(t) for t in texts], kind="stable")
    parts = [
        model.features(torch.as_tensor(pad([texts[i] for i in share], PAD_ID, bptt)).to(device))
        for share in np.array_split(order, min(SHARES, len(texts)))
    ]
    return torch.cat(parts)[torch.as_tensor(np.argsort(order), device=device)]


def head_features(model, docs: list[np.ndarray], cfg: RunConfig, pad):
    """The pooled features of every document through the body in eval mode, computed once (float32, on the
    model's device): after the contrastive step the classifier's head trains alone on the frozen body, as
    SetFit fits its head on the body's embeddings, so the body need not run again at every step."""
    import torch

    from .. import dist

    device = next(model.parameters()).device
    order = np.argsort([len(d) for d in docs], kind="stable")  # batches of similar lengths, as predict makes them
    out = None
    was = model.training
    model.eval()
    with torch.no_grad(), dist.autocast(device, cfg.precision):
        for start in range(0, len(docs), cfg.bs):
            rows = order[start : start + cfg.bs]
            feats = pooled(model, [docs[i] for i in rows], pad, cfg.bptt, device).float()
            if out is None:
                out = torch.zeros(len(docs), feats.shape[1], device=device)
            out[torch.as_tensor(rows, device=device)] = feats
    model.train(was)
    return out


def train_body(model, groups: list[list], docs: list[np.ndarray], y: np.ndarray, cfg: RunConfig, pad, reporter):
    """`steps_of(cfg, y)` optimizer steps of the contrastive loss on pairs of `docs` (labels `y`), `cfg.bs`
    pairs a step, every layer group below the head at --contrastive-lr. Returns the mean loss of the first
    and of the last tenth of the steps, for the manifest."""
    import time

    import torch

    from .. import dist

    t0 = time.time()
    steps = steps_of(cfg, y)
    device = next(model.parameters()).device
    body = groups[:-1]  # the top group holds the head: the classifier's to train
    # one rate for every group, as SetFit trains: discriminative rates (--lr 2e-4 over 2.6 a group) left the lower
    # layers at 1e-5 and scored 10 points under one rate of 2e-5 or 5e-5 on TREC-6 at 8 a class
    rates = [cfg.contrastive_lr] * len(body)
    opt = make_optimizer(body, cfg, rates)
    rng = np.random.default_rng([cfg.seed, 1 << 20])  # apart from the classifier's epochs' streams
    chosen = pairs(y, steps * cfg.bs, rng).reshape(steps, cfg.bs, 3)
    losses = []
    model.train()
    reporter.info(f"contrastive step: {steps} steps of {cfg.bs} pairs of the {len(docs)} labelled documents")
    for t, batch in enumerate(chosen):
        for g, lr in zip(opt.param_groups, rates):
            g["lr"] = lr * stlr(t, steps, cfg.cut_frac, cfg.ratio)
        texts = [docs[i] for i in batch[:, 0]] + [docs[j] for j in batch[:, 1]]
        with dist.autocast(device, cfg.precision):
            feats = pooled(model, texts, pad, cfg.bptt, device)
        u, v = feats[: len(batch)], feats[len(batch) :]
        loss = cosine_similarity_loss(u, v, torch.as_tensor(batch[:, 2], device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_([p for g in body for p in g], cfg.clip)
        opt.step()
        losses.append(loss.item())
    tenth = max(1, steps // 10)
    first, last = float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))
    reporter.info(f"contrastive step: loss {first:.4f} -> {last:.4f}")
    seconds = time.time() - t0
    reporter.trained_outside_loop(seconds)
    return {
        "steps": steps,
        "pairs_per_step": cfg.bs,
        "loss_first": first,
        "loss_last": last,
        "time_s": round(seconds, 1),
    }
