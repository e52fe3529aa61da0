"""Pair verification metrics (numpy only): ROC, AUC, EER, best-threshold accuracy, N-way one-shot accuracy, ROC plot.

Scores are similarities (higher = more alike); pair labels are 1 = same, 0 = different; a threshold predicts "same"
when ``score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _validated(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 scores and int64 0/1 labels, both [N] with N > 0."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"expected two non-empty [N] arrays, got shapes {scores.shape} and {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 (different) or 1 (same), got values {np.unique(labels).tolist()}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return scores, labels.astype(np.int64)


def _cumulative_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fps, tps, thresholds): counts predicted "same" at +inf then at each distinct score, in descending order."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), scores.size - 1]  # last index of each distinct score
    tps = np.r_[0, np.cumsum(labels)[last]]
    fps = np.r_[0, last + 1 - tps[1:]]
    return fps, tps, np.r_[np.inf, scores[last]]


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): (0, 0) at +inf, then one point per distinct score (as sklearn, no intermediate drop)."""
    scores, labels = _validated(scores, labels)
    n_positive = int(labels.sum())
    if n_positive in (0, labels.size):
        raise ValueError(f"ROC needs both classes, got only label {labels[0]} in {labels.size} pairs")
    fps, tps, thresholds = _cumulative_counts(scores, labels)
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Trapezoidal area under the ROC = P(positive score > negative score) + P(tie) / 2."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(eer, threshold) where FPR = FNR, linearly interpolated between the two ROC points around the crossing.

    FPR - FNR strictly increases along the curve from -1 (at +inf) to 1, so the crossing is unique; the threshold is
    interpolated the same way between the two point thresholds, or is the finite one when the other is +inf.
    """
    fpr, tpr, thresholds = roc_curve(scores, labels)
    gap = fpr - (1 - tpr)
    i = int(np.argmax(gap >= 0))  # >= 1 since gap[0] = -1
    if gap[i] == 0:
        return float(fpr[i]), float(thresholds[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    high, low = thresholds[i - 1], thresholds[i]
    threshold = high + t * (low - high) if np.isfinite(high) else low
    return float(eer), float(threshold)


def best_threshold_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold) maximising the accuracy over +inf ("all different") and each distinct score.

    Ties go to the highest threshold. Unlike the ROC functions, a single class is allowed.
    """
    scores, labels = _validated(scores, labels)
    fps, tps, thresholds = _cumulative_counts(scores, labels)
    correct = tps + (labels.size - labels.sum() - fps)  # true "same" + true "different"
    best = int(np.argmax(correct))
    return float(correct[best] / labels.size), float(thresholds[best])


def one_shot_accuracy(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_way: int,
    trials: int = 1000,
    seed: int = 0,
    metric: str | Callable[[np.ndarray, np.ndarray], np.ndarray] = "cosine",
) -> float:
    """N-way one-shot accuracy (Koch et al. 2015; Vinyals et al. 2016), vectorised over trials.

    Each trial draws a query class uniformly among the classes with >= 2 samples, ``n_way - 1`` other distinct
    classes uniformly among the rest, one support sample per class and a query sample of the query class distinct
    from its support. The prediction is the most similar support by ``metric``: cosine similarity, negative euclidean
    distance, or a function (query vectors ``[T, D]``, support vectors ``[T, N, D]``) → similarities ``[T, N]``,
    e.g. a trained model's own score; a tie for the maximum counts as 1 / (number of tied supports) when the true
    support is among them.
    """
    embeddings, labels = np.asarray(embeddings), np.asarray(labels)
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(f"expected [N, D] embeddings and [N] labels, got {embeddings.shape} and {labels.shape}")
    if not callable(metric) and metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if n_way < 2 or trials < 1:
        raise ValueError(f"need n_way >= 2 and trials >= 1, got n_way={n_way}, trials={trials}")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.size < n_way:
        raise ValueError(f"{n_way}-way one-shot needs at least {n_way} classes, got {counts.size}")
    eligible = np.flatnonzero(counts >= 2)
    if eligible.size == 0:
        raise ValueError("one-shot needs a class with at least 2 samples (a query and its support), got none")
    members = np.argsort(inverse, kind="stable")  # sample indices grouped by class
    offsets = np.r_[0, np.cumsum(counts)[:-1]]
    rng = np.random.default_rng(seed)

    query_class = eligible[rng.integers(eligible.size, size=trials)]
    keys = rng.random((trials, counts.size))
    keys[np.arange(trials), query_class] = np.inf  # never drawn again as a distractor
    distractors = np.argpartition(keys, n_way - 2, axis=1)[:, : n_way - 1]  # [trials, n_way - 1] random classes
    query_pos = rng.integers(counts[query_class])
    support_pos = rng.integers(counts[query_class] - 1)
    support_pos += support_pos >= query_pos  # a different sample of the same class
    other_pos = (rng.random(distractors.shape) * counts[distractors]).astype(np.int64)
    query = members[offsets[query_class] + query_pos]
    supports = np.concatenate(
        [members[offsets[query_class] + support_pos][:, None], members[offsets[distractors] + other_pos]], axis=1
    )  # [trials, n_way], the true support first

    vectors = embeddings.astype(np.result_type(embeddings.dtype, np.float32))  # gathered as [trials, n_way, D]
    if callable(metric):
        similarity = np.asarray(metric(vectors[query], vectors[supports]))
    elif metric == "cosine":
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        similarity = np.einsum("td,tkd->tk", vectors[query], vectors[supports])
    else:
        similarity = -np.square(vectors[supports] - vectors[query][:, None]).sum(axis=2)
    is_max = similarity == similarity.max(axis=1, keepdims=True)
    return float(np.mean(is_max[:, 0] / is_max.sum(axis=1)))


def verification_report(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUC, EER (and its threshold), best accuracy (and its threshold), number of pairs and of positive pairs."""
    scores, labels = _validated(scores, labels)
    eer, eer_threshold = equal_error_rate(scores, labels)
    best_accuracy, best_threshold = best_threshold_accuracy(scores, labels)
    return {
        "roc_auc": roc_auc(scores, labels),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "best_accuracy": best_accuracy,
        "best_threshold": best_threshold,
        "n_pairs": int(labels.size),
        "n_positive": int(labels.sum()),
    }


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path) -> Path:
    """ROC curves (name -> (fpr, tpr, auc)) on one figure with the chance diagonal, saved as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance")
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {auc:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path
