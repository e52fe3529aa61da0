"""Additive attention gate of Attention U-Net (Oktay et al., "Attention U-Net: Learning Where to Look for
the Pancreas", MIDL 2018): the decoder's coarser signal decides which skip-connection pixels pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv1x1_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))


class AttentionGate(nn.Module):
    """``α = σ(ψ(ReLU(W_x·x + W_g·g)))`` with 1×1 conv-BN for ``W_x``, ``W_g`` and ``ψ``.

    ``x``: skip features ``[B, C_x, h, w]``; ``g``: gating signal ``[B, C_g, h', w']``, resized (bilinear)
    to ``h × w``. Returns ``(α ⊙ x, α)`` with ``α`` ``[B, 1, h, w]`` in [0, 1].
    """

    def __init__(self, x_channels: int, g_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.w_x = _conv1x1_bn(x_channels, inter_channels)
        self.w_g = _conv1x1_bn(g_channels, inter_channels)
        self.psi = _conv1x1_bn(inter_channels, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if g.shape[-2:] != x.shape[-2:]:
            g = F.interpolate(g, size=x.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(self.w_x(x) + self.w_g(g))))  # [B, 1, h, w]
        return alpha * x, alpha
