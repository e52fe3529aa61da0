"""Batched multi-view augmentations for self-supervised pretraining on float tensors of any band count.

Follows the view pipeline of SimSiam (Chen & He, 2021) / BYOL (Grill et al., 2020) / DINO (Caron et al.,
2021): random-resized crop, flips, colour jitter, grayscale, Gaussian blur, solarization, plus random 90°
rotations (overhead imagery has no "up"). Parameters are drawn per sample for the whole batch at once,
data stay in float (no 8-bit quantization) and everything runs on the input's device. Per view:

* one ``F.grid_sample`` (bilinear, no antialiasing) does crop + resize + flips + rot90 for all samples;
* colour jitter and grayscale are all affine in the bands, so they are composed into one matrix per
  sample, applied in one pass and clamped to [0, 1] once (torchvision clamps after every step);
* a separable Gaussian blur (grouped convolution) runs on the samples selected for blurring;
* solarization is one elementwise ``torch.where``.

On CPU the batch is rendered in chunks of at most ``_CPU_CHUNK_BYTES`` of intermediates: glibc serves
bigger blocks with fresh ``mmap`` pages, and faulting those in for every intermediate made a 64-sample
batch ~1.3× slower per sample than an 8-sample one. The parameters do not depend on the chunking.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

_LUMA = torch.tensor((0.299, 0.587, 0.114))  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale
_RGB_TO_YIQ = torch.tensor(((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312)))
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_ROT90 = torch.tensor(
    ((1.0, 0.0, 0.0, 1.0), (0.0, -1.0, 1.0, 0.0), (-1.0, 0.0, 0.0, -1.0), (0.0, 1.0, -1.0, 0.0))
)
_BLUR_REF_SIZE = 224  # ViewSpec.blur_sigma is given in pixels of a view of this size
_CPU_CHUNK_BYTES = 8 * 2**20

Rand = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ViewSpec:
    """One kind of view (e.g. a DINO global or local crop); defaults are SimSiam's plus rot90/vflip.

    ``brightness`` and ``contrast`` draw an independent factor per band: brightness multiplies the band,
    contrast blends it with its mean over the view. ``saturation``, ``hue`` and ``grayscale_p`` act on
    the RGB bands only and need ``MultiViewAugment(rgb_bands=...)``. ``blur_sigma`` is in pixels of a
    224-pixel view and is scaled by ``size / 224``, so every view is blurred by the same fraction of its
    field of view. The blur kernel radius is ``ceil(3 · sigma)``.
    """

    size: int
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    rot90: bool = True
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5

    def __post_init__(self) -> None:
        probs = ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p")
        bad = [k for k in probs if not 0.0 <= getattr(self, k) <= 1.0]
        if bad:
            raise ValueError(f"ViewSpec probabilities must lie in [0, 1]: {', '.join(bad)}")
        if self.size < 1:
            raise ValueError(f"ViewSpec.size must be >= 1, got {self.size}")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"ViewSpec.scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ViewSpec.ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"ViewSpec.blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}")
        if min(self.brightness, self.contrast, self.saturation, self.hue) < 0 or self.hue > 0.5:
            raise ValueError("ViewSpec jitter strengths must be >= 0 and hue <= 0.5")


class _Draw(NamedTuple):
    """Per-sample random parameters of one view (leading dim B); None = step disabled."""

    lin: torch.Tensor  # [B, 2, 2] output (u, v) → input offset from the crop centre, grid_sample units
    centre: torch.Tensor  # [B, 2] crop centre (x, y)
    scale: torch.Tensor | None  # [B, C] jitter gain per band
    shift: torch.Tensor | None  # [B, C] contrast weight of the band mean
    mix: torch.Tensor | None  # [B, C, C] band mixing (3×3 RGB block, identity elsewhere), after scale/shift
    sigma: torch.Tensor | None  # [B] blur sigma in output pixels, 0 = not blurred
    solarize: torch.Tensor | None  # [B] bool


def _uniform(rand: Rand, shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
    return rand(*shape) * (hi - lo) + lo


def _crop_boxes(rand: Rand, batch: int, height: int, width: int, spec: ViewSpec) -> torch.Tensor:
    """Random-resized-crop boxes as torchvision samples them (10 tries, then a centre crop), real-valued.

    Returns [B, 4]: centre x, centre y, half-width, half-height in ``grid_sample`` coordinates.
    """
    area = _uniform(rand, (batch, 10), *spec.scale) * (height * width)
    aspect = torch.exp(_uniform(rand, (batch, 10), math.log(spec.ratio[0]), math.log(spec.ratio[1])))
    w, h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    ok = (w <= width) & (h <= height)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first valid try
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    fw, fh = float(width), float(height)  # fallback: whole image, cut to the nearest allowed ratio
    if width / height < spec.ratio[0]:
        fh = width / spec.ratio[0]
    elif width / height > spec.ratio[1]:
        fw = height * spec.ratio[1]
    found = ok.any(dim=1)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    x0, y0 = rand(batch) * (width - w), rand(batch) * (height - h)
    return torch.stack(((2 * x0 + w) / width - 1, (2 * y0 + h) / height - 1, w / width, h / height), 1)


def _dihedral(rand: Rand, batch: int, spec: ViewSpec) -> torch.Tensor:
    """Random dihedral element (flips of u and v, then k·90° rotation) as [B, 2, 2] signed permutations."""
    flips = torch.diag_embed(torch.where(rand(batch, 2) < spec.flip_p, -1.0, 1.0))
    if not spec.rot90:
        return flips
    k = (rand(batch) * 4).long().clamp_(max=3)
    return _ROT90.to(flips.device)[k].view(batch, 2, 2) @ flips


def _rgb_mixing(rand: Rand, batch: int, spec: ViewSpec, jitter: torch.Tensor) -> torch.Tensor:
    """[B, 3, 3] RGB matrix: saturation then hue (where ``jitter``), then grayscale with ``grayscale_p``.

    Saturation blends with the luma as torchvision does; hue rotates the chroma (I, Q) plane of YIQ by
    ``2π · U(-hue, hue)``, a linear stand-in for torchvision's HSV hue shift.
    """
    dev = jitter.device
    luma = _LUMA.to(dev).expand(3, 3)  # every row = luma weights: RGB → gray
    eye = torch.eye(3, device=dev)
    sat = _uniform(rand, (batch, 1, 1), max(0.0, 1 - spec.saturation), 1 + spec.saturation)
    angle = _uniform(rand, (batch,), -2 * math.pi * spec.hue, 2 * math.pi * spec.hue)
    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    rot = torch.stack((one, zero, zero, zero, cos, sin, zero, -sin, cos), 1).view(batch, 3, 3)
    mix = _YIQ_TO_RGB.to(dev) @ rot @ _RGB_TO_YIQ.to(dev) @ (sat * eye + (1 - sat) * luma)
    mix = torch.where(jitter[:, None, None], mix, eye)
    gray = rand(batch) < spec.grayscale_p
    return torch.where(gray[:, None, None], luma @ mix, mix)


def _draw(rand: Rand, spec: ViewSpec, shape: torch.Size, rgb: torch.Tensor | None) -> _Draw:
    """All random parameters of one view for a batch of ``shape`` = [B, C, H, W], in a fixed order."""
    batch, bands, height, width = shape
    boxes = _crop_boxes(rand, batch, height, width, spec)
    lin = boxes[:, 2:, None] * _dihedral(rand, batch, spec)
    scale = shift = mix = sigma = solarize = None
    if spec.jitter_p > 0 or (rgb is not None and spec.grayscale_p > 0):
        jitter = (rand(batch) < spec.jitter_p)[:, None]
        bright = _uniform(rand, (batch, bands), max(0.0, 1 - spec.brightness), 1 + spec.brightness)
        contrast = _uniform(rand, (batch, bands), max(0.0, 1 - spec.contrast), 1 + spec.contrast)
        scale = torch.where(jitter, bright * contrast, 1.0)
        shift = torch.where(jitter, (1 - contrast) * bright, 0.0)
        if rgb is not None:
            mix = torch.eye(bands, device=lin.device).repeat(batch, 1, 1)
            mix[:, rgb[:, None], rgb] = _rgb_mixing(rand, batch, spec, jitter[:, 0])
    if spec.blur_p > 0:
        blur = rand(batch) < spec.blur_p
        sigma = _uniform(rand, (batch,), *spec.blur_sigma) * (spec.size / _BLUR_REF_SIZE) * blur
    if spec.solarize_p > 0:
        solarize = rand(batch) < spec.solarize_p
    return _Draw(lin, boxes[:, :2], scale, shift, mix, sigma, solarize)


def gaussian_blur(view: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur, one sigma (pixels) per sample, reflect padding: [N, C, H, W] → same.

    One grouped convolution per axis; kernels are truncated at ``radius`` (and where below 1e-6 of the
    peak) and normalised to sum 1.
    """
    n, bands, height, width = view.shape
    taps = torch.arange(-radius, radius + 1, device=view.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma[:, None]) ** 2)
    kernel = kernel * (kernel > 1e-6)  # tiny taps would yield denormal floats, many times slower on CPU
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(view.dtype).repeat_interleave(bands, 0)  # [N*C, K]
    # Pad both axes first (exact: reflection along x commutes with the blur along y); the horizontal pass
    # runs first because oneDNN's vertical pass is the slower one and this gives it the smaller input.
    flat = F.pad(view.reshape(1, n * bands, height, width), (radius,) * 4, mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * bands)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * bands)
    return flat.view(n, bands, height, width)


