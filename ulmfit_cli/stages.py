"""pretrain / finetune-lm / finetune-clf / predict / evaluate as plain functions sharing helpers.

Each stage checks everything it can before any work (parent run, output folder, inputs, labels), writes the
resolved config into its (temporary) run folder before training, and publishes the folder atomically at the end.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import artifacts as A
from . import tasks
from .config import RunConfig, from_dict
from .data import LMStream, Source, classifier_batches, open_corpus, read_table, split_valid
from .errors import InputError
from .metrics import micro_f1, tune_thresholds
from .models import backbone
from .schedule import unfreeze_plan
from .tokenizer import PAD_ID, encode_docs, file_sha256, load_tokenizer, train_tokenizer


def _setup(seed: int) -> None:
    import random
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation raised by fastai's import
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _manifest(
    stage: str, cfg: RunConfig, tok_path: Path, inputs: list[dict], parent, history: list, extra: dict, started: float
) -> dict:
    return {
        "format": A.FORMAT,
        "stage": stage,
        "backbone": cfg.backbone,
        "created": A.now(),
        "complete": True,
        "files": {"config": A.CONFIG, "tokenizer": A.TOKENIZER, "weights": A.WEIGHTS},
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
        "history": history,
        "final": history[-1] if history else {},
        "wall_s": round(time.time() - started, 1),
        "versions": A.versions(),
        **extra,
    }


def _plan(stage: str, cfg: RunConfig):
    """The layer groups' names and the per-epoch plan of a stage, known before any model is built."""
    kind = "classifier" if stage == "finetune-clf" else "lm"
    names = backbone(cfg.backbone).group_names(kind, cfg.n_layers)
    return names, unfreeze_plan(len(names), cfg.epochs, cfg.lr, cfg.lr_factor, cfg.gradual_unfreezing and kind != "lm")


def print_plan(stage: str, cfg: RunConfig) -> list[dict]:
    """The per-epoch plan (which groups train, each group's peak rate), without building anything."""
    names, plan = _plan(stage, cfg)
    return [
        {
            "epoch": p.epoch + 1,
            "phase": p.phase + 1,
            "training": ",".join(names[g] for g in p.trainable),
            **{n: p.peak_lrs[g] for g, n in enumerate(names)},
        }
        for p in plan
    ]


# ---- language-model stages -------------------------------------------------------------------------------


def place(model, cfg: RunConfig):
    """Move `model` to the run's device, start every data-parallel process from the same weights (then give
    each its own dropout masks), and compile it when asked."""
    import torch

    from . import dist

    device = dist.resolve_device(cfg.device)
    dist.check_precision(cfg.precision, device)
    model.to(device)
    dist.broadcast_params(model)
    if dist.world().size > 1:
        torch.manual_seed(cfg.seed + dist.world().rank)
    if cfg.compile:
        model.compile()  # in place: the state-dict keys, and so the saved weights, stay those of the model
    return model


