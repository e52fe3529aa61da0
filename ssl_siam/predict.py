"""Whole-scene inference: sliding windows with Gaussian blending and flip TTA, decoding to xView2 maps, and
reading a pre / post image pair (PNG, JPEG or GeoTIFF)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.errors import RasterioError
from rasterio.windows import Window
from torch import nn

from ssl_siam.data.tiles import SEQUENTIAL_DRIVERS, open_raster
from ssl_siam.errors import DataError

REDUCTION = 32  # encoder output stride: a shrunk window is a multiple of it
NUM_CLASSES = 5  # background + the four xBD damage classes
_FLIPS = ((), (-1,), (-2,), (-2, -1))  # identity, hflip, vflip, both, as dims of [B, C, H, W]
_MAX_SHIFT_PX = 0.01  # pre / post footprints further apart than this many pixels are a mismatch

Profile = dict[str, Any]  # {"crs": rasterio CRS, "transform": affine.Affine}


def window_weights(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """[size, size] Gaussian window (sigma = size / 8, peak 1), as in nnU-Net (Isensee et al., 2021).

    Predictions near a window's border, where padding cuts the receptive field, count less than those near its
    centre; the weight never reaches 0 (>= e^-8 per axis), so pixels only a border covers still get a value.
    """
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / (size / 8)) ** 2)
    return g[:, None] * g[None, :]


def sliding_window(
    model: nn.Module,
    pre: torch.Tensor,
    post: torch.Tensor,
    *,
    window: int = 512,
    overlap: float = 0.25,
    batch_size: int = 4,
    tta: bool = False,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Class probabilities [K, H, W] (float32, on pre's device) of a normalised pair pre [C, H, W], post [C', H, W].

    Square windows of ``window`` px, stride window·(1 − overlap), the last row / column shifted back inside the
    image; each window's softmax is weighted by ``window_weights`` and the sum normalised by the summed weights.
    An image smaller than ``window`` uses min(window, H, W) rounded down to a multiple of 32 (DataError below
    32). ``tta`` averages the identity, horizontal, vertical and double flips (un-flipped) in probability space.
    The model (``forward(pre, post) -> {"logits": [B, K, h, w]}``) runs in eval mode on ``device`` (default: its
    parameters' device) under autocast with ``amp_dtype`` when given; its training mode is restored afterwards.
    :func:`sliding_window_rows` is the same computation streamed over row blocks.
    """
    if pre.dim() != 3 or post.dim() != 3 or pre.shape[1:] != post.shape[1:]:
        raise ValueError(f"expected pre [C, H, W] and post [C', H, W], got {tuple(pre.shape)} and {tuple(post.shape)}")
    if not (pre.is_floating_point() and post.is_floating_point()):
        raise ValueError(f"expected normalised float images, got {pre.dtype} and {post.dtype}")
    height, width = pre.shape[1:]
    probs: torch.Tensor | None = None
    for top, block in sliding_window_rows(model, lambda a, b: (pre[:, a:b], post[:, a:b]), height, width,
                                          window=window, overlap=overlap, batch_size=batch_size, tta=tta,
                                          device=device, amp_dtype=amp_dtype, out_device=pre.device):
        if probs is None:
            probs = torch.empty(block.shape[0], height, width, device=pre.device)
        probs[:, top : top + block.shape[1]] = block
    assert probs is not None  # at least one row of windows
    return probs


RowReader = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


