"""The scene classifier (encoder → pooled features → linear head) and its training task: cross-entropy on
standardised scenes, with seeded random flips / 90° rotations drawn on the device."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_siam.data.sampling import seeded_generator
from ssl_siam.data.stats import BandStats
from ssl_siam.train.optim import param_groups
from ssl_siam.train.task import TrainingTask


class SceneClassifier(nn.Module):
    """``[B, C, S, S]`` raw pixel values → logits ``[B, K]``; the band statistics travel with the model."""

    def __init__(self, encoder: nn.Module, num_classes: int, stats: BandStats) -> None:
        super().__init__()
        self.encoder, self.stats = encoder, stats
        self.head = nn.Linear(encoder.num_features, num_classes)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.stats.standardize(self.stats.to_unit(raw))))


def dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each square image of ``x`` [B, C, S, S] under one of the 8 flips / rotations, drawn from ``generator``."""
    choice = torch.randint(0, 8, (x.shape[0],), generator=generator, device=x.device)
    variants = [torch.rot90(v, k, dims=(-2, -1)) for v in (x, x.flip(-1)) for k in range(4)]  # 8 × [B, C, S, S]
    return torch.stack(variants)[choice, torch.arange(x.shape[0], device=x.device)]


class SceneTask(TrainingTask):
    """Batches are ``(index [B], images [B, C, S, S] raw, labels [B])``; the augmentation generator is seeded
    from (seed, first sample index), so a resumed run draws the same flips."""

    checkpoint_kind = "scene"

    def __init__(self, model: SceneClassifier, classes: list[str], arch: dict[str, Any], seed: int,
                 encoder_lr_scale: float, augment: bool, memory_format: torch.memory_format = torch.contiguous_format
                 ) -> None:
        super().__init__()
        self.model, self.classes, self.arch, self.seed = model, classes, arch, seed
        self.encoder_lr_scale, self.augment, self.memory_format = encoder_lr_scale, augment, memory_format
        if encoder_lr_scale == 0:
            model.encoder.requires_grad_(False)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], step: int,
                      micro: int) -> dict[str, torch.Tensor]:
        index, images, labels = batch
        if self.augment:
            images = dihedral(images, seeded_generator(images.device, self.seed, int(index[0])))
        logits = self.model(images.contiguous(memory_format=self.memory_format))
        loss = F.cross_entropy(logits, labels)
        return {"loss": loss, "accuracy": (logits.argmax(1) == labels).float().mean().detach()}

    def param_groups(self) -> list[dict]:
        return (param_groups(self.model.encoder.parameters(), lr_scale=self.encoder_lr_scale)
                + param_groups(self.model.head.parameters()))

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "arch": dict(self.arch), "stats": vars(self.model.stats).copy()}
