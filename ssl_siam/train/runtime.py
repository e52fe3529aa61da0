"""Where and how a process computes: device, process world, autocast dtype and memory format, made once.

A :class:`Runtime` is created at the start of a command (training: from ``train.*``, which also joins the process
group under torchrun / Slurm; prediction and probes: from ``--device`` and the checkpoint's precision) and passed
down, so no module re-derives the device or the precision policy from the config.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from ssl_siam.core.errors import ConfigError, UserError
from ssl_siam.train.config import TrainConfig
from ssl_siam.train.distributed import World, init_distributed

ACCELERATED = ("cuda",)  # device types where train.precision and train.channels_last apply; CPU runs NCHW, fp32
# unless train.cpu_bf16
_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; a one-line error naming ``key``
    for anything else or for CUDA on a machine without it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key}={name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key}={name}: CUDA is not available on this machine (use cpu or auto)")
    return device


def autocast_dtype(device: torch.device, precision: str, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (bf16 | fp16 | fp32) on an accelerated device, bf16 on a CPU when
    ``cpu_bf16``; None means fp32."""
    if device.type == "cpu" and cpu_bf16:
        return torch.bfloat16
    return _AMP[precision] if device.type in ACCELERATED else None


def memory_format(device: torch.device, channels_last: bool) -> torch.memory_format:
    """channels_last where asked for and the device is accelerated, else contiguous (NCHW)."""
    return torch.channels_last if device.type in ACCELERATED and channels_last else torch.contiguous_format


@dataclass(frozen=True)
class Runtime:
    """The device, the process world and the precision policy of one process."""

    device: torch.device
    world: World = field(default_factory=World)
    amp_dtype: torch.dtype | None = None  # autocast dtype; None = fp32
    memory_format: torch.memory_format = torch.contiguous_format

    @classmethod
    def create(cls, device: str | torch.device = "auto", precision: str = "fp32", channels_last: bool = False,
               key: str = "--device") -> Runtime:
        """A single-process runtime (prediction, probes, verification, bench)."""
        dev = device if isinstance(device, torch.device) else resolve_device(device, key)
        return cls(dev, World(), autocast_dtype(dev, precision), memory_format(dev, channels_last))

    @classmethod
    def for_training(cls, cfg: TrainConfig) -> Runtime:
        """The runtime of a training process: ``train.device`` / ``precision`` / ``channels_last``, joined to the
        process group when launched by torchrun or srun (a CUDA device becomes ``cuda:<local rank>``)."""
        world, dev = init_distributed(resolve_device(cfg.device))
        if cfg.sync_bn and world.size > 1 and dev.type != "cuda":
            raise ConfigError("train.sync_bn=true needs CUDA devices (SyncBatchNorm has no CPU kernel); unset it")
        return cls(dev, world, autocast_dtype(dev, cfg.precision, cfg.cpu_bf16), memory_format(dev, cfg.channels_last))

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to ``amp_dtype`` on this device (a no-op context for fp32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    @property
    def pin_memory(self) -> bool:
        """Whether DataLoaders should pin host memory (only worth it for a CUDA device)."""
        return self.device.type == "cuda"

    def describe(self) -> str:
        """The device in words, e.g. ``cuda (NVIDIA H100 80GB HBM3)`` or ``cpu``."""
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)


def compile_backbones(module: nn.Module, mode: str | None) -> None:
    """``torch.compile`` (in place, so state dicts keep their keys) the outermost timm models inside ``module``:
    the bulk of the compute, static shapes, no data-dependent control flow — unlike augmentation, mining or the
    decoders' glue."""
    if hasattr(module, "pretrained_cfg"):
        module.compile(mode=mode)
        return
    for child in module.children():
        compile_backbones(child, mode)
