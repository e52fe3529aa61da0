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

from ssl_siam.data.sampling import ResumableSampler, make_loader
from ssl_siam.train.config import LoaderConfig, OptimConfig, TrainConfig
from ssl_siam.train.distributed import barrier
from ssl_siam.train.loop import Trainer
from ssl_siam.train.rundir import RunDir, open_shared_run_dir
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
    val_every: int = 0  # steps between validations; 0 = once per epoch (or every val_every_epochs)
    val_every_epochs: float = 0.0  # the interval in epochs, turned into steps by the loop (e.g. knn.every_epochs)


Build = Callable[[Any, Path, Runtime], Built]  # (the training's config, run dir, runtime)


@dataclass
class Session:
    """A prepared run: the run directory opened and locked, everything built, nothing trained or written yet."""

    runtime: Runtime
    run: RunDir
    built: Built
    trainer: Trainer

    @property
    def run_dir(self) -> Path:
        return self.run.path

    def close(self) -> None:
        """Release the run directory's lock."""
        self.run.release()


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
    """Create the runtime (unless given), open and lock the run directory (``runs/<name>-<time>`` unless
    ``run_dir``), seed, build the training and its :class:`Trainer`. Nothing is trained and ``config.yaml`` is not
    written yet; if building fails, a run directory this call created is removed again."""
    runtime = runtime or Runtime.for_training(cfg.train)
    run = open_shared_run_dir(cfg, name, runtime.world)  # type: ignore[arg-type]
    try:
        torch.manual_seed(cfg.train.seed)
        built = build(cfg, run.path, runtime)
        trainer = Trainer(built.task, built.loader, cfg.optim, cfg.train, run.path, cfg, runtime,
                          built.validator, built.val_every, built.val_every_epochs)
    except BaseException:
        run.discard()
        run.release()
        raise
    return Session(runtime, run, built, trainer)


def launch(cfg: TrainingConfig, name: str, build: Build) -> Path:
    """Run (or resume) a training end to end; returns its run directory. ``config.yaml`` is written once every
    check that can refuse the run (data, model, resume compatibility) has passed, so a refused resume leaves the
    run as it was; a new run that fails before its first checkpoint leaves no folder behind."""
    session = prepare(cfg, name, build)
    trainer, run, main = session.trainer, session.run, session.runtime.world.is_main
    try:
        try:
            if run.resume_from is not None:
                trainer.resume(run.resume_from)
                log.info("resumed from %s at step %d", run.resume_from, trainer.state.step)
            if main:
                run.save_config(cfg)  # type: ignore[arg-type]
            trainer.fit()
        except BaseException:
            if not trainer.ckpt_path.is_file():  # failed before its first checkpoint: nothing to resume
                run.discard()
            raise
        if main:
            session.built.task.export(run.path, trainer.state.step)
        barrier(session.runtime.world)
    finally:
        session.close()
    return run.path