def _lm_streams(cfg: RunConfig, ids: np.ndarray, valid_ids: np.ndarray | None):
    from . import dist

    if valid_ids is None:
        n_valid = int(len(ids) * cfg.valid_pct)
        ids, valid_ids = ids[: len(ids) - n_valid], ids[len(ids) - n_valid :]
    w = dist.world()
    train = LMStream(ids, cfg.bs, cfg.bptt, cfg.backwards, w.rank, w.size)
    if len(train) == 0:
        raise InputError(
            f"the corpus has {len(ids)} training tokens, too few for --bs {cfg.bs} x --bptt "
            f"{cfg.bptt}{f' x {w.size} processes' if w.size > 1 else ''}; give more text or lower --bs/--bptt"
        )
    vbs = max(1, min(cfg.bs, (len(valid_ids) - 1 - cfg.bptt) // cfg.bptt))
    return train, LMStream(valid_ids, vbs, cfg.bptt, cfg.backwards)


def _lm_steps(cfg: RunConfig, steps_per_epoch: int) -> int:
    """Steps per epoch of an LM stage: the whole stream, or --max-steps spread over the epochs."""
    if cfg.max_steps and cfg.epochs:
        return min(steps_per_epoch, -(-cfg.max_steps // cfg.epochs))
    return steps_per_epoch


def _train_lm(model, cfg: RunConfig, train: LMStream, valid: LMStream, reporter, **ckpt) -> list:
    from .train import fit, lm_evaluate, lm_loss

    names, groups = backbone(cfg.backbone).lm_groups(model)
    plan = unfreeze_plan(len(groups), cfg.epochs, cfg.lr, cfg.lr_factor, gradual=False)
    rng = np.random.default_rng(cfg.seed)
    offsets = [int(rng.integers(cfg.bptt)) for _ in plan]
    return fit(
        model,
        groups,
        names,
        plan,
        _lm_steps(cfg, len(train)),
        lambda e: train.batches(offsets[e]),
        lm_loss(model, cfg),
        lambda: lm_evaluate(model, valid),
        cfg,
        reporter,
        **ckpt,
    )


def train_lm_stage(
    stage: str,
    cfg: RunConfig,
    sources: list[Source],
    out: Path,
    *,
    text_col: str = "text",
    valid: Source | None = None,
    parent: A.Run | None = None,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: int = 0,
    cache_dir: Path | None = None,
    reporter,
) -> dict:
    """pretrain (parent None: trains a tokenizer, random weights) or finetune-lm (tokenizer and weights from
    the parent run). The corpus is streamed: tokenized once into a memory-mapped cache, trained on from there."""
    from . import dist
    from .pretrained import matched_state, target_vocab, word_vocab
    from .tokencache import cache_root, token_ids

    started = time.time()
    words = word_vocab(parent)  # an `import-fastai` parent's fastai word vocabulary, else None
    corpora = [open_corpus(s, text_col) for s in sources]
    valid_corpus = open_corpus(valid, text_col) if valid is not None else None
    fingerprints = [c.fingerprint for c in [*corpora, *([valid_corpus] if valid_corpus else [])]]
    root = cache_root(cache_dir)
    with _writing(out, overwrite, resume, reporter) as writer:
        _setup(cfg.seed)
        tok_path = writer.path(A.TOKENIZER)

        def prepare():  # rank 0: the run folder, the tokenizer, the token cache; the other ranks wait for it
            writer.start(cfg.to_dict(), fingerprints)
            if words is not None:  # fastai's words: the target corpus's own vocabulary, as fastai's LMLearner
                target_vocab(words, corpora, reporter).save(str(tok_path))
            elif parent is not None:
                shutil.copyfile(parent.file("tokenizer"), tok_path)
            elif not (resume and tok_path.exists()):  # a resumed pretraining run keeps the tokenizer it trained
                sample = [t for c in corpora for t in c.sample(max(1, cfg.tokenizer_sample_lines // len(corpora)))]
                reporter.info(f"training a {cfg.tokenizer} tokenizer ({cfg.vocab_size} pieces) on {len(sample)} lines")
                train_tokenizer(sample, cfg.tokenizer, cfg.vocab_size).save(str(tok_path))
            return stream_ids()

        def stream_ids():  # the tokenizer and the token ids, from the cache when rank 0 has built it
            tok, sha = load_tokenizer(tok_path), file_sha256(tok_path)
            ids = token_ids(corpora, tok, sha, cfg.max_tokens, root, reporter)
            vids = token_ids([valid_corpus], tok, sha, 0, root, reporter, "validation") if valid_corpus else None
            return tok, ids, vids

        ready = dist.on_main(prepare)
        tok, ids, valid_ids = ready if writer.main else stream_ids()
        train, valid_stream = _lm_streams(cfg, ids, valid_ids)
        n_train, n_valid = len(train.ids), len(valid_stream.ids)
        reporter.info(
            f"{stage}: {n_train:,} training tokens, {n_valid:,} validation tokens, {len(train)} steps per epoch"
            + (f" on each of {dist.world().size} processes" if dist.world().size > 1 else "")
        )
        model = backbone(cfg.backbone).build_lm(cfg, tok.get_vocab_size())
        if words is not None:  # the parent's rows moved to the new vocabulary (fastai's match_embeds)
            model.load_state_dict(matched_state(cfg, parent, words, tok))
        elif parent is not None:
            A.load_weights(model, parent.file("weights"))
        place(model, cfg)
        history = _train_lm(model, cfg, train, valid_stream, reporter, **_ckpt(writer, resume, checkpoint_every))
        if not writer.main:
            return {}
        A.save_weights(model, writer.path(A.WEIGHTS))
        pictures = _plots(writer, stage, cfg, history, _lm_steps(cfg, len(train)), reporter)
        inputs = [{"source": str(c.source), "fingerprint": c.fingerprint, "text_col": c.text_col} for c in corpora]
        manifest = _manifest(
            stage,
            cfg,
            tok_path,
            inputs,
            parent,
            history,
            {"vocab_size": tok.get_vocab_size(), "tokens": {"train": n_train, "valid": n_valid}, "plots": pictures},
            started,
        )
        writer.write_json(A.MANIFEST, manifest)
        writer.commit()
    return _summary(out, manifest)


@contextmanager
def _writing(out: Path, overwrite: bool, resume: bool, reporter):
    """A RunWriter for the body; on failure, its folder goes unless it holds a checkpoint worth resuming."""
    from . import dist

    writer = A.RunWriter(out, overwrite, resume) if dist.world().main else A.Follower(out, resume)
    try:
        yield writer
    except BaseException:
        if writer.abort():
            reporter.notice(f"checkpoint kept in {writer.tmp}; rerun the same command with --resume to continue")
        raise


def _ckpt(writer: A.RunWriter, resume: bool, checkpoint_every: int) -> dict:
    return {"ckpt_dir": writer.tmp, "checkpoint_every": checkpoint_every, "resume": resume}


def _summary(out: Path, manifest: dict) -> dict:
    return {
        "stage": manifest["stage"],
        "out": str(out),
        "final": manifest["final"],
        "wall_s": manifest["wall_s"],
        "epochs": len(manifest["history"]),
        "plots": {k: str(out / name) for k, name in manifest["plots"].items()},
    }


def _plots(writer: A.RunWriter, stage: str, cfg: RunConfig, history: list, steps_per_epoch: int, reporter) -> dict:
    """Draw the run's pictures into its temporary folder, so they publish with it; returns {kind: file name}.

    A picture is worth less than the model it describes: a failure (matplotlib missing, a full disk, a bug in
    the drawing) is a warning shown even with --quiet, the model is still published, and the manifest lists
    only the pictures that were written. Ctrl-C still interrupts (KeyboardInterrupt is not an Exception).
    """
    from . import plots

    names, plan = _plan(stage, cfg)
    title = f"{stage} ({cfg.backbone}): {writer.out.name}"
    jobs = {}
    if history:
        jobs["history"] = (plots.HISTORY_PNG, lambda p: plots.history(history, p, title))
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


# ---- classifier ------------------------------------------------------------------------------------------


def _docs(tok, texts: list[str], cfg: RunConfig) -> list[np.ndarray]:
    """Token ids per document, <bos> first, cut to `max_len` tokens. fastai runs the whole document and keeps
    the last max_len outputs; cutting up front bounds the work on huge documents, and all kept tokens get
    gradients (BPT3C in SentenceEncoder still handles everything longer than bptt). A backwards model reads
    each document reversed, as its LM read the reversed stream."""
    docs = [d[: cfg.max_len] for d in encode_docs(tok, texts)]
    return [d[::-1].copy() for d in docs] if cfg.backwards else docs


def _clf_tables(cfg: RunConfig, train_src: Source, valid: Source | None, text_col: str, label_col: str):
    """Training and validation texts and labels, the task and the classes; every label problem found up front."""
    table = read_table(train_src, text_col, label_col)
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
        tr, va = split_valid(len(labels), cfg.valid_pct, cfg.seed)
        vtexts, vlabels = [table.texts[i] for i in va], [labels[i] for i in va]
        texts, labels = [table.texts[i] for i in tr], [labels[i] for i in tr]
    return table, task, classes, (texts, labels), (vtexts, vlabels)


def finetune_clf(
    cfg: RunConfig,
    parent: A.Run,
    train_src: Source,
    out: Path,
    *,
    valid: Source | None = None,
    text_col: str = "text",
    label_col: str = "label",
    init: str = "pretrained",
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: int = 0,
    reporter,
) -> dict:
    from . import dist
    from .train import fit

    started = time.time()
    with _writing(out, overwrite, resume, reporter) as writer:
        tables = _clf_tables(cfg, train_src, valid, text_col, label_col)
        table, task, classes, (texts, labels), (vtexts, vlabels) = tables
        _setup(cfg.seed)
        writer.start(cfg.to_dict(), [table.fingerprint, init, *([str(valid)] if valid else [])])
        tok_path = writer.path(A.TOKENIZER)
        if writer.main:  # data-parallel: rank 0 writes, every rank reads the parent's
            shutil.copyfile(parent.file("tokenizer"), tok_path)
        tok = load_tokenizer(parent.file("tokenizer"))
        docs, vdocs = _docs(tok, texts, cfg), _docs(tok, vtexts, cfg)
        target = tasks.target_stats(labels) if task == tasks.REGRESSION else None
        y, vy = (tasks.encode(task, ls, classes, target) for ls in (labels, vlabels))
        bb = backbone(cfg.backbone)
        model = bb.build_classifier(cfg, tok.get_vocab_size(), tasks.n_outputs(task, classes))
        if init == "pretrained":
            lm = bb.build_lm(cfg, tok.get_vocab_size())
            A.load_weights(lm, parent.file("weights"))
            bb.encoder_of_classifier(model).load_state_dict(bb.encoder_of_lm(lm).state_dict())
        place(model, cfg)
        names, groups = bb.classifier_groups(model)
        plan = unfreeze_plan(len(groups), cfg.epochs, cfg.lr, cfg.lr_factor, cfg.gradual_unfreezing)
        rngs = [np.random.default_rng([cfg.seed, e]) for e in range(cfg.epochs)]
        w = dist.world()
        steps = -(-len(docs) // cfg.bs) // w.size  # data-parallel: each process takes every size-th batch
        reporter.info(
            f"finetune-clf: {len(docs)} training and {len(vdocs)} validation documents, "
            f"{task}{f', {len(classes)} classes' if classes else ''}, {steps} steps per epoch"
        )

        def loss_fn(batch):
            _, x, yb = batch
            loss = tasks.loss(task, model(x)[0], yb)
            return loss, loss.item()

        def evaluate():
            return tasks.valid_metrics(task, _predict_logits(model, vdocs, cfg), vy, target)

        def batches(e):
            return classifier_batches(docs, y, cfg.bs, cfg.bptt, PAD_ID, rngs[e], bb.pad_batch, w.rank, w.size)

        ckpt = _ckpt(writer, resume, checkpoint_every)
        history = fit(model, groups, names, plan, steps, batches, loss_fn, evaluate, cfg, reporter, **ckpt)
        if not writer.main:
            return {}
        A.save_weights(model, writer.path(A.WEIGHTS))
        pictures = _plots(writer, "finetune-clf", cfg, history, steps, reporter)
        inputs = [{"source": str(train_src), "fingerprint": table.fingerprint, "documents": len(table.texts)}]
        extra = {
            "vocab_size": tok.get_vocab_size(),
            "task": task,
            "classes": classes,
            **_task_extras(task, model, vdocs, vy, target, cfg, classes, reporter),
            "init": init,
            "columns": {"text": text_col, "label": label_col},
            "plots": pictures,
        }
        manifest = _manifest("finetune-clf", cfg, tok_path, inputs, parent, history, extra, started)
        writer.write_json(A.MANIFEST, manifest)
        writer.commit()
    return _summary(out, manifest)


def _predict_logits(model, docs: list[np.ndarray], cfg: RunConfig) -> np.ndarray:
    """Logits (N, C) in input order, batches sorted by length."""
    import torch

    from . import dist

    device = next(model.parameters()).device
    out = None
    with torch.no_grad(), dist.autocast(device, cfg.precision):
        for idx, x, _ in classifier_batches(docs, None, cfg.bs, cfg.bptt, PAD_ID, pad=backbone(cfg.backbone).pad_batch):
            logits = model(x.to(device))[0].float().cpu().numpy()
            if out is None:
                out = np.zeros((len(docs), logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    return out


def _task_extras(task: str, model, vdocs, vy, target, cfg: RunConfig, classes, reporter) -> dict:
    """What a run of `task` keeps beside its weights: the regression target's scale, or the multi-label
    decision thresholds, tuned per label on the validation data once training is over."""
    if task == tasks.REGRESSION:
        return {"target": target}
    if task != tasks.MULTI:
        return {}
    model.eval()
    probs = tasks.outputs(task, _predict_logits(model, vdocs, cfg))
    true = vy > 0.5
    cuts = tune_thresholds(probs, true)
    tuned = {"micro_f1_at_0.5": micro_f1(true, probs >= 0.5), "micro_f1": micro_f1(true, probs >= cuts)}
    reporter.info(
        f"thresholds tuned per label on {len(vdocs)} validation documents: micro-F1 "
        f"{tuned['micro_f1_at_0.5']:.4f} at 0.5 -> {tuned['micro_f1']:.4f}"
    )
    return {"thresholds": {c: float(t) for c, t in zip(classes, cuts)}, "thresholds_valid": tuned}


def load_classifier(run: A.Run, device: str = "auto"):
    """The classifier of a run folder the caller has opened (and so checked) with `artifacts.open_run`, on
    `device`; mixed precision only where the run trained with it and the device is a GPU."""
    import dataclasses

    from . import dist

    cfg = from_dict(run.config)
    _setup(cfg.seed)
    where = dist.resolve_device(device)
    cfg = dataclasses.replace(
        cfg, device=str(where), precision=cfg.precision if where.type == "cuda" else "fp32", compile=False
    )
    tok = load_tokenizer(run.file("tokenizer"))
    n_out = tasks.n_outputs(tasks.task_of(run.manifest), run.manifest["classes"])
    model = backbone(cfg.backbone).build_classifier(cfg, tok.get_vocab_size(), n_out)
    A.load_weights(model, run.file("weights"))
    model.to(where)
    model.eval()
    return cfg, tok, model


def predict_probs(run: A.Run, texts: list[str]) -> tuple[list[str] | None, np.ndarray]:
    """The run's classes and its outputs for `texts`: probabilities (N, C) (softmax, or one sigmoid per label
    for multi-label), or values (N,) in the labels' units for regression (classes None)."""
    cfg, tok, model = load_classifier(run)
    logits = _predict_logits(model, _docs(tok, texts, cfg), cfg)
    return run.manifest["classes"], tasks.outputs(tasks.task_of(run.manifest), logits, run.manifest.get("target"))


@dataclass
class Predictions:
    task: str
    classes: list[str] | None
    out: np.ndarray  # probabilities (N, C) or values (N,), averaged over the runs
    cuts: np.ndarray | None  # multi-label thresholds (C,): the mean of the runs'


def predict_ensemble(runs: list[A.Run], texts: list[str]) -> Predictions:
    """The mean of each run's `predict_probs` (the paper's forward + backward ensemble; one run is the plain
    case). Each run reads the texts with its own tokenizer and direction."""
    tasks.check_ensemble(runs)
    outs = [predict_probs(run, texts)[1] for run in runs]
    cuts = [tasks.thresholds(run.manifest) for run in runs]
    first = runs[0].manifest
    return Predictions(
        tasks.task_of(first), first["classes"], np.mean(outs, axis=0), None if cuts[0] is None else np.mean(cuts, 0)
    )


def evaluate(runs: list[A.Run], src: Source, text_col: str | None, label_col: str | None) -> dict:
    """The metrics of the run (or the ensemble of runs) on labelled data: see tasks.report."""
    first = runs[0]
    cols = first.manifest.get("columns", {})
    text_col, label_col = text_col or cols.get("text", "text"), label_col or cols.get("label", "label")
    table = read_table(src, text_col, label_col)
    task, classes = tasks.task_of(first.manifest), first.manifest["classes"]
    labels = tasks.parse(table, src, label_col, task, first.config.get("label_delim"))
    unseen = tasks.unseen(task, labels, classes)
    if unseen:
        known = ", ".join(classes[:10]) + (f" and {len(classes) - 10} more" if len(classes) > 10 else "")
        raise InputError(
            f"{src}: label(s) {', '.join(map(repr, unseen[:5]))} never seen in training; the classifier knows {known}"
        )
    pred = predict_ensemble(runs, table.texts)
    result = tasks.report(task, labels, pred.out, classes, pred.cuts)
    return {**result, "runs": [str(r.path) for r in runs], "plots": {}}
