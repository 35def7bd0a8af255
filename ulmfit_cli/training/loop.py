"""One training loop for the three stages: discriminative rates, STLR per phase, gradual unfreezing.

Written against plain torch rather than fastai's Learner so that the schedule is exactly the paper's
(fastai has no STLR and spaces rates between two ends, see schedule.py) and every step's state is ours
to checkpoint. The models and layer groups are fastai's.
"""

from __future__ import annotations

import itertools
import math
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import Terminated, TrainingError
from .schedule import EpochPlan, phase_steps, stlr

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _lower_lr_advice(lr: float, kept: bool, how: str | None) -> str:
    """What to do after a NaN loss: a lower rate, given the way the running command takes it (Caller.lower_lr)."""
    if how is not None:  # a stage of pipeline/learning-curve: its settings come from the command's --*-set
        return f"try a lower rate (now {lr:g}): " + how.format(lr=f"{lr / 10:g}")
    then = "; the last good checkpoint is kept: rerun the same command with --resume and a lower --lr" if kept else ""
    return f"try a lower --lr (now {lr:g}, e.g. {lr / 10:g}){then}"


@dataclass(frozen=True)
class Selection:
    """Which epoch's weights a run publishes, as the paper chose epochs on validation: the best by `metric`
    (ties go to the lower validation loss, then to the earlier epoch), or the last (`keep`); and the early stop
    once `patience` epochs from `from_epoch` on (0-based; with gradual unfreezing, the first epoch that trains
    every group) have brought no new best. Everything follows from the per-epoch history alone, so a resumed
    run decides exactly as an uninterrupted one would."""

    metric: str  # the key of the validation row judged: accuracy, micro_f1, mae, valid_loss
    higher: bool  # whether a larger value is better
    keep: str = "best"  # best | last
    patience: int = 0  # 0: never stop early
    from_epoch: int = 0
    few_valid: int | None = None  # `--keep auto` chose last: this many validation documents (stage_parts.selection)

    def _score(self, row: dict) -> tuple | None:
        v = row.get(self.metric)
        if v is None or not math.isfinite(v):
            return None
        loss = row.get("valid_loss", math.inf)
        return (v if self.higher else -v, -loss if math.isfinite(loss) else -math.inf)

    def best(self, history: list[dict]) -> int | None:
        """Index of the best epoch in `history`, or None when no epoch has a (finite) validation metric."""
        best, top = None, None
        for i, row in enumerate(history):
            s = self._score(row)
            if s is not None and (top is None or s > top):
                best, top = i, s
        return best

    def should_stop(self, history: list[dict]) -> bool:
        """Whether the last `patience` epochs counted (those from `from_epoch` on) all came after the best."""
        if not self.patience:
            return False
        b = self.best(history)
        counted = len(history) - max(self.from_epoch, (b + 1) if b is not None else 0)
        return b is not None and counted >= self.patience


def make_optimizer(groups: list[list], cfg, lrs: list[float] | None = None):
    """AdamW over the layer groups (each its own parameter group, at `lrs` or 0 until the schedule sets them),
    fused where torch has the fused kernel for the parameters' device: on a CPU its step is several times faster
    than the default's, a sizeable share of a small model's training step."""
    import torch

    params = [p for g in groups for p in g]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(
        [{"params": g, "lr": lr} for g, lr in zip(groups, lrs or [0.0] * len(groups))],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        weight_decay=cfg.wd,
        fused=fused or None,
    )


