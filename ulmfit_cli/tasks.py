"""What a classifier run predicts, and everything that depends on it: reading labels, the training loss, the
validation metrics, turning outputs into predictions, and checking runs that are averaged together.

- single-label: one class per text; softmax and cross-entropy; validation accuracy.
- multi-label: a set of classes per text (a list column, or strings split on `--label-delim`); one sigmoid per
  class and binary cross-entropy; validation micro-F1 at 0.5; per-label thresholds tuned on the validation
  data after training (metrics.tune_thresholds) decide the predicted set.
- regression (`--regression`): one number per text; one output trained with MSE on standardised targets
  (mean and std of the training labels are kept in the manifest and undone at prediction); MAE and RMSE.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError, RunFolderError
from .metrics import macro_f1, macro_f1_multi, micro_f1, regression_report, tune_thresholds

SINGLE, MULTI, REGRESSION = "single-label", "multi-label", "regression"


# The validation metric that chooses the epoch a run keeps (loop.Selection): (key, larger is better); `--metric`
# chooses another of the task's own.
SELECTION_METRIC = {SINGLE: ("accuracy", True), MULTI: ("micro_f1", True), REGRESSION: ("mae", False)}
TASK_METRICS = {
    SINGLE: ("accuracy", "macro_f1", "micro_f1", "valid_loss"),
    MULTI: ("micro_f1", "macro_f1", "valid_loss"),
    REGRESSION: ("mae", "rmse", "valid_loss"),
}
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "micro_f1": True, "valid_loss": False, "mae": False,
                    "rmse": False}  # fmt: skip


def selection_metric(task: str, metric: str) -> tuple[str, bool]:
    """(validation row key, larger is better) for `--metric` on `task`; a single-label run's micro-F1 is its
    accuracy. A metric the task does not have is an error before training."""
    from .errors import ConfigError

    if metric == "auto":
        return SELECTION_METRIC[task]
    if metric not in TASK_METRICS[task]:
        raise ConfigError(f"`--metric {metric}` is not a {task} metric; choose one of {', '.join(TASK_METRICS[task])}")
    if task == SINGLE and metric == "micro_f1":
        metric = "accuracy"
    return metric, HIGHER_IS_BETTER[metric]


def check_settings(task: str, cfg) -> None:
    """`--metric` and `--class-weights` against the task the labels turned out to be, before any training."""
    from .errors import ConfigError

    selection_metric(task, cfg.metric)
    if cfg.class_weights != "none" and task == REGRESSION:
        raise ConfigError("`--class-weights balanced` weighs classes; a regression run (--regression) has none")


def class_weights(task: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    """`--class-weights balanced`: single-label, n / (classes * count) per class (scikit-learn's 'balanced', the
    mean weight of a training example is 1); multi-label, each label's negatives / positives (the positive weight
    of BCEWithLogitsLoss). Classes come from the training labels, so every count is at least 1. A regression run
    has no classes: check_settings refuses the flag for it before training."""
    if task == SINGLE:
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        return (len(y) / (n_classes * np.maximum(counts, 1))).astype(np.float32)
    pos = y.sum(0).astype(np.float64)  # multi-label
    return ((len(y) - pos) / np.maximum(pos, 1)).astype(np.float32)


def run_extras(task: str, valid_logits, vy, target, classes, reporter) -> dict:
    """What a run of `task` keeps beside its weights: the regression target's scale, or the multi-label
    decision thresholds, tuned per label on the validation data (`valid_logits()`) once training is over."""
    if task == REGRESSION:
        return {"target": target}
    if task != MULTI:
        return {}
    if len(vy) == 0:  # no validation rows to tune on: every label at 0.5
        return {"thresholds": {c: 0.5 for c in classes}}
    probs = outputs(task, valid_logits())
    true = vy > 0.5
    cuts = tune_thresholds(probs, true)
    tuned = {"micro_f1_at_0.5": micro_f1(true, probs >= 0.5), "micro_f1": micro_f1(true, probs >= cuts)}
    reporter.info(
        f"thresholds tuned per label on {len(vy)} validation documents: micro-F1 "
        f"{tuned['micro_f1_at_0.5']:.4f} at 0.5 -> {tuned['micro_f1']:.4f}"
    )
    return {"thresholds": {c: float(t) for c, t in zip(classes, cuts)}, "thresholds_valid": tuned}


# the metrics `ulmfit evaluate` reports for each task (and --fail-under / --fail-over can gate on)
REPORTED = {
    SINGLE: ("accuracy", "macro_f1"),
    MULTI: ("micro_f1", "macro_f1", "micro_precision", "micro_recall", "exact_match"),
    REGRESSION: ("mae", "rmse", "r2"),
}


def majority_baseline(task: str, y: np.ndarray, vy: np.ndarray, classes: list[str] | None) -> dict | None:
    """Always answering the training rows' most common class (`y`: class indices): its accuracy on the validation
    labels `vy`. None for other tasks and without validation rows."""
    if task != SINGLE or len(vy) == 0 or len(y) == 0:
        return None
    top = int(np.bincount(y, minlength=len(classes)).argmax())
    return {"class": classes[top], "accuracy": float((vy == top).mean()), "documents": len(vy)}


def no_better_than_majority(row: dict, baseline: dict | None) -> str | None:
    """A warning when the validation `row` of the published epoch scores no better than `baseline`; else None."""
    if baseline is None or row.get("accuracy") is None or row["accuracy"] > baseline["accuracy"]:
        return None
    rows = baseline.get("on", "validation")
    return (
        f"the classifier's {rows} accuracy {row['accuracy']:.1%} is no better than always answering the most "
        f"common class {baseline['class']!r} ({baseline['accuracy']:.1%}) on {baseline['documents']} {rows} "
        "documents; train more steps (--min-steps) or give more labelled rows"
    )


def task_of(manifest: dict) -> str:
    return manifest.get("task", SINGLE)  # runs written before multi-label and regression existed


def detect(labels: list, cfg) -> str:
    """The task of a training run: from the flags, or multi-label when the label column holds lists."""
    if cfg.regression:
        return REGRESSION
    if cfg.label_delim is not None or any(isinstance(v, list) for v in labels):
        return MULTI
    return SINGLE


def parse(table, src, label_col: str, task: str, delim: str | None) -> list:
    """The labels of `table` for `task`: strings, sorted lists of strings, or floats."""
    if task == SINGLE:
        return [str(v) for v in table.labels]
    if task == MULTI:
        return [_label_set(v, delim) for v in table.labels]
    values = []
    for i, v in enumerate(table.labels):
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x):
            row = table.rows[i] + 1 if table.rows is not None else i + 1
            raise InputError(
                f"{src}: row {row} of column {label_col!r} is {v!r}, not a number; a regression run "
                "(--regression) needs a number in every row"
            )
        values.append(x)
    return values


def _label_set(v, delim: str | None) -> list[str]:
    items = v if isinstance(v, list) else (str(v).split(delim) if delim is not None else [str(v)])
    return sorted({str(x).strip() for x in items if x is not None and str(x).strip()})


def classes_of(task: str, labels: list, src, label_col: str) -> list[str] | None:
    """The classes (sorted) a classifier of `task` learns from `labels`; None for regression."""
    if task == SINGLE:
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise InputError(
                f"{src}: column {label_col!r} has a single class ({classes[0]!r}); a classifier needs at least two"
            )
        return classes
    if task == MULTI:
        classes = sorted({c for row in labels for c in row})
        if not classes:
            raise InputError(f"{src}: column {label_col!r} holds no labels at all; a classifier needs some")
        return classes
    if len(set(labels)) < 2:
        raise InputError(f"{src}: every label in column {label_col!r} is {labels[0]!r}; nothing to regress on")
    return None


def unseen(task: str, labels: list, classes: list[str] | None) -> list[str]:
    if task == REGRESSION:
        return []
    found = {c for row in labels for c in row} if task == MULTI else set(labels)
    return sorted(found - set(classes))


def target_stats(labels: list[float]) -> dict:
    y = np.asarray(labels, dtype=np.float64)
    return {"mean": float(y.mean()), "std": float(y.std()) or 1.0}


def encode(task: str, labels: list, classes: list[str] | None, target: dict | None) -> np.ndarray:
    """Training targets: class indices (N,) int64, indicators (N, C) float32, or standardised values (N,)."""
    if task == REGRESSION:
        return ((np.asarray(labels, dtype=np.float64) - target["mean"]) / target["std"]).astype(np.float32)
    cix = {c: i for i, c in enumerate(classes)}
    if task == SINGLE:
        return np.array([cix[v] for v in labels], dtype=np.int64)
    y = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for r, row in enumerate(labels):
        y[r, [cix[c] for c in row]] = 1.0
    return y


def n_outputs(task: str, classes: list[str] | None) -> int:
    return 1 if task == REGRESSION else len(classes)


def loss_weights(cfg, task: str, y: np.ndarray, classes: list[str] | None, device):
    """The training loss's class weights under `cfg.class_weights` (a tensor on `device`), or None."""
    import torch

    if cfg.class_weights == "none":
        return None
    return torch.from_numpy(class_weights(task, y, len(classes or []))).to(device)


