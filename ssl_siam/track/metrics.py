"""OTB one-pass evaluation (OPE; Wu et al. 2013, 2015): success plot (fraction of frames whose IoU with the ground
truth exceeds a threshold, 0..1) and its area under the curve, precision plot (fraction of frames whose centre error
is within a threshold, 0..50 px) and precision at one threshold, and the normalised precision of TrackingNet
(Müller et al. 2018: centre offsets divided by the ground-truth size, thresholds 0..0.5, area under the curve).

Which frames count: those where the target is present in the ground truth, minus the first. The first frame is
the initialisation, correct by construction; the OTB toolkit counts it as a perfect frame (it overwrites the result
with the ground truth), GOT-10k (Huang et al. 2019) leaves it out, as we do, because on short sequences a free
perfect frame inflates every score. A prediction missing on a present frame (NaN, or a non-positive size: the
tracker lost the target or declared it absent) is a failure: IoU 0, infinite centre error. Boxes are x, y, w, h in
pixel-edge coordinates; the centre is ``x + w / 2``.

Overall scores are the means of the per-sequence curves (each sequence weighs the same, as OTB reports them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssl_siam.core.errors import DataError
from ssl_siam.track.sequences import valid_boxes

IOU_THRESHOLDS = np.linspace(0, 1, 21)
PX_THRESHOLDS = np.arange(0, 51)
NORM_THRESHOLDS = np.linspace(0, 0.5, 51)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N]`` intersection over union of paired boxes ``[N, 4]`` x, y, w, h."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lo = np.maximum(a[:, :2], b[:, :2])
    hi = np.minimum(a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=1)
    union = a[:, 2:].prod(axis=1) + b[:, 2:].prod(axis=1) - inter
    return inter / np.maximum(union, np.finfo(np.float64).tiny)


def _centres(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64)
    return boxes[:, :2] + boxes[:, 2:] / 2


def centre_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N]`` Euclidean distance in pixels between the centres of paired boxes."""
    return np.hypot(*(_centres(a) - _centres(b)).T)


def normalised_centre_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``[N]`` centre distance with each axis' offset divided by the ground truth's width / height (TrackingNet), so
    that a 2 px miss on a 10 px car weighs like a 20 px miss on a 100 px one."""
    gt = np.asarray(gt, np.float64)
    return np.hypot(*((_centres(pred) - _centres(gt)) / gt[:, 2:]).T)


@dataclass
class SequenceScore:
    """One sequence's curves (over IOU_THRESHOLDS, PX_THRESHOLDS, NORM_THRESHOLDS) and scores."""

    name: str
    success: np.ndarray
    precision: np.ndarray
    norm_precision: np.ndarray
    success_auc: float
    precision_at: float  # at precision_px
    norm_precision_auc: float
    frames: int  # frames scored
    precision_px: float = 20.0


def score_sequence(name: str, pred: np.ndarray, gt: np.ndarray, precision_px: float = 20.0) -> SequenceScore:
    """Scores predicted boxes ``[T, 4]`` against the ground truth ``[T, 4]`` (NaN rows: absent) of one sequence."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or gt.ndim != 2 or gt.shape[1] != 4:
        raise DataError(f"{name}: predicted boxes of shape {pred.shape} for ground truth of shape {gt.shape}: "
                        f"expected [T, 4] each, one x,y,w,h per frame")
    scored = valid_boxes(gt)
    scored[:1] = False  # the initialisation
    if not scored.any():
        raise DataError(f"{name}: no frame to score: the target is absent from the ground truth after the first frame")
    pred, gt = pred[scored], gt[scored]
    found = valid_boxes(pred)
    iou, err, norm = np.zeros(len(gt)), np.full(len(gt), np.inf), np.full(len(gt), np.inf)
    iou[found] = box_iou(pred[found], gt[found])
    err[found] = centre_error(pred[found], gt[found])
    norm[found] = normalised_centre_error(pred[found], gt[found])
    success = (iou[:, None] > IOU_THRESHOLDS).mean(axis=0)
    precision = (err[:, None] <= PX_THRESHOLDS).mean(axis=0)
    norm_precision = (norm[:, None] <= NORM_THRESHOLDS).mean(axis=0)
    return SequenceScore(name, success, precision, norm_precision, float(success.mean()),
                         float((err <= precision_px).mean()), float(norm_precision.mean()), len(gt), precision_px)


def summarise(scores: list[SequenceScore], precision_px: float = 20.0) -> dict:
    """Overall and per-sequence scores as plain floats (JSON-ready): the overall curves are the means of the
    per-sequence ones; ``precision`` is the mean per-sequence precision at ``precision_px``."""
    if not scores:
        raise ValueError("no sequence scores to summarise")
    off = [s.name for s in scores if s.precision_px != precision_px]
    if off:
        raise ValueError(f"sequences {off} were scored at another precision threshold than {precision_px} px")
    success = np.mean([s.success for s in scores], axis=0)
    return {
        "success_auc": float(success.mean()),
        "precision": float(np.mean([s.precision_at for s in scores])),
        "norm_precision": float(np.mean([s.norm_precision_auc for s in scores])),
        "precision_px": float(precision_px),
        "sequences": len(scores),
        "frames": int(sum(s.frames for s in scores)),
        "success_curve": success.tolist(),
        "precision_curve": np.mean([s.precision for s in scores], axis=0).tolist(),
        "norm_precision_curve": np.mean([s.norm_precision for s in scores], axis=0).tolist(),
        "per_sequence": {s.name: {"success_auc": s.success_auc, "precision": s.precision_at,
                                  "norm_precision": s.norm_precision_auc, "frames": s.frames,
                                  "success_curve": s.success.tolist(), "precision_curve": s.precision.tolist()}
                         for s in scores},
    }
