"""What every training stage shares: the layer-group plan, the model a stage starts from (parent_lm,
build_classifier) and placing it on its device, the run writer's life cycle, the manifest, the pictures and the
summary (seeding is `dist.seed_all`). `stages`, `workflows.lr_find` and the importers build on these; this module
imports nothing above it."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import configfile, tasks
from ..config import RunConfig
from ..data.batches import LMStream, check_trainable, held_out, split_valid
from ..data.readers import Source, read_table
from ..data.tokenizer import file_sha256
from ..data.words import WordVocab
from ..errors import InputError, WriteError
from ..models import backbone
from ..runfolder import adapter_runs, artifacts
from .schedule import unfreeze_plan

# `--keep auto` (the default) keeps the best epoch only when the classifier's validation set has at least this many
# documents, else the last. Below it, the best of 16-25 epochs by a few dozen documents' accuracy is mostly noise
# and is often an early, under-trained epoch: on TREC-6 and SST-2 (tiny, 2 seeds, 3 variants) with 10 / 30 / 100
# validation documents the last epoch had 7.5 / 3.2 / 1.4 points less test error on average (better in 15 of 18
# cells, worse in 2 by at most 0.8); with 200 the two were within the seeds' spread.
# An LM's validation set is tokens, always enough.
MIN_VALID_TO_CHOOSE = 200


def selection(stage: str, cfg: RunConfig, task: str | None = None, n_valid: int | None = None):
    """How a stage chooses the epoch it publishes (loop.Selection): an LM stage by validation loss, a classifier
    by its task's metric, on `n_valid` validation documents (`--keep auto`: the best epoch from
    MIN_VALID_TO_CHOOSE documents on, else the last); patience counts only from the first epoch that trains every
    layer group, since an epoch with frozen groups is not yet the model being tuned."""
    from .loop import Selection

    metric, higher = ("valid_loss", False) if task is None else tasks.selection_metric(task, cfg.metric)
    _, plan = plan_of(stage, cfg)
    last = next((p.epoch for p in plan if p.phase == plan[-1].phase), 0)
    keep, few = cfg.keep, None
    if keep == "auto":
        few = n_valid if n_valid is not None and n_valid < MIN_VALID_TO_CHOOSE else None
        keep = "last" if few is not None else "best"
    return Selection(metric, higher, keep, cfg.patience, last, few_valid=few)


def passes_per_epoch(cfg: RunConfig, steps_per_epoch: int, n_docs: int, reporter) -> int:
    """How many times an epoch reads the training documents so that the run has `--min-steps` optimizer steps:
    a few labelled rows make a step or two an epoch, and a schedule of eight steps leaves a fresh head where it
    started. The epochs keep their meaning (gradual unfreezing, validation, checkpoints: one each); each just
    reads the rows more than once. Said on stderr when it is more than once."""
    if not cfg.min_steps or steps_per_epoch < 1 or cfg.epochs < 1 or cfg.epochs * steps_per_epoch >= cfg.min_steps:
        return 1
    passes = -(-cfg.min_steps // (cfg.epochs * steps_per_epoch))
    reporter.info(
        f"{n_docs} training documents make {steps_per_epoch} step(s) an epoch: each of the {cfg.epochs} epochs "
        f"reads them {passes} times ({passes * steps_per_epoch} steps), for --min-steps {cfg.min_steps}"
    )
    return passes


def kept(select, history: list, planned: int) -> dict:
    """The manifest's record of the choice: the best epoch (1-based) and its row, the epoch whose weights were
    published, and whether training stopped before the planned epochs."""
    b = select.best(history)
    k = b if select.keep == "best" and b is not None else len(history) - 1
    return {
        "best_epoch": None if b is None else b + 1,
        "best": None if b is None else history[b],
        "kept_epoch": k + 1 if history else None,
        "stopped_early": len(history) < planned,
        "selection": {"metric": select.metric, "keep": select.keep, "patience": select.patience},
    }


def report_kept(select, history: list, reporter) -> None:
    """One line on stderr: which epoch's weights are published, and why."""
    if not history:
        return
    b, last = select.best(history), len(history)
    if b is None:
        reporter.info(f"no validation {select.metric}: keeping the last epoch ({last})")
        return
    value = f"{select.metric} {history[b][select.metric]:.4g}"
    if select.few_valid is not None:  # --keep auto chose the last epoch
        reporter.info(
            f"keeping the last epoch ({last}): {select.few_valid} validation documents are too few to choose an "
            f"epoch by (--keep auto chooses from {MIN_VALID_TO_CHOOSE}; --keep best to choose anyway); the best "
            f"was epoch {b + 1} ({value})"
        )
    elif select.keep == "last":
        reporter.info(f"keeping the last epoch ({last}, --keep last); the best was epoch {b + 1} ({value})")
    elif b + 1 == last:
        reporter.info(f"keeping the last epoch ({last}), the best on validation ({value})")
    else:
        was = f"{select.metric} {history[-1].get(select.metric, float('nan')):.4g}"
        reporter.info(f"keeping epoch {b + 1} of {last}, the best on validation ({value}; the last had {was})")


