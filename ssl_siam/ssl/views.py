"""From a batch of raw tiles to normalised views: unit-scale per band → augment → standardise."""

from __future__ import annotations

import torch
from torch import nn

from ssl_siam.data.stats import BandStats
from ssl_siam.data.transforms.multiview import MultiViewAugment, ViewSpec
from ssl_siam.ssl.config import AugmentConfig


def view_specs(cfg: AugmentConfig, tile_size: int | None = None) -> list[ViewSpec]:
    """``n_global`` global views (per-view blur/solarize probabilities, as BYOL/DINO) + ``n_local`` local.

    Views never upsample beyond the tile: with ``tile_size < global_size`` both view sizes shrink by the same
    factor (e.g. 64² tiles → 64² global and 27² local views instead of 224²/96²).
    """
    shrink = min(1.0, tile_size / cfg.global_size) if tile_size else 1.0
    global_size, local_size = round(cfg.global_size * shrink), max(round(cfg.local_size * shrink), 8)
    common = dict(flip_p=cfg.flip_p, rot90=cfg.rot90, jitter_p=cfg.jitter_p, brightness=cfg.brightness,
                  contrast=cfg.contrast, saturation=cfg.saturation, hue=cfg.hue, grayscale_p=cfg.grayscale_p,
                  blur_sigma=cfg.blur_sigma)

    def per_view(values: list[float], i: int) -> float:
        return values[min(i, len(values) - 1)] if values else 0.0

    specs = [ViewSpec(size=global_size, scale=cfg.global_scale, blur_p=per_view(cfg.blur_p, i),
                      solarize_p=per_view(cfg.solarize_p, i), **common) for i in range(cfg.n_global)]
    specs += [ViewSpec(size=local_size, scale=cfg.local_scale, blur_p=cfg.local_blur_p, **common)
              for _ in range(cfg.n_local)]
    return specs


class ViewPipeline(nn.Module):
    """``[B, C, H, W]`` raw integer/float tiles → list of standardised float views ``[B, C, s, s]``; from
    ``[B, T, C, H, W]`` (``data.temporal``: T dates of one place) view k is drawn from date k mod T.

    Runs on whatever device the batch is on, in fp32 even under autocast; all randomness comes from
    ``generator`` so a batch's views are a pure function of (batch, seed).
    """

    def __init__(self, stats: BandStats, cfg: AugmentConfig, tile_size: int | None = None) -> None:
        super().__init__()
        self.stats = stats
        rgb = cfg.rgb_bands if cfg.rgb_bands is not None else ([0, 1, 2] if stats.num_bands == 3 else None)
        self.augment = MultiViewAugment(view_specs(cfg, tile_size), rgb_bands=rgb)

    def forward(self, raw: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        with torch.autocast(raw.device.type, enabled=False):
            views = self.augment(self.stats.to_unit(raw), generator=generator)
            return [self.stats.standardize(v) for v in views]