def loss(task: str, logits, y, weights=None):
    """The training loss of logits (B, C) against targets from `encode`; `weights` (a tensor from class_weights)
    weighs each class (single-label: the weighted mean, as torch's cross_entropy) or each label's positives."""
    import torch.nn.functional as F

    if task == SINGLE:
        return F.cross_entropy(logits, y, weight=weights)
    if task == MULTI:
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=weights)
    return F.mse_loss(logits[:, 0], y)


def valid_metrics(task: str, logits: np.ndarray, y: np.ndarray, target: dict | None) -> dict:
    """The per-epoch validation row: the loss, and accuracy, micro-F1 at 0.5, or MAE and RMSE."""
    import torch

    row = {"valid_loss": loss(task, torch.from_numpy(logits), torch.from_numpy(y)).item()}
    if task == SINGLE:
        pred = logits.argmax(1)
        return {**row, "accuracy": float((pred == y).mean()), "macro_f1": macro_f1(y, pred, logits.shape[1])}
    if task == MULTI:
        true, pred = y > 0.5, logits >= 0.0  # sigmoid(z) >= 0.5 <=> z >= 0
        return {**row, "micro_f1": micro_f1(true, pred), "macro_f1": macro_f1_multi(true, pred)}
    m = regression_report(y * target["std"] + target["mean"], outputs(task, logits, target))
    return {**row, "mae": m["mae"], "rmse": m["rmse"]}


