"""``task=binary``: change / no change (LEVIR-CD, S2Looking, OSCD, pairs CSVs), scored by the F1 of the change
class (with precision, recall, IoU, OA, kappa); outputs a change mask and probability."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ssl_siam.change.change_outputs import write_change_outputs
from ssl_siam.change.datasets import detect_format, find_change_pairs
from ssl_siam.change.metrics.binary import BinaryAccumulator, BinaryScore, read_binary_mask, score_binary_dirs
from ssl_siam.change.tasks.base import TASKS, ChangeTask
from ssl_siam.change.validate import PairValidator
from ssl_siam.core.errors import DataError
from ssl_siam.data.pairs import PairRecord


def score_layout(pred: Path, root: Path, fmt: str, mask_threshold: int | None = None) -> BinaryScore:
    """Predicted masks ``<id>_change_mask.png`` against every labelled pair of a dataset root in layout ``fmt``."""
    acc = BinaryAccumulator()
    with tempfile.TemporaryDirectory() as cache:  # derived masks (OSCD's 1 / 2 labels as 0 / 1)
        records = [r for r in find_change_pairs([root], fmt, Path(cache), masks="if_present", every_split=True)
                   if r.damage_target is not None]
        if not records:
            raise DataError(f"{root}: no labelled pairs to score against")
        for record in records:
            target = read_binary_mask(record.damage_target, threshold=mask_threshold)
            prediction = pred / f"{record.id}_change_mask.png"
            if not prediction.is_file():
                raise DataError(f"{prediction}: missing, expected a prediction for every labelled pair of {root}")
            acc.update(read_binary_mask(prediction, target.shape), target)
    return acc.result()


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
    components = ("iou", "precision", "recall")
    validator = BinaryValidator

    def write_target(self, record: PairRecord, stem: str, folder: Path, ignore_index: int) -> None:
        Image.fromarray(read_binary_mask(record.damage_target, threshold=self.mask_threshold)).save(
            folder / f"{stem}.png")

    def score_dirs(self, pred: Path, targ: Path, workers: int = 2) -> BinaryScore:
        """``targ``: a folder of ``<stem>.png`` masks, or a dataset root in a binary layout (e.g. the OSCD root:
        its labelled cities are scored, each against ``<city>_change_mask.png``)."""
        try:
            fmt = detect_format(Path(targ))
        except DataError:
            return score_binary_dirs(pred, targ, self.mask_threshold)
        return score_layout(Path(pred), Path(targ), fmt, self.mask_threshold)

    def decode(self, probs: torch.Tensor) -> dict[str, np.ndarray]:
        return {"mask": probs.argmax(dim=0).cpu().numpy().astype(np.uint8),
                "probability": probs[1].float().cpu().numpy()}

    def write_outputs(self, out_dir: Path, stem: str, maps: dict[str, np.ndarray], display: np.ndarray,
                      profile: dict[str, Any] | None, holes: np.ndarray | None) -> list[Path]:
        return write_change_outputs(out_dir, stem, maps["mask"], maps["probability"], display, profile, holes)
