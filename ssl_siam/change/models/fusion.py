"""Per-scale fusion of pre- and post-disaster features, as in FC-Siam-diff / FC-Siam-conc (Daudt et al.,
"Fully Convolutional Siamese Networks for Change Detection", ICIP 2018) plus a learned variant.

A fusion is built as ``cls(channels)``, exposes ``out_channels`` and maps two ``[B, C, h, w]`` maps to
``[B, out_channels, h, w]``. A new fusion is one class decorated with ``@FUSIONS.register("name")``.
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_siam.core.registry import Registry

FUSIONS: Registry[type[nn.Module]] = Registry("fusion")


@FUSIONS.register("absdiff")
class AbsDiff(nn.Module):
    """``|F_pre − F_post|`` → ``[B, C, h, w]`` (FC-Siam-diff): only what changed reaches the decoder."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = channels

    def forward(self, f_pre: torch.Tensor, f_post: torch.Tensor) -> torch.Tensor:
        return (f_pre - f_post).abs()


@FUSIONS.register("concat")
class Concat(nn.Module):
    """``[F_pre, F_post]`` → ``[B, 2C, h, w]`` (FC-Siam-conc): the decoder learns the comparison."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = 2 * channels

    def forward(self, f_pre: torch.Tensor, f_post: torch.Tensor) -> torch.Tensor:
        return torch.cat([f_pre, f_post], dim=1)


@FUSIONS.register("concat_diff")
class ConcatDiff(nn.Module):
    """``[F_pre, F_post, |F_pre − F_post|]`` → ``[B, 3C, h, w]``: appearance and change together."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = 3 * channels

    def forward(self, f_pre: torch.Tensor, f_post: torch.Tensor) -> torch.Tensor:
        return torch.cat([f_pre, f_post, (f_pre - f_post).abs()], dim=1)


@FUSIONS.register("learned")
class Learned(nn.Module):
    """3×3 conv-BN-ReLU over ``[F_pre, F_post, |F_pre − F_post|]`` → ``[B, C, h, w]``: a learned comparison
    that keeps the decoder as narrow as ``absdiff``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = channels
        self.mix = nn.Sequential(
            nn.Conv2d(3 * channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )

    def forward(self, f_pre: torch.Tensor, f_post: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.cat([f_pre, f_post, (f_pre - f_post).abs()], dim=1))
