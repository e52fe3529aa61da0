"""The pretraining task the loop runs: raw tile batch → views → objective; exports the trained encoder."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ssl_siam.data.sampling import seeded_generator
from ssl_siam.encoders import EncoderMeta, export_encoder
from ssl_siam.ssl.base import Objective
from ssl_siam.ssl.views import ViewPipeline
from ssl_siam.train.collapse import CollapseMonitor
from ssl_siam.train.task import TrainingTask


class AugmentCollate:
    """DataLoader ``collate_fn`` that builds the views in the worker (``augment.on_device=false``)."""

    def __init__(self, pipeline: ViewPipeline, seed: int) -> None:
        self.pipeline, self.seed = pipeline, seed

    def __call__(self, samples: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        index = torch.tensor([i for i, _ in samples])
        tiles = torch.stack([t for _, t in samples])
        return index, self.pipeline(tiles, seeded_generator(tiles.device, self.seed, int(index[0])))


class PretrainTask(TrainingTask):
    """Batches are ``(index [B], tiles [B, C, H, W])`` (``[B, 2, C, H, W]``: two dates, ``data.temporal``) or
    ``(index, views)`` when workers augmented.

    The augmentation generator is seeded from (seed, first sample index), so a batch's views do not depend
    on where they were computed or on whether the run was resumed. ``export_meta`` describes the encoder that
    :meth:`export` writes (its ``step`` is filled in then); ``identity_keys`` names the objective's config section.
    """

    checkpoint_kind = "pretrain"

    def __init__(self, objective: Objective, pipeline: ViewPipeline, seed: int, collapse: CollapseMonitor,
                 export_meta: EncoderMeta, memory_format: torch.memory_format = torch.contiguous_format,
                 identity_keys: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.objective, self.pipeline, self.seed, self.memory_format = objective, pipeline, seed, memory_format
        self.collapse, self.export_meta, self.identity_keys = collapse, export_meta, identity_keys

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

    def before_optimizer_step(self, step: int) -> None:
        self.objective.before_optimizer_step(step)

    def after_optimizer_step(self, step: int) -> None:
        self.objective.after_optimizer_step(step)

    def step_metrics(self, outputs: dict[str, Any], step: int) -> dict[str, float]:
        return self.collapse(outputs.get("embedding"), step)

    def export(self, run_dir: Path, step: int) -> None:
        encoder = self.objective.export_encoder()
        export_encoder(encoder, run_dir, dataclasses.replace(self.export_meta, step=step,
                                                             num_features=encoder.num_features))
