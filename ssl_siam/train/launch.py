"""THE run skeleton every training shares: runtime → run dir → seed → build → Trainer → resume → fit → export.

A training provides a *build* function ``(cfg, run_dir, runtime) -> Built``: its dataset and loader, its
:class:`~ssl_siam.train.task.TrainingTask` and optionally a validator. ``ssl-siam pretrain``, ``finetune`` and
``metric-train`` run it through :func:`launch`; ``ssl-siam bench`` through :func:`prepare`, which stops before
training, so the benchmark measures exactly what training runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from ssl_siam.core.config import to_dict
from ssl_siam.data.sampling import ResumableSampler, make_loader
from ssl_siam.train.config import LoaderConfig, OptimConfig, TrainConfig
from ssl_siam.train.distributed import barrier
from ssl_siam.train.loop import Trainer
from ssl_siam.train.rundir import prepare_shared_run_dir
from ssl_siam.train.runtime import Runtime
from ssl_siam.train.task import TrainingTask, Validator

log = logging.getLogger(__name__)


class TrainingConfig(Protocol):
    """What :func:`launch` reads of a training's config (``PretrainConfig``, ``FinetuneConfig``, ...): a
    :class:`~ssl_siam.train.config.RunConfig` with ``train``, ``optim`` and ``data`` sections."""

    run_dir: str
    resume: Any
    train: TrainConfig
    optim: OptimConfig
    data: LoaderConfig


@dataclass
class Built:
    """What a training's build function hands to the loop."""

    dataset: Dataset  # the training samples (before batching)
    task: TrainingTask
    loader: DataLoader
    validator: Validator | None = None
    val_every: int = 0  # steps between validations; 0 = once per epoch


Build = Callable[[Any, Path, Runtime], Built]  # (the training's config, run dir, runtime)


@dataclass
class Session:
    """A prepared run: everything built, nothing trained yet."""

    runtime: Runtime
    run_dir: Path
    resume_from: Path | None
    built: Built
    trainer: Trainer


def training_loader(dataset: Dataset, cfg: TrainingConfig, runtime: Runtime, num_samples: int | None = None,
                    collate_fn: Callable | None = None) -> DataLoader:
    """The DataLoader of a training: whole batches of ``train.batch_size`` from a :class:`ResumableSampler` over
    ``num_samples`` (default ``len(dataset)``) indices, sharded across the runtime's processes."""
    sampler = ResumableSampler(len(dataset) if num_samples is None else num_samples,  # type: ignore[arg-type]
                               cfg.train.batch_size, seed=cfg.train.seed, rank=runtime.world.rank,
                               num_replicas=runtime.world.size)
    return make_loader(dataset, sampler, num_workers=cfg.data.num_workers,
                       pin_memory=cfg.data.pin_memory and runtime.pin_memory,
                       prefetch_factor=cfg.data.prefetch_factor, collate_fn=collate_fn)


def prepare(cfg: TrainingConfig, name: str, build: Build, runtime: Runtime | None = None) -> Session:
    """Create the runtime (unless given) and the run directory (``runs/<name>-<time>`` unless ``run_dir``), seed,
    build the training and its :class:`Trainer`; the resume checkpoint is found but not yet loaded."""
    runtime = runtime or Runtime.for_training(cfg.train)
    run_dir, resume_from = prepare_shared_run_dir(cfg, name, runtime.world)  # type: ignore[arg-type]
    torch.manual_seed(cfg.train.seed)
    built = build(cfg, run_dir, runtime)
    trainer = Trainer(built.task, built.loader, cfg.optim, cfg.train, run_dir, to_dict(cfg), runtime,
                      built.validator, built.val_every)
    return Session(runtime, run_dir, resume_from, built, trainer)


def launch(cfg: TrainingConfig, name: str, build: Build) -> Path:
    """Run (or resume) a training end to end; returns its run directory."""
    session = prepare(cfg, name, build)
    trainer = session.trainer
    if session.resume_from is not None:
        trainer.resume(session.resume_from)
        log.info("resumed from %s at step %d", session.resume_from, trainer.state.step)
    trainer.fit()
    if session.runtime.world.is_main:
        session.built.task.export(session.run_dir, trainer.state.step)
    barrier(session.runtime.world)
    return session.run_dir
