"""Validation of finetuning: whole held-out images by sliding window, scored with the task's metric — the xView2
score for damage, the F1 of the change class for binary change, SeK for semantic change — from counts summed over
every image."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ssl_siam.damage.binary import BinaryAccumulator, BinaryScore
from ssl_siam.damage.predict import decode
from ssl_siam.damage.semantic import SemanticAccumulator, SemanticScore, semantic_maps
from ssl_siam.damage.sliding import sliding_window
from ssl_siam.damage.task import FinetuneTask
from ssl_siam.damage.xview2 import XView2Accumulator
from ssl_siam.data.semantic import NUM_LANDCOVER, split_code
from ssl_siam.data.xbd.dataset import XBDPairDataset
from ssl_siam.train.distributed import sum_across
from ssl_siam.train.runtime import Runtime


class _Validator:
    """Sharded: rank ``r`` of ``n`` predicts images ``r, r + n, ...``; the counts are summed over ranks before any
    ratio is computed, so the metrics equal a single-process run's (never an average of per-image scores)."""

    sharded = True

    def __init__(self, task: FinetuneTask, dataset: XBDPairDataset, runtime: Runtime, window: int, tta: bool,
                 ignore_index: int) -> None:
        self.task, self.dataset, self.runtime, self.window = task, dataset, runtime, window
        self.tta, self.ignore_index = tta, ignore_index

    def _predictions(self) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """``(probabilities [K, H, W], target [H, W])`` of this rank's images."""
        world, device = self.runtime.world, self.runtime.device
        self.task.eval()
        for i in range(world.rank, len(self.dataset), world.size):
            item = self.dataset[i]
            pre, post = self.task.normalize(item["pre"][None].to(device), item["post"][None].to(device))
            yield sliding_window(self.task.model, pre[0], post[0], multiple=self.task.model.output_stride,
                                 window=self.window, tta=self.tta, device=device,
                                 amp_dtype=self.runtime.amp_dtype), item["mask"].numpy()

    def _sum(self, counts: np.ndarray) -> np.ndarray:
        return sum_across(torch.from_numpy(counts).to(self.runtime.device), self.runtime.world).cpu().numpy()


class XView2Validator(_Validator):
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


class BinaryValidator(_Validator):
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


class SemanticValidator(_Validator):
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


VALIDATORS: dict[str, type[_Validator]] = {"damage": XView2Validator, "binary": BinaryValidator,
                                           "semantic": SemanticValidator}
