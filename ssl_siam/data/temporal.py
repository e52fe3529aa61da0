"""Temporal positives: one place on two of its dates as co-registered tiles, so that an SSL objective's two views
are two dates of the same ground (SeCo, Mañas et al. 2021; CaCo, Mall et al. 2023) — time as a free label.

A *place* is a tuple of files, one per date, on one pixel grid: the same window of each covers the same ground.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssl_siam.core.errors import DataError
from ssl_siam.data.oscd import BANDS, cities, city_dates, is_oscd_root
from ssl_siam.data.pairs import check_same_grid
from ssl_siam.data.scenes import Scene
from ssl_siam.data.sources import resolve_sources
from ssl_siam.data.tiles import STACKS, TileDataset
from ssl_siam.data.xbd.pairs import find_pairs

_MAGIC = "*?["


def find_places(roots: Sequence[str | Path], band_names: Sequence[str] | None = None) -> list[tuple[Path, ...]]:
    """The places of ``roots``, each as its dates' files, by layout:

    * OSCD roots: both dates of every city (train and test lists) as VRTs on ``imgs_1``'s B02 grid, ``band_names``
      (default all 13) in order;
    * xBD split folders (``images/<id>_pre_disaster.*``): each pre / post pair, labels not needed;
    * otherwise one folder or glob per date (at least two): files with the same path relative to their root (a
      glob's root: its part before the first wildcard) are the same place and must share size, CRS and transform.

    One-line DataError naming the file for a missing date or another grid.
    """
    texts = [str(r) for r in roots]
    if not texts:
        raise DataError("data.root is empty: expected an OSCD root, xBD split folders or one folder / glob per date")
    if all(is_oscd_root(Path(t)) for t in texts):
        oscd = [Path(t) for t in texts]
        return [city_dates(root, city, band_names or BANDS, STACKS) for root in oscd for city in cities(root, "all")]
    if band_names:
        raise DataError(f"{texts[0]}: data.band_names picks OSCD bands by name; select other bands with data.bands")
    if all(any((Path(t) / "images").glob("*_pre_disaster.*")) for t in texts):
        return [(pair.pre_image, pair.post_image) for pair in find_pairs(texts, labels="none")[0]]
    if len(texts) < 2:
        raise DataError(f"{texts[0]}: one date; temporal positives need an OSCD root, xBD split folders or one "
                        "folder / glob per date (at least two)")
    return places_by_relative_path(texts)


def places_by_relative_path(roots: Sequence[str]) -> list[tuple[Path, ...]]:
    """One folder or glob per date → the places, each as its dates' files: files with the same path relative to
    their root (a glob's root: its part before the first wildcard) are one place, in the first date's order, and
    must share size, CRS and transform. One-line DataError naming the file for a missing date or another grid."""
    texts = [str(r) for r in roots]
    first, *later = dates = [_by_relative_path(t) for t in texts]
    for key in dict.fromkeys(k for files in dates for k in files):
        present = next(files[key] for files in dates if key in files)
        for text, files in zip(texts, dates):
            if key not in files:
                raise DataError(f"{_base(text) / key}: missing, expected every date of {present} "
                                "(one file per date with the same relative path)")
        for files in later:
            check_same_grid(files[key], first[key])
    return [tuple(files[key] for files in dates) for key in first]


def _base(root: str) -> Path:
    """A folder or file's own folder; a glob's leading components before the first wildcard."""
    path = Path(root)
    if not any(c in root for c in _MAGIC):
        return path if path.is_dir() else path.parent
    parts = path.parts
    return Path(*parts[:next(i for i, p in enumerate(parts) if any(c in p for c in _MAGIC))])


def _by_relative_path(root: str) -> dict[Path, Path]:
    base = _base(root)
    return {paths[0].relative_to(base): paths[0] for paths in resolve_sources(root, None)}


class TemporalTileDataset(TileDataset):
    """Tiles ``[2, C, tile_size, tile_size]``: one window of a place on two of its dates, the same window on both.

    ``places`` are tuples of files, one per date (at least two, as many for every place), of one size per place.
    The window is drawn as :class:`TileDataset` draws it over the first date's files (a pure function of
    (seed, index)) and read on every date; a window is re-drawn when more than ``max_nodata_fraction`` of it is
    nodata on any date. The two dates are drawn per index (seeded, in random order, so neither view of a pair
    is always the older date); with more than two dates all are read and two kept. Keyword arguments are
    :class:`TileDataset`'s (bands are selected by index: an OSCD place's band names were chosen by its VRT).
    """

    def __init__(self, places: Sequence[tuple[Path, ...]], tile_size: int, **options: Any) -> None:
        counts = sorted({len(p) for p in places})
        if len(counts) != 1 or counts[0] < 2:
            where = places[0][0] if places else "data.root"
            raise DataError(f"{where}: expected two or more dates of every place, found {counts or 'no places'}")
        super().__init__([p[0] for p in places], tile_size, **options)
        self.others = [TileDataset([p[d] for p in places], tile_size, **options) for d in range(1, len(places[0]))]
        for other in self.others:
            if len(other.files) != len(self.files):
                raise DataError(f"{other.files[0].paths[0]}: {len(other.files)} places on this date, expected "
                                f"{len(self.files)} like {self.files[0].paths[0]} (a file listed twice?)")
            for scene, ref in zip(other.files, self.files):
                if (scene.height, scene.width, len(scene.bands)) != (ref.height, ref.width, len(ref.bands)):
                    raise DataError(f"{scene.paths[0]}: {scene.width}x{scene.height}, {len(scene.bands)} bands, "
                                    f"expected {ref.width}x{ref.height}, {len(ref.bands)} like {ref.paths[0]}")
            if other.dtype != self.dtype:
                raise DataError(f"{other.files[0].paths[0]}: dtype {other.dtype}, expected {self.dtype} like "
                                f"{self.files[0].paths[0]}")
        self._place = {scene.paths: k for k, scene in enumerate(self.files)}

    def _sample(self, index: int, want_valid: bool) -> tuple[np.ndarray, np.ndarray]:
        """(data [2, C, T, T], valid [T, T]): the window on two dates drawn from (seed, index), valid on all."""
        data, valid = super()._sample(index, want_valid)
        dates = np.random.default_rng([self.seed, int(index), 1]).permutation(len(data))[:2]
        return data[dates], valid

    def _read(self, scene: Scene, row: int, col: int, need_valid: bool) -> tuple[np.ndarray, np.ndarray]:
        """The window at (row, col) of ``scene``'s place on every date: data [D, C, T, T], valid [T, T] on all."""
        k = self._place[scene.paths]
        reads = [TileDataset._read(date, date.files[k], row, col, need_valid) for date in (self, *self.others)]
        return np.stack([data for data, _ in reads]), np.logical_and.reduce([valid for _, valid in reads])
