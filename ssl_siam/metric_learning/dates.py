"""Location pair datasets: co-located observations of scenes on several dates (``geotiff-dates``,
``pixel-series``, ``object-series``); see :mod:`ssl_siam.metric_learning.datasets` for the item format."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.features import geometry_mask
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform
from shapely.geometry import box, shape

from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.data.cache import DecodedCache
from ssl_siam.data.pairs import check_same_grid
from ssl_siam.data.temporal import places_by_relative_path
from ssl_siam.data.tiles import TileDataset, open_raster
from ssl_siam.metric_learning.datasets import METRIC_DATASETS, PairDataset


class _Dates(PairDataset):
    """Co-located windows of scenes observed on several dates (one root — folder or glob — per date).

    Scenes are matched across dates by their path relative to the date's root (as temporal positives match them,
    :func:`places_by_relative_path`) and must share size, CRS and transform: the same window
    of every date then covers the same ground. Item ``i`` (any non-negative index) is a pure function of
    (seed, i), so epochs and resumed runs see fresh but reproducible locations.
    """

    labelled = False

    def __init__(self, roots: Sequence[str], window: int, bands: Sequence[int] | None, samples_per_epoch: int,
                 seed: int, negatives: bool = False, cache: DecodedCache | None = None) -> None:
        if not roots:
            raise DataError("data.root is empty: expected one folder or glob of scenes per date")
        places = places_by_relative_path(roots)  # refuses a scene missing on a date, or on another grid
        # each date's scenes in the places' order; max_nodata_fraction=1: no nodata re-draws, so window i is the same
        # place on every date
        self.dates = [TileDataset([place[date] for place in places], window, bands=bands,
                                  samples_per_epoch=samples_per_epoch, max_nodata_fraction=1.0, seed=seed, cache=cache)
                      for date in range(len(roots))]
        first = self.dates[0]
        self.num_bands, self.samples_per_epoch, self.seed = first.num_bands, samples_per_epoch, seed
        self.negatives = negatives
        self.stats_sources = [scene.paths[0] for date in self.dates for scene in date.files]
        self.stats_bands = bands

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _two_dates(self, rng: np.random.Generator) -> tuple[int, int]:
        if len(self.dates) == 1:
            return 0, 0
        first, second = rng.choice(len(self.dates), size=2, replace=False)
        return int(first), int(second)

    def _observe(self, index: int, date: int) -> torch.Tensor:
        """Location ``index`` on ``date``."""
        raise NotImplementedError

    def _pair(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The two observations of location ``index`` (the positive pair)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index, 7])
        a, b = self._pair(index, rng)
        item = {"a": a, "b": b, "group": torch.tensor(index)}
        if self.negatives:  # another location: a fixed far-away index (windows are independent draws)
            other = index + 1 + int(rng.integers(1 << 40))
            item.update(n=self._observe(other, int(rng.integers(len(self.dates)))), group_n=torch.tensor(other))
        return item


@METRIC_DATASETS.register("geotiff-dates")
class DateWindowPairs(_Dates):
    """Positive = the same ``crop_size`` window on two different dates (or twice the same date)."""

    def __init__(self, roots: Sequence[str], crop_size: int, bands: Sequence[int] | None = None,
                 samples_per_epoch: int = 2048, seed: int = 0, negatives: bool = False,
                 cache: DecodedCache | None = None, **_: object) -> None:
        super().__init__(roots, crop_size, bands, samples_per_epoch, seed, negatives, cache)

    def _observe(self, index: int, date: int) -> torch.Tensor:
        return self.dates[date][index]

    def _pair(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = self._two_dates(rng)
        return self._observe(index, first), self._observe(index, second)


@METRIC_DATASETS.register("pixel-series")
class PixelSeriesPairs(_Dates):
    """Per-pixel time series across the dates ``[C, T, 1]``; positive = a pixel at most ``neighbour_px`` away
    (Tobler: near things are more related), negative = another location. Needs at least two dates."""

    series = True

    def __init__(self, roots: Sequence[str], crop_size: int = 0, bands: Sequence[int] | None = None,
                 samples_per_epoch: int = 2048, seed: int = 0, negatives: bool = False, neighbour_px: int = 1,
                 cache: DecodedCache | None = None, **_: object) -> None:
        if len(roots) < 2:
            raise DataError(f"data.root has {len(roots)} date(s): pixel-series needs one root per date, at least 2")
        self.radius = int(neighbour_px)
        super().__init__(roots, 2 * self.radius + 1, bands, samples_per_epoch, seed, negatives, cache)

    def _windows(self, index: int) -> np.ndarray:
        """[T, C, w, w] the location's window on every date."""
        return np.stack([date[index].numpy() for date in self.dates])

    @staticmethod
    def _series(windows: np.ndarray, row: int, col: int) -> torch.Tensor:
        """Pixel (row, col) of ``[T, C, w, w]`` windows as a ``[C, T, 1]`` series."""
        return torch.from_numpy(windows[:, :, row, col].T.copy())[..., None]

    def _observe(self, index: int, date: int) -> torch.Tensor:
        """The centre pixel's series (all dates: ``date`` is not used)."""
        return self._series(self._windows(index), self.radius, self.radius)

    def _pair(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        windows, size = self._windows(index), 2 * self.radius + 1
        neighbour = int(rng.integers(size * size - 1)) if size > 1 else 0
        neighbour += neighbour >= size * size // 2  # skip the centre pixel itself
        row, col = divmod(neighbour, size) if size > 1 else (0, 0)
        return self._series(windows, self.radius, self.radius), self._series(windows, row, col)


@METRIC_DATASETS.register("object-series")
class ObjectSeriesPairs(PairDataset):
    """Per-object time series: for each polygon of ``objects`` (a GeoJSON in the scenes' CRS; pixel coordinates
    for scenes without one), the mean of its pixels on every date ``[C, T, 1]``. The two observations of an object
    average two disjoint random halves of its pixels (so they differ like two samplings of one field or
    building); other objects of the batch are negatives. One scene per date, on one grid; read window by window.
    """

    labelled = False
    series = True

    def __init__(self, roots: Sequence[str], crop_size: int = 0, bands: Sequence[int] | None = None, seed: int = 0,
                 negatives: bool = False, objects: str | None = None, cache: DecodedCache | None = None,
                 **_: object) -> None:
        if len(roots) < 2:
            raise DataError(f"data.root has {len(roots)} date(s): object-series needs one root per date, at least 2")
        if not objects:
            raise ConfigError("data.objects is required for object-series: a GeoJSON of polygons")
        self.dates = [TileDataset(root, 1, bands=bands, max_nodata_fraction=1.0, seed=seed, cache=cache)
                      for root in roots]
        for root, date in zip(roots, self.dates):
            if len(date.files) != 1:
                raise DataError(f"{root}: {len(date.files)} scenes, object-series takes exactly one per date")
        self.paths = [date.files[0].paths[0] for date in self.dates]
        for path in self.paths[1:]:
            check_same_grid(path, self.paths[0])
        self.bands = [b.index for b in self.dates[0].files[0].bands]
        with open_raster(self.paths[0]) as src:
            self.transform, self.shape = src.transform, src.shape
        self.geometries = _read_polygons(Path(objects), self.transform, self.shape)
        self.num_bands, self.seed, self.negatives = len(self.bands), seed, negatives
        self.stats_sources, self.stats_bands = self.paths, bands

    def __len__(self) -> int:
        return len(self.geometries)

    def _pixels(self, index: int) -> np.ndarray:
        """[T, C, P] float32: the object's pixels on every date (windowed reads of its bounding box through the
        dates' cached file handles)."""
        geometry = self.geometries[index % len(self.geometries)]
        window = from_bounds(*geometry.bounds, transform=self.transform).round_offsets().round_lengths()
        window = window.intersection(Window(0, 0, self.shape[1], self.shape[0]))
        inside = ~geometry_mask([geometry], out_shape=(int(window.height), int(window.width)),
                                transform=window_transform(window, self.transform), all_touched=True)
        return np.stack([date.handle(path).read(self.bands, window=window)[:, inside].astype(np.float32)
                         for date, path in zip(self.dates, self.paths)])

    def _halves(self, index: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self._pixels(index)  # [T, C, P]
        order = np.random.default_rng([self.seed, index, stream]).permutation(pixels.shape[2])
        half = max(len(order) // 2, 1)
        first, second = order[:half], order[half:] if len(order) > 1 else order

        def series(subset: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(pixels[:, :, subset].mean(axis=2).T.copy())[..., None]  # [C, T, 1]

        return series(first), series(second)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a, b = self._halves(index, 0)
        item = {"a": a, "b": b, "group": torch.tensor(index % len(self.geometries))}
        if self.negatives:
            other = (index + 1 + int(np.random.default_rng([self.seed, index, 3]).integers(len(self) - 1))) % len(self)
            item.update(n=self._halves(other, 1)[0], group_n=torch.tensor(other))
        return item


def _read_polygons(path: Path, transform: rasterio.Affine, scene_shape: tuple[int, int]) -> list:
    """Shapely polygons of a GeoJSON FeatureCollection that overlap the scene (at least one pixel)."""
    try:
        features = json.loads(path.read_text())["features"]
        geometries = [shape(f["geometry"]) for f in features]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: expected a GeoJSON FeatureCollection of polygons ({exc})") from None
    west, north = transform @ (0, 0)
    east, south = transform @ (scene_shape[1], scene_shape[0])
    scene = box(min(west, east), min(south, north), max(west, east), max(south, north))
    kept = [g for g in geometries if not g.is_empty and g.geom_type in ("Polygon", "MultiPolygon")
            and g.intersects(scene)]
    if len(kept) < 2:
        raise DataError(f"{path}: {len(kept)} polygon(s) overlap the scenes, expected at least 2 objects")
    return kept
