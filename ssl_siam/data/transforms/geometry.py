"""Batched joint geometry of pre / post / mask on the training device (``data.geometric_on_device``): the law of
:class:`~ssl_siam.data.transforms.pair.PairAugment` — a uniform dihedral element (flips and 90° rotations; flips
only for non-square crops), then with probability ``affine_p`` a scale and rotation about the centre (images
bilinear, border 0; mask nearest, border ``ignore_index``), then an integer shift of the post image alone of up to
``misregistration_px`` (misregistration) — composed per sample into one affine map and applied to the whole batch
by one ``grid_sample`` per tensor, so workers only read and crop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _matrices(batch: int, height: int, width: int, generator: torch.Generator, device: torch.device,
              scale: tuple[float, float], rotate: tuple[float, float], affine_p: float) -> torch.Tensor:
    """[B, 3, 3] output → input maps in pixel units about the image centre (x right, y down)."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator, device=device)

    quarter = torch.randint(0, 4 if height == width else 1, (batch,), generator=generator, device=device)
    flip_x = torch.rand(batch, generator=generator, device=device) < 0.5
    flip_y = torch.rand(batch, generator=generator, device=device) < (0.0 if height == width else 0.5)
    fires = torch.rand(batch, generator=generator, device=device) < affine_p
    factor = torch.where(fires, uniform(*scale), torch.ones(batch, device=device))
    angle = torch.where(fires, uniform(*rotate), torch.zeros(batch, device=device)) * (math.pi / 180)
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor  # inverse of scale · rotation
    m = torch.zeros(batch, 3, 3, device=device)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = cos, -sin, sin, cos, 1.0
    quarter_turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], device=device)
    d4 = torch.eye(3, device=device).repeat(batch, 1, 1)
    for k in range(1, 4):  # exact integer matrices: a quarter turn k times
        d4 = torch.where((quarter == k)[:, None, None], torch.linalg.matrix_power(quarter_turn, k), d4)
    d4[:, 0] *= torch.where(flip_x, -1.0, 1.0)[:, None]
    d4[:, 1] *= torch.where(flip_y, -1.0, 1.0)[:, None]
    return d4 @ m


def _warp(x: torch.Tensor, maps: torch.Tensor, mode: str) -> torch.Tensor:
    """``x`` [B, C, H, W] float resampled through the pixel-unit centre maps [B, 3, 3] (border 0)."""
    height, width = x.shape[-2:]
    to_norm = torch.diag(torch.tensor([2.0 / width, 2.0 / height, 1.0], device=x.device))
    from_norm = torch.diag(torch.tensor([width / 2.0, height / 2.0, 1.0], device=x.device))
    theta = (to_norm @ maps @ from_norm)[:, :2]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


@torch.no_grad()
def pair_geometry(pre: torch.Tensor, post: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, *,
                  misregistration_px: int = 0, ignore_index: int = 255, scale: tuple[float, float] = (0.9, 1.1),
                  rotate: tuple[float, float] = (-10.0, 10.0), affine_p: float = 0.5
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pre [B, C, H, W], post [B, C', H, W] (any dtype; returned as float32) and mask [B, H, W] (long) under one
    geometry per sample; the post image is also shifted by its own integer offset. Parameters are drawn from
    ``generator`` in a fixed order."""
    batch, (height, width), device = pre.shape[0], pre.shape[-2:], pre.device
    with torch.autocast(device.type, enabled=False):  # float32 maps: under bf16 autocast matmuls would round them
        maps = _matrices(batch, height, width, generator, device, scale, rotate, affine_p)
        offsets = torch.randint(-misregistration_px, misregistration_px + 1, (batch, 2), generator=generator,
                                device=device).float()
        shift = torch.eye(3, device=device).repeat(batch, 1, 1)
        shift[:, 0, 2], shift[:, 1, 2] = -offsets[:, 1], -offsets[:, 0]  # output (y, x) reads input (y - dy, x - dx)
        pre_out = _warp(pre.float(), maps, "bilinear")
        post_out = _warp(post.float(), maps @ shift, "bilinear")  # the shift moves the transformed post image
        inside = torch.ones_like(mask, dtype=torch.float32)[:, None]
        labels = _warp(torch.cat([mask[:, None].float(), inside], dim=1), maps, "nearest")
    mask_out = torch.where(labels[:, 1] > 0.5, labels[:, 0].round().long(), torch.full_like(mask, ignore_index))
    return pre_out, post_out, mask_out