def manifest(
    stage: str,
    cfg: RunConfig,
    tok_path: Path,
    inputs: list[dict],
    parent,
    history: list,
    extra: dict,
    started: float,
    select=None,
    caller: artifacts.Caller = artifacts.ON_ITS_OWN,
) -> dict:
    return {
        "format": artifacts.FORMAT,
        "stage": stage,
        "backbone": cfg.backbone,
        "created": artifacts.now(),
        "complete": True,
        "files": {
            "config": artifacts.CONFIG,
            "tokenizer": artifacts.TOKENIZER,
            "weights": adapter_runs.ADAPTER if cfg.adapter != "none" else artifacts.WEIGHTS,
        },
        "tokenizer_sha256": file_sha256(tok_path),
        "inputs": inputs,
        "parent": None
        if parent is None
        else {
            "path": str(parent.path.resolve()),
            "stage": parent.stage,
            "weights_sha256": file_sha256(parent.file("weights")),
        },
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        **({"adapter": adapter_runs.record(parent, cfg, _kind(stage))} if cfg.adapter != "none" else {}),
        "history": history,
        "final": history[-1] if history else {},
        **(kept(select, history, cfg.epochs) if select is not None else {}),
        "wall_s": round(time.time() - started, 1),
        "versions": artifacts.versions(),
        **configfile.manifest_record(caller.config_file),
        **extra,
    }


def _kind(stage: str) -> str:
    return "classifier" if stage == "finetune-clf" else "lm"


def head_mult(cfg: RunConfig) -> float:
    """The top group's rate multiplier as the stage trains it: a classifier's fresh head --head-lr-mult, an LM's
    pretrained top group 1."""
    return cfg.head_lr_mult if cfg.stage == "finetune-clf" else 1.0


def plan_of(stage: str, cfg: RunConfig):
    """The layer groups' names and the per-epoch plan of a stage, known before any model is built."""
    kind = "classifier" if stage == "finetune-clf" else "lm"
    names = backbone(cfg.backbone).group_names(kind, cfg)
    gradual = cfg.gradual_unfreezing and kind == "classifier"
    return names, unfreeze_plan(len(names), cfg.epochs, cfg.lr, cfg.lr_factor, gradual, head_mult(cfg))


def print_plan(stage: str, cfg: RunConfig) -> list[dict]:
    """The per-epoch plan (which groups train, each group's peak rate), without building anything."""
    names, plan = plan_of(stage, cfg)
    return [
        {
            "epoch": p.epoch + 1,
            "phase": p.phase + 1,
            "training": ",".join(names[g] for g in p.trainable),
            **{n: p.peak_lrs[g] for g, n in enumerate(names)},
        }
        for p in plan
    ]


def adapt(model, cfg: RunConfig):
    """--adapter lora: LoRA adapters in the transformers model of an hf LM or classifier (after its weights are
    loaded: the adapters start at zero on top of them), its other weights frozen; the classifier's head trains."""
    if cfg.adapter == "lora":
        from ..models import adapters

        adapters.add_lora(model.hf if hasattr(model, "hf") else model.body, cfg)
    return model


