"""Relative radiometric normalisation of a pre / post pair (``data.radiometric``): the post image's bands matched,
band by band, to the pre image's scene mean and standard deviation ("moment matching", the simplest relative
radiometric normalisation; Schott et al. 1988 and Canty et al. 2004 weight it by invariant pixels). A change of
sun angle, haze or sensor gain between the dates then no longer reads as change everywhere; local change barely
moves the scene's moments. The gain and offset are computed once per pair over its valid pixels, on an
overview of at most 512 pixels a side (``RasterPair.overviews``), so training crops, validation and sliding-window
prediction apply the same correction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_siam.core.errors import DataError

#: ``data.radiometric`` values: none (files as read) or match (post moments matched to the pre image's).
RADIOMETRIC_MODES = ("none", "match")


def check_matchable(post_image: str | Path, pre_bands: int, post_bands: int, hint: str) -> None:
    """Refuse moment matching for a pair whose dates have different band counts (the post bands are matched to
    the pre bands one by one): one line naming the post image, the counts, and ``hint`` (what to do)."""
    if pre_bands != post_bands:
        raise DataError(f"{post_image}: data.radiometric=match pairs the post bands with the pre bands, expected "
                        f"as many ({post_bands} post, {pre_bands} pre); {hint}")


@dataclass(frozen=True)
class BandAffine:
    """Per band ``x → gain · x + offset`` ([C] each), applied to raw values in their own dtype."""

    gain: np.ndarray
    offset: np.ndarray

    def apply(self, x: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """``x`` [C, h, w] corrected, in ``x``'s dtype (integers rounded and clipped to the dtype's range);
        pixels where ``keep`` [h, w] is True (nodata) keep their values."""
        y = x.astype(np.float64) * self.gain[:, None, None] + self.offset[:, None, None]
        if x.dtype.kind in "iu":
            info = np.iinfo(x.dtype)
            y = np.clip(np.rint(y), info.min, info.max)
        y = y.astype(x.dtype)
        if keep is not None and keep.any():
            y[:, keep] = x[:, keep]
        return y


def match_moments(pre: np.ndarray, post: np.ndarray, invalid: np.ndarray | None = None) -> BandAffine:
    """Gain and offset that give ``post`` [C, h, w] the per-band mean and standard deviation of ``pre``
    [C, h, w] over the pixels valid in both (``invalid`` [h, w] True: nodata); a constant band, or a pair
    without valid pixels, is left as it is (gain 1, offset 0)."""
    if pre.shape != post.shape:
        raise ValueError(f"moment matching needs pre and post of one shape, got {pre.shape} and {post.shape}")
    valid = np.ones(pre.shape[1:], bool) if invalid is None else ~invalid
    bands = pre.shape[0]
    if not valid.any():
        return BandAffine(np.ones(bands), np.zeros(bands))
    a, b = pre[:, valid].astype(np.float64), post[:, valid].astype(np.float64)
    mean_a, mean_b, std_a, std_b = a.mean(1), b.mean(1), a.std(1), b.std(1)
    flat = (std_a <= 0) | (std_b <= 0)
    gain = np.where(flat, 1.0, std_a / np.where(flat, 1.0, std_b))
    offset = np.where(flat, 0.0, mean_a - gain * mean_b)
    return BandAffine(gain, offset)
