"""Classification metrics, in numpy: accuracy, macro-F1, a per-class table and the confusion matrix."""

from __future__ import annotations

import numpy as np


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    per_class, f1s = [], []
    for c, name in enumerate(classes):
        tp = int(((y_pred == c) & (y_true == c)).sum())
        fp = int(((y_pred == c) & (y_true != c)).sum())
        fn = int(((y_pred != c) & (y_true == c)).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        support = tp + fn
        per_class.append({"label": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
        if support or tp + fp:  # as sklearn: classes neither in the truth nor predicted do not count
            f1s.append(f1)
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "n": int(len(y_true)),
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, y_pred, len(classes)),
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """Counts, rows the true class and columns the predicted one (sklearn's layout)."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m.tolist()
