"""Binary change metrics (LEVIR-CD, WHU-CD, S2Looking, OSCD): confusion counts of the change class summed over
every pixel of the evaluation set — never an average of per-image scores — then precision, recall, F1, IoU,
overall accuracy and Cohen's kappa, as open-cd and the benchmark papers report them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ssl_siam.core.errors import DataError


@dataclass(frozen=True)
class BinaryScore:
    """Counts of the change class; every metric is defined from them (0 where its denominator is 0)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @staticmethod
    def _ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    @property
    def precision(self) -> float:
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def iou(self) -> float:
        return self._ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def oa(self) -> float:
        return self._ratio(self.tp + self.tn, self.tp + self.fp + self.fn + self.tn)

    @property
    def kappa(self) -> float:
        """Cohen's kappa: (p_o − p_e) / (1 − p_e), p_e from the marginals of prediction and target."""
        n = self.tp + self.fp + self.fn + self.tn
        if n == 0:
            return 0.0
        expected = ((self.tp + self.fp) * (self.tp + self.fn) + (self.fn + self.tn) * (self.fp + self.tn)) / n**2
        return self._ratio(self.oa - expected, 1 - expected)

    def to_dict(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "iou": self.iou, "oa": self.oa,
                "kappa": self.kappa, "score": self.f1, "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}

    def table(self) -> str:
        rows = [(k, getattr(self, k)) for k in ("f1", "precision", "recall", "iou", "oa", "kappa")]
        return "\n".join(f"{k:<10} {v:.4f}" for k, v in rows) + f"\npixels     {self.tp + self.fp + self.fn + self.tn}"


class BinaryAccumulator:
    """Sums the confusion counts of ``update(prediction, target)``; target pixels equal to ``ignore_index``
    count nowhere."""

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index
        self.counts = np.zeros(4, np.int64)  # tp, fp, fn, tn

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ")
        valid = target != self.ignore_index
        pred, targ = prediction[valid] > 0, target[valid] > 0
        self.counts += np.array([np.sum(pred & targ), np.sum(pred & ~targ), np.sum(~pred & targ),
                                 np.sum(~pred & ~targ)], np.int64)

    def result(self) -> BinaryScore:
        return BinaryScore(*(int(c) for c in self.counts))


def read_binary_mask(path: Path, shape: tuple[int, ...] | None = None, threshold: int | None = None) -> np.ndarray:
    """A change mask as uint8 0/1: files hold 0/1 or 0/255, anything else is a one-line DataError; with a
    ``threshold`` (anti-aliased masks) values ≥ it are change and the others no change (RGB read as grey)."""
    try:
        with Image.open(path) as image:
            mask = np.asarray(image.convert("L") if image.mode not in ("L", "P", "1") else image)
    except (OSError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable, expected a single-channel PNG change mask ({exc})") from None
    if shape is not None and mask.shape != shape:
        raise DataError(f"{path}: size {mask.shape}, expected {shape} like its target")
    if threshold is not None:
        return (mask >= threshold).astype(np.uint8)
    values = set(np.unique(mask).tolist())
    if not values <= {0, 1} and not values <= {0, 255}:
        raise DataError(f"{path}: mask values {sorted(values)[:6]}, expected 0/1 or 0/255 (no change / change; "
                        "anti-aliased masks: set a mask threshold, e.g. 128)")
    return (mask > 0).astype(np.uint8)


_SUFFIX = re.compile(r"_change_mask$")


def score_binary_dirs(pred_dir: str | Path, targ_dir: str | Path, mask_threshold: int | None = None) -> BinaryScore:
    """Score a folder of predicted change masks against a folder of targets, matched by file stem: a prediction
    ``<stem>_change_mask.png`` or ``<stem>.png`` for every target ``<stem>.png`` (targets binarised by
    ``mask_threshold`` when given; predictions are always 0/1 or 0/255)."""
    pred_dir, targ_dir = Path(pred_dir), Path(targ_dir)
    for folder in (pred_dir, targ_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: expected a folder of PNG change masks")
    predictions = {_SUFFIX.sub("", p.stem): p for p in sorted(pred_dir.glob("*.png"))
                   if not p.stem.endswith(("_overlay", "_change_probability"))}
    targets = sorted(targ_dir.glob("*.png"))
    if not targets:
        raise DataError(f"{targ_dir}: no <stem>.png target masks")
    acc = BinaryAccumulator()
    for target_path in targets:
        if target_path.stem not in predictions:
            raise DataError(f"{pred_dir / (target_path.stem + '_change_mask.png')}: missing, expected a prediction "
                            f"for every target of {targ_dir}")
        target = read_binary_mask(target_path, threshold=mask_threshold)
        acc.update(read_binary_mask(predictions[target_path.stem], target.shape), target)
    return acc.result()
