"""``task=damage``: xBD building damage — background + no / minor / major damage / destroyed, scored by the
official xView2 metric (0.3 localization F1 + 0.7 harmonic mean of the damage F1s); outputs in the xView2
submission convention."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_siam.change.metrics.xview2 import XView2Accumulator, XView2Score, score_dirs
from ssl_siam.change.outputs import write_outputs
from ssl_siam.change.tasks.base import TASKS, ChangeTask
from ssl_siam.change.validate import PairValidator
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.xbd.targets import ensure_targets

NUM_CLASSES = 5  # background + the four xBD damage classes


def decode(probs: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities [5, H, W] -> (loc, damage, confidence) numpy [H, W] in the xView2 convention.

    loc uint8 is 1 where the argmax is not background; damage uint8 is the argmax over classes 1..4 there and 0
    elsewhere; confidence float32 is the probability of the class written in ``damage`` (background where 0).
    """
    if probs.dim() != 3 or probs.shape[0] != NUM_CLASSES:
        raise ValueError(f"expected probabilities [{NUM_CLASSES}, H, W], got {tuple(probs.shape)}")
    probs = probs.detach().float().cpu()
    loc = probs.argmax(dim=0) != 0
    damage = torch.where(loc, probs[1:].argmax(dim=0) + 1, 0)
    confidence = probs.gather(0, damage[None])[0]
    return loc.numpy().astype(np.uint8), damage.numpy().astype(np.uint8), confidence.numpy()


class XView2Validator(PairValidator):
    """xView2 score of whole validation images (``un-classified`` counted as no-damage); ``best.pt`` follows
    ``score``."""

    best_metric = "score"

    def __call__(self) -> dict[str, float]:
        acc, images = XView2Accumulator(), 0
        for probs, target in self._predictions():
            loc, damage, _ = decode(probs)
            target = np.where(target == self.ignore_index, 1, target).astype(np.uint8)
            acc.update(loc, damage, (target > 0).astype(np.uint8), target)
            images += 1
        extra = np.zeros((1, 5), np.int64)
        extra[0, 0] = images
        counts = self._sum(np.concatenate([np.stack(list(acc.counts.values())), extra]))  # tp, fp, fn, images
        score = XView2Accumulator(dict(zip(("tp", "fp", "fn"), counts[:3]))).result()
        per_class = {f"f1_{name}": value for name, value in score.damage_f1_per_class.items()}
        return {"score": score.score, "localization_f1": score.localization_f1, "damage_f1": score.damage_f1,
                **per_class, "images": float(counts[3, 0])}


@TASKS.register("damage")
class DamageTask(ChangeTask):
    num_classes = NUM_CLASSES
    fixed_classes = False
    metric = "xView2 score"
    components = ("localization_f1", "damage_f1")
    validator = XView2Validator
    building_labels = True
    binary_masks = False
    synthetic_targets = False

    def prepare_records(self, records: Sequence[PairRecord], cache_dir: Path) -> Sequence[PairRecord]:
        return ensure_targets(records, cache_dir, unclassified="no-damage")  # as the challenge scored

    def write_target(self, record: PairRecord, stem: str, folder: Path, ignore_index: int) -> None:
        for kind, path in (("damage", record.damage_target), ("localization", record.loc_target)):
            if path is not None:
                shutil.copyfile(path, folder / f"{record.id}_{kind}_target{path.suffix}")

    def score_dirs(self, pred: Path, targ: Path, workers: int = 2) -> XView2Score:
        return score_dirs(pred, targ, workers=workers)

    def decode(self, probs: torch.Tensor) -> dict[str, np.ndarray]:
        return dict(zip(("loc", "damage", "confidence"), decode(probs)))

    def write_outputs(self, out_dir: Path, stem: str, maps: dict[str, np.ndarray], display: np.ndarray,
                      profile: dict[str, Any] | None, holes: np.ndarray | None) -> list[Path]:
        return write_outputs(out_dir, stem, maps["loc"], maps["damage"], maps["confidence"], display, profile, holes)