def place(model, cfg: RunConfig):
    """Move `model` to the run's device, start every data-parallel process from the same weights (then give
    each its own dropout masks), and compile it when asked."""
    import torch

    from .. import dist

    device = dist.resolve_device(cfg.device)
    dist.check_precision(cfg.precision, device)
    model.to(device)
    dist.broadcast_params(model)
    if dist.world().size > 1:
        torch.manual_seed(cfg.seed + dist.world().rank)
    if cfg.compile:
        model.compile()  # in place: the state-dict keys, and so the saved weights, stay those of the model
    return model


@contextmanager
def writing(out: Path, overwrite: bool, resume: bool, reporter, caller: artifacts.Caller = artifacts.ON_ITS_OWN):
    """A RunWriter for the body; on failure, its folder goes unless it holds a checkpoint worth resuming (a run
    dropped on purpose, artifacts.Discard, or one that failed for a caller that keeps none, goes whole). A
    failed write (a full disk, a read-only place, a quota) becomes one line naming the path, the reason and what
    to do; the checkpoint already on disk is kept (checkpoint.save never touches it until the new one is whole)."""
    from .. import dist

    writer = artifacts.RunWriter(out, overwrite, resume) if dist.world().main else artifacts.Follower(out, resume)
    try:
        yield writer
    except BaseException as e:
        reporter.run_failed(e)
        failed_write = isinstance(e, WriteError) or (isinstance(e, OSError) and e.errno in artifacts.WRITE_ERRNOS)
        drop = isinstance(e, artifacts.Discard) or not (caller.keeps_failed or isinstance(e, KeyboardInterrupt))
        kept = False if drop else writer.abort()
        if drop:
            writer.discard()
        if failed_write:
            err = e if isinstance(e, WriteError) else WriteError(e.filename or writer.tmp, e)
            then = f"{caller.rerun} (checkpoint kept in {writer.tmp})" if kept else "rerun it"
            raise WriteError(
                err.path, err.reason, f"free space there (or choose a writable place), then {then}"
            ) from None
        if kept:
            reporter.notice(f"checkpoint kept in {writer.tmp}; {caller.rerun} to continue")
        raise


def ckpt_args(writer: artifacts.RunWriter, resume: bool, checkpoint_every: int) -> dict:
    return {"ckpt_dir": writer.tmp, "checkpoint_every": checkpoint_every, "resume": resume}


def summary(out: Path, manifest: dict) -> dict:
    return {
        "stage": manifest["stage"],
        "out": str(out),
        "final": manifest["final"],
        "wall_s": manifest["wall_s"],
        "epochs": len(manifest["history"]),
        **{k: manifest[k] for k in ("best_epoch", "kept_epoch", "stopped_early") if k in manifest},
        "plots": {k: str(out / name) for k, name in manifest["plots"].items()},
    }


def publish_model(
    writer: artifacts.RunWriter,
    model,
    stage: str,
    cfg: RunConfig,
    history: list,
    steps_per_epoch: int,
    reporter,
    select,
    parent=None,
) -> dict:
    """What every training stage does with its trained model: say which epoch's weights are kept, write them (an
    adapter run's adapters, with `parent` the run they adapt), and draw the pictures into the run's temporary
    folder; returns draw_plots' {kind: file name}."""
    report_kept(select, history, reporter)
    if cfg.adapter != "none":  # the adapters (and a classifier's head) alone: adapter_runs
        adapter_runs.save(writer, model, parent, cfg, _kind(stage))
    else:
        artifacts.save_weights(model, writer.path(artifacts.WEIGHTS))
    return draw_plots(writer, stage, cfg, history, steps_per_epoch, reporter, select)


