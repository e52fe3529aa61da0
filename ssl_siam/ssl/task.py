"""The pretraining task the engine runs: raw tile batch → views → objective."""

from __future__ import annotations

import torch
from torch import nn

from ssl_siam.ssl.base import Objective
from ssl_siam.ssl.views import ViewPipeline, seeded_generator


class AugmentCollate:
    """DataLoader ``collate_fn`` that builds the views in the worker (``augment.on_device=false``)."""

    def __init__(self, pipeline: ViewPipeline, seed: int) -> None:
        self.pipeline, self.seed = pipeline, seed

    def __call__(self, samples: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        index = torch.tensor([i for i, _ in samples])
        tiles = torch.stack([t for _, t in samples])
        return index, self.pipeline(tiles, seeded_generator(tiles.device, self.seed, int(index[0])))


class PretrainTask(nn.Module):
    """Batches are ``(index [B], tiles [B, C, H, W])`` or ``(index, views)`` when workers augmented.

    The augmentation generator is seeded from (seed, first sample index), so a batch's views do not depend
    on where they were computed or on whether the run was resumed.
    """

    def __init__(self, objective: Objective, pipeline: ViewPipeline, seed: int,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        super().__init__()
        self.objective, self.pipeline, self.seed, self.memory_format = objective, pipeline, seed, memory_format

    def configure(self, total_steps: int, steps_per_epoch: int) -> None:
        self.objective.configure(total_steps, steps_per_epoch)

    def param_groups(self) -> list[dict]:
        return self.objective.param_groups()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]], step: int,
                      micro: int) -> dict[str, torch.Tensor]:
        index, data = batch
        if isinstance(data, torch.Tensor):
            data = self.pipeline(data, seeded_generator(data.device, self.seed, int(index[0])))
        views = [v.contiguous(memory_format=self.memory_format) for v in data]
        return self.objective(views, step)

    def forward(self, batch: object, step: int, micro: int) -> dict[str, torch.Tensor]:
        """The training step (what DistributedDataParallel wraps)."""
        return self.training_step(batch, step, micro)  # type: ignore[arg-type]

    def before_optimizer_step(self, step: int) -> None:
        self.objective.before_optimizer_step(step)

    def after_optimizer_step(self, step: int) -> None:
        self.objective.after_optimizer_step(step)
