"""The typed contract between a training and the one loop: :class:`TrainingTask` and :class:`Validator`.

A training (SSL pretraining, damage finetuning, metric learning, ...) subclasses :class:`TrainingTask`: it turns
a batch into a loss and names its parameter groups; optional hooks cancel gradients, update EMA teachers, add
step metrics, store what rebuilds the model in the checkpoint and export reusable outputs. The loop owns the
rest: device, autocast, accumulation, clipping, schedules, logging, validation, checkpoints and exact resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from ssl_siam.train.optim import param_groups


class StopTraining(Exception):
    """Raised by a task hook when the run cannot usefully go on (e.g. collapse); the loop stops with a one-line
    error naming the last good checkpoint."""


class TrainingTask(nn.Module):
    """What the loop trains. ``forward`` is the training step, so DistributedDataParallel can wrap the task."""

    checkpoint_kind: ClassVar[str]  # a key of train.checkpoint.KIND_COMMANDS, written into every checkpoint
    #: config keys (``"sec."``: a whole section) that, beside ``train.checkpoint.IDENTITY_KEYS``, must match to resume
    identity_keys: tuple[str, ...] = ()

    def configure(self, total_steps: int, steps_per_epoch: int) -> None:
        """Called once before training: schedules that depend on the run length (pure functions of the step)."""

    def training_step(self, batch: Any, step: int, micro: int) -> dict[str, torch.Tensor]:
        """``{"loss": scalar, ...}``: further scalars are logged; non-scalars (e.g. ``embedding``) are for hooks."""
        raise NotImplementedError

    def forward(self, batch: Any, step: int, micro: int) -> dict[str, torch.Tensor]:
        return self.training_step(batch, step, micro)

    def param_groups(self) -> list[dict]:
        """Optimizer groups (default: every trainable parameter, no weight decay on biases and norms)."""
        return param_groups(self.parameters())

    def before_optimizer_step(self, step: int) -> None:
        """After backward, before the optimizer step (e.g. drop the gradients of a frozen part)."""

    def after_optimizer_step(self, step: int) -> None:
        """After the optimizer step (e.g. EMA teacher update)."""

    def step_metrics(self, outputs: dict[str, Any], step: int) -> dict[str, float]:
        """Extra scalars to log after an applied step, on rank 0 only; may raise :class:`StopTraining`."""
        return {}

    def checkpoint_extra(self) -> dict[str, Any]:
        """Plain values stored beside the weights in every checkpoint, so the model can be rebuilt from the file."""
        return {}

    def export(self, run_dir: Path, step: int) -> None:
        """Write the run's reusable outputs (rank 0, after the last step), e.g. ``encoder.safetensors``."""


class Validator(Protocol):
    """Held-out evaluation the loop runs every ``val_every`` steps and at the end; an optional ``info`` dict
    (e.g. the held-out pair ids) is written into metrics.json beside the results."""

    best_metric: str  # the key ``best.pt`` follows (higher is better)
    sharded: bool  # True: runs on every rank and reduces its results itself; False: rank 0 runs it, others receive

    def __call__(self) -> dict[str, float]: ...
