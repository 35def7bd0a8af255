"""Inference on a classifier run: loading it, encoding texts, predicting in length-sorted batches, ensembles,
and the metrics of `evaluate`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

import numpy as np

from .. import hf_facts, metrics, tasks
from ..config import RunConfig, from_dict
from ..data.batches import classifier_batches
from ..data.readers import PIECE_CHARS, REPLACEMENT, Source, Table, text_head
from ..data.rows import table_batches
from ..data.tokenizer import PAD_ID, encode_docs, load_tokenizer
from ..errors import InputError
from ..models import backbone, inference_classifier
from ..runfolder import adapter_runs, artifacts


def docs_of(tok, texts: list[str], cfg: RunConfig) -> list[np.ndarray]:
    """Token ids per document, <bos> first, cut to `max_len` tokens by the backbone's rule (`cut_doc`: the first
    max_len for ours; head and tail for a Hugging Face checkpoint). fastai runs the whole document and keeps
    the last max_len outputs; cutting up front bounds the work on huge documents, and all kept tokens get
    gradients (BPT3C in SentenceEncoder still handles everything longer than bptt). A backwards model reads
    each document reversed, as its LM read the reversed stream."""
    span = max(PIECE_CHARS, 100 * cfg.max_len)  # far more characters than max_len tokens span: same ids, bounded work
    cut = backbone(cfg.backbone).cut_doc
    docs = [cut(d, cfg.max_len) for d in encode_docs(tok, [_ends(t, span) for t in texts])]
    return [d[::-1].copy() for d in docs] if cfg.backwards else docs


def _ends(text: str, span: int) -> str:
    """The start of `text` (text_head) and, for a text longer than both, its last `span` characters: the tokens
    any cut_doc keeps, with bounded work. The first tokens are exactly the whole text's."""
    return text if len(text) <= 2 * span else text_head(text, span) + " " + text[-span:]


