"""Semantic change metrics of SECOND (Yang et al., TGRS 2021), from one confusion matrix of the 7 classes
(0 = unchanged) summed over both dates' maps and every pixel of the evaluation set:

* ``miou`` = (IoU of unchanged + IoU of changed) / 2, from the 2×2 change / no-change reduction;
* ``sek`` (separated kappa) = κ(Q̂) · e^(IoU_changed − 1), κ of the matrix with the unchanged-unchanged cell zeroed;
* ``score`` = 0.3 · mIoU + 0.7 · SeK (the SECOND challenge); ``fscd``: F1 of the per-class changed pixels;
  ``oa``: pixel accuracy over the 7 classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_siam.core.errors import DataError
from ssl_siam.data.semantic import FOLDERS, LANDCOVER, NUM_LANDCOVER, read_landcover

PRED_SUFFIXES = ("_label1", "_label2")  # predict writes <stem>_label1.png / <stem>_label2.png per pair


def _kappa(hist: np.ndarray) -> float:
    n = hist.sum()
    if n == 0:
        return 0.0
    observed = np.trace(hist) / n
    expected = float(hist.sum(0) @ hist.sum(1)) / n**2
    return (observed - expected) / (1 - expected) if expected != 1 else 0.0


@dataclass(frozen=True)
class SemanticScore:
    """A [7, 7] confusion matrix ``hist[target, prediction]``; every metric is defined from it."""

    hist: np.ndarray

    @property
    def iou_unchanged(self) -> float:
        h = self.hist
        denominator = h[0].sum() + h[:, 0].sum() - h[0, 0]
        return float(h[0, 0] / denominator) if denominator else 0.0

    @property
    def iou_changed(self) -> float:
        h = self.hist
        denominator = h.sum() - h[0, 0]
        return float(h[1:, 1:].sum() / denominator) if denominator else 0.0

    @property
    def miou(self) -> float:
        return (self.iou_unchanged + self.iou_changed) / 2

    @property
    def sek(self) -> float:
        separated = self.hist.copy()
        separated[0, 0] = 0
        return _kappa(separated) * float(np.exp(self.iou_changed - 1))

    @property
    def score(self) -> float:
        return 0.3 * self.miou + 0.7 * self.sek

    @property
    def fscd(self) -> float:
        h = self.hist
        hits = np.trace(h[1:, 1:])
        predicted, actual = h.sum() - h[:, 0].sum(), h.sum() - h[0].sum()
        return float(2 * hits / (predicted + actual)) if predicted + actual else 0.0

    @property
    def oa(self) -> float:
        total = self.hist.sum()
        return float(np.trace(self.hist) / total) if total else 0.0

    def to_dict(self) -> dict[str, float | list[list[int]]]:
        return {"sek": self.sek, "miou": self.miou, "score": self.score, "fscd": self.fscd, "oa": self.oa,
                "iou_changed": self.iou_changed, "iou_unchanged": self.iou_unchanged,
                "confusion": self.hist.astype(int).tolist()}

    def table(self) -> str:
        rows = [(k, getattr(self, k)) for k in ("sek", "miou", "score", "fscd", "oa", "iou_changed")]
        return "\n".join(f"{k:<12} {v:.4f}" for k, v in rows) + f"\npixels       {int(self.hist.sum())} (both dates)"


class SemanticAccumulator:
    """Sums ``hist[target, prediction]`` over ``update(pred1, pred2, target1, target2)`` (class ids 0..6, 0 =
    unchanged); target pixels equal to ``ignore_index`` count nowhere."""

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index
        self.hist = np.zeros((NUM_LANDCOVER, NUM_LANDCOVER), np.int64)

    def update(self, pred1: np.ndarray, pred2: np.ndarray, target1: np.ndarray, target2: np.ndarray) -> None:
        for pred, target in ((pred1, target1), (pred2, target2)):
            if pred.shape != target.shape:
                raise ValueError(f"prediction {pred.shape} and target {target.shape} differ")
            valid = target != self.ignore_index
            index = target[valid].astype(np.int64) * NUM_LANDCOVER + pred[valid].astype(np.int64)
            self.hist += np.bincount(index, minlength=NUM_LANDCOVER**2).reshape(NUM_LANDCOVER, NUM_LANDCOVER)

    def result(self) -> SemanticScore:
        return SemanticScore(self.hist.copy())


def semantic_maps(probs: np.ndarray | object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities ``[2 + 2S, H, W]`` (torch or numpy: change, pre land cover, post land cover) → (change mask,
    label1, label2) uint8: a date's class (1..S) where change is predicted, 0 elsewhere."""
    array = np.asarray(probs.float().cpu() if hasattr(probs, "float") else probs)
    classes = (array.shape[0] - 2) // 2
    change = array[:2].argmax(0).astype(np.uint8)
    label1 = (array[2 : 2 + classes].argmax(0) + 1) * change
    label2 = (array[2 + classes :].argmax(0) + 1) * change
    return change, label1.astype(np.uint8), label2.astype(np.uint8)


def score_semantic_dirs(pred_dir: str | Path, split_dir: str | Path) -> SemanticScore:
    """Score predicted land-cover maps ``<stem>_label1.png`` / ``<stem>_label2.png`` (colour-coded or class ids)
    against a SECOND split's ``label1/<stem>.png`` / ``label2/<stem>.png``, matched by stem."""
    pred_dir, split_dir = Path(pred_dir), Path(split_dir)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: expected a folder of <stem>_label1.png / <stem>_label2.png predictions")
    if not all((split_dir / f).is_dir() for f in FOLDERS[2:]):
        raise DataError(f"{split_dir}: expected a SECOND split with label1/ and label2/ (classes "
                        f"{', '.join(n for n, _ in LANDCOVER)})")
    targets = sorted((split_dir / "label1").glob("*.png"))
    if not targets:
        raise DataError(f"{split_dir / 'label1'}: no <stem>.png land-cover maps")
    acc = SemanticAccumulator()
    for target1 in targets:
        maps = []
        for folder, suffix in zip(FOLDERS[2:], PRED_SUFFIXES):
            target = read_landcover(split_dir / folder / target1.name)
            pred = pred_dir / f"{target1.stem}{suffix}.png"
            if not pred.is_file():
                raise DataError(f"{pred}: missing, expected a prediction for every target of {split_dir}")
            maps.append((read_landcover(pred, target.shape), target))
        acc.update(maps[0][0], maps[1][0], maps[0][1], maps[1][1])
    return acc.result()