def draw_plots(
    writer: artifacts.RunWriter, stage: str, cfg: RunConfig, history: list, steps_per_epoch: int, reporter, select=None
) -> dict:
    """Draw the run's pictures into its temporary folder, so they publish with it; returns {kind: file name}.

    A picture is worth less than the model it describes: a failure (matplotlib missing, a full disk, a bug in
    the drawing) is a warning shown even with --quiet, the model is still published, and the manifest lists
    only the pictures that were written. Ctrl-C still interrupts (KeyboardInterrupt is not an Exception).
    With `select`, the curve shows its metric and marks the best epoch.
    """
    from . import plots

    names, plan = plan_of(stage, cfg)
    title = f"{stage} ({cfg.backbone}): {writer.out.name}"
    jobs = {}
    if history:
        metric = None if select is None or stage != "finetune-clf" else select.metric  # LMs: perplexity
        b = None if select is None else select.best(history)
        mark = None if b is None else (b + 1, select.keep == "best")
        jobs["history"] = (plots.HISTORY_PNG, lambda p: plots.history(history, p, title, metric, mark))
    if history and all("grad_norm" in r for r in history):  # transformer runs (diagnostics.py)
        jobs["diagnostics"] = (plots.DIAGNOSTICS_PNG, lambda p: plots.diagnostics(history, p, title))
    if plan and steps_per_epoch:
        jobs["lr_schedule"] = (
            plots.LR_PNG,
            lambda p: plots.lr_schedule(plan, names, steps_per_epoch, cfg.cut_frac, cfg.ratio, p, title),
        )
    written = {}
    for kind, (name, draw) in jobs.items():
        try:
            draw(writer.path(name))
        except Exception as e:  # see the docstring: never lose a trained model to a picture
            reporter.notice(f"warning: could not draw {name} ({type(e).__name__}: {e}); the run is saved without it")
        else:
            written[kind] = name
    return written


def build_classifier(cfg: RunConfig, parent, vocab_size: int, n_out: int, init: str = "pretrained"):
    """The classifier of `cfg`, its encoder taken from the parent language model unless `init` is random."""
    bb = backbone(cfg.backbone)
    model = bb.build_classifier(cfg, vocab_size, n_out)
    if init == "pretrained":
        lm = adapter_runs.load_lm(bb.build_lm(cfg, vocab_size), parent, cfg)
        bb.encoder_of_classifier(model).load_state_dict(bb.encoder_of_lm(lm).state_dict())
    return model


# ---- the LM an LM stage starts from ---------------------------------------------------------------------------
# finetune-lm from a fastai word-vocabulary parent (`import-fastai`) does what fastai's LMLearner.load_pretrained
# does: the target corpus gets its own vocabulary, and the parent's embedding and decoder rows move to it by fastai's
# match_embeds (known words keep their rows; new words get the mean row and the mean bias).


def word_vocab(parent: artifacts.Run | None) -> WordVocab | None:
    """The parent run's fastai word vocabulary, or None (no parent, or a subword tokenizer)."""
    if parent is None:
        return None
    from ..data.tokenizer import load_tokenizer

    tok = load_tokenizer(parent.file("tokenizer"))
    return tok if isinstance(tok, WordVocab) else None


def target_vocab(parent_tok: WordVocab, corpora, reporter) -> WordVocab:
    """The training corpora's vocabulary (fastai's make_vocab over their words; the validation set is not
    counted, as fastai counts its training set only)."""
    from ..data.tokenizer import ENCODE_CHUNK

    reporter.info("counting the target corpus's words for its vocabulary (fastai's tokenizer)")
    tok = parent_tok.target_vocab(t for c in corpora for batch in c.batches(ENCODE_CHUNK) for t in batch)
    known = sum(w in parent_tok.o2i for w in tok.itos)
    reporter.info(f"target vocabulary: {len(tok.itos):,} words, {known:,} of them in the parent's vocabulary")
    return tok


def matched_state(cfg: RunConfig, parent: artifacts.Run, parent_tok: WordVocab, tok: WordVocab) -> dict:
    """The parent's LM state dict with its vocabulary rows moved to `tok`'s, by fastai's own match_embeds."""
    from fastai.text.learner import match_embeds

    lm = backbone(cfg.backbone).build_lm(cfg, parent_tok.get_vocab_size())
    artifacts.load_weights(lm, parent.file("weights"))
    return match_embeds(lm.state_dict(), parent_tok.itos, tok.itos)