def _render(x: torch.Tensor, d: _Draw, spec: ViewSpec, radius: int) -> torch.Tensor:
    """Applies drawn parameters ``d`` to a batch ``x`` [B, C, H, W] → [B, C, size, size] in [0, 1]."""
    size = spec.size
    coords = (torch.arange(size, device=x.device, dtype=torch.float32) * 2 + 1) / size - 1
    row = d.lin[:, None, None, :, 0] * coords[None, None, :, None] + d.centre[:, None, None, :]  # [B,1,S,2]
    col = d.lin[:, None, None, :, 1] * coords[None, :, None, None]  # [B, S, 1, 2]
    grid = torch.empty(x.shape[0], size, size, 2, device=x.device, dtype=x.dtype)
    for k in range(2):  # strided writes per coordinate: ~5× faster than broadcasting over the last dim of 2
        torch.add(row[..., k], col[..., k], out=grid[..., k])
    view = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if d.scale is not None and d.shift is not None:
        shift = d.shift * view.mean(dim=(2, 3), dtype=torch.float32)
        if d.mix is None:  # in place: cheaper than a fresh tensor on CPU
            view.mul_(d.scale[..., None, None].to(x.dtype)).add_(shift[..., None, None].to(x.dtype))
        else:  # y = mix @ (scale ⊙ v + shift), as one batched matrix product over the pixels
            mat, off = (d.mix * d.scale[:, None, :]).to(x.dtype), (d.mix @ shift[..., None]).to(x.dtype)
            view = torch.baddbmm(off, mat, view.flatten(2)).view(view.shape)
        view.clamp_(0.0, 1.0)
    if d.sigma is not None and radius > 0:
        idx = d.sigma.nonzero().squeeze(1)
        if idx.numel():
            view[idx] = gaussian_blur(view[idx], d.sigma[idx], radius).clamp_(0.0, 1.0)
    if d.solarize is not None:
        flip = d.solarize[:, None, None, None] & (view >= spec.solarize_threshold)
        view = torch.where(flip, 1 - view, view)
    return view