def fit(
    model,
    groups: list[list],
    group_names: list[str],
    plan: list[EpochPlan],
    steps_per_epoch: int,
    batches: Callable[[int], Iterable],
    loss_fn: Callable,
    evaluate: Callable[[], dict],
    cfg,
    reporter,
    ckpt_dir: Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    select: Selection | None = None,
    caller=None,
) -> list:
    """Train `model` along `plan`. `batches(epoch)` yields training batches, `loss_fn(batch)` returns
    (loss to minimise, loss to report), `evaluate()` returns validation metrics. Returns per-epoch rows.

    With `select`, the weights of the best validation epoch are kept aside (and in every checkpoint), training
    stops early after `select.patience` epochs without a new best, and the model ends with the weights
    `select.keep` names; rank 0's validation row decides for every data-parallel process.

    Transformer runs also record, per epoch, each block's mean gradient norm and the cosine similarity of its
    output to its input (`grad_norm`, `layer_cos`: lists, bottom block first; see diagnostics.py).

    With `ckpt_dir`, a checkpoint is saved at every epoch end, every `checkpoint_every` steps of the run, and on
    Ctrl-C or SIGTERM (after the step in progress, then KeyboardInterrupt, or its subclass Terminated for SIGTERM);
    with `resume`, training continues from it. `caller` (artifacts.Caller) words the advice after a NaN loss.
    """
    import torch

    from .. import dist
    from ..models import backbone
    from . import checkpoint
    from .diagnostics import LayerDiagnostics

    layers = backbone(cfg.backbone).diagnosed_layers(model)
    diag = LayerDiagnostics(layers) if layers else None
    device = next(model.parameters()).device
    main = dist.world().main
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")  # fp16 only: a no-op otherwise
    opt = make_optimizer(groups, cfg)
    totals = phase_steps(plan, steps_per_epoch)
    history, start_epoch, start_step, phase, phase_t, tot, n = [], 0, 0, None, 0, 0.0, 0
    best: tuple[int, dict] | None = None  # (0-based epoch, a copy of its weights) under `select`
    if resume and ckpt_dir is not None and checkpoint.find(ckpt_dir) is not None:
        pos = checkpoint.restore(ckpt_dir, model, opt)
        history, start_epoch, start_step = pos["history"], pos["epoch"], pos["step"]
        phase, phase_t, tot, n = pos["phase"], pos["phase_t"], pos["tot"], pos["n"]
        best = pos.get("best")
        reporter.info(f"resuming at epoch {start_epoch + 1}, step {start_step}")

    def save(epoch: int, step: int) -> None:
        if ckpt_dir is not None and main:  # data-parallel: rank 0 writes, the others resume from its checkpoints
            pos = dict(epoch=epoch, step=step, phase=phase, phase_t=phase_t, tot=tot, n=n, history=history)
            checkpoint.save(ckpt_dir, model, opt, pos, best)

    reporter.fit_start(len(plan[start_epoch:]) * steps_per_epoch - start_step)  # steps left; the estimate follows
    interrupted: list[int] = []  # the signals received: acted on once the step in progress is done

    def stop():
        raise Terminated if signal.SIGTERM in interrupted else KeyboardInterrupt

    previous = {s: signal.signal(s, lambda signum, _: interrupted.append(signum)) for s in STOP_SIGNALS}
    try:
        for ep in plan[start_epoch:]:
            if select is not None and select.should_stop(history):  # also a run killed just after deciding so
                break
            mid_epoch = ep.epoch == start_epoch and start_step > 0  # resumed: hidden state and sums restored
            if ep.phase != phase:
                phase, phase_t = ep.phase, 0
            for g, params in enumerate(groups):
                for p in params:
                    p.requires_grad_(g in ep.trainable)
            trainable = [p for g in ep.trainable for p in groups[g]]
            reporter.epoch_start(ep.epoch, len(plan), steps_per_epoch, ",".join(group_names[g] for g in ep.trainable))
            model.train()
            first = start_step if mid_epoch else 0
            if not mid_epoch:
                model.reset()
                tot, n = 0.0, 0
            t0 = time.time()
            for step, batch in enumerate(itertools.islice(batches(ep.epoch), first, steps_per_epoch), start=first):
                mult = stlr(phase_t, totals[phase], cfg.cut_frac, cfg.ratio)
                for pg, peak in zip(opt.param_groups, ep.peak_lrs):
                    pg["lr"] = peak * mult
                with dist.autocast(device, cfg.precision):
                    loss, shown = loss_fn(dist.to_device(batch, device))
                if not dist.all_finite(bool(torch.isfinite(loss))):
                    raise TrainingError(
                        f"loss became {loss.item()} at epoch {ep.epoch + 1}, step {step + 1}; "
                        + _lower_lr_advice(
                            cfg.lr,
                            checkpoint.find(ckpt_dir or Path("/nonexistent")) is not None,
                            caller.lower_lr if caller is not None else None,
                        )
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # fp16: scaled so small gradients do not underflow
                scaler.unscale_(opt)
                dist.average_grads(trainable)
                if diag is not None:
                    diag.after_backward()
                if cfg.clip:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.clip)
                scaler.step(opt)
                scaler.update()
                phase_t += 1
                tot, n = tot + shown, n + 1
                lrs = {name: pg["lr"] for name, pg in zip(group_names, opt.param_groups)}
                reporter.step(shown, lrs, ep.epoch * steps_per_epoch + step + 1)
                if interrupted:
                    save(ep.epoch, step + 1)
                    stop()
                if checkpoint_every and (ep.epoch * steps_per_epoch + step + 1) % checkpoint_every == 0:
                    save(ep.epoch, step + 1)
            model.eval()
            model.reset()
            with torch.no_grad(), dist.autocast(device, cfg.precision):
                metrics = evaluate()
            row = dist.from_main({"epoch": ep.epoch + 1, "train_loss": tot / max(n, 1), **metrics})
            reporter.epoch_end({**row, "time_s": round(time.time() - t0, 1)})
            history.append({**row, **(diag.epoch() if diag is not None else {})})
            if select is not None and select.keep == "best" and select.best(history) == ep.epoch:
                best = (ep.epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
            save(ep.epoch + 1, 0)
            if interrupted:
                stop()
            if select is not None and select.should_stop(history):
                reporter.info(
                    f"stopping early after epoch {ep.epoch + 1}: no better validation {select.metric} "
                    f"for {select.patience} epoch(s) (--patience)"
                )
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if diag is not None:
            diag.close()
    for p in model.parameters():
        p.requires_grad_(True)
    if select is not None and select.keep == "best" and best is not None and best[0] != len(history) - 1:
        model.load_state_dict(best[1])
    return history


def lm_loss(model, cfg):
    """Cross-entropy plus AR and TAR (fastai RNNRegularizer, alpha on the dropped-out last-layer output,
    beta on the step-to-step change of the raw one)."""
    import torch.nn.functional as F

    def loss_fn(batch):
        x, y = batch
        logits, raw_out, out = model(x)  # (B, T, V), (B, T, emb_sz), (B, T, emb_sz)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss = ce
        if cfg.alpha:
            loss = loss + cfg.alpha * out.float().pow(2).mean()
        if cfg.beta and raw_out.shape[1] > 1:
            loss = loss + cfg.beta * (raw_out[:, 1:] - raw_out[:, :-1]).float().pow(2).mean()
        return loss, ce.item()

    return loss_fn


def lm_evaluate(model, stream) -> dict:
    import torch.nn.functional as F

    device = next(model.parameters()).device
    tot, correct, n = 0.0, 0, 0
    for x, y in stream.batches(0):
        x, y = x.to(device), y.to(device)
        logits = model(x)[0].float()
        tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        scored = y != -100  # a masked LM predicts the masked tokens only (cross_entropy's ignore_index)
        correct += ((logits.argmax(-1) == y) & scored).sum().item()
        n += scored.sum().item()
    if n == 0:
        return {}
    loss = tot / n
    return {"valid_loss": loss, "perplexity": math.exp(min(loss, 50)), "accuracy": correct / n}
