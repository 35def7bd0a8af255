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


def _per_label(tp, fp, fn, classes: list[str]) -> tuple[list[dict], float]:
    """Per-label rows and macro-F1 from per-label counts (C,). Labels neither in the truth nor predicted do not
    count towards macro-F1, as in sklearn's multi-class report."""
    precision, recall, f1 = _f1(tp, fp, fn)
    rows = [
        {"label": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, tp + fn)
    ]
    counted = (tp + fn + fp) > 0
    return rows, float(f1[counted].mean()) if counted.any() else 0.0


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    return confusion_report(np.array(confusion_matrix(y_true, y_pred, len(classes))), classes)


def confusion_report(cm: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro-F1 and the per-class table from a confusion matrix (C, C), rows the true class: all the
    single-label metrics need, so `evaluate` sums it batch by batch instead of keeping every prediction."""
    tp = np.diag(cm)
    per_class, macro = _per_label(tp, cm.sum(0) - tp, cm.sum(1) - tp, classes)
    n = int(cm.sum())
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": macro,
        "n": n,
        "per_class": per_class,
        "confusion": cm.tolist(),
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """Counts, rows the true class and columns the predicted one (sklearn's layout)."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m.tolist()


def micro_f1(true: np.ndarray, pred: np.ndarray) -> float:
    """F1 over all (document, label) decisions of boolean matrices (N, C)."""
    return float(_f1((true & pred).sum(), (~true & pred).sum(), (true & ~pred).sum())[2])


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Single-label macro-F1 of class indices, as `evaluate` reports it (confusion_report)."""
    return confusion_report(np.array(confusion_matrix(y_true, y_pred, n_classes)), [""] * n_classes)["macro_f1"]


def macro_f1_multi(true: np.ndarray, pred: np.ndarray) -> float:
    """Multi-label macro-F1 of boolean matrices (N, C): the mean F1 of the labels present or predicted."""
    tp, fp, fn = (true & pred).sum(0), (~true & pred).sum(0), (true & ~pred).sum(0)
    return _per_label(tp, fp, fn, [""] * true.shape[1])[1]


def multilabel_counts(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """What the multi-label metrics need of boolean matrices (N, C): per label true positives, false positives
    and false negatives, and in column 0 of a fourth row the documents whose set is exactly right (4, C); sums
    of these over batches are the counts of the whole data."""
    out = np.zeros((4, true.shape[1]), dtype=np.int64)
    out[:3] = (true & pred).sum(0), (~true & pred).sum(0), (true & ~pred).sum(0)
    out[3, 0] = (true == pred).all(1).sum()
    return out


def multilabel_report(true: np.ndarray, pred: np.ndarray, classes: list[str], thresholds: np.ndarray) -> dict:
    return multilabel_counts_report(multilabel_counts(true, pred), len(true), classes, thresholds)


def multilabel_counts_report(counts: np.ndarray, n: int, classes: list[str], thresholds: np.ndarray) -> dict:
    """The multi-label report from `multilabel_counts` (summed over `n` documents)."""
    tp, fp, fn = counts[:3]
    per_class, macro = _per_label(tp, fp, fn, classes)
    for row, t in zip(per_class, thresholds):
        row["threshold"] = float(t)
    precision, recall, f1 = _f1(tp.sum(), fp.sum(), fn.sum())
    return {
        "micro_f1": float(f1),
        "macro_f1": macro,
        "micro_precision": float(precision),
        "micro_recall": float(recall),
        "exact_match": float(counts[3, 0] / n) if n else 0.0,
        "n": int(n),
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
    return RegressionSums().add(y, pred).report()


class RegressionSums:
    """MAE, RMSE and R^2 from running sums, batch by batch: the errors' absolute and squared sums, and the
    labels' mean and sum of squared deviations merged as in Chan et al.'s parallel variance (a plain sum of
    squares would lose R^2 to cancellation on large labels)."""

    def __init__(self):
        self.n, self.abs_err, self.sq_err, self.mean, self.m2 = 0, 0.0, 0.0, 0.0, 0.0

    def add(self, y: np.ndarray, pred: np.ndarray) -> RegressionSums:
        y, err = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64) - y
        if not len(y):
            return self
        n, mean = len(y), float(y.mean())
        total, delta = self.n + n, mean - self.mean
        self.m2 += float(((y - mean) ** 2).sum()) + delta**2 * self.n * n / total
        self.mean += delta * n / total
        self.n, self.abs_err, self.sq_err = (
            total,
            self.abs_err + float(np.abs(err).sum()),
            self.sq_err + float((err**2).sum()),
        )
        return self

    def report(self) -> dict:
        n = self.n or 1
        var, mse = self.m2 / n, self.sq_err / n
        return {"mae": self.abs_err / n, "rmse": mse**0.5, "r2": 1 - mse / var if var > 0 else 0.0, "n": self.n}