class MultiViewAugment(torch.nn.Module):
    """Draws one independently augmented view per ``ViewSpec`` from a batch of images of any band count.

    Not differentiable (runs under ``torch.no_grad``). ``rgb_bands`` are the indices of the red, green
    and blue bands (e.g. ``(3, 2, 1)`` for Sentinel-2 L1C); without them saturation, hue and grayscale
    are skipped and bands are never mixed. With them, the band mixing is a [C, C] matrix product per
    pixel (memory-bound for C ≲ 16; cost grows as C² beyond).
    """

    def __init__(self, views: Sequence[ViewSpec], rgb_bands: Sequence[int] | None = None):
        super().__init__()
        if not views:
            raise ValueError("MultiViewAugment needs at least one ViewSpec")
        if rgb_bands is not None and (len(rgb_bands) != 3 or len(set(rgb_bands)) != 3 or min(rgb_bands) < 0):
            raise ValueError(f"rgb_bands must be three distinct non-negative band indices, got {rgb_bands}")
        self.views = tuple(views)
        self.rgb_bands = None if rgb_bands is None else tuple(int(b) for b in rgb_bands)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """x: [B, C, H, W] float in [0, 1] (already unit-scaled per band by the caller), or [B, T, C, H, W]: T
        co-registered dates of each sample, view k drawn from date k mod T (temporal positives, SeCo / CaCo:
        the global views of a pair are two dates, DINO's local views alternate between them).

        Returns one [B, C, s, s] tensor per ViewSpec (x's dtype), values in [0, 1]. All randomness comes
        from ``generator`` (on x's device; None = the default RNG); views are drawn in order.
        """
        if x.ndim not in (4, 5) or not x.is_floating_point():
            raise TypeError(f"expected a [B, C, H, W] or [B, T, C, H, W] float tensor, got {x.dtype} of shape "
                            f"{tuple(x.shape)}")
        rgb = None
        if self.rgb_bands is not None:
            if max(self.rgb_bands) >= x.shape[-3]:
                raise ValueError(f"rgb_bands {self.rgb_bands} out of range for {x.shape[-3]} bands")
            rgb = torch.tensor(self.rgb_bands, device=x.device)

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=x.device)

        dates = x.unbind(1) if x.ndim == 5 else (x,)
        out = []
        for k, spec in enumerate(self.views):
            date = dates[k % len(dates)]  # [B, C, H, W]
            d = _draw(rand, spec, date.shape, rgb)
            sigma_max = 0.0 if d.sigma is None else float(d.sigma.max())
            radius = min(math.ceil(3 * sigma_max), spec.size - 1)  # reflect padding needs radius < size
            step = date.shape[0]
            if date.device.type == "cpu":
                per_sample = (date.shape[1] + 2) * spec.size**2 * date.element_size()  # view + sampling grid
                step = max(1, _CPU_CHUNK_BYTES // per_sample)
            chunks = [
                _render(
                    date[i : i + step], _Draw(*(t if t is None else t[i : i + step] for t in d)), spec, radius
                )
                for i in range(0, date.shape[0], step)
            ]
            out.append(torch.cat(chunks) if len(chunks) > 1 else chunks[0])
        return out
