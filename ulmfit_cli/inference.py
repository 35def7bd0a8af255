"""Inference on a classifier run: loading it, encoding texts, predicting in length-sorted batches, ensembles,
and the metrics of `evaluate`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import artifacts as A
from . import runs as R
from . import tasks
from .config import RunConfig, from_dict
from .data import PIECE_CHARS, Source, classifier_batches, read_table, text_head
from .errors import InputError
from .models import backbone
from .tokenizer import PAD_ID, encode_docs, load_tokenizer


def docs_of(tok, texts: list[str], cfg: RunConfig) -> list[np.ndarray]:
    """Token ids per document, <bos> first, cut to `max_len` tokens. fastai runs the whole document and keeps
    the last max_len outputs; cutting up front bounds the work on huge documents, and all kept tokens get
    gradients (BPT3C in SentenceEncoder still handles everything longer than bptt). A backwards model reads
    each document reversed, as its LM read the reversed stream."""
    head = max(PIECE_CHARS, 100 * cfg.max_len)  # far more characters than max_len tokens span: same ids, bounded work
    docs = [d[: cfg.max_len] for d in encode_docs(tok, [text_head(t, head) for t in texts])]
    return [d[::-1].copy() for d in docs] if cfg.backwards else docs


def predict_logits(model, docs: list[np.ndarray], cfg: RunConfig) -> np.ndarray:
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


def load_classifier(run: A.Run, device: str = "auto"):
    """The classifier of a run folder the caller has opened (and so checked) with `artifacts.open_run`, on
    `device`; mixed precision only where the run trained with it and the device is a GPU."""
    import dataclasses

    from . import dist

    cfg = from_dict(run.config)
    R.setup(cfg.seed)
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
    logits = predict_logits(model, docs_of(tok, texts, cfg), cfg)
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