def sliding_window_rows(
    model: nn.Module,
    read: RowReader,
    height: int,
    width: int,
    *,
    window: int = 512,
    overlap: float = 0.25,
    batch_size: int = 4,
    tta: bool = False,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    out_device: torch.device | str = "cpu",
) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`sliding_window` streamed: yields ``(top, probs [K, h, W])`` for consecutive row blocks, top to
    bottom, each final when yielded. ``read(top, bottom)`` returns rows ``[top, bottom)`` of the normalised pair
    (pre [C, h, W], post [C', h, W]); it is called once per row of windows, so at most ``window + stride`` rows
    of probabilities and one row of windows of input are held: a scene of any height streams through memory.
    """
    if window < 1 or batch_size < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(
            f"expected window >= 1, batch_size >= 1, 0 <= overlap < 1, got {window}, {batch_size}, {overlap}"
        )
    size = _window_size(window, height, width)
    stride = max(1, round(size * (1.0 - overlap)))
    rows, cols = _starts(height, size, stride), _starts(width, size, stride)
    if device is None:
        device = next((p.device for p in model.parameters()), out_device)
    weights = window_weights(size, out_device)
    probs: torch.Tensor | None = None  # [K, h, W] weighted sums of image rows [done, top + size)
    total = torch.zeros(size, width, device=out_device)
    done = 0  # rows above are final and yielded
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, top in enumerate(rows):
                pre, post = read(top, top + size)
                if probs is not None:  # extend the accumulators down to this row of windows' bottom
                    grow = top + size - done - probs.shape[1]
                    probs = torch.cat([probs, probs.new_zeros(probs.shape[0], grow, width)], dim=1)
                    total = torch.cat([total, total.new_zeros(grow, width)])
                for start in range(0, len(cols), batch_size):
                    batch = cols[start : start + batch_size]
                    pre_b = torch.stack([pre[:, :, c : c + size] for c in batch]).to(device)
                    post_b = torch.stack([post[:, :, c : c + size] for c in batch]).to(device)
                    out = _window_probs(model, pre_b, post_b, tta, amp_dtype).to(out_device)  # [B, K, size, size]
                    if probs is None:
                        probs = torch.zeros(out.shape[1], size, width, device=out_device)
                    for c, p in zip(batch, out):
                        probs[:, top - done : top - done + size, c : c + size] += p * weights
                        total[top - done : top - done + size, c : c + size] += weights
                assert probs is not None
                bottom = rows[i + 1] if i + 1 < len(rows) else height  # no later window reaches above it
                yield done, probs[:, : bottom - done] / total[: bottom - done]
                probs, total, done = probs[:, bottom - done :], total[bottom - done :], bottom
    finally:
        model.train(was_training)


def _window_size(window: int, height: int, width: int) -> int:
    if min(height, width) >= window:
        return window
    size = min(window, height, width) // REDUCTION * REDUCTION
    if size < REDUCTION:
        raise DataError(f"cannot predict: image is {height}×{width}, smaller than the minimum window {REDUCTION}")
    return size


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Window offsets along one axis: every ``stride``, plus one flush with the end."""
    starts = list(range(0, length - size + 1, stride))
    return starts if starts[-1] == length - size else [*starts, length - size]


def _window_probs(
    model: nn.Module, pre: torch.Tensor, post: torch.Tensor, tta: bool, amp_dtype: torch.dtype | None
) -> torch.Tensor:
    """[B, K, h, w] float32 softmax of the model on a batch, averaged over the flips when ``tta``."""
    flips = _FLIPS if tta else _FLIPS[:1]
    total = torch.zeros((), device=pre.device)
    for dims in flips:
        with torch.autocast(pre.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(pre.flip(dims), post.flip(dims))["logits"]
        if logits.dim() != 4 or logits.shape[0] != pre.shape[0] or logits.shape[-2:] != pre.shape[-2:]:
            raise ValueError(f"model logits {tuple(logits.shape)} do not match the window batch {tuple(pre.shape)}")
        total = total + logits.float().softmax(dim=1).flip(dims)
    return total / len(flips)


def decode(probs: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities [5, H, W] -> (loc, damage, confidence) numpy [H, W] in the xView2 convention.

    loc uint8 is 1 where the argmax is not background; damage uint8 is the argmax over classes 1..4 there and 0
    elsewhere; confidence float32 is the probability of the class written in ``damage`` (background where 0).
    """
    if probs.dim() != 3 or probs.shape[0] != NUM_CLASSES:
        raise ValueError(f"expected probabilities [{NUM_CLASSES}, H, W], got {tuple(probs.shape)}")
    probs = probs.detach().float().cpu()
    loc = probs.argmax(dim=0) != 0
    damage = torch.where(loc, probs[1:].argmax(dim=0) + 1, 0)
    confidence = probs.gather(0, damage[None])[0]
    return loc.numpy().astype(np.uint8), damage.numpy().astype(np.uint8), confidence.numpy()


class RasterPair:
    """An opened pre / post image pair, checked at opening, read by row ranges.

    DataError naming the files when one is unreadable, a band index is out of range, the sizes differ, or both
    are georeferenced with different CRSs or footprints (transforms more than 0.01 px apart at any corner).
    ``bands``: 1-based band indices (default all), read from both images unless ``post_bands`` selects the post
    image's own. ``profile`` is the pre image's {"crs", "transform"} when georeferenced (None for PNG / JPEG).
    GeoTIFFs (and other random-access rasters, e.g. VRT mosaics) are read window by window; PNG and JPEG
    (sequential formats, where each window would decode the file again from its start) are decoded once, whole.
    """

    def __init__(self, pre_path: str | Path, post_path: str | Path, bands: Sequence[int] | None = None,
                 post_bands: Sequence[int] | None = None) -> None:
        self.paths = (Path(pre_path), Path(post_path))
        self._sources: list[Any] = []
        self._indexes: list[list[int]] = []
        try:
            for path, selection in zip(self.paths, (bands, bands if post_bands is None else post_bands)):
                self._sources.append(open_raster(path))
                self._indexes.append(self._band_indexes(path, self._sources[-1], selection))
            self._check_pair()
            self._whole = [self._read(i, None) if src.driver in SEQUENTIAL_DRIVERS else None
                           for i, src in enumerate(self._sources)]
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _band_indexes(path: Path, src: Any, selection: Sequence[int] | None) -> list[int]:
        indexes = list(selection) if selection is not None else list(src.indexes)
        if not indexes or any(not 1 <= b <= src.count for b in indexes):
            raise DataError(f"{path}: bands {indexes} requested, expected 1-based indices in 1..{src.count}")
        return indexes

    def _check_pair(self) -> None:
        (pre, post), pair = self._sources, f"{self.paths[0]} and {self.paths[1]}"
        if pre.shape != post.shape:
            raise DataError(f"{pair}: sizes {pre.height}×{pre.width} and {post.height}×{post.width} differ, "
                            "expected a pre / post pair of the same size")
        self.height, self.width = pre.shape
        self.profile: Profile | None = {"crs": pre.crs, "transform": pre.transform} if pre.crs is not None else None
        if self.profile is None or post.crs is None:
            return
        if pre.crs != post.crs:
            raise DataError(f"{pair}: CRS {pre.crs} and {post.crs} differ, expected a pre / post pair in one CRS")
        shift = _footprint_shift(pre.transform, post.transform, self.height, self.width)
        if shift > _MAX_SHIFT_PX:
            raise DataError(f"{pair}: transforms differ (footprints {shift:.2f} px apart), expected co-registered "
                            "images with the same transform")

    def _read(self, which: int, rows: tuple[int, int] | None) -> np.ndarray:
        src = self._sources[which]
        window = None if rows is None else Window(0, rows[0], src.width, rows[1] - rows[0])
        try:
            return src.read(self._indexes[which], window=window)
        except RasterioError as exc:
            raise DataError(f"{self.paths[which]}: cannot read as a PNG / JPEG / GeoTIFF image ({exc})") from exc

    def rows(self, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[top, bottom)`` of the pre [C, h, W] and post [C', h, W] images, in their native dtype."""
        pre, post = (self._read(i, (top, bottom)) if whole is None else whole[:, top:bottom]
                     for i, whole in enumerate(self._whole))
        return pre, post

    def display_bands(self) -> np.ndarray:
        """The pre image's first three selected bands [3, H, W] (its first band [1, H, W] when it has fewer),
        whole, in their native dtype: what ``outputs.to_display_rgb`` shows."""
        indexes = self._indexes[0][:3] if len(self._indexes[0]) >= 3 else self._indexes[0][:1]
        whole = self._whole[0]
        if whole is not None:
            return whole[[self._indexes[0].index(b) for b in indexes]]
        return self._sources[0].read(indexes)

    def close(self) -> None:
        for src in self._sources:
            src.close()

    def __enter__(self) -> RasterPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pair(
    pre_path: str | Path,
    post_path: str | Path,
    bands: Sequence[int] | None = None,
    post_bands: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, Profile | None]:
    """Whole pre [C, H, W] and post [C', H, W] images in their native dtype and the pre image's profile, checked
    as :class:`RasterPair` checks them."""
    with RasterPair(pre_path, post_path, bands, post_bands) as pair:
        pre, post = pair.rows(0, pair.height)
        return pre, post, pair.profile


def _footprint_shift(pre_transform: Any, post_transform: Any, height: int, width: int) -> float:
    """Largest distance, in pre pixels, between where the pre and post transforms put the image corners."""
    to_pre_pixels = ~pre_transform
    corners = [(0, 0), (width, 0), (0, height), (width, height)]
    return max(math.dist(_apply(to_pre_pixels, _apply(post_transform, corner)), corner) for corner in corners)


def _apply(t: Any, point: tuple[float, float]) -> tuple[float, float]:
    """Affine ``t`` applied to (x, y), spelled out: ``*`` on points is deprecated in affine 3, ``@`` new there."""
    x, y = point
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def output_stem(post_path: str | Path) -> str:
    """File name stem shared by a pair's outputs: ``a/b/x_00001_post_disaster.png`` -> ``x_00001``."""
    return Path(post_path).stem.removesuffix("_post_disaster")
