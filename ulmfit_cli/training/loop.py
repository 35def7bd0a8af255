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
from contextlib import contextmanager
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
    state = checkpoint.TrainState()
    if resume and ckpt_dir is not None and checkpoint.find(ckpt_dir) is not None:
        state = checkpoint.restore(ckpt_dir, model, opt)
        reporter.info(f"resuming at epoch {state.epoch + 1}, step {state.step}")
    start_epoch, start_step = state.epoch, state.step

    def save() -> None:
        if ckpt_dir is not None and main:  # data-parallel: rank 0 writes, the others resume from its checkpoints
            checkpoint.save(ckpt_dir, model, opt, state)

    reporter.fit_start(len(plan[start_epoch:]) * steps_per_epoch - start_step)  # steps left; the estimate follows
    with _closing(diag), _deferred_signals() as received:
        for ep in plan[start_epoch:]:
            if select is not None and select.should_stop(state.history):  # also a run killed just after deciding so
                break
            mid_epoch = ep.epoch == start_epoch and start_step > 0  # resumed: hidden state and sums restored
            if ep.phase != state.phase:
                state.phase, state.phase_t = ep.phase, 0
            trainable = _unfreeze(groups, ep.trainable)
            reporter.epoch_start(ep.epoch, len(plan), steps_per_epoch, ",".join(group_names[g] for g in ep.trainable))
            model.train()
            first = start_step if mid_epoch else 0
            if not mid_epoch:
                model.reset()
                state.tot, state.n = 0.0, 0
            state.epoch = ep.epoch
            t0 = time.time()
            for step, batch in enumerate(itertools.islice(batches(ep.epoch), first, steps_per_epoch), start=first):
                mult = stlr(state.phase_t, totals[state.phase], cfg.cut_frac, cfg.ratio)
                for pg, peak in zip(opt.param_groups, ep.peak_lrs):
                    pg["lr"] = peak * mult
                with dist.autocast(device, cfg.precision):
                    loss, shown = loss_fn(dist.to_device(batch, device))
                _check_finite(loss, ep.epoch, step, cfg.lr, ckpt_dir, caller.lower_lr if caller is not None else None)
                _update(opt, scaler, loss, trainable, diag, cfg.clip)
                state.step, state.phase_t = step + 1, state.phase_t + 1
                state.tot, state.n = state.tot + shown, state.n + 1
                lrs = {name: pg["lr"] for name, pg in zip(group_names, opt.param_groups)}
                reporter.step(shown, lrs, ep.epoch * steps_per_epoch + step + 1)
                if received:
                    save()
                    _stop(received)
                if checkpoint_every and (ep.epoch * steps_per_epoch + step + 1) % checkpoint_every == 0:
                    save()
            _close_epoch(state, ep.epoch, model, evaluate, diag, select, cfg.precision, reporter, t0)
            state.epoch, state.step = ep.epoch + 1, 0
            save()
            if received:
                _stop(received)
            if select is not None and select.should_stop(state.history):
                reporter.info(
                    f"stopping early after epoch {ep.epoch + 1}: no better validation {select.metric} "
                    f"for {select.patience} epoch(s) (--patience)"
                )
    for p in model.parameters():
        p.requires_grad_(True)
    best = state.best
    if select is not None and select.keep == "best" and best is not None and best[0] != len(state.history) - 1:
        model.load_state_dict(best[1])
    return state.history


@contextmanager
def _deferred_signals():
    """Ctrl-C and SIGTERM noted rather than acted on, so that training stops between steps, after a checkpoint;
    yields the list of signals received, and puts the previous handlers back on the way out."""
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum)) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop(received: list[int]):
    raise Terminated if signal.SIGTERM in received else KeyboardInterrupt


@contextmanager
def _closing(diag):
    """The diagnostics' hooks come off the model however training ends."""
    try:
        yield
    finally:
        if diag is not None:
            diag.close()


def _check_finite(loss, epoch: int, step: int, lr: float, ckpt_dir: Path | None, lower_lr: str | None) -> None:
    """A NaN or infinite loss on any data-parallel process stops every one, with what to do (`lower_lr`: the
    running command's way to a lower rate, Caller.lower_lr)."""
    import torch

    from .. import dist
    from . import checkpoint

    if not dist.all_finite(bool(torch.isfinite(loss))):
        kept = checkpoint.find(ckpt_dir or Path("/nonexistent")) is not None
        raise TrainingError(
            f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; " + _lower_lr_advice(lr, kept, lower_lr)
        )


def _unfreeze(groups: list[list], trainable: tuple[int, ...]) -> list:
    """Gradients for the epoch's trainable layer groups only; returns their parameters."""
    for g, params in enumerate(groups):
        for p in params:
            p.requires_grad_(g in trainable)
    return [p for g in trainable for p in groups[g]]


def _update(opt, scaler, loss, trainable: list, diag, clip: float) -> None:
    """One optimizer step on `loss`: its gradients (scaled under fp16 so small ones do not underflow) averaged
    over the data-parallel processes, read by the diagnostics, clipped to `clip`."""
    import torch

    from .. import dist

    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    dist.average_grads(trainable)
    if diag is not None:
        diag.after_backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(trainable, clip)
    scaler.step(opt)
    scaler.update()


def _close_epoch(state, epoch: int, model, evaluate, diag, select, precision: str, reporter, t0: float) -> None:
    """Validate the epoch's model and add its row to the history (rank 0's row, for every process); under
    `--keep best`, a copy of the weights of a new best epoch becomes `state.best`."""
    import torch

    from .. import dist

    model.eval()
    model.reset()
    with torch.no_grad(), dist.autocast(next(model.parameters()).device, precision):
        metrics = evaluate()
    row = dist.from_main({"epoch": epoch + 1, "train_loss": state.tot / max(state.n, 1), **metrics})
    reporter.epoch_end({**row, "time_s": round(time.time() - t0, 1)})
    state.history.append({**row, **(diag.epoch() if diag is not None else {})})
    if select is not None and select.keep == "best" and select.best(state.history) == epoch:
        state.best = (epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})


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
