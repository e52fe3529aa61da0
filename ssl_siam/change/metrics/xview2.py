"""xView2 challenge metric, computed as the official scorer (DIUx-xView/xView2_scoring, 2019-10-24 fix) does.

Localization: binarised prediction vs binarised target over all pixels. Damage: the prediction is zeroed
where no building is predicted, then scored only on pixels where the damage target is a building. TP/FP/FN
are summed over all images, F1 computed once from the totals; score = 0.3 loc F1 + 0.7 harmonic mean of the
four damage-class F1s.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ssl_siam.core.errors import DataError

if TYPE_CHECKING:
    import torch

DAMAGE_NAMES = ("no-damage", "minor-damage", "major-damage", "destroyed")
ROW_NAMES = ("localization", *DAMAGE_NAMES)
_EPS = 1e-6
_TARGET_NAME = re.compile(
    r"^(?:(?P<id>.+)_localization_target|(?:test|hold)_localization_(?P<cid>.+)_target)\.png$"
)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _as_uint8(array: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Class map as uint8 with values 0-4 (ValueError otherwise)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name}: expected an integer class map, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 4):
        raise ValueError(f"{name}: expected values 0-4, got {array.min()}..{array.max()}")
    return array.astype(np.uint8, copy=False)


def _confusion(lp: np.ndarray, dp: np.ndarray, lt: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """[3, 5] int64 TP/FP/FN: column 0 localization, columns 1-4 the damage classes."""
    lp_b, lt_b = lp > 0, lt > 0
    out = np.zeros((3, 5), np.int64)
    tp = np.count_nonzero(lp_b & lt_b)
    out[:, 0] = tp, np.count_nonzero(lp_b) - tp, np.count_nonzero(lt_b) - tp
    # Damage prediction zeroed where no building is predicted, counted where the damage target is a building.
    code = (dp * lp_b.view(np.uint8)) * 5 + dt
    dmg = np.bincount(code[dt > 0], minlength=25).reshape(5, 5)[:, 1:]  # [pred 0-4, targ 1-4]
    diag = np.diagonal(dmg[1:])  # pred c & targ c, c = 1..4
    out[0, 1:] = diag
    out[1, 1:] = dmg[1:].sum(axis=1) - diag
    out[2, 1:] = dmg.sum(axis=0) - diag
    return out


@dataclass(frozen=True)
class XView2Score:
    """Result of the xView2 metric; ``counts`` maps each row name to its summed tp/fp/fn."""

    score: float
    localization_f1: float
    damage_f1: float
    damage_f1_per_class: dict[str, float]
    counts: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "localization_f1": self.localization_f1,
            "damage_f1": self.damage_f1,
            "damage_f1_per_class": dict(self.damage_f1_per_class),
            "counts": {k: dict(v) for k, v in self.counts.items()},
        }

    def table(self) -> str:
        f1s = {"localization": self.localization_f1, **self.damage_f1_per_class}
        lines = [f"{'':<14} {'F1':>7} {'TP':>12} {'FP':>12} {'FN':>12}"]
        for name in ROW_NAMES:
            c = self.counts[name]
            lines.append(f"{name:<14} {f1s[name]:>7.4f} {c['tp']:>12,} {c['fp']:>12,} {c['fn']:>12,}")
        lines.append(f"{'damage (hm)':<14} {self.damage_f1:>7.4f}")
        lines.append(f"{'score':<14} {self.score:>7.4f}")
        return "\n".join(lines)


class XView2Accumulator:
    """Sums TP/FP/FN over images; ``counts`` from several processes can be added and passed back in."""

    def __init__(self, counts: dict[str, np.ndarray] | None = None) -> None:
        self._counts = np.zeros((3, 5), np.int64)
        if counts is not None:
            self._counts[:] = [np.asarray(counts[k]) for k in ("tp", "fp", "fn")]

    @property
    def counts(self) -> dict[str, np.ndarray]:
        """``tp``/``fp``/``fn`` int64 arrays of length 5: index 0 localization, 1-4 the damage classes."""
        return {k: self._counts[i].copy() for i, k in enumerate(("tp", "fp", "fn"))}

    def update(
        self,
        loc_pred: np.ndarray | torch.Tensor,
        dmg_pred: np.ndarray | torch.Tensor,
        loc_targ: np.ndarray | torch.Tensor,
        dmg_targ: np.ndarray | torch.Tensor,
    ) -> None:
        """Add one image [H, W] or a batch [B, H, W] of class maps with values 0-4."""
        names = ("loc_pred", "dmg_pred", "loc_targ", "dmg_targ")
        arrays = [
            _as_uint8(a, n) for a, n in zip((loc_pred, dmg_pred, loc_targ, dmg_targ), names, strict=True)
        ]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1 or arrays[0].ndim not in (2, 3):
            raise ValueError(
                f"expected four arrays of one shape [H, W] or [B, H, W], got {[a.shape for a in arrays]}"
            )
        self._counts += _confusion(*arrays)

    def merge(self, other: XView2Accumulator) -> XView2Accumulator:
        """Add the counts of ``other`` into this accumulator; returns self."""
        self._counts += other._counts
        return self

    def result(self) -> XView2Score:
        tp, fp, fn = (self._counts[i].tolist() for i in range(3))
        f1 = [_f1(tp[i], fp[i], fn[i]) for i in range(5)]
        damage_f1 = 4 / sum(1 / (x + _EPS) for x in f1[1:])
        return XView2Score(
            score=0.3 * f1[0] + 0.7 * damage_f1,
            localization_f1=f1[0],
            damage_f1=damage_f1,
            damage_f1_per_class=dict(zip(DAMAGE_NAMES, f1[1:], strict=True)),
            counts={name: {"tp": tp[i], "fp": fp[i], "fn": fn[i]} for i, name in enumerate(ROW_NAMES)},
        )


def _read(path: Path, shape: tuple[int, ...] | None) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: unreadable, expected a PNG image")
    if image.ndim != 2 or image.dtype != np.uint8:
        raise DataError(f"{path}: expected a single-channel uint8 PNG, got shape {image.shape} {image.dtype}")
    if shape is not None and image.shape != shape:
        raise DataError(f"{path}: size {image.shape}, expected {shape} like its target")
    if image.max() > 4:
        raise DataError(
            f"{path}: expected values 0-4, found {sorted(set(np.unique(image).tolist()) - set(range(5)))}"
        )
    return image


def _score_pair(paths: tuple[Path, Path, Path, Path]) -> np.ndarray:
    lp, dp, lt, dt = paths
    loc_targ = _read(lt, None)
    return _confusion(*(_read(p, loc_targ.shape) for p in (lp, dp)), loc_targ, _read(dt, loc_targ.shape))


def _find(folder: Path, image_id: str, kind: str, role: str) -> Path:
    """``<id>_<kind>_<role>.png``, else the challenge style ``test|hold_<kind>_<id>_<role>.png``."""
    names = [
        f"{image_id}_{kind}_{role}.png",
        f"test_{kind}_{image_id}_{role}.png",
        f"hold_{kind}_{image_id}_{role}.png",
    ]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / names[0]}: missing (or {names[1]}), expected one per target")


def _pairs(pred_dir: Path, targ_dir: Path) -> list[tuple[Path, Path, Path, Path]]:
    for folder in (pred_dir, targ_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: expected a folder of PNG masks")
    pairs = []
    for path in sorted(targ_dir.glob("*_target.png")):
        match = _TARGET_NAME.match(path.name)
        if match:
            image_id = match["id"] or match["cid"]
            pairs.append(
                (
                    _find(pred_dir, image_id, "localization", "prediction"),
                    _find(pred_dir, image_id, "damage", "prediction"),
                    path,
                    _find(targ_dir, image_id, "damage", "target"),
                )
            )
    if not pairs:
        raise DataError(
            f"{targ_dir}: expected <id>_localization_target.png or test_localization_<id>_target.png"
        )
    return pairs


def score_dirs(pred_dir: str | Path, targ_dir: str | Path, workers: int = 2) -> XView2Score:
    """Score a folder of prediction PNGs against a folder of target PNGs.

    ``workers`` threads read and count pairs in parallel (PNG decoding and the counting release the GIL).
    """
    pairs = _pairs(Path(pred_dir), Path(targ_dir))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        totals = sum(pool.map(_score_pair, pairs), np.zeros((3, 5), np.int64))
    return XView2Accumulator(dict(zip(("tp", "fp", "fn"), totals, strict=True))).result()
