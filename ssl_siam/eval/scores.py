"""Metrics of the probes and of retrieval (numpy only): confusion matrix, top-1, per-class and macro F1,
precision@k and average precision."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] int64 counts, rows = true class, columns = predicted class (labels in 0..K-1)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"expected two [N] label arrays, got shapes {y_true.shape} and {y_pred.shape}")
    for labels in (y_true, y_pred):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Top-1: the fraction of equal labels (0.0 for no samples)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else 0.0


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[K] F1 = 2TP / (2TP + FP + FN) per class; NaN for a class neither present nor predicted."""
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, np.nan)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean F1 over the classes present in ``y_true`` or ``y_pred`` (as sklearn without ``labels``)."""
    f1 = per_class_f1(y_true, y_pred, num_classes)
    return float(np.nanmean(f1)) if np.isfinite(f1).any() else 0.0


def precision_at_k(relevant: np.ndarray, k: int) -> np.ndarray:
    """[Q] fraction of relevant items among the first ``k`` of each ranking; ``relevant`` [Q, M] bool, rank order."""
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    return relevant[:, :k].mean(axis=1)


def average_precision(relevant: np.ndarray) -> np.ndarray:
    """[Q] average precision of each full ranking ``relevant`` [Q, M] (bool, rank order): the mean of precision@r
    over the ranks r of the relevant items; 0 for a query without relevant items. The mean over queries is mAP."""
    relevant = np.asarray(relevant, dtype=bool)
    hits = np.cumsum(relevant, axis=1)
    precision = hits / np.arange(1, relevant.shape[1] + 1)
    count = relevant.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (precision * relevant).sum(axis=1) / count, 0.0)
