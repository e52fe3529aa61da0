"""xBD buildings as samples: a pre and a post crop around every damage-labelled building, with its damage class.

Shared by the frozen-feature probes (``xbd-crops``: 4 damage classes) and metric learning (``xbd-pairs``:
unchanged vs changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from ssl_siam.core.errors import DataError
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.rasters import open_raster, read_all_bands
from ssl_siam.data.xbd.labels import DAMAGE_CLASSES, load_label


class Building(NamedTuple):
    id: str  # "<image id>/<uid>"
    label: int  # damage class index 0..3 (no-damage, minor, major, destroyed)
    x: float  # centroid column (pixels)
    y: float  # centroid row
    record: int  # index of its pair


def labelled_buildings(record: PairRecord, record_index: int) -> list[Building]:
    """The damage-labelled (not un-classified, non-empty) buildings of a pair's post label."""
    if record.post_label is None:
        raise DataError(f"{record.post_image}: no post label JSON, expected labels/{record.id}_post_disaster.json")
    return [
        Building(f"{record.id}/{p.uid or i}", DAMAGE_CLASSES[p.subtype] - 1, p.geometry.centroid.x,
                 p.geometry.centroid.y, record_index)
        for i, p in enumerate(load_label(record.post_label).polygons)
        if p.subtype in DAMAGE_CLASSES and not p.geometry.is_empty
    ]


class BuildingCrops(torch.utils.data.Dataset):
    """Item ``i``: raw pixels ``[2, C, S, S]`` (float32; pre, post) of ``crop_size`` centred on building ``i``'s
    centroid, zero-padded at the image border. ``buildings`` lists every damage-labelled building of ``records``
    (un-classified and empty polygons skipped) in record order; images are read pair by pair (the last pair is
    kept), so iterating in order reads every image once."""

    def __init__(self, records: Sequence[PairRecord], crop_size: int) -> None:
        if crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        self.records, self.crop_size = list(records), crop_size
        self.buildings = [b for r, record in enumerate(self.records) for b in labelled_buildings(record, r)]
        if not self.buildings:
            raise DataError(f"{self.records[0].post_label}: no buildings with a damage subtype in any label")
        with open_raster(self.records[0].pre_image) as src:
            self.num_bands = src.count
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.buildings)

    def _images(self, record_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pre and post pixels [C, H, W] of a record, checked against the first record's band count."""
        if self._cached is None or self._cached[0] != record_index:
            record = self.records[record_index]
            pre, post = read_all_bands(record.pre_image), read_all_bands(record.post_image)
            for path, image in ((record.pre_image, pre), (record.post_image, post)):
                if image.shape != (self.num_bands, *pre.shape[1:]):
                    raise DataError(f"{path}: shape {image.shape}, expected {self.num_bands} bands and the size of "
                                    f"{record.pre_image} {pre.shape[1:]}")
            self._cached = (record_index, pre, post)
        return self._cached[1], self._cached[2]

    def __getitem__(self, index: int) -> torch.Tensor:
        size, building = self.crop_size, self.buildings[index]
        top, left = round(building.y - size / 2), round(building.x - size / 2)
        crops = []
        for image in self._images(building.record):
            crop = np.zeros((image.shape[0], size, size), dtype=np.float32)
            rows = slice(max(top, 0), min(top + size, image.shape[1]))
            cols = slice(max(left, 0), min(left + size, image.shape[2]))
            if rows.start < rows.stop and cols.start < cols.stop:
                crop[:, rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = image[:, rows, cols]
            crops.append(crop)
        return torch.from_numpy(np.stack(crops))  # [2, C, S, S]
