"""Validation of damage finetuning: whole held-out images by sliding window, scored with the xView2 metric."""

from __future__ import annotations

import numpy as np
import torch

from ssl_siam.damage.predict import decode
from ssl_siam.damage.sliding import sliding_window
from ssl_siam.damage.task import FinetuneTask
from ssl_siam.damage.xview2 import XView2Accumulator
from ssl_siam.data.xbd.dataset import XBDPairDataset
from ssl_siam.train.distributed import sum_across
from ssl_siam.train.runtime import Runtime


class XView2Validator:
    """Scores whole validation images with the xView2 metric (``un-classified`` counted as no-damage);
    ``best.pt`` follows ``score``.

    Sharded: rank ``r`` of ``n`` predicts images ``r, r + n, ...`` and the TP/FP/FN counts are summed over
    ranks before the F1s are computed, so the score equals a single-process one (never an average of F1s).
    """

    best_metric = "score"
    sharded = True

    def __init__(self, task: FinetuneTask, dataset: XBDPairDataset, runtime: Runtime, window: int, tta: bool,
                 ignore_index: int) -> None:
        self.task, self.dataset, self.runtime, self.window = task, dataset, runtime, window
        self.tta, self.ignore_index = tta, ignore_index

    def __call__(self) -> dict[str, float]:
        acc, world, device = XView2Accumulator(), self.runtime.world, self.runtime.device
        self.task.eval()
        mine = range(world.rank, len(self.dataset), world.size)
        for i in mine:
            item = self.dataset[i]
            pre, post = self.task.normalize(item["pre"][None].to(device), item["post"][None].to(device))
            probs = sliding_window(self.task.model, pre[0], post[0], multiple=self.task.model.output_stride,
                                   window=self.window, tta=self.tta, device=device, amp_dtype=self.runtime.amp_dtype)
            loc, damage, _ = decode(probs)
            target = item["mask"].numpy()
            target = np.where(target == self.ignore_index, 1, target).astype(np.uint8)
            acc.update(loc, damage, (target > 0).astype(np.uint8), target)
        images = np.zeros((1, 5), np.int64)
        images[0, 0] = len(mine)
        counts = torch.from_numpy(np.concatenate([np.stack(list(acc.counts.values())), images]))  # tp, fp, fn, n
        counts = sum_across(counts.to(device), world).cpu().numpy()
        score = XView2Accumulator(dict(zip(("tp", "fp", "fn"), counts[:3]))).result()
        per_class = {f"f1_{name}": value for name, value in score.damage_f1_per_class.items()}
        return {"score": score.score, "localization_f1": score.localization_f1, "damage_f1": score.damage_f1,
                **per_class, "images": float(counts[3, 0])}
