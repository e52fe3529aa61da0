"""DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import DINOTransform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ssl_siam.core.config import Fraction, NonNegativeInt, PositiveFloat, PositiveInt
from ssl_siam.ssl.base import OBJECTIVES, Objective, copy_buffers, fp32_loss
from ssl_siam.train.optim import param_groups

if TYPE_CHECKING:
    from ssl_siam.ssl.config import AugmentConfig, PretrainConfig


@dataclass
class DINOConfig:  # Caron et al. 2021
    hidden_dim: PositiveInt = 2048
    bottleneck_dim: PositiveInt = 256
    out_dim: PositiveInt = 65536
    batch_norm: bool = False  # BN in the head (official default for ResNet: False)
    norm_last_layer: bool = True
    warmup_teacher_temp: PositiveFloat = 0.04
    teacher_temp: PositiveFloat = 0.04
    warmup_teacher_temp_epochs: NonNegativeInt = 30
    student_temp: PositiveFloat = 0.1
    center_momentum: Fraction = 0.9
    momentum_start: Fraction = 0.996
    momentum_end: Fraction = 1.0
    freeze_last_layer_epochs: NonNegativeInt = 1


def multicrop_forward(backbone: nn.Module, head: DINOProjectionHead,
                      views: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run same-resolution views through the backbone together (as DINO's MultiCropWrapper), the head once.

    Returns one ``[B, out_dim]`` float32 tensor per view, in order, and the first view's L2-normalised bottleneck
    embedding ``[B, bottleneck_dim]`` (the input of the weight-normed last layer) for the collapse monitor. The
    last layer runs in float32 even under autocast: its outputs are divided by temperatures down to 0.04, where a
    bf16 rounding (2⁻⁸ relative) would shift the teacher's softmax by ~10 %.
    """
    feats = [backbone(torch.cat(list(group))) for _, group in itertools.groupby(views, key=lambda v: v.shape[-1])]
    bottleneck = F.normalize(head.layers(torch.cat(feats)), dim=-1)  # DINOProjectionHead.forward, unrolled
    with torch.autocast(bottleneck.device.type, enabled=False):
        logits = head.last_layer(bottleneck.float())
    return list(logits.chunk(len(views))), bottleneck[: len(views[0])]


@OBJECTIVES.register("dino")
class DINO(Objective):
    """Self-distillation: the student matches the centred, sharpened EMA teacher on all crops.

    The teacher sees only the ``augment.n_global`` global crops. Teacher temperature warms up linearly over
    ``warmup_teacher_temp_epochs``; the last head layer is frozen for ``freeze_last_layer_epochs``.
    """

    options = DINOConfig
    bench_recipe = "pretrain/dino_resnet50"
    bench_overrides = ("dino.freeze_last_layer_epochs=0",)

    def __init__(self, make_encoder: Callable[[], nn.Module], config: PretrainConfig) -> None:
        super().__init__()
        cfg: DINOConfig = config.dino
        student, teacher = make_encoder(), make_encoder()
        dim = student.num_features

        def head() -> DINOProjectionHead:
            return DINOProjectionHead(dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.out_dim, cfg.batch_norm,
                                      norm_last_layer=cfg.norm_last_layer)

        self.student_backbone, self.student_head = student, head()
        # Built separately and loaded: the weight-normed last layer cannot be deep-copied.
        self.teacher_backbone, self.teacher_head = teacher, head()
        self.teacher_backbone.load_state_dict(student.state_dict())
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(output_dim=cfg.out_dim, warmup_teacher_temp=cfg.warmup_teacher_temp,
                                  teacher_temp=cfg.teacher_temp, student_temp=cfg.student_temp,
                                  center_momentum=cfg.center_momentum)
        self.cfg, self.n_global = cfg, config.augment.n_global

    def teacher_temp(self, step: int) -> float:
        warmup = self.cfg.warmup_teacher_temp_epochs * self.steps_per_epoch
        if step >= warmup:
            return self.cfg.teacher_temp
        return self.cfg.warmup_teacher_temp + (self.cfg.teacher_temp - self.cfg.warmup_teacher_temp) * step / warmup

    def momentum(self, step: int) -> float:
        return cosine_schedule(min(step, self.total_steps), self.total_steps, self.cfg.momentum_start,
                               self.cfg.momentum_end)

    def forward(self, views: list[torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            teacher_out, _ = multicrop_forward(self.teacher_backbone, self.teacher_head, views[: self.n_global])
        student_out, embedding = multicrop_forward(self.student_backbone, self.student_head, views)
        temp = self.teacher_temp(step)
        loss = fp32_loss(self.criterion, teacher_out, student_out, teacher_temp=temp)
        return {"loss": loss, "embedding": embedding.detach(), "teacher_temp": torch.tensor(temp),
                "momentum": torch.tensor(self.momentum(step))}

    def param_groups(self) -> list[dict]:
        return [*param_groups(self.student_backbone.parameters()), *param_groups(self.student_head.parameters())]

    def before_optimizer_step(self, step: int) -> None:
        if step < self.cfg.freeze_last_layer_epochs * self.steps_per_epoch:
            for param in self.student_head.last_layer.parameters():
                param.grad = None

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        m = self.momentum(step)
        for student, teacher in ((self.student_backbone, self.teacher_backbone),
                                 (self.student_head, self.teacher_head)):
            update_momentum(student, teacher, m)
            copy_buffers(student, teacher)

    def export_encoder(self) -> nn.Module:
        return self.teacher_backbone  # DINO evaluates the teacher, which is the better model

    @staticmethod
    def lightly_transform(global_size: int, local_size: int, augment: AugmentConfig) -> Callable:
        """Our recipe's crop scales and local crop count."""
        return DINOTransform(global_crop_size=global_size, global_crop_scale=augment.global_scale,
                             local_crop_size=local_size, local_crop_scale=augment.local_scale,
                             n_local_views=augment.n_local)