def predict_logits(model, docs: list[np.ndarray], cfg: RunConfig, bs: int | None = None) -> np.ndarray:
    """Logits (N, C) in input order, batches of `bs` (default: the run's) sorted by length."""
    import torch

    from .. import dist

    device = next(model.parameters()).device
    out = None
    with torch.no_grad(), dist.autocast(device, cfg.precision):
        for idx, x, _ in classifier_batches(
            docs, None, bs or cfg.bs, cfg.bptt, PAD_ID, pad=backbone(cfg.backbone).pad_batch
        ):
            logits = model(x.to(device))[0].float().cpu().numpy()
            if out is None:
                out = np.zeros((len(docs), logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    return out


def load_classifier(
    run: artifacts.Run, device: str = "auto", quantize: str | None = None, engine: str = "torch", warn=None
):
    """The classifier of a run folder the caller has opened (and so checked) with `artifacts.open_run`, on
    `device`; mixed precision only where the run trained with it and the device is a GPU. With `quantize`
    (quantize.KINDS) the model is quantized and runs on the CPU. `engine` "onnx" (checked by onnx_engine.check)
    runs the AWD-LSTM's LSTMs in onnxruntime on the CPU, quantized there with `quantize`."""
    import dataclasses

    from .. import dist

    cfg = from_dict(run.config)
    dist.seed_all(cfg.seed)
    where = dist.resolve_device("cpu" if quantize or engine == "onnx" else device)
    cfg = dataclasses.replace(
        cfg, device=str(where), precision=cfg.precision if where.type == "cuda" else "fp32", compile=False
    )
    tok = load_tokenizer(run.file("tokenizer"))
    n_out = tasks.n_outputs(tasks.task_of(run.manifest), run.manifest["classes"])
    model = inference_classifier(cfg, tok.get_vocab_size(), n_out)
    adapter_runs.load_classifier(model, run, cfg)
    model.to(where)
    model.eval()
    if quantize and cfg.backbone == "hf" and not hf_facts.is_encoder(cfg.hf_config) and warn is not None:
        warn(
            f"{run.path}: int8 changes a pretrained decoder's predictions a lot (its activations have "
            "outliers that per-batch int8 cannot hold: SmolLM2-135M on TREC-6 lost 14-27 points); "
            "check with `ulmfit evaluate` before you rely on it"
        )
    if engine == "onnx":
        from .onnx_engine import attach

        attach(run, model, quantize)
    elif quantize:
        from .quantize import quantize as quantized

        model = quantized(model, quantize)
    return cfg, tok, model


def head(runs: list[artifacts.Run]) -> tuple[str, list[str] | None, np.ndarray | None]:
    """What the runs of an ensemble (checked to agree) predict: the task, the classes, and the multi-label
    thresholds (the mean of the runs')."""
    tasks.check_ensemble(runs)
    first = runs[0].manifest
    cuts = [tasks.thresholds(run.manifest) for run in runs]
    return tasks.task_of(first), first["classes"], None if cuts[0] is None else np.mean(cuts, 0)


class Predictor:
    """The runs of an ensemble (one run is the plain case), loaded once; called on texts it gives the mean of the
    runs' outputs (the paper's forward + backward ensemble), each run reading them with its own tokenizer and
    direction, `batch_size` documents per forward pass, sorted by length."""

    def __init__(
        self,
        runs: list[artifacts.Run],
        batch_size: int = 64,
        threads: int | None = None,
        device: str = "auto",
        quantize: str | None = None,
        engine: str = "torch",
        warn=None,
    ):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.task, self.classes, self.cuts = head(runs)
        self.runs, self.batch_size = runs, batch_size
        self.models = [load_classifier(run, device, quantize, engine, warn) for run in runs]

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Probabilities (N, C) (softmax, or one sigmoid per label), or values (N,) in the labels' units."""
        import torch

        outs = []
        with torch.inference_mode():
            for run, (cfg, tok, model) in zip(self.runs, self.models):
                logits = predict_logits(model, docs_of(tok, texts, cfg), cfg, self.batch_size)
                outs.append(tasks.outputs(self.task, logits, run.manifest.get("target")))
        return np.mean(outs, axis=0)

    def rows(self, texts: list[str]) -> list:
        """One output per text, None for a blank one (nothing to classify)."""
        keep = [i for i, t in enumerate(texts) if t.strip()]
        rows = [None] * len(texts)
        if keep:
            for i, out in zip(keep, self([texts[i] for i in keep])):
                rows[i] = out
        return rows


def predict(predictor: Predictor, batches: Iterable[list[str]], line: Callable, out: TextIO) -> None:
    """For each batch of texts, their output lines (`line(text, output)`), written in input order and flushed
    before the next batch is read: memory holds one batch, whatever the length of the input."""
    for texts in batches:
        out.write("".join(line(t, row) + "\n" for t, row in zip(texts, predictor.rows(texts))))
        out.flush()


# ---- evaluate ----------------------------------------------------------------------------------------------

READ_ROWS = 1024  # rows read (and sorted by length) at a time by evaluate: bounded memory, little padding


class Tally:
    """What the metrics of `evaluate` need, summed batch by batch: the confusion matrix (single-label), per-label
    counts (multi-label, at the runs' thresholds) or sums of errors (regression); never every prediction."""

    def __init__(self, task: str, classes: list[str] | None, cuts: np.ndarray | None):
        self.task, self.classes, self.cuts, self.n = task, classes, cuts, 0
        n_classes = len(classes or ())
        self.sums = (
            metrics.RegressionSums()
            if task == tasks.REGRESSION
            else np.zeros((4 if task == tasks.MULTI else n_classes, n_classes), dtype=np.int64)
        )

    def add(self, labels: list, out: np.ndarray) -> None:
        self.n += len(labels)
        if self.task == tasks.REGRESSION:
            self.sums.add(np.asarray(labels, dtype=np.float64), out)
        elif self.task == tasks.MULTI:
            true = tasks.encode(tasks.MULTI, labels, self.classes, None) > 0.5
            self.sums += metrics.multilabel_counts(true, out >= self.cuts)
        else:
            np.add.at(self.sums, (tasks.encode(self.task, labels, self.classes, None), out.argmax(1)), 1)

    def report(self) -> dict:
        if self.task == tasks.REGRESSION:
            return {"task": self.task, **self.sums.report()}
        if self.task == tasks.MULTI:
            return {"task": self.task, **metrics.multilabel_counts_report(self.sums, self.n, self.classes, self.cuts)}
        return {"task": self.task, **metrics.confusion_report(self.sums, self.classes)}


def _labelled(src: Source, text_col: str, label_col: str, task: str, delim: str | None) -> Iterator[tuple]:
    """Batches of the rows with text: (a Table of their texts and parsed labels, rows with text but no label
    (0-based rows in `src`), left out of the table)."""
    start = 0
    for batch in table_batches(src, [text_col, label_col], ["--text-col", "--label-col"], READ_ROWS):
        texts = ["" if t is None else str(t) for t in batch[text_col]]
        labels = batch[label_col]
        keep, missing = [], []
        for i, t in enumerate(texts):
            if t.strip():
                (missing if labels[i] is None or str(labels[i]).strip() == "" else keep).append(i)
        table = Table([texts[i] for i in keep], [labels[i] for i in keep], "", 0, [start + i for i in keep])
        table.labels = tasks.parse(table, src, label_col, task, delim)
        yield table, [start + i for i in missing]
        start += len(texts)


def _check(src: Source, text_col: str, label_col: str, task: str, classes, delim) -> None:
    """A first pass over the data, before any model is loaded: every row with text has a label the classifier
    knows, else exit 2 naming the rows or labels at fault (a single pass could only say so after predicting)."""
    unseen, missing, first_missing, chars, replaced, n = set(), 0, None, 0, 0, 0
    for table, no_label in _labelled(src, text_col, label_col, task, delim):
        unseen.update(tasks.unseen(task, table.labels, classes))
        missing, first_missing = (
            missing + len(no_label),
            first_missing if first_missing is not None or not no_label else no_label[0],
        )
        n, chars = n + len(table.texts) + len(no_label), chars + sum(len(t) for t in table.texts)
        replaced += sum(t.count(REPLACEMENT) for t in table.texts)
    if not n:
        raise InputError(f"{src}: no usable text in column {text_col!r} (empty file or only blank lines)")
    if missing:
        raise InputError(
            f"{src}: {missing} row(s) have no label in column {label_col!r} (first at row {first_missing + 1}); "
            "fill or drop them"
        )
    if replaced and replaced >= chars // 2:
        raise InputError(f"{src}: most of it is not UTF-8 text ({replaced} undecodable bytes); convert it to UTF-8")
    if unseen:
        unseen = sorted(unseen)
        known = ", ".join(classes[:10]) + (f" and {len(classes) - 10} more" if len(classes) > 10 else "")
        raise InputError(
            f"{src}: label(s) {', '.join(map(repr, unseen[:5]))} never seen in training; the classifier knows {known}"
        )


def evaluate(
    runs: list[artifacts.Run],
    src: Source,
    text_col: str | None,
    label_col: str | None,
    batch_size: int = 64,
    threads: int | None = None,
    quantize: str | None = None,
    engine: str = "torch",
    warn=None,
) -> dict:
    """The metrics of the run (or the ensemble of runs) on labelled data, read twice a batch at a time (the labels
    checked first, then predicted), so memory does not grow with the test set."""
    first = runs[0]
    cols = first.manifest.get("columns", {})
    text_col, label_col = text_col or cols.get("text", "text"), label_col or cols.get("label", "label")
    task, classes, cuts = head(runs)
    delim = first.config.get("label_delim")
    _check(src, text_col, label_col, task, classes, delim)
    predictor = Predictor(runs, batch_size, threads, quantize=quantize, engine=engine, warn=warn)
    tally = Tally(task, classes, cuts)
    for table, _ in _labelled(src, text_col, label_col, task, delim):
        if table.texts:
            tally.add(table.labels, predictor(table.texts))
    return {**tally.report(), "runs": [str(r.path) for r in runs], "plots": {}}
