"""The one training loop, shared by every training (see :class:`~ssl_siam.train.task.TrainingTask`).

The loop owns device placement, autocast, gradient accumulation, clipping, LR and weight-decay schedules,
non-finite step skipping, logging (TensorBoard, a progress bar or, without a terminal, a log line every
``train.log_every`` steps, ``metrics.json``), validation (always at the end) with ``best.pt``, preemption, atomic
checkpoints and exact resume. Everything task-specific comes through the task's methods.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ssl_siam.core.config import current_names, to_dict
from ssl_siam.core.errors import DataError, Preempted, UserError
from ssl_siam.data.sampling import ResumableSampler
from ssl_siam.train.checkpoint import (
    FORMAT,
    atomic_save,
    checkpoint_kind,
    config_differences,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from ssl_siam.train.config import OptimConfig, TrainConfig
from ssl_siam.train.distributed import broadcast, mean_across
from ssl_siam.train.optim import build_optimizer, set_schedules
from ssl_siam.train.preemption import preemption_signals
from ssl_siam.train.reporting import add_scalars, metrics_record, progress_line, summary, write_metrics_json
from ssl_siam.train.rundir import last_checkpoint_path
from ssl_siam.train.runtime import Runtime, compile_backbones
from ssl_siam.train.task import StopTraining, TrainingTask, Validator

log = logging.getLogger(__name__)


class TrainingError(UserError):
    """Training cannot go on (non-finite losses, collapse); the message points at the last good checkpoint."""


@dataclass
class RunState:
    step: int = 0
    batches_seen: int = 0
    best: float = -math.inf  # best validation metric so far
    bad_steps: int = 0  # non-finite steps skipped so far
    history: list[dict[str, float]] = field(default_factory=list)
    val_history: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """Runs ``task`` on batches from ``loader`` (whose sampler is a :class:`ResumableSampler`) on ``runtime``.

    With a ``validator``, validation runs every ``val_every`` steps (default: once per epoch) and at the end, and
    ``best.pt`` keeps the checkpoint with the highest ``validator.best_metric``. Under several processes a
    ``sharded`` validator runs on every rank and reduces its own results (e.g. xView2 TP/FP/FN summed); any other
    runs on rank 0 and its metrics are broadcast, so all ranks agree. ``config`` (the run's config dataclass) is
    stored as plain types in every checkpoint; a resumed checkpoint's is read as this schema reads it.
    """

    def __init__(self, task: TrainingTask, loader: DataLoader, optim_cfg: OptimConfig, train_cfg: TrainConfig,
                 run_dir: Path, config: Any, runtime: Runtime, validator: Validator | None = None,
                 val_every: int = 0, val_every_epochs: float = 0.0) -> None:
        self.task, self.loader, self.cfg, self.run_dir = task, loader, train_cfg, run_dir
        self.config, self.schema = to_dict(config), type(config)
        self.runtime, self.world, self.device = runtime, runtime.world, runtime.device
        self.validator = validator
        self.sampler: ResumableSampler = loader.sampler  # type: ignore[assignment]
        self.batches_per_epoch = self.sampler.batches_per_epoch
        if self.batches_per_epoch == 0:
            raise UserError(f"train.batch_size={train_cfg.batch_size} is larger than the dataset "
                            f"({self.sampler.n} samples per epoch)")
        steps_per_epoch = max(self.batches_per_epoch // train_cfg.accumulate, 1)
        self.total_steps = train_cfg.max_steps or train_cfg.epochs * steps_per_epoch
        self.val_every = val_every or max(1, round((val_every_epochs or 1.0) * steps_per_epoch))
        self.samples_per_step = train_cfg.batch_size * train_cfg.accumulate * self.sampler.num_replicas
        self.base_lr = optim_cfg.lr * self.samples_per_step / optim_cfg.base_batch_size
        self.optim_cfg = optim_cfg
        warmup = optim_cfg.warmup_steps or round(optim_cfg.warmup_epochs * steps_per_epoch)
        self.warmup = min(warmup, self.total_steps)
        task.configure(self.total_steps, steps_per_epoch)
        task.to(self.device, memory_format=runtime.memory_format)
        if train_cfg.compile:
            compile_backbones(task, train_cfg.compile_mode)
        self.model: nn.Module = task  # what the loop calls: the task, or its DistributedDataParallel wrapper
        if self.world.size > 1:
            if train_cfg.sync_bn:
                task = nn.SyncBatchNorm.convert_sync_batchnorm(task)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(task, device_ids=ids)
        self.optimizer = build_optimizer(task.param_groups(), optim_cfg, self.base_lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=runtime.amp_dtype == torch.float16)
        self.state = RunState()
        self.ckpt_path = last_checkpoint_path(run_dir)

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, name: str | None = None) -> None:
        """Rank 0 writes ``last.pt`` (or the file ``name`` beside it); other processes hold the same state."""
        if not self.world.is_main:
            return
        atomic_save({
            "format": FORMAT,
            "kind": self.task.checkpoint_kind,
            "step": self.state.step,
            "batches_seen": self.state.batches_seen,
            "best": self.state.best,
            "bad_steps": self.state.bad_steps,
            "history": self.state.history,
            "val_history": self.state.val_history,
            "extra": self.task.checkpoint_extra(),
            "model": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "config": self.config,
        }, self.ckpt_path if name is None else self.ckpt_path.with_name(name))

    def resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        kind = checkpoint_kind(ckpt)
        if kind != self.task.checkpoint_kind:
            raise DataError(f"checkpoint {path} is a {kind} checkpoint, this run is {self.task.checkpoint_kind}; "
                            "choose another run_dir")
        saved = current_names(self.schema, ckpt["config"])  # values renamed since under their current names
        if differences := config_differences(saved, self.config, self.task.identity_keys):
            raise DataError(f"{path} holds another run ({'; '.join(differences)}); resume it with its own config "
                            "(RUN/config.yaml) or choose another run_dir")
        try:
            self.task.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DataError(f"checkpoint {path} does not match this model/optimizer: "
                            f"{str(exc).splitlines()[0][:200]}") from None
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.state = RunState(ckpt["step"], ckpt["batches_seen"], ckpt.get("best", -math.inf),
                              ckpt.get("bad_steps", 0), list(ckpt.get("history", [])),
                              list(ckpt.get("val_history", [])))

    # ---------------------------------------------------------------- loop
    def batches(self) -> Iterator[Any]:
        """Endless batches starting at ``state.batches_seen`` (epoch and position recovered from it)."""
        while True:
            epoch, start = divmod(self.state.batches_seen, self.batches_per_epoch)
            self.sampler.set_epoch(epoch, start)
            yield from self.loader

    def to_device(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        return batch

    def set_schedules(self, step: int) -> float:
        return set_schedules(self.optimizer, step, self.total_steps, self.base_lr, self.warmup, self.optim_cfg)

    def train_step(self, batches: Iterator[Any], step: int) -> tuple[dict[str, Any], bool]:
        """One optimizer step over ``accumulate`` micro-batches; returns the outputs (float loss) and whether the
        step was applied: a non-finite loss or gradient norm skips it (fp16's GradScaler handles its own)."""
        self.task.train()
        total, outputs = 0.0, {}
        for micro in range(self.cfg.accumulate):
            batch = self.to_device(next(batches))
            self.state.batches_seen += 1
            last_micro = micro == self.cfg.accumulate - 1
            sync = self.model.no_sync() if self.world.size > 1 and not last_micro else contextlib.nullcontext()
            with sync:  # DDP: gradients are all-reduced once, on the last micro-batch
                with self.runtime.autocast():
                    outputs = self.model(batch, step, micro)
                loss = outputs["loss"].float() / self.cfg.accumulate
                self.scaler.scale(loss).backward()
            total += loss.item()
        total = mean_across(total, self.world, self.device)  # every rank skips a non-finite step together
        outputs["loss"] = total
        if not math.isfinite(total):
            self.optimizer.zero_grad(set_to_none=True)
            return outputs, False
        self.scaler.unscale_(self.optimizer)
        # max_norm=inf only measures; gradients are all-reduced already, so every rank takes the same decision
        grad_norm = nn.utils.clip_grad_norm_(self.task.parameters(), self.optim_cfg.clip_grad or math.inf)
        if not self.scaler.is_enabled() and not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            return outputs, False
        if self.optim_cfg.clip_grad:
            outputs["grad_norm"] = grad_norm
        self.task.before_optimizer_step(step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.task.after_optimizer_step(step)
        return outputs, True

    def fit(self) -> dict[str, float]:
        """Train to ``total_steps`` (after :meth:`resume` if asked), checkpoint, return the last logged metrics.
        TrainingError when more than half of the steps were skipped as non-finite."""
        main = self.world.is_main
        writer = SummaryWriter(str(self.run_dir / "tb")) if main else None
        bar = tqdm(total=self.total_steps, initial=self.state.step, disable=not (self.cfg.progress and main) or None,
                   dynamic_ncols=True, unit="step")
        batches = self.batches()
        window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        bad_in_row, last, good = 0, {}, {}
        logs = contextlib.closing(writer) if writer is not None else contextlib.nullcontext()
        with preemption_signals() as stop, contextlib.closing(bar), logs:
            while self.state.step < self.total_steps:
                if stop:
                    self.save_checkpoint()
                    self.write_metrics(last)
                    raise Preempted(f"stopped by {stop[0].name} after step {self.state.step}; checkpoint "
                                    f"{self.ckpt_path}; run the same command again to resume")
                step = self.state.step
                lr = self.set_schedules(step)
                out, applied = self.train_step(batches, step)
                self.state.step += 1
                final = self.state.step == self.total_steps
                if applied:
                    bad_in_row, good = 0, out
                    window_loss += out["loss"]
                    window_steps += 1
                    if main:
                        try:
                            last.update(self.task.step_metrics(out, step))
                        except StopTraining as exc:
                            raise TrainingError(f"{exc}; last good checkpoint: {self.ckpt_path}") from None
                else:  # skipped; a skipped last step still validates and checkpoints below
                    bad_in_row += 1
                    self.state.bad_steps += 1
                    warnings.warn(f"step {step}: non-finite loss or gradients, step skipped ({bad_in_row} in a row)",
                                  stacklevel=1)
                    if bad_in_row > self.cfg.max_bad_steps:
                        raise TrainingError(f"{bad_in_row} non-finite steps in a row at step {step}; "
                                            f"last good checkpoint: {self.ckpt_path}")
                if window_steps and (self.state.step % self.cfg.log_every == 0 or final):
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    last.update(step=self.state.step, loss=window_loss / window_steps, lr=lr,
                                samples_per_s=window_steps * self.samples_per_step / elapsed)
                    last.update({k: float(v) for k, v in good.items()
                                 if k != "loss" and torch.as_tensor(v).numel() == 1})
                    if main:
                        self.log(writer, last)
                        if bar.disable:  # no bar (nohup, Slurm, train.progress=false): a line per log_every steps
                            log.info(progress_line(last, self.total_steps))
                    bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{lr:.2e}",
                                    samples_s=f"{last['samples_per_s']:.1f}")
                    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
                bar.update(1)
                if self.validator is not None and (self.state.step % self.val_every == 0 or final):
                    self.run_validation(writer)
                if self.state.step % self.cfg.checkpoint_every == 0 or final:
                    self.save_checkpoint()
                    self.write_metrics(last)
        if 2 * self.state.bad_steps > self.total_steps:  # most steps skipped: do not pass it off as trained
            raise TrainingError(f"{self.state.bad_steps} of {self.total_steps} steps were skipped as non-finite (loss "
                                f"or gradients), so the model did not train; check the data for NaN / inf values "
                                f"(checkpoint: {self.ckpt_path})")
        return last

    def run_validation(self, writer: SummaryWriter | None) -> None:
        """Validate, log under ``val/`` (rank 0), and save ``best.pt`` when the validator's metric improves."""
        assert self.validator is not None
        if self.validator.sharded or self.world.size == 1:
            result = self.validator()
        else:
            result = broadcast(self.validator() if self.world.is_main else None, self.world)
        metrics = {"step": self.state.step, **result}
        self.task.train()
        add_scalars(writer, "val", metrics, self.state.step)
        self.state.val_history.append(metrics)
        if self.world.is_main:
            log.info("step %d/%d validation: %s", self.state.step, self.total_steps, summary(result))
        if metrics[self.validator.best_metric] > self.state.best:
            self.state.best = metrics[self.validator.best_metric]
            self.save_checkpoint("best.pt")

    def log(self, writer: SummaryWriter, metrics: dict[str, float]) -> None:
        add_scalars(writer, "train", metrics, int(metrics["step"]))
        self.state.history.append(dict(metrics))

    def write_metrics(self, last: dict[str, float]) -> None:
        if self.world.is_main:
            write_metrics_json(self.run_dir, metrics_record(last, self.state, self.total_steps, self.validator))
