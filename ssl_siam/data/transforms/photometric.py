"""Batched photometric jitter of pre / post images (brightness/contrast, gamma, noise, blur), any band count.

One implementation for both placements: in the DataLoader workers (on the CPU, the default) or on the training
device (``data.photometric_on_device``), where workers then only read, crop and flip. Every sample draws its own
parameters from a generator seeded by the batch, so both placements jitter a batch identically on the CPU.
Ranges and probabilities are albumentations' (RandomBrightnessContrast 0.15, RandomGamma 85–115, GaussNoise
std 0.005–0.03, GaussianBlur σ 0.2–1) on images scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_siam.data.transforms.multiview import gaussian_blur


@dataclass(frozen=True)
class Jitter:
    """Probabilities and ranges (albumentations' conventions on float images in [0, 1])."""

    brightness: float = 0.15  # x · α + β with β ~ U(±brightness) ...
    contrast: float = 0.15  # ... and α ~ U(1 ± contrast)
    p_brightness_contrast: float = 0.8
    gamma: tuple[float, float] = (0.85, 1.15)  # x ** γ
    p_gamma: float = 0.5
    noise_std: tuple[float, float] = (0.005, 0.03)  # additive Gaussian noise, per pixel and band
    p_noise: float = 0.3
    blur_sigma: tuple[float, float] = (0.2, 1.0)  # Gaussian blur (5-tap kernel)
    p_blur: float = 0.2


def _uniform(generator: torch.Generator, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


@torch.no_grad()
def photometric_jitter(x: torch.Tensor, generator: torch.Generator, spec: Jitter = Jitter(),
                       keep: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` [B, C, H, W] float in [0, 1] → jittered copy in [0, 1]: brightness/contrast, gamma, noise, blur, each
    with its probability, in that order, parameters per sample. ``keep`` [B, H, W] bool marks pixels returned
    unchanged (padding, nodata). Parameters are drawn in a fixed order, all of them for every sample."""
    if x.ndim != 4 or not x.is_floating_point():
        raise TypeError(f"expected a [B, C, H, W] float tensor, got {x.dtype} of shape {tuple(x.shape)}")
    batch, dev = x.shape[0], x.device

    def fires(p: float) -> torch.Tensor:
        return (torch.rand(batch, generator=generator, device=dev) < p)[:, None, None, None]

    with torch.autocast(dev.type, enabled=False):
        out = x.float()
        on = fires(spec.p_brightness_contrast)
        alpha = _uniform(generator, batch, 1 - spec.contrast, 1 + spec.contrast, dev)[:, None, None, None]
        beta = _uniform(generator, batch, -spec.brightness, spec.brightness, dev)[:, None, None, None]
        out = torch.where(on, (out * alpha + beta).clamp(0, 1), out)
        on = fires(spec.p_gamma)
        gamma = _uniform(generator, batch, *spec.gamma, dev)[:, None, None, None]
        out = torch.where(on, out.pow(gamma), out)
        on = fires(spec.p_noise)
        std = _uniform(generator, batch, *spec.noise_std, dev)[:, None, None, None]
        noise = torch.randn(out.shape, generator=generator, device=dev)
        out = torch.where(on, (out + noise * std).clamp(0, 1), out)
        on = fires(spec.p_blur)[:, 0, 0, 0]
        sigma = _uniform(generator, batch, *spec.blur_sigma, dev)
        idx = on.nonzero().squeeze(1)
        if idx.numel():
            out[idx] = gaussian_blur(out[idx].contiguous(), sigma[idx], 2).clamp_(0, 1)
        if keep is not None:
            out = torch.where(keep[:, None], x.float(), out)
    return out.to(x.dtype)


def jitter_raw(raw: torch.Tensor, dtype: torch.dtype, generator: torch.Generator,
               spec: Jitter = Jitter()) -> torch.Tensor:
    """:func:`photometric_jitter` of raw float32 values ``[B, C, H, W]`` (read as ``dtype``) in albumentations' float
    convention, as the worker path applies it: divided by 255 for uint8, else by each image's maximum (at least 1 for
    integers), jittered in [0, 1], multiplied back. Pixels that are 0 in every band stay 0."""
    if dtype == torch.uint8:
        scale = raw.new_full((raw.shape[0], 1, 1, 1), 255.0)
    else:
        scale = raw.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12 if dtype.is_floating_point else 1.0)
    return photometric_jitter(raw / scale, generator, spec, keep=(raw == 0).all(dim=1)) * scale


def jitter_pair(pre: torch.Tensor, post: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw pre ``[B, C, H, W]`` and post ``[B, C', H, W]`` (any dtype) → float32 copies jittered independently
    (:func:`jitter_raw`, pre's parameters drawn first)."""
    return (jitter_raw(pre.to(torch.float32), pre.dtype, generator),
            jitter_raw(post.to(torch.float32), post.dtype, generator))