def parent_lm(cfg: RunConfig, parent: artifacts.Run | None, words: WordVocab | None, tok):
    """The LM a stage starts from: random weights (no parent), the parent's, or with a fastai word parent its
    rows moved to `tok`'s vocabulary (fastai's match_embeds)."""
    model = backbone(cfg.backbone).build_lm(cfg, tok.get_vocab_size())
    if words is not None:
        model.load_state_dict(matched_state(cfg, parent, words, tok))
    elif parent is not None:
        adapter_runs.load_lm(model, parent, cfg)
    return model


def sample_tokenizer(cfg: RunConfig, corpora: list, reporter):
    """A new `cfg.tokenizer` tokenizer trained on up to --tokenizer-sample-lines lines spread over the corpora."""
    from ..data.tokenizer import train_tokenizer

    sample = [t for c in corpora for t in c.sample(max(1, cfg.tokenizer_sample_lines // len(corpora)))]
    reporter.info(f"training a {cfg.tokenizer} tokenizer ({cfg.vocab_size} pieces) on {len(sample)} lines")
    return train_tokenizer(sample, cfg.tokenizer, cfg.vocab_size)


def lm_streams(cfg: RunConfig, ids: np.ndarray, valid_ids: np.ndarray | None):
    """Training and validation LM streams; without validation ids, the last --valid-pct of the stream."""
    from .. import dist

    if valid_ids is None:
        n_valid = int(len(ids) * cfg.valid_pct)
        ids, valid_ids = ids[: len(ids) - n_valid], ids[len(ids) - n_valid :]
    w = dist.world()
    train = LMStream(ids, cfg.bs, cfg.bptt, cfg.backwards, w.rank, w.size)
    if len(train) == 0:
        raise InputError(
            f"the corpus has {len(ids)} training tokens, too few for --bs {cfg.bs} x --bptt "
            f"{cfg.bptt}{f' x {w.size} processes' if w.size > 1 else ''} (at least "
            f"{cfg.bs * w.size + cfg.bptt + 1} are needed); give more text or lower --bs/--bptt"
        )
    vbs = max(1, min(cfg.bs, (len(valid_ids) - 1 - cfg.bptt) // cfg.bptt))
    return train, LMStream(valid_ids, vbs, cfg.bptt, cfg.backwards)


def few_rows(cfg: RunConfig, task: str, labels: list) -> bool:
    """The few-labels recipe applies (the hf presets' --contrastive-steps -1): single-label classes of 64 rows or
    fewer on average (contrastive.few), on a backbone with the contrastive step. It trains on every row: a handful
    held out could not choose an epoch, and the run keeps the last."""
    from collections import Counter

    from .contrastive import applies, few

    if cfg.contrastive_steps >= 0 or not applies(cfg, task) or not labels:
        return False
    return few(Counter(labels).values())


def clf_tables(cfg: RunConfig, train_src: Source, valid: Source | None, text_col: str, label_col: str):
    """Training and validation texts and labels, the task and the classes; every label problem found up front."""
    from .. import dist

    table = read_table(train_src, text_col, label_col)
    n = len(table.texts)
    held = None if valid is not None else cfg.valid_pct
    check_trainable(n if held is None else n - held_out(n, held), cfg.bs, dist.world().size, train_src, held)
    task = tasks.detect(table.labels, cfg)
    labels = tasks.parse(table, train_src, label_col, task, cfg.label_delim)
    classes = tasks.classes_of(task, labels, train_src, label_col)
    if valid is not None:
        vtable = read_table(valid, text_col, label_col)
        vtexts, vlabels = vtable.texts, tasks.parse(vtable, valid, label_col, task, cfg.label_delim)
        unseen = tasks.unseen(task, vlabels, classes)
        if unseen:
            raise InputError(
                f"{valid}: label(s) {', '.join(map(repr, unseen[:5]))} never seen in training "
                f"({train_src}); fix the labels or add training examples"
            )
        texts = table.texts
    else:
        pct = 0.0 if few_rows(cfg, task, labels) else cfg.valid_pct  # every row trains: too few to choose by
        tr, va = split_valid(len(labels), pct, cfg.seed)
        vtexts, vlabels = [table.texts[i] for i in va], [labels[i] for i in va]
        texts, labels = [table.texts[i] for i in tr], [labels[i] for i in tr]
    return table, task, classes, (texts, labels), (vtexts, vlabels)
