"""Distillation: a fine-tuned classifier (the teacher, or several averaged) labels the target domain's unlabelled
text, and a smaller student learns its answers through the classifier stage's own recipe (Hinton et al. 2015;
Tang et al. 2019 for a BiLSTM student of BERT). The student's run folder is an ordinary classifier's.

The teacher's outputs over the texts are computed once, a chunk at a time, into a cache keyed by the teachers'
weights, their task and the texts (`teacher_outputs`): an interrupted labelling resumes at its last chunk, and a
second student of the same teacher and texts reads them back. The student then trains on soft targets at
--temperature (the teacher's probabilities sharpened or flattened as its logits divided by T would be; T^2 keeps
the gradients' scale), mixed with the hard labels of --train's rows by --hard-weight. It chooses its epoch on --train's
validation share when there are labelled rows enough (more than contrastive.FEW a class), else on its agreement with
the teacher over a share of the texts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import tasks
from ..config import RunConfig
from ..data.batches import check_trainable, split_valid
from ..data.readers import Source, open_corpus, read_table
from ..data.tokenizer import file_sha256
from ..errors import ConfigError, InputError
from ..runfolder import artifacts

CHUNK = 512  # texts the teacher labels between two saves of the cache


@dataclass
class Teaching:
    """What the student learns from: the teachers' task, the unlabelled texts and the teachers' outputs over
    them (probabilities (N, C), or values (N,) in the labels' units), and how to weigh them."""

    teachers: list
    task: str
    classes: list[str] | None
    target: dict | None  # a regression teacher's label statistics: the student keeps its units
    texts: list[str]
    outputs: np.ndarray
    temperature: float
    hard_weight: float
    record: dict = field(default_factory=dict)  # for the manifest: the teachers and the texts
    predictor: object = field(default=None, repr=False)  # the teachers, for --train's rows (few: not cached)

    def tables(self, cfg: RunConfig, train: Source | None, valid: Source | None, text_col: str, label_col: str):
        """The classifier stage's tables: labelled rows first (--train's, if any), then the texts (those the teacher
        answers surely enough, with --min-confidence); validation is --valid, else --train's --valid-pct, else
        --valid-pct of the texts with the teacher's answers as their labels (the student then chooses its epoch by
        agreement with the teacher)."""
        labelled_texts, labels, vtexts, vlabels = [], [], [], []
        table = None
        if train is not None:
            table = read_table(train, text_col, label_col)
            labels = tasks.parse(table, train, label_col, self.task, cfg.label_delim)
            unseen = tasks.unseen(self.task, labels, self.classes)
            if unseen:
                raise InputError(
                    f"{train}: label(s) {', '.join(map(repr, unseen[:5]))} are not the teacher's classes; "
                    "distil into the teacher's classes, or train another teacher"
                )
            labelled_texts = table.texts
            if valid is not None:
                vtable = read_table(valid, text_col, label_col)
                vtexts, vlabels = vtable.texts, tasks.parse(vtable, valid, label_col, self.task, cfg.label_delim)
            else:
                # A handful of labelled rows a class is too few to validate on, and each one held out is a label
                # the student never learns (as finetune-clf's few-labels recipe): they all train, and the
                # teacher's answers on a share of the texts validate instead.
                from .contrastive import few

                pct = 0.0 if self.task == tasks.SINGLE and few(Counter(labels).values()) else cfg.valid_pct
                tr, va = split_valid(len(labels), pct, cfg.seed)
                vtexts, vlabels = [labelled_texts[i] for i in va], [labels[i] for i in va]
                labelled_texts, labels = [labelled_texts[i] for i in tr], [labels[i] for i in tr]
        texts, outputs = self.texts, self.outputs
        if not vtexts:  # no labelled validation: the teacher's answers on a share of the texts
            tr, va = split_valid(len(texts), cfg.valid_pct, cfg.seed)
            answers = self.answers(outputs[va])
            vtexts, vlabels = [texts[i] for i in va], answers
            texts, outputs = [texts[i] for i in tr], outputs[tr]
        if cfg.min_confidence > 0:
            sure = np.flatnonzero(confidence(self.task, outputs) >= cfg.min_confidence)
            self.record["confident"] = {"kept": int(len(sure)), "of": len(texts), "min_confidence": cfg.min_confidence}
            if not len(sure):
                raise InputError(
                    f"the teacher answers none of the {len(texts)} texts with probability {cfg.min_confidence} or "
                    "more; lower --min-confidence"
                )
            texts, outputs = [texts[i] for i in sure], outputs[sure]
        from .. import dist

        # as finetune-clf's tables: too few rows to make a step is one line before the student loads
        held = cfg.valid_pct if valid is None else None
        check_trainable(len(labelled_texts) + len(texts), cfg.bs, dist.world().size, train or "the texts", held)
        self.train_outputs = outputs
        return table, (labelled_texts + texts, labels), (vtexts, vlabels)

    def answers(self, outputs: np.ndarray) -> list:
        """The teachers' answers as labels: the likeliest class, the classes over their thresholds, or the value."""
        if self.task == tasks.SINGLE:
            return [self.classes[i] for i in outputs.argmax(1)]
        if self.task == tasks.MULTI:
            cuts = tasks.thresholds(self.teachers[0].manifest)
            cuts = np.full(len(self.classes), 0.5) if cuts is None else cuts
            return [[c for c, p, t in zip(self.classes, row, cuts) if p >= t] for row in outputs]
        return [float(v) for v in outputs]

    def soft_targets(self, labelled_outputs: np.ndarray) -> np.ndarray:
        """What each training row's soft loss aims at, in training order (labelled rows, then texts): the
        teachers' probabilities at the temperature, or their value standardised as the student's targets are."""
        out = np.concatenate([labelled_outputs, self.train_outputs]) if len(labelled_outputs) else self.train_outputs
        t = self.temperature
        if self.task == tasks.SINGLE:
            z = np.log(np.clip(out, 1e-12, 1.0)) / t
            z -= z.max(1, keepdims=True)
            e = np.exp(z)
            return (e / e.sum(1, keepdims=True)).astype(np.float32)
        if self.task == tasks.MULTI:
            p = np.clip(out, 1e-6, 1 - 1e-6)
            return (1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / t))).astype(np.float32)
        return ((out - self.target["mean"]) / self.target["std"]).astype(np.float32)


