"""``task=binary``: change / no change (LEVIR-CD, S2Looking, OSCD, pairs CSVs), scored by the F1 of the change
class (with precision, recall, IoU, OA, kappa); outputs a change mask and probability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ssl_siam.change.change_outputs import write_change_outputs
from ssl_siam.change.metrics.binary import BinaryAccumulator, BinaryScore, read_binary_mask, score_binary_dirs
from ssl_siam.change.tasks.base import TASKS, ChangeTask
from ssl_siam.change.validate import PairValidator
from ssl_siam.data.pairs import PairRecord


class BinaryValidator(PairValidator):
    """Binary change metrics of whole validation images (precision, recall, F1, IoU, OA, kappa of the change
    class); ``best.pt`` follows ``f1``."""

    best_metric = "f1"

    def __call__(self) -> dict[str, float]:
        acc, images = BinaryAccumulator(self.ignore_index), 0
        for probs, target in self._predictions():
            acc.update(probs.argmax(dim=0).cpu().numpy(), target)
            images += 1
        counts = self._sum(np.append(acc.counts, images))
        score = BinaryScore(*(int(c) for c in counts[:4]))
        return {k: float(v) for k, v in score.to_dict().items() if k not in ("tp", "fp", "fn", "tn")} | {
            "images": float(counts[4])}


@TASKS.register("binary")
class BinaryTask(ChangeTask):
    metric = "change F1"
    components = ("precision", "recall")
    validator = BinaryValidator

    def write_target(self, record: PairRecord, stem: str, folder: Path, ignore_index: int) -> None:
        Image.fromarray(read_binary_mask(record.damage_target, threshold=self.mask_threshold)).save(
            folder / f"{stem}.png")

    def score_dirs(self, pred: Path, targ: Path, workers: int = 2) -> BinaryScore:
        return score_binary_dirs(pred, targ, self.mask_threshold)

    def decode(self, probs: torch.Tensor) -> dict[str, np.ndarray]:
        return {"mask": probs.argmax(dim=0).cpu().numpy().astype(np.uint8),
                "probability": probs[1].float().cpu().numpy()}

    def write_outputs(self, out_dir: Path, stem: str, maps: dict[str, np.ndarray], display: np.ndarray,
                      profile: dict[str, Any] | None, holes: np.ndarray | None) -> list[Path]:
        return write_change_outputs(out_dir, stem, maps["mask"], maps["probability"], display, profile, holes)
