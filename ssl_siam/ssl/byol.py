"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ssl_siam.core.config import Fraction, PositiveInt
from ssl_siam.ssl.base import OBJECTIVES, Objective, copy_buffers, fp32_loss
from ssl_siam.train.optim import param_groups

if TYPE_CHECKING:
    from ssl_siam.ssl.config import AugmentConfig, PretrainConfig


@dataclass
class BYOLConfig:  # Grill et al. 2020
    proj_hidden_dim: PositiveInt = 4096
    out_dim: PositiveInt = 256
    pred_hidden_dim: PositiveInt = 4096
    momentum_start: Fraction = 0.99
    momentum_end: Fraction = 1.0


@OBJECTIVES.register("byol")
class BYOL(Objective):
    """Online encoder+projector+predictor regresses an EMA target's projection of the other view.

    Loss per direction ``2 - 2·cos(p, z')`` (the paper's normalised MSE), summed over both directions.
    Target momentum follows ``1 - (1 - τ_base)(cos(πk/K) + 1)/2``, from ``momentum_start`` to ``momentum_end``.
    """

    options = BYOLConfig
    bench_recipe = "pretrain/byol_resnet50"

    def __init__(self, make_encoder: Callable[[], nn.Module], config: PretrainConfig) -> None:
        super().__init__()
        cfg: BYOLConfig = config.byol
        self.encoder, target_encoder = make_encoder(), make_encoder()
        dim = self.encoder.num_features
        self.projector = BYOLProjectionHead(dim, cfg.proj_hidden_dim, cfg.out_dim)
        self.predictor = BYOLPredictionHead(cfg.out_dim, cfg.pred_hidden_dim, cfg.out_dim)
        self.target_encoder = target_encoder
        self.target_projector = BYOLProjectionHead(dim, cfg.proj_hidden_dim, cfg.out_dim)
        self.target_encoder.load_state_dict(self.encoder.state_dict())
        self.target_projector.load_state_dict(self.projector.state_dict())
        deactivate_requires_grad(self.target_encoder)
        deactivate_requires_grad(self.target_projector)
        self.criterion = NegativeCosineSimilarity()
        self.cfg = cfg

    def momentum(self, step: int) -> float:
        return cosine_schedule(min(step, self.total_steps), self.total_steps, self.cfg.momentum_start,
                               self.cfg.momentum_end)

    def forward(self, views: list[torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        x1, x2 = views[:2]
        z1, z2 = self.projector(self.encoder(x1)), self.projector(self.encoder(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1 = self.target_projector(self.target_encoder(x1))
            t2 = self.target_projector(self.target_encoder(x2))
        loss = 4 + 2 * (fp32_loss(self.criterion, p1, t2) + fp32_loss(self.criterion, p2, t1))
        return {"loss": loss, "embedding": z1.detach(), "momentum": torch.tensor(self.momentum(step))}

    def param_groups(self) -> list[dict]:
        online = (self.encoder, self.projector, self.predictor)
        return [group for module in online for group in param_groups(module.parameters())]

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        m = self.momentum(step)
        for online, target in ((self.encoder, self.target_encoder), (self.projector, self.target_projector)):
            update_momentum(online, target, m)
            copy_buffers(online, target)

    def export_encoder(self) -> nn.Module:
        return self.encoder

    @staticmethod
    def lightly_transform(global_size: int, local_size: int, augment: AugmentConfig) -> Callable:
        return BYOLTransform(BYOLView1Transform(input_size=global_size), BYOLView2Transform(input_size=global_size))