class Student:
    """Each training row's targets by its index (the batches carry the indices, `rows`): the soft one from the
    teachers, and for --train's rows (the first `len(y)`) the hard label too."""

    def __init__(self, teaching: Teaching, y: np.ndarray, n_rows: int, labelled_texts: list[str]):
        import torch

        n = len(y)
        given = np.asarray(teaching.predictor(labelled_texts), dtype=np.float32) if n else np.zeros((0,))
        if teaching.task == tasks.REGRESSION:
            given = given.reshape(-1)
        soft = teaching.soft_targets(given)
        if teaching.task == tasks.SINGLE:
            hard = np.full(n_rows, -1, dtype=np.int64)
        else:
            hard = np.zeros(soft.shape, dtype=np.float32)
        hard[:n] = y
        self.task, self.t, self.hard_weight = teaching.task, teaching.temperature, teaching.hard_weight
        self.soft, self.hard = torch.from_numpy(soft), torch.from_numpy(hard)
        self.has_hard = torch.arange(n_rows) < n
        self.rows = np.arange(n_rows)

    def loss(self, logits, idx):
        import torch

        i = torch.as_tensor(idx)
        d = logits.device
        return loss(
            self.task, logits, self.soft[i].to(d), self.hard[i].to(d), self.has_hard[i].to(d), self.t, self.hard_weight
        )


def confidence(task: str, outputs: np.ndarray) -> np.ndarray:
    """How sure the teacher is of each answer: its likeliest class's probability, or (multi-label) the least sure
    label's probability of the side it chose."""
    if task == tasks.SINGLE:
        return outputs.max(1)
    if task == tasks.MULTI:
        return np.maximum(outputs, 1 - outputs).min(1)
    raise ConfigError("`--min-confidence` keeps a classifier's sure answers; a regression teacher gives values")


def loss(task: str, logits, soft, hard, has_hard, temperature: float, hard_weight: float):
    """The student's loss on a batch: the soft loss against the teachers (cross-entropy with their tempered
    probabilities, times T^2; per-label binary cross-entropy; the squared error on the value), mixed with the
    hard labels' loss by `hard_weight` on the rows that have one (`has_hard`, a bool tensor)."""
    import torch
    import torch.nn.functional as F

    t = temperature
    if task == tasks.SINGLE:
        per_row = -(soft * F.log_softmax(logits.float() / t, 1)).sum(1) * t * t
        hard_row = F.cross_entropy(logits.float(), hard.clamp(min=0), reduction="none")
    elif task == tasks.MULTI:
        per_row = F.binary_cross_entropy_with_logits(logits.float() / t, soft, reduction="none").mean(1) * t * t
        hard_row = F.binary_cross_entropy_with_logits(logits.float(), hard, reduction="none").mean(1)
    else:
        per_row = (logits[:, 0].float() - soft) ** 2
        hard_row = (logits[:, 0].float() - hard) ** 2
    mixed = torch.where(has_hard, hard_weight * hard_row + (1 - hard_weight) * per_row, per_row)
    return mixed.mean()


def check_teachers(runs: list) -> tuple[str, list[str] | None, dict | None]:
    """The task, classes and label statistics every teacher shares; mismatched teachers are one line."""
    tasks.check_ensemble(runs)
    first = runs[0].manifest
    return tasks.task_of(first), first.get("classes"), first.get("target")


