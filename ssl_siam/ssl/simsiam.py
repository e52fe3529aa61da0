"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from lightly.transforms import SimSiamTransform
from torch import nn

from ssl_siam.core.config import PositiveInt
from ssl_siam.ssl.base import OBJECTIVES, Objective, fp32_loss
from ssl_siam.train.optim import param_groups

if TYPE_CHECKING:
    from ssl_siam.ssl.config import AugmentConfig, PretrainConfig


@dataclass
class SimSiamConfig:  # Chen & He 2021
    proj_hidden_dim: PositiveInt = 2048
    out_dim: PositiveInt = 2048
    pred_hidden_dim: PositiveInt = 512
    fix_pred_lr: bool = True


@OBJECTIVES.register("simsiam")
class SimSiam(Objective):
    """Symmetric negative cosine between predictor output and the stop-gradient projection of the other view."""

    options = SimSiamConfig
    bench_recipe = "pretrain/simsiam_resnet50"

    def __init__(self, make_encoder: Callable[[], nn.Module], config: PretrainConfig) -> None:
        super().__init__()
        cfg: SimSiamConfig = config.simsiam
        self.encoder = make_encoder()
        self.projector = SimSiamProjectionHead(self.encoder.num_features, cfg.proj_hidden_dim, cfg.out_dim)
        self.predictor = SimSiamPredictionHead(cfg.out_dim, cfg.pred_hidden_dim, cfg.out_dim)
        self.criterion = NegativeCosineSimilarity()
        self.fix_pred_lr = cfg.fix_pred_lr

    def forward(self, views: list[torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        x1, x2 = views[:2]
        z1, z2 = self.projector(self.encoder(x1)), self.projector(self.encoder(x2))  # [B, D]
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = 0.5 * (fp32_loss(self.criterion, p1, z2.detach()) + fp32_loss(self.criterion, p2, z1.detach()))
        return {"loss": loss, "embedding": z1.detach()}

    def param_groups(self) -> list[dict]:
        # The paper keeps the predictor's LR fixed (no cosine decay): better and more stable.
        backbone = [*param_groups(self.encoder.parameters()), *param_groups(self.projector.parameters())]
        return backbone + param_groups(self.predictor.parameters(), fixed_lr=self.fix_pred_lr)

    def export_encoder(self) -> nn.Module:
        return self.encoder

    @staticmethod
    def lightly_transform(global_size: int, local_size: int, augment: AugmentConfig) -> Callable:
        return SimSiamTransform(input_size=global_size)
