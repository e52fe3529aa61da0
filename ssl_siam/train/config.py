"""What every training's config is made of: where the run lives, the loop, the optimizer and the DataLoader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ssl_siam.core.config import Beta, Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd", "lars"] = "sgd"
    lr: PositiveFloat = 0.05  # base LR for `base_batch_size` samples; scaled linearly with the effective batch
    base_batch_size: PositiveInt = 256
    weight_decay: NonNegativeFloat = 1e-4
    weight_decay_end: NonNegativeFloat | None = None  # cosine weight-decay schedule (DINO); None = constant
    momentum: Fraction = 0.9  # SGD/LARS
    betas: tuple[Beta, Beta] = (0.9, 0.999)  # AdamW
    warmup_steps: NonNegativeInt = 0  # takes precedence over warmup_epochs when > 0
    warmup_epochs: NonNegativeFloat = 0.0
    min_lr: NonNegativeFloat = 0.0  # the cosine schedule ends here (absolute, not scaled)
    clip_grad: PositiveFloat | None = None  # max global grad norm


@dataclass
class TrainConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"  # autocast dtype on CUDA; CPU runs fp32 unless cpu_bf16
    cpu_bf16: bool = False  # bf16 autocast on CPU too: ~1.7x on CPUs with AVX512-BF16 / AMX, slower on others
    channels_last: bool = True  # CUDA only
    batch_size: PositiveInt = 64  # per process
    accumulate: PositiveInt = 1  # gradient accumulation steps per optimizer step
    max_steps: PositiveInt | None = None  # optimizer steps; None = `epochs` worth of steps
    epochs: PositiveInt = 100
    checkpoint_every: PositiveInt = 500  # steps
    log_every: PositiveInt = 10  # steps
    collapse_every: PositiveInt = 50  # steps between collapse-monitor readings
    collapse_threshold: NonNegativeFloat = 0.25  # warn when std·sqrt(d) falls below this
    stop_on_collapse: bool = False
    max_bad_steps: NonNegativeInt = 20  # consecutive non-finite steps tolerated (each is skipped) before stopping
    seed: NonNegativeInt = 0
    progress: bool = True  # tqdm bar on a terminal
    sync_bn: bool = False  # SyncBatchNorm across processes (torchrun / Slurm)
    compile: bool = False  # torch.compile the backbones (in place: checkpoints stay interchangeable)
    compile_mode: str | None = None  # torch.compile mode: default | reduce-overhead | max-autotune


@dataclass
class LoaderConfig:
    """DataLoader settings shared by every data section."""

    num_workers: NonNegativeInt = 4
    pin_memory: bool = True
    prefetch_factor: PositiveInt = 4


@dataclass
class RunConfig:
    """What every training command's config starts with: where the run lives and whether to resume it."""

    run_dir: str = ""  # default: runs/<command or objective>-<timestamp>
    resume: Literal["auto", True, False] = "auto"  # auto: resume when run_dir has a checkpoint