def read_texts(sources: list[Source], text_col: str, reporter) -> tuple[list[str], dict]:
    """Every text of `sources` (blank ones skipped, as the readers skip them), and what the manifest says of them."""
    texts, inputs = [], []
    for src in sources:
        corpus = open_corpus(src, text_col)
        n = len(texts)
        for batch in corpus.batches():
            texts.extend(batch)
        inputs.append({"source": str(src), "fingerprint": corpus.fingerprint, "rows": len(texts) - n})
    if not texts:
        raise InputError(f"{', '.join(map(str, sources))}: no text to distil on; give the unlabelled target text")
    digest = hashlib.sha256("\n".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
    reporter.info(f"distill: {len(texts):,} texts to learn the teacher's answers on")
    return texts, {"inputs": inputs, "rows": len(texts), "sha256": digest}


def teacher_identities(runs: list) -> list[dict]:
    """What each teacher's answers depend on: its weights (hashed once: a decoder's are hundreds of MB), task,
    classes, thresholds and label statistics."""
    return [
        {
            "weights": file_sha256(r.file("weights")),
            "task": tasks.task_of(r.manifest),
            "classes": r.manifest.get("classes"),
            "thresholds": r.manifest.get("thresholds"),
            "target": r.manifest.get("target"),
        }
        for r in runs
    ]


def teacher_key(identities: list[dict], texts_sha256: str, engine: str) -> str:
    """The cache key of the teachers' outputs over a set of texts: the teachers (`teacher_identities`), the texts
    and the engine that runs them (onnx and torch agree to 1e-5, not bit for bit)."""
    blob = json.dumps({"teachers": identities, "texts": texts_sha256, "engine": engine}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def teacher_outputs(predictor, texts: list[str], folder: Path, reporter) -> np.ndarray:
    """The teachers' outputs over `texts`, CHUNK texts at a time, each chunk saved in `folder` as it is done (so an
    interrupted labelling resumes at the first chunk missing), then read back whole. `predictor(texts)` gives
    the averaged outputs of a chunk."""
    folder.mkdir(parents=True, exist_ok=True)
    n_chunks = -(-len(texts) // CHUNK)
    done = sum((folder / f"{i:06d}.npy").exists() for i in range(n_chunks))
    if done == n_chunks:
        reporter.info(f"distill: reusing the teacher's outputs over the texts (cache {folder})")
    elif done:
        reporter.info(f"distill: resuming the teacher's labelling at {done * CHUNK:,} of {len(texts):,} texts")
    started, labelled = time.time(), 0
    for i in range(n_chunks):
        path = folder / f"{i:06d}.npy"
        if path.exists():
            continue
        out = np.asarray(predictor(texts[i * CHUNK : (i + 1) * CHUNK]), dtype=np.float32)
        tmp = folder / f".{i:06d}.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, out)
        os.replace(tmp, path)  # a chunk is whole or absent
        labelled += len(out)
        rate = labelled / max(time.time() - started, 1e-9)
        left = len(texts) - min(len(texts), (i + 1) * CHUNK)
        reporter.info(
            f"distill: the teacher labelled {min(len(texts), (i + 1) * CHUNK):,}/{len(texts):,} texts "
            f"({rate:.0f} a second, about {left / rate:.0f} s left)"
        )
    return np.concatenate([np.load(folder / f"{i:06d}.npy") for i in range(n_chunks)])


def teaching(
    teacher_runs: list,
    sources: list[Source],
    cfg: RunConfig,
    text_col: str,
    cache: Path,
    engine: str,
    batch_size: int,
    reporter,
) -> Teaching:
    """The teachers checked, the texts read, and the teachers' outputs over them (from the cache or computed)."""
    from ..inference.predictor import Predictor

    task, classes, target = check_teachers(teacher_runs)
    texts, record = read_texts(sources, text_col, reporter)
    identities = teacher_identities(teacher_runs)
    key = teacher_key(identities, record["sha256"], engine)
    predictor = Predictor(teacher_runs, batch_size, engine=engine, warn=reporter.warn)
    outputs = teacher_outputs(predictor, texts, cache / "teacher" / key, reporter)
    if task == tasks.REGRESSION:
        outputs = outputs.reshape(-1)
    record = {
        "teachers": [{"path": str(r.path.resolve()), "weights_sha256": i["weights"]} for r, i in
                     zip(teacher_runs, identities)],
        "texts": record,
        "temperature": cfg.temperature,
        "hard_weight": cfg.hard_weight,
        "engine": engine,
        "cache_key": key,
    }  # fmt: skip
    return Teaching(
        teacher_runs, task, classes, target, texts, outputs, cfg.temperature, cfg.hard_weight, record, predictor
    )


def open_teachers(paths: list[Path]) -> list:
    runs = [artifacts.open_run(p, ("finetune-clf",), "distill") for p in paths]
    if len({str(r.path.resolve()) for r in runs}) != len(runs):
        raise ConfigError("`--teacher` names a teacher twice; give each once")
    return runs
