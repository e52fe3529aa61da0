"""Joint geometric augmentation of a pre/post image pair and its damage mask (albumentations), any dtype and band
count.

Geometry (dihedral flips / 90° rotations, small affine) is drawn once and applied to pre, post and mask alike, and
an optional integer shift of the post image alone simulates misregistration (the mask stays aligned with pre).
Photometric jitter, drawn independently for pre and post, is batched: :mod:`ssl_siam.data.transforms.photometric`.
"""

from __future__ import annotations

import os

# albumentations queries PyPI on import unless told not to; training nodes are often offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import random

import albumentations as A
import cv2
import numpy as np

PairArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _geometry(square: bool, scale: tuple[float, float], rotate: tuple[float, float], ignore_index: int) -> A.Compose:
    """Pipeline over ``image`` (pre), ``post`` and ``mask``: D4 on squares (flips only otherwise), then affine."""
    flips = [A.D4(p=1.0)] if square else [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    affine = A.Affine(
        scale=scale, rotate=rotate, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
        border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index, p=0.5,
    )
    return A.Compose([*flips, affine], additional_targets={"post": "image"})


def _seed(pipeline: A.Compose, seq: np.random.SeedSequence) -> None:
    # One shared generator: Compose.set_random_seed would give every transform the same stream, so e.g.
    # the horizontal and vertical flips would always fire together.
    pipeline.set_random_state(np.random.default_rng(seq), random.Random(int(seq.generate_state(1)[0])))


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` [H, W, ...] moved down by ``dy`` and right by ``dx`` pixels, zero-filled."""
    out, (h, w) = np.zeros_like(image), image.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[max(-dy, 0) : h - dy, max(-dx, 0) : w - dx]
    return out


class PairAugment:
    """``(pre [H, W, C], post [H, W, C'], mask [H, W] uint8, seed) -> (pre, post, mask)``, dtypes kept.

    Shared geometry (images bilinear with border 0, mask nearest with border ``ignore_index``), then the post-only
    shift of up to ``misregistration_px`` in each axis. All draws are a pure function of ``seed``; calls without
    one draw it from a generator seeded by the constructor's ``seed``.
    """

    def __init__(
        self,
        misregistration_px: int = 0,
        seed: int | None = None,
        *,
        geometric: bool = True,
        ignore_index: int = 255,
        scale: tuple[float, float] = (0.9, 1.1),
        rotate: tuple[float, float] = (-10.0, 10.0),
    ) -> None:
        if misregistration_px < 0:
            raise ValueError(f"misregistration_px must be non-negative, got {misregistration_px}")
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"ignore_index must fit the uint8 mask (0..255), got {ignore_index}")
        self.misregistration_px, self.geometric = misregistration_px, geometric
        self._geometry = {sq: _geometry(sq, scale, rotate, ignore_index) for sq in (True, False)}
        self._rng = np.random.default_rng(seed)

    def __call__(self, pre: np.ndarray, post: np.ndarray, mask: np.ndarray, seed: int | None = None) -> PairArrays:
        if pre.shape[:2] != post.shape[:2] or pre.shape[:2] != mask.shape:
            raise ValueError(f"pre {pre.shape}, post {post.shape} and mask {mask.shape} must share H and W")
        if seed is None:
            seed = int(self._rng.integers(2**63))
        geometry, offset = np.random.SeedSequence(seed).spawn(2)
        if self.geometric:
            pipeline = self._geometry[pre.shape[0] == pre.shape[1]]
            _seed(pipeline, geometry)
            out = pipeline(image=pre, post=post, mask=mask)
            pre, post, mask = out["image"], out["post"], out["mask"]
        if self.misregistration_px:
            dy, dx = np.random.default_rng(offset).integers(-self.misregistration_px, self.misregistration_px + 1, 2)
            post = shift(post, int(dy), int(dx))
        return pre, post, mask
