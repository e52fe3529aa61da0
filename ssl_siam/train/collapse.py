"""Representation-collapse monitor for tasks that learn embeddings (SSL objectives, metric learning)."""

from __future__ import annotations

import math
import warnings

import torch
from lightly.utils.debug import std_of_l2_normalized

from ssl_siam.train.task import StopTraining


class CollapseMonitor:
    """Every ``every`` steps: the std of the L2-normalised embedding ``[B, D]`` (≈ 1/√D when healthy, → 0 when
    every sample maps to one point) and ``std·√D``; below ``threshold`` a warning, or :class:`StopTraining` with
    ``stop``."""

    def __init__(self, every: int, threshold: float, stop: bool) -> None:
        self.every, self.threshold, self.stop = every, threshold, stop

    def __call__(self, embedding: torch.Tensor | None, step: int) -> dict[str, float]:
        if embedding is None or step % self.every:
            return {}
        std = float(std_of_l2_normalized(embedding.float()))
        relative = std * math.sqrt(embedding.shape[1])
        if relative < self.threshold:
            message = (f"step {step}: representation collapse suspected (embedding std·sqrt(d) = {relative:.3f} "
                       f"< {self.threshold})")
            if self.stop:
                raise StopTraining(message)
            warnings.warn(message, stacklevel=1)
        return {"collapse_std": std, "collapse_std_relative": relative}
