"""Metrics in numpy: single-label (accuracy, macro-F1, per class, confusion matrix), multi-label
(micro/macro-F1, per label, threshold tuning) and regression (MAE, RMSE, R^2)."""

from __future__ import annotations

import numpy as np

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)  # candidate per-label decision thresholds


def _f1(tp, fp, fn):
    """Precision, recall and F1 from counts (scalars or arrays); 0 where undefined, as sklearn's zero_division=0."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return precision, recall, f1


def _per_label(true: np.ndarray, pred: np.ndarray, classes: list[str]) -> tuple[list[dict], float]:
    """Per-label rows and macro-F1 from boolean indicator matrices (N, C). Labels neither in the truth nor
    predicted do not count towards macro-F1, as in sklearn's multi-class report."""
    tp, fp, fn = ((true & pred).sum(0), (~true & pred).sum(0), (true & ~pred).sum(0))
    precision, recall, f1 = _f1(tp, fp, fn)
    rows = [
        {"label": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, tp + fn)
    ]
    counted = (tp + fn + fp) > 0
    return rows, float(f1[counted].mean()) if counted.any() else 0.0


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    eye = np.eye(len(classes), dtype=bool)
    per_class, macro = _per_label(eye[y_true], eye[y_pred], classes)
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": macro,
        "n": int(len(y_true)),
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, y_pred, len(classes)),
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """Counts, rows the true class and columns the predicted one (sklearn's layout)."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m.tolist()


def micro_f1(true: np.ndarray, pred: np.ndarray) -> float:
    """F1 over all (document, label) decisions of boolean matrices (N, C)."""
    return float(_f1((true & pred).sum(), (~true & pred).sum(), (true & ~pred).sum())[2])


def multilabel_report(true: np.ndarray, pred: np.ndarray, classes: list[str], thresholds: np.ndarray) -> dict:
    per_class, macro = _per_label(true, pred, classes)
    for row, t in zip(per_class, thresholds):
        row["threshold"] = float(t)
    precision, recall, f1 = _f1((true & pred).sum(), (~true & pred).sum(), (true & ~pred).sum())
    return {
        "micro_f1": float(f1),
        "macro_f1": macro,
        "micro_precision": float(precision),
        "micro_recall": float(recall),
        "exact_match": float((true == pred).all(1).mean()) if len(true) else 0.0,
        "n": int(len(true)),
        "per_class": per_class,
    }


def tune_thresholds(probs: np.ndarray, true: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per label, the threshold in `grid` with the best F1 on (probs (N, C), true (N, C) bool); ties go to
    the threshold nearest 0.5, and a label without positives (or never found at any threshold) keeps 0.5."""
    pred = probs[None] >= grid[:, None, None]  # (G, N, C)
    tp = (pred & true).sum(1)
    f1 = _f1(tp, (pred & ~true).sum(1), (~pred & true).sum(1))[2]  # (G, C)
    best = np.full(probs.shape[1], 0.5)
    nearness = -np.abs(grid - 0.5)
    for c in range(probs.shape[1]):
        if true[:, c].any() and f1[:, c].max() > 0:
            top = np.flatnonzero(f1[:, c] == f1[:, c].max())
            best[c] = grid[top[np.argmax(nearness[top])]]
    return best


def regression_report(y: np.ndarray, pred: np.ndarray) -> dict:
    err = pred - y
    var = float(((y - y.mean()) ** 2).mean()) if len(y) else 0.0
    mse = float((err**2).mean()) if len(y) else 0.0
    return {
        "mae": float(np.abs(err).mean()) if len(y) else 0.0,
        "rmse": mse**0.5,
        "r2": 1 - mse / var if var > 0 else 0.0,
        "n": int(len(y)),
    }