def outputs(task: str, logits: np.ndarray, target: dict | None = None) -> np.ndarray:
    """Probabilities (N, C) (softmax, or one sigmoid per label), or values (N,) in the labels' units."""
    if task == REGRESSION:
        return logits[:, 0].astype(np.float64) * target["std"] + target["mean"]
    if task == MULTI:
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def thresholds(manifest: dict) -> np.ndarray | None:
    """A multi-label run's decision threshold per class, in class order."""
    if task_of(manifest) != MULTI:
        return None
    stored = manifest.get("thresholds", {})
    return np.array([float(stored.get(c, 0.5)) for c in manifest["classes"]])


def check_ensemble(runs) -> None:
    """Runs whose outputs are averaged must predict the same thing: same task, same classes in the same order."""
    first, task, classes = runs[0], task_of(runs[0].manifest), runs[0].manifest.get("classes")
    for run in runs[1:]:
        other = task_of(run.manifest)
        if other != task:
            raise RunFolderError(
                f"{run.path}: a {other} run cannot be averaged with {first.path}, a {task} run; "
                "ensemble runs of one task"
            )
        theirs = run.manifest.get("classes")
        if theirs != classes:
            diff = next((f"{a!r} vs {b!r}" for a, b in zip(classes, theirs) if a != b), "one list is longer")
            raise RunFolderError(
                f"{run.path}: its {len(theirs)} classes differ from the {len(classes)} of {first.path} "
                f"(first difference: {diff}); ensemble runs trained on the same labels"
            )
