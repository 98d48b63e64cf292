"""Classification scores from a confusion matrix: accuracy, macro-F1, per-class P/R, the floor.

Everything is computed from one (3, 3) count matrix (rows: true class, columns: predicted), so
scores from several processes (DDP ranks) or batches are added as matrices first and scored once.
Macro-F1 is the unweighted mean of the per-class F1 (LOBCAST's "F1"; the DeepLOB paper's tables
look support-weighted, see shared/reference/lob-models.md), and every report carries the
majority-class floor beside it: the accuracy of always saying the test period's most common class.
A class with no true and no predicted window has F1 0 and counts in the mean (it is a failure to
cover the class, not a free point). Pure numpy; no I/O.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("down", "flat", "up")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Counts[true, predicted] (int64); entries with a label < 0 are ignored."""
    t = np.asarray(y_true).astype(np.int64)
    p = np.asarray(y_pred).astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"metrics: {t.shape} true labels against {p.shape} predictions")
    keep = t >= 0
    if np.any((p[keep] < 0) | (p[keep] >= n_classes)) or np.any(t[keep] >= n_classes):
        raise ValueError(f"metrics: class outside 0..{n_classes - 1}")
    return np.bincount(t[keep] * n_classes + p[keep], minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def scores(cm: np.ndarray) -> dict:
    """accuracy, macro_f1, weighted_f1, majority_floor, n and per-class precision/recall/f1/support."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    out: dict = {
        "n": int(n),
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / n) if n else 0.0,
        "majority_floor": float(support.max() / n) if n else 0.0,
    }
    for i, name in enumerate(CLASS_NAMES[: len(tp)]):
        out[f"precision_{name}"] = float(precision[i])
        out[f"recall_{name}"] = float(recall[i])
        out[f"f1_{name}"] = float(f1[i])
        out[f"support_{name}"] = int(support[i])
    return out


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    return scores(confusion(y_true, y_pred))
