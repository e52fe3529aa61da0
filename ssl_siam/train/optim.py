"""Optimizers, parameter groups and schedules: pure functions of the config and the step (as nanoGPT)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from lightly.utils.lars import LARS
from torch import nn

from ssl_siam.train.config import OptimConfig


def lr_at(step: int, total: int, base: float, warmup: int, min_lr: float) -> float:
    """Linear warm-up to ``base`` then half-cosine to ``min_lr``: a pure function of the step."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def weight_decay_at(step: int, total: int, base: float, end: float) -> float:
    """Half-cosine from ``base`` to ``end`` over the run (DINO's weight-decay schedule)."""
    progress = min(step / max(total, 1), 1.0)
    return end + (base - end) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(params: Iterable[nn.Parameter], **extra: object) -> list[dict]:
    """Optimizer groups: biases and norm parameters (ndim ≤ 1) get no weight decay, as in DINO/BYOL.

    ``extra`` tags both groups (e.g. ``fixed_lr=True``, ``lr_scale=0.1``); frozen parameters are left out.
    """
    params = [p for p in params if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], **extra},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, **extra}]
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict], cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """SGD, AdamW or LARS (``optim.name``) over ``groups``; each group remembers its base weight decay."""
    for group in groups:
        group.setdefault("weight_decay", cfg.weight_decay)
        group["base_weight_decay"] = group["weight_decay"]
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas)
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)


def set_schedules(optimizer: torch.optim.Optimizer, step: int, total: int, base_lr: float, warmup: int,
                  cfg: OptimConfig) -> float:
    """Set every group's LR (``fixed_lr`` groups keep ``base_lr``; ``lr_scale`` multiplies) and, with
    ``optim.weight_decay_end``, its weight decay for ``step``; returns the scheduled LR."""
    lr = lr_at(step, total, base_lr, warmup, cfg.min_lr)
    for group in optimizer.param_groups:
        group["lr"] = (base_lr if group.get("fixed_lr") else lr) * group.get("lr_scale", 1.0)
        if cfg.weight_decay_end is not None and group["base_weight_decay"] > 0:
            group["weight_decay"] = weight_decay_at(step, total, group["base_weight_decay"], cfg.weight_decay_end)
    return lr
