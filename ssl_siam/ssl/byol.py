"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ssl_siam.ssl.base import OBJECTIVES, Objective, copy_buffers, fp32_loss
from ssl_siam.ssl.config import BYOLConfig, PretrainConfig
from ssl_siam.train.optim import param_groups


class BYOL(Objective):
    """Online encoder+projector+predictor regresses an EMA target's projection of the other view.

    Loss per direction ``2 - 2·cos(p, z')`` (the paper's normalised MSE), summed over both directions.
    Target momentum follows ``1 - (1 - τ_base)(cos(πk/K) + 1)/2``, from ``momentum_start`` to ``momentum_end``.
    """

    def __init__(self, encoder: nn.Module, target_encoder: nn.Module, cfg: BYOLConfig) -> None:
        super().__init__()
        dim = encoder.num_features
        self.encoder = encoder
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


@OBJECTIVES.register("byol")
def build_byol(make_encoder: Callable[[], nn.Module], cfg: PretrainConfig) -> BYOL:
    return BYOL(make_encoder(), make_encoder(), cfg.byol)
