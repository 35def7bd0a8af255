"""pretrain / finetune-lm / finetune-clf / predict / evaluate as plain functions sharing helpers.

Each stage checks everything it can before any work (parent run, output folder, inputs, labels), writes the
resolved config into its (temporary) run folder before training, and publishes the folder atomically at the end.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import artifacts as A
from .config import WORD_TOKENIZER, RunConfig, from_dict
from .data import LMStream, Source, classifier_batches, read_table, read_texts, split_valid
from .errors import InputError
from .models import backbone
from .schedule import unfreeze_plan
from .tokenizer import PAD_ID, encode_docs, encode_stream, file_sha256, load_tokenizer, train_tokenizer


def _setup(seed: int) -> None:
    import random
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation raised by fastai's import
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _warn_replaced(tables, sources, reporter) -> None:
    for t, s in zip(tables, sources):
        if t.replaced_chars:
            reporter.warn(f"{s}: {t.replaced_chars} undecodable byte(s) replaced with U+FFFD")


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


def print_plan(stage: str, cfg: RunConfig) -> list[dict]:
    """The per-epoch plan (which groups train, each group's peak rate), without building anything."""
    kind = "classifier" if stage == "finetune-clf" else "lm"
    names = backbone(cfg.backbone).group_names(kind, cfg.n_layers)
    plan = unfreeze_plan(len(names), cfg.epochs, cfg.lr, cfg.lr_factor, cfg.gradual_unfreezing and kind != "lm")
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


def _lm_streams(cfg: RunConfig, tok, texts: list[str], valid_texts: list[str] | None):
    ids = encode_stream(tok, texts, cfg.max_tokens)
    if valid_texts is not None:
        train_ids, valid_ids = ids, encode_stream(tok, valid_texts)
    else:
        n_valid = int(len(ids) * cfg.valid_pct)
        train_ids, valid_ids = ids[: len(ids) - n_valid], ids[len(ids) - n_valid :]
    train = LMStream(train_ids, cfg.bs, cfg.bptt)
    if len(train) == 0:
        raise InputError(
            f"the corpus has {len(train_ids)} training tokens, too few for --bs {cfg.bs} x --bptt "
            f"{cfg.bptt}; give more text or lower --bs/--bptt"
        )
    vbs = max(1, min(cfg.bs, (len(valid_ids) - 1 - cfg.bptt) // cfg.bptt))
    return train, LMStream(valid_ids, vbs, cfg.bptt)


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
        len(train),
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
    reporter,
) -> dict:
    """pretrain (parent None: trains a tokenizer, random weights) or finetune-lm (tokenizer and weights from
    the parent run)."""
    started = time.time()
    with _writing(out, overwrite, resume, reporter) as writer:
        tables = [read_texts(s, text_col) for s in sources]
        _warn_replaced(tables, sources, reporter)
        valid_table = read_texts(valid, text_col) if valid is not None else None
        texts = [t for tb in tables for t in tb.texts]
        _setup(cfg.seed)
        writer.start(cfg.to_dict(), [t.fingerprint for t in [*tables, *([valid_table] if valid_table else [])]])
        tok_path = writer.path(A.TOKENIZER)
        if parent is not None:
            shutil.copyfile(parent.file("tokenizer"), tok_path)
        elif not (resume and tok_path.exists()):  # a resumed pretraining run keeps the tokenizer it trained
            step = max(1, len(texts) // cfg.tokenizer_sample_lines)  # evenly spread, not just the first books
            sample = texts[::step]
            reporter.info(f"training a {cfg.tokenizer} tokenizer ({cfg.vocab_size} pieces) on {len(sample)} lines")
            train_tokenizer(sample, cfg.tokenizer, cfg.vocab_size, len(sample)).save(str(tok_path))
        tok = load_tokenizer(tok_path)
        parent_state = None
        if parent is not None and getattr(tok, "kind", None) == WORD_TOKENIZER:  # an `import-fastai` parent
            from .pretrained import retarget

            tok, parent_state = retarget(cfg, parent, tok, texts, tok_path, reporter)
        train, valid_stream = _lm_streams(cfg, tok, texts, valid_table.texts if valid_table else None)
        n_train, n_valid = len(train.ids), len(valid_stream.ids)
        reporter.info(
            f"{stage}: {n_train:,} training tokens, {n_valid:,} validation tokens, {len(train)} steps per epoch"
        )
        model = backbone(cfg.backbone).build_lm(cfg, tok.get_vocab_size())
        if parent_state is not None:
            model.load_state_dict(parent_state)
        elif parent is not None:
            A.load_weights(model, parent.file("weights"))
        history = _train_lm(model, cfg, train, valid_stream, reporter, **_ckpt(writer, resume, checkpoint_every))
        A.save_weights(model, writer.path(A.WEIGHTS))
        inputs = [
            {"source": str(s), "fingerprint": t.fingerprint, "documents": len(t.texts)} for s, t in zip(sources, tables)
        ]
        manifest = _manifest(
            stage,
            cfg,
            tok_path,
            inputs,
            parent,
            history,
            {"vocab_size": tok.get_vocab_size(), "tokens": {"train": n_train, "valid": n_valid}},
            started,
        )
        writer.write_json(A.MANIFEST, manifest)
        writer.commit()
    return _summary(out, manifest)


@contextmanager
def _writing(out: Path, overwrite: bool, resume: bool, reporter):
    """A RunWriter for the body; on failure, its folder goes unless it holds a checkpoint worth resuming."""
    writer = A.RunWriter(out, overwrite, resume)
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
    }


# ---- classifier ------------------------------------------------------------------------------------------


def _docs(tok, texts: list[str], max_len: int) -> list[np.ndarray]:
    """Token ids per document, <bos> first, cut to `max_len` tokens. fastai runs the whole document and keeps
    the last max_len outputs; cutting up front bounds the work on huge documents, and all kept tokens get
    gradients (BPT3C in SentenceEncoder still handles everything longer than bptt)."""
    return [d[:max_len] for d in encode_docs(tok, texts)]


def _clf_tables(cfg: RunConfig, train_src: Source, valid: Source | None, text_col: str, label_col: str):
    """Training and validation texts and labels, and the classes; every label problem found up front."""
    table = read_table(train_src, text_col, label_col)
    labels = [str(v) for v in table.labels]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise InputError(
            f"{train_src}: column {label_col!r} has a single class ({classes[0]!r}); a classifier needs at least two"
        )
    if valid is not None:
        vtable = read_table(valid, text_col, label_col)
        vtexts, vlabels = vtable.texts, [str(v) for v in vtable.labels]
        unseen = sorted(set(vlabels) - set(classes))
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
    return table, classes, (texts, labels), (vtexts, vlabels)


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
    import torch
    import torch.nn.functional as F

    from .train import fit

    started = time.time()
    with _writing(out, overwrite, resume, reporter) as writer:
        table, classes, (texts, labels), (vtexts, vlabels) = _clf_tables(cfg, train_src, valid, text_col, label_col)
        _setup(cfg.seed)
        writer.start(cfg.to_dict(), [table.fingerprint, init, *([str(valid)] if valid else [])])
        tok_path = writer.path(A.TOKENIZER)
        shutil.copyfile(parent.file("tokenizer"), tok_path)
        tok = load_tokenizer(tok_path)
        cix = {c: i for i, c in enumerate(classes)}
        docs, vdocs = _docs(tok, texts, cfg.max_len), _docs(tok, vtexts, cfg.max_len)
        y = np.array([cix[v] for v in labels], dtype=np.int64)
        vy = np.array([cix[v] for v in vlabels], dtype=np.int64)
        bb = backbone(cfg.backbone)
        model = bb.build_classifier(cfg, tok.get_vocab_size(), len(classes))
        if init == "pretrained":
            lm = bb.build_lm(cfg, tok.get_vocab_size())
            A.load_weights(lm, parent.file("weights"))
            bb.encoder_of_classifier(model).load_state_dict(bb.encoder_of_lm(lm).state_dict())
        names, groups = bb.classifier_groups(model)
        plan = unfreeze_plan(len(groups), cfg.epochs, cfg.lr, cfg.lr_factor, cfg.gradual_unfreezing)
        rngs = [np.random.default_rng([cfg.seed, e]) for e in range(cfg.epochs)]
        steps = -(-len(docs) // cfg.bs)
        reporter.info(
            f"finetune-clf: {len(docs)} training and {len(vdocs)} validation documents, "
            f"{len(classes)} classes, {steps} steps per epoch"
        )

        def loss_fn(batch):
            _, x, yb = batch
            loss = F.cross_entropy(model(x)[0], yb)
            return loss, loss.item()

        def evaluate():
            logits = _predict_logits(model, vdocs, cfg)
            loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(vy)).item()
            return {"valid_loss": loss, "accuracy": float((logits.argmax(1) == vy).mean())}

        def batches(e):
            return classifier_batches(docs, y, cfg.bs, cfg.bptt, PAD_ID, rngs[e], bb.pad_batch)

        ckpt = _ckpt(writer, resume, checkpoint_every)
        history = fit(model, groups, names, plan, steps, batches, loss_fn, evaluate, cfg, reporter, **ckpt)
        A.save_weights(model, writer.path(A.WEIGHTS))
        inputs = [{"source": str(train_src), "fingerprint": table.fingerprint, "documents": len(table.texts)}]
        extra = {
            "vocab_size": tok.get_vocab_size(),
            "classes": classes,
            "init": init,
            "columns": {"text": text_col, "label": label_col},
        }
        manifest = _manifest("finetune-clf", cfg, tok_path, inputs, parent, history, extra, started)
        writer.write_json(A.MANIFEST, manifest)
        writer.commit()
    return _summary(out, manifest)


def _predict_logits(model, docs: list[np.ndarray], cfg: RunConfig) -> np.ndarray:
    """Logits (N, C) in input order, batches sorted by length."""
    import torch

    out = None
    with torch.no_grad():
        for idx, x, _ in classifier_batches(docs, None, cfg.bs, cfg.bptt, PAD_ID, pad=backbone(cfg.backbone).pad_batch):
            logits = model(x)[0].float().numpy()
            if out is None:
                out = np.zeros((len(docs), logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    return out


def load_classifier(run: A.Run):
    """The classifier of a run folder the caller has opened (and so checked) with `artifacts.open_run`."""
    cfg = from_dict(run.config)
    _setup(cfg.seed)
    tok = load_tokenizer(run.file("tokenizer"))
    model = backbone(cfg.backbone).build_classifier(cfg, tok.get_vocab_size(), len(run.manifest["classes"]))
    A.load_weights(model, run.file("weights"))
    model.eval()
    return cfg, tok, model


def predict_probs(run: A.Run, texts: list[str]) -> tuple[list[str], np.ndarray]:
    import torch

    cfg, tok, model = load_classifier(run)
    logits = _predict_logits(model, _docs(tok, texts, cfg.max_len), cfg)
    return run.manifest["classes"], torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def evaluate(run: A.Run, src: Source, text_col: str | None, label_col: str | None) -> dict:
    from .metrics import classification_report

    cols = run.manifest.get("columns", {})
    text_col, label_col = text_col or cols.get("text", "text"), label_col or cols.get("label", "label")
    table = read_table(src, text_col, label_col)
    classes = run.manifest["classes"]
    labels = [str(v) for v in table.labels]
    unseen = sorted(set(labels) - set(classes))
    if unseen:
        raise InputError(
            f"{src}: label(s) {', '.join(map(repr, unseen[:5]))} never seen in training; the "
            f"classifier knows {', '.join(classes)}"
        )
    _, probs = predict_probs(run, table.texts)
    cix = {c: i for i, c in enumerate(classes)}
    y = np.array([cix[v] for v in labels])
    return classification_report(y, probs.argmax(1), classes)
