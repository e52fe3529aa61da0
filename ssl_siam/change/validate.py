"""Validation of finetuning: whole held-out images by sliding window, scored with the task's metric from counts
summed over every image (each task's validator: change/tasks/)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ssl_siam.change.sliding import sliding_window
from ssl_siam.change.training import FinetuneTask
from ssl_siam.data.pair_crops import PairCropDataset
from ssl_siam.train.distributed import sum_across
from ssl_siam.train.runtime import Runtime


class PairValidator:
    """Sharded: rank ``r`` of ``n`` predicts images ``r, r + n, ...``; the counts are summed over ranks before any
    ratio is computed, so the metrics equal a single-process run's (never an average of per-image scores).
    ``__call__`` returns the metrics; ``best_metric`` names the one ``best.pt`` follows."""

    sharded = True
    best_metric: str

    def __init__(self, task: FinetuneTask, dataset: PairCropDataset, runtime: Runtime, window: int, tta: bool,
                 ignore_index: int) -> None:
        self.task, self.dataset, self.runtime, self.window = task, dataset, runtime, window
        self.tta, self.ignore_index = tta, ignore_index
        self.info = {"val_ids": [r.id for r in dataset.records]}  # in metrics.json: which pairs were held out

    def __call__(self) -> dict[str, float]:
        raise NotImplementedError

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
