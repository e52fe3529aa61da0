"""``task=semantic``: SECOND semantic change — change / no change plus each date's land cover where it changed,
scored by SECOND's metrics (SeK, mIoU, score = 0.3 mIoU + 0.7 SeK); outputs the change mask and probability and
each date's land cover, colour-coded as SECOND."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ssl_siam.change.change_outputs import write_change_outputs
from ssl_siam.change.config import LossConfig
from ssl_siam.change.losses import SemanticChangeLoss
from ssl_siam.change.metrics.semantic import SemanticAccumulator, SemanticScore, score_semantic_dirs, semantic_maps
from ssl_siam.change.tasks.base import TASKS, ChangeTask
from ssl_siam.change.validate import PairValidator
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.semantic import NUM_CODES, NUM_LANDCOVER, landcover_rgb, split_code


class SemanticValidator(PairValidator):
    """SECOND metrics of whole validation images (SeK, mIoU, score, Fscd, OA over both dates); ``best.pt`` follows
    ``sek``."""

    best_metric = "sek"

    def __call__(self) -> dict[str, float]:
        acc, images = SemanticAccumulator(self.ignore_index), 0
        for probs, code in self._predictions():
            _, label1, label2 = semantic_maps(probs)
            acc.update(label1, label2, *split_code(code, self.ignore_index))
            images += 1
        hist = self._sum(np.append(acc.hist.ravel(), images))
        score = SemanticScore(hist[:-1].reshape(NUM_LANDCOVER, NUM_LANDCOVER))
        return {k: float(v) for k, v in score.to_dict().items() if k != "confusion"} | {"images": float(hist[-1])}


@TASKS.register("semantic")
class SemanticTask(ChangeTask):
    semantic_classes = NUM_LANDCOVER - 1  # land cover of each date where it changed (class c ≥ 1 is logit c − 1)
    metric = "SECOND score (0.3 mIoU + 0.7 SeK)"
    components = ("sek", "miou")
    validator = SemanticValidator
    binary_masks = False
    synthetic_targets = False

    def mask_classes(self, head_classes: int) -> int:
        return NUM_CODES  # the code mask label1 · 7 + label2

    def criterion(self, change_loss: nn.Module, loss: LossConfig, ignore_index: int) -> nn.Module:
        return SemanticChangeLoss(change_loss, loss.semantic_weight, ignore_index)

    def write_target(self, record: PairRecord, stem: str, folder: Path, ignore_index: int) -> None:
        with Image.open(record.damage_target) as code:
            labels = split_code(np.asarray(code), ignore_index)
        for name, label in zip(("label1", "label2"), labels):
            (folder / name).mkdir(exist_ok=True)
            Image.fromarray(label.astype(np.uint8)).save(folder / name / f"{stem}.png")

    def score_dirs(self, pred: Path, targ: Path, workers: int = 2) -> SemanticScore:
        return score_semantic_dirs(pred, targ)

    def decode(self, probs: torch.Tensor) -> dict[str, np.ndarray]:
        mask, label1, label2 = semantic_maps(probs)
        return {"mask": mask, "probability": probs[1].float().cpu().numpy(), "label1": label1, "label2": label2}

    def write_outputs(self, out_dir: Path, stem: str, maps: dict[str, np.ndarray], display: np.ndarray,
                      profile: dict[str, Any] | None, holes: np.ndarray | None) -> list[Path]:
        paths = write_change_outputs(out_dir, stem, maps["mask"], maps["probability"], display, profile, holes)
        for name in ("label1", "label2"):  # SECOND's colour coding, 0 (white) unchanged
            paths.append(Path(out_dir) / f"{stem}_{name}.png")
            Image.fromarray(landcover_rgb(maps[name])).save(paths[-1])
        return paths
