"""SECOND semantic change detection (Yang et al., "Asymmetric Siamese Networks for Semantic Change Detection in
Aerial Images", TGRS 2021): ``<split>/im1``, ``im2`` (before / after RGB), ``label1``, ``label2`` (land cover of
each date, colour-coded, white where nothing changed).

The two land-cover maps of a pair are rasterised once into one single-band *code* mask, ``label1 · 7 + label2``
(classes 0..6, 0 = unchanged; both dates are 0 together), so cropping, flips and rotations move both maps with the
images exactly as any other mask; :func:`split_code` recovers them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from ssl_siam.core.errors import DataError

# class id → (name, RGB colour of the SECOND label PNGs); 0 is "unchanged" (white)
LANDCOVER = (("unchanged", (255, 255, 255)), ("water", (0, 0, 255)), ("ground", (128, 128, 128)),
             ("low vegetation", (0, 128, 0)), ("tree", (0, 255, 0)), ("building", (128, 0, 0)),
             ("playground", (255, 0, 0)))
NUM_LANDCOVER = len(LANDCOVER)  # 7, unchanged included
NUM_CODES = NUM_LANDCOVER**2  # code = label1 · 7 + label2
FOLDERS = ("im1", "im2", "label1", "label2")
PALETTE = np.array([colour for _, colour in LANDCOVER], np.uint8)
_KEYS = (PALETTE.astype(np.int64) @ np.array([65536, 256, 1])).tolist()


def read_landcover(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A SECOND land-cover map as class ids uint8 [H, W]: a colour PNG (the palette above) or a single-band map
    of ids 0..6; any other colour or value is a one-line DataError naming the file."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB") if image.mode not in ("L", "P", "I", "I;16") else image)
    except (OSError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable, expected a SECOND land-cover PNG ({exc})") from None
    if shape is not None and array.shape[:2] != shape:
        raise DataError(f"{path}: size {array.shape[:2]}, expected {shape} like its image")
    if array.ndim == 2:
        if array.max(initial=0) >= NUM_LANDCOVER:
            raise DataError(f"{path}: class id {int(array.max())}, expected 0..{NUM_LANDCOVER - 1}")
        return array.astype(np.uint8)
    keys = array.astype(np.int64) @ np.array([65536, 256, 1])
    lookup = {key: i for i, key in enumerate(_KEYS)}
    values, inverse = np.unique(keys, return_inverse=True)
    if unknown := [v for v in values.tolist() if v not in lookup]:
        rgb = (unknown[0] >> 16, (unknown[0] >> 8) & 255, unknown[0] & 255)
        raise DataError(f"{path}: colour {rgb} is not a SECOND class, expected one of "
                        f"{', '.join(f'{n} {c}' for n, c in LANDCOVER)}")
    return np.array([lookup[v] for v in values.tolist()], np.uint8)[inverse.reshape(keys.shape)]


def landcover_rgb(ids: np.ndarray) -> np.ndarray:
    """Class ids [H, W] → the SECOND colour coding [H, W, 3] uint8."""
    return PALETTE[ids]


def pair_code(label1: np.ndarray, label2: np.ndarray, path: Path) -> np.ndarray:
    """The code mask ``label1 · 7 + label2``; a pixel unchanged on one date but not the other is a DataError."""
    if np.any((label1 == 0) != (label2 == 0)):
        raise DataError(f"{path}: label1 and label2 disagree on which pixels changed (white in one, a class in "
                        "the other), expected unchanged pixels white in both")
    return (label1 * NUM_LANDCOVER + label2).astype(np.uint8)


Labels = TypeVar("Labels", np.ndarray, torch.Tensor)


def split_code(code: Labels, ignore_index: int) -> tuple[Labels, Labels]:
    """Code mask → (label1, label2), numpy or torch as given; ``ignore_index`` pixels stay ``ignore_index``."""
    where = torch.where if isinstance(code, torch.Tensor) else np.where
    ignored = code == ignore_index
    return (where(ignored, ignore_index, code // NUM_LANDCOVER),  # type: ignore[operator]
            where(ignored, ignore_index, code % NUM_LANDCOVER))
