"""Training and evaluation crops of pre / post image pairs and their target mask (xBD damage, or a change mask of
LEVIR-CD, S2Looking, OSCD, ...), any band count."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from ssl_siam.core.errors import DataError
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.radiometry import RADIOMETRIC_MODES, BandAffine, check_matchable, match_moments
from ssl_siam.data.rasters import SEQUENTIAL_DRIVERS, RasterPair, nodata_mask, open_raster
from ssl_siam.data.transforms.pair import PairAugment

NUM_CLASSES = 5  # background, no / minor / major damage, destroyed


class PairCropDataset(torch.utils.data.Dataset):
    """Pre/post crops and damage masks of xBD-style pairs (targets set, see :func:`ensure_targets`).

    Item: ``{"pre": [C, h, w], "post": [C', h, w]`` (the files' dtype), ``"mask": [h, w]`` int64 (classes
    ``0..num_classes-1`` or ``ignore_index``; file values are mapped through ``mask_map`` first, e.g. {255: 1} for
    0/255 change masks, or with ``mask_threshold`` values ≥ it to 1 and below it to 0: anti-aliased binary change
    masks), ``"index"``, ``"id"}``. ``index`` may exceed ``len``: the record is ``index % len`` and every
    random draw is a pure function of ``(seed, index)``, so resumed runs and workers see the same items.
    Train: a ``crop_size`` window, with probability ``building_bias`` centred (± crop/4 jitter) on a random
    building pixel, then :class:`PairAugment`. Eval: the whole image or its centre crop, no augmentation. Crops
    larger than the image are padded with 0 (images) and ``ignore_index`` (mask). ``post_bands`` defaults to ``bands``.
    ``radiometric="match"``: each post crop is corrected by :func:`match_moments` on its pair's overviews (scene
    moments matched to the pre image's, nodata pixels kept), in the file's dtype, before padding and augmentation.
    ``masks=False`` (unlabeled pairs, ``data.synthetic_change``): no target is read; windows are drawn uniformly on
    the pre image and the mask is all 0 (the training step makes the target).
    """

    def __init__(
        self,
        records: Sequence[PairRecord],
        crop_size: int | None,
        train: bool,
        *,
        bands: Sequence[int] | None = None,
        post_bands: Sequence[int] | None = None,
        building_bias: float = 0.8,
        misregistration_px: int = 0,
        augment: bool = True,
        seed: int = 0,
        ignore_index: int = 255,
        num_classes: int = NUM_CLASSES,
        mask_map: dict[int, int] | None = None,
        mask_threshold: int | None = None,
        radiometric: str = "none",
        masks: bool = True,
    ) -> None:
        if not records:
            raise DataError("no xBD pairs given: expected at least one PairRecord")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"crop_size must be positive or None, got {crop_size}")
        if not 0.0 <= building_bias <= 1.0:
            raise ValueError(f"building_bias must be in [0, 1], got {building_bias}")
        if masks and (missing := next((r for r in records if r.damage_target is None), None)):
            raise DataError(f"{missing.post_image}: no damage target, expected ensure_targets() to be run first")
        self.records, self.crop_size, self.train, self.masks = list(records), crop_size, train, masks
        self._sizes: dict[Path, tuple[int, int]] = {}  # (height, width) of unlabeled pairs' pre images
        self._bands_pre = None if bands is None else [int(b) for b in bands]
        self._bands_post = self._bands_pre if post_bands is None else [int(b) for b in post_bands]
        self.building_bias, self.seed, self.ignore_index = building_bias, seed, ignore_index
        self.num_classes = num_classes
        self._lut = np.arange(256, dtype=np.uint8)
        for value, label in (mask_map or {}).items():
            self._lut[value] = label
        if mask_threshold is not None:
            self._lut = (np.arange(256) >= mask_threshold).astype(np.uint8)
        self._identity = bool(np.array_equal(self._lut, np.arange(256)))
        self._row_index: dict[Path, np.ndarray] = {}  # mask -> cumulative building pixels per row
        first = self.records[0]
        with open_raster(first.pre_image) as pre, open_raster(first.post_image) as post:
            self.num_bands_pre = len(_indexes(first.pre_image, pre.count, self._bands_pre))
            self.num_bands_post = len(_indexes(first.post_image, post.count, self._bands_post))
        if radiometric not in RADIOMETRIC_MODES:
            raise ValueError(f"radiometric must be one of {RADIOMETRIC_MODES}, got {radiometric!r}")
        if radiometric == "match":
            check_matchable(first.post_image, self.num_bands_pre, self.num_bands_post, "set data.radiometric=none")
        self.radiometric = radiometric
        self._affine: dict[Path, tuple[BandAffine, list[float | None]]] = {}  # post image -> correction, nodata
        self.augment = PairAugment(misregistration_px, geometric=augment, ignore_index=ignore_index) if train else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int | str]:
        index = int(index)
        if index < 0:
            raise IndexError(f"PairCropDataset index must be non-negative, got {index}")
        record = self.records[index % len(self.records)]
        rng = np.random.default_rng([self.seed, index])
        mask, window, size = self._read_mask(record, rng)
        pre = self._read_image(record.pre_image, window, size, self._bands_pre, self.num_bands_pre)
        post = self._read_image(record.post_image, window, size, self._bands_post, self.num_bands_post)
        if self.radiometric == "match":
            affine, nodata = self._post_affine(record)
            post = affine.apply(post, keep=nodata_mask(post, nodata))
        crop = (self.crop_size,) * 2 if self.crop_size is not None else size
        pre, post, mask = _pad(pre, crop, 0), _pad(post, crop, 0), _pad(mask[None], crop, self.ignore_index)[0]
        if self.augment is not None:
            seed = int(rng.integers(2**63))
            pre, post, mask = self.augment(pre.transpose(1, 2, 0), post.transpose(1, 2, 0), mask, seed)
            pre, post = pre.transpose(2, 0, 1), post.transpose(2, 0, 1)
        arrays = {"pre": pre, "post": post, "mask": mask.astype(np.int64)}
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        return {**tensors, "index": index, "id": record.id}

    def _post_affine(self, record: PairRecord) -> tuple[BandAffine, list[float | None]]:
        """The post image's radiometric correction and its bands' nodata values: computed on the pair's first
        visit in this process (one overview read of each date) and kept."""
        if (known := self._affine.get(record.post_image)) is None:
            with RasterPair(record.pre_image, record.post_image, self._bands_pre, self._bands_post) as pair:
                known = (match_moments(*pair.overviews()), pair.nodata_values[1])
            self._affine[record.post_image] = known
        return known

    def _map(self, mask: np.ndarray) -> np.ndarray:
        """File values → classes through ``mask_map`` (no copy when it maps nothing)."""
        return mask if self._identity else self._lut[mask]

    def _building(self, mask: np.ndarray) -> np.ndarray:
        return (mask != 0) & (mask != self.ignore_index)

    def _building_rows(self, src: DatasetReader, path: Path, full: np.ndarray | None) -> np.ndarray:
        """Cumulative count of building pixels per row of the mask at ``path`` [height]: computed on the first
        visit of this process and kept (8 bytes per row), so a building-centred crop of a windowed mask reads
        one row, not the whole mask."""
        ends = self._row_index.get(path)
        if ends is None:
            if full is None:
                full = self._map(_read(src, path, [1], None)[0].astype(np.uint8))
            ends = np.cumsum(self._building(full).sum(axis=1), dtype=np.int64)
            self._row_index[path] = ends
        return ends

    def _window(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """``crop_h, crop_w, row, col``: the crop clipped to the image, anywhere (training) or centred."""
        crop_h, crop_w = min(self.crop_size or height, height), min(self.crop_size or width, width)
        if self.train:
            return crop_h, crop_w, int(rng.integers(height - crop_h + 1)), int(rng.integers(width - crop_w + 1))
        return crop_h, crop_w, (height - crop_h) // 2, (width - crop_w) // 2

    def _read_mask(self, record: PairRecord, rng: np.random.Generator) -> tuple[np.ndarray, Window, tuple[int, int]]:
        """Damage target in the item's window [h, w] (uint8), the window, and the target's (height, width)."""
        if not self.masks:  # unlabeled: a window of the pre image, an all-0 mask
            if (size := self._sizes.get(record.pre_image)) is None:
                with open_raster(record.pre_image) as src:
                    size = self._sizes[record.pre_image] = (src.height, src.width)
            crop_h, crop_w, row, col = self._window(*size, rng)
            return np.zeros((crop_h, crop_w), np.uint8), Window(col, row, crop_w, crop_h), size
        path = record.damage_target
        with open_raster(path) as src:
            height, width = src.height, src.width
            crop_h, crop_w, row, col = self._window(height, width, rng)
            full = None
            if self.train and rng.random() < self.building_bias:
                if src.driver in SEQUENTIAL_DRIVERS:  # decoded whole anyway: the crop is sliced from it
                    full = self._map(_read(src, path, [1], None)[0].astype(np.uint8))
                ends = self._building_rows(src, path, full)
                if ends[-1]:  # the k-th building pixel in row-major order, k uniform
                    k, (jy, jx) = rng.integers(ends[-1]), rng.integers(-(crop_h // 4), crop_h // 4 + 1, 2)
                    y = int(np.searchsorted(ends, k, side="right"))
                    line = full[y] if full is not None else self._map(
                        _read(src, path, [1], Window(0, y, width, 1))[0, 0].astype(np.uint8))
                    x = int(np.flatnonzero(self._building(line))[k - (ends[y - 1] if y else 0)])
                    row = int(np.clip(y + jy - crop_h // 2, 0, height - crop_h))
                    col = int(np.clip(x + jx - crop_w // 2, 0, width - crop_w))
            window = Window(col, row, crop_w, crop_h)
            if full is None:
                mask = self._map(_read(src, path, [1], window)[0].astype(np.uint8))
            else:
                mask = full[row : row + crop_h, col : col + crop_w]
        bad = (mask > self.num_classes - 1) & (mask != self.ignore_index)
        if bad.any():
            hint = "; anti-aliased 0 / 255 change masks: set data.mask_threshold" if self.num_classes == 2 else ""
            raise DataError(f"{path}: mask value {int(mask[bad][0])}, expected classes 0..{self.num_classes - 1} or "
                            f"the ignore index {self.ignore_index}{hint}")
        return mask, window, (height, width)

    def _read_image(
        self, path: Path, window: Window, size: tuple[int, int], bands: list[int] | None, num_bands: int
    ) -> np.ndarray:
        with open_raster(path) as src:
            if (src.height, src.width) != size:
                raise DataError(f"{path}: size {src.width}x{src.height}, expected {size[1]}x{size[0]} like its target")
            indexes = _indexes(path, src.count, bands)
            if len(indexes) != num_bands:
                raise DataError(f"{path}: has {src.count} bands, expected {num_bands} like {self.records[0].id}")
            return _read(src, path, indexes, window)


def _indexes(path: Path, count: int, bands: list[int] | None) -> list[int]:
    """1-based bands to read from ``path``, which has ``count`` bands (all when ``bands`` is None)."""
    if bands is not None and not all(1 <= b <= count for b in bands):
        raise DataError(f"{path}: has {count} bands, expected the selected bands {bands} in 1..{count}")
    return list(range(1, count + 1)) if bands is None else bands


def _read(src: DatasetReader, path: Path, indexes: list[int], window: Window | None) -> np.ndarray:
    """[C, h, w] of ``window`` (None: all). Random-access rasters (GeoTIFF, VRT, ...) are read window-only;
    sequential ones (PNG, JPEG) decode from the top row, so reading them whole and slicing is faster."""
    windowed = src.driver not in SEQUENTIAL_DRIVERS
    try:
        data = src.read(indexes, window=window if windowed else None)
    except RasterioError as exc:
        raise DataError(f"{path}: cannot read pixels ({exc})") from exc
    return data if windowed or window is None else data[(slice(None), *window.toslices())]


def _pad(x: np.ndarray, size: tuple[int, int], value: int) -> np.ndarray:
    """[C, h, w] padded at the bottom / right to ``size`` (at least h, w) with ``value``."""
    pad = ((0, 0), (0, size[0] - x.shape[1]), (0, size[1] - x.shape[2]))
    return x if x.shape[1:] == size else np.pad(x, pad, constant_values=value)
