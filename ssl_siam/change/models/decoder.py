"""UNet decoder over fused Siamese features, after segmentation_models_pytorch's ``UnetDecoder`` with
optional attention gates on the skips (Oktay et al. 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_siam.change.models.attention import AttentionGate
from ssl_siam.core.errors import ConfigError


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DecoderBlock(nn.Module):
    """Upsample (nearest) to the skip's size, gate the skip, concatenate, two 3×3 conv-BN-ReLU.

    Without a skip (``skip_channels=0``) the block upsamples to ``size`` or, if none is given, ×2.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, attention: bool) -> None:
        super().__init__()
        use_gate = attention and skip_channels > 0
        self.gate = AttentionGate(skip_channels, in_channels, max(skip_channels // 2, 1)) if use_gate else None
        self.convs = nn.Sequential(
            conv_bn_relu(in_channels + skip_channels, out_channels), conv_bn_relu(out_channels, out_channels)
        )

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: Sequence[int] | None = None
    ) -> torch.Tensor:
        if skip is not None:
            size = skip.shape[-2:]
        elif size is None:
            size = (2 * x.shape[-2], 2 * x.shape[-1])
        x = F.interpolate(x, size=tuple(size), mode="nearest")
        if skip is not None:
            if self.gate is not None:
                skip, _ = self.gate(skip, x)  # the upsampled decoder feature is the gating signal
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class UNetDecoder(nn.Module):
    """One block per encoder scale: from the deepest fused map, each block merges the next shallower skip;
    a last block without skip brings the shallowest scale (stride 2 for resnets) to the input resolution.

    ``skip_channels``: fused channels per encoder scale, shallow → deep. Only the first
    ``len(skip_channels)`` entries of ``decoder_channels`` are used. ``out_channels`` lists each block's width.
    """

    def __init__(self, skip_channels: list[int], decoder_channels: Sequence[int], attention: bool = True) -> None:
        super().__init__()
        if len(decoder_channels) < len(skip_channels):
            raise ConfigError(
                f"model.decoder_channels: {len(skip_channels)} encoder scales need {len(skip_channels)} decoder "
                f"widths, got {list(decoder_channels)}"
            )
        self.out_channels = list(decoder_channels[: len(skip_channels)])
        in_channels = [skip_channels[-1], *self.out_channels[:-1]]
        skips = [*reversed(skip_channels[:-1]), 0]
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o, attention) for i, s, o in zip(in_channels, skips, self.out_channels)
        )

    def forward(self, features: list[torch.Tensor], size: Sequence[int] | None = None) -> list[torch.Tensor]:
        """``features``: fused maps shallow → deep; ``size``: the input's ``(H, W)`` for the last block
        (default ×2 of the shallowest map). Returns every block's output ``[B, D_i, h_i, w_i]``, coarse → fine."""
        x = features[-1]
        outputs = []
        for block, skip in zip(self.blocks, [*features[-2::-1], None]):
            x = block(x, skip, size)
            outputs.append(x)
        return outputs
