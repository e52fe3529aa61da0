"""Unlabeled square tiles from GeoTIFF / PNG / JPEG scenes, read window by window through rasterio."""

from __future__ import annotations

import math
import os
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from ssl_siam.core.errors import DataError
from ssl_siam.data.band_stack import Grid, stack_bands
from ssl_siam.data.cache import DecodedCache
from ssl_siam.data.headers import FileHeader, read_headers
from ssl_siam.data.rasters import open_raster
from ssl_siam.data.scenes import BandRef, Scene, SceneLayout, scene_layout
from ssl_siam.data.sources import resolve_sources

SAMPLING_MODES = ("random", "grid")
_MAX_OPEN = 64  # open file handles kept per process
STACKS = Path(tempfile.gettempdir()) / "ssl-siam-stacks"  # band-stack VRTs (small XML, keyed by their sources)


def one_grid(scenes: list[tuple[Path, ...]], headers: dict[Path, FileHeader], workers: int = 1
             ) -> list[tuple[Path, ...]]:
    """Band stacks whose files differ in size (Sentinel-2's 10 / 20 / 60 m bands of one scene) become one VRT on
    the grid of their finest file, every band resampled (bilinear) by georeferencing; ``headers`` gains the VRTs'
    headers. Stacks of one size, and single files, are kept as they are."""
    out = []
    for paths in scenes:
        if len({(headers[p].height, headers[p].width) for p in paths}) <= 1:
            out.append(paths)
            continue
        finest = max(paths, key=lambda p: headers[p].height * headers[p].width)  # sizes from the headers read
        name = "_".join(paths[0].parts[-3:-1]) or paths[0].stem  # e.g. <city>_imgs_1
        out.append((stack_bands({p.stem: p for p in paths}, Grid.of(finest), STACKS, name),))
    new = [s[0] for s, paths in zip(out, scenes) if s != paths]
    headers.update(read_headers(new, workers))
    return out


class TileDataset(torch.utils.data.Dataset):
    """Square tiles [C, tile_size, tile_size] in the files' native dtype; the window is a pure function of
    (seed, index), so any non-negative index is valid and workers / resumed runs see the same tiles.

    ``sampling="random"``: scene chosen with probability proportional to its area, window uniform inside it;
    windows with more than ``max_nodata_fraction`` nodata pixels are re-drawn up to ``max_redraws`` times.
    ``sampling="grid"``: ``index % len(self)`` enumerates non-overlapping windows scene by scene (the last
    row / column is shifted back inside the scene). Scenes smaller than a tile are padded with nodata (or 0).
    In float rasters NaN is always nodata (tagged or not): it counts for re-draws and the valid mask, and is
    filled with the band's nodata value (0 when that is not finite), so tiles are always finite.
    With ``cache``, PNG / JPEG are read from their decoded copies and headers from its index; ``workers``
    processes read the headers (and build missing entries).
    """

    def __init__(
        self,
        sources: str | Path | Sequence[str | Path],
        tile_size: int,
        *,
        bands: Sequence[int] | None = None,
        band_names: Sequence[str] | None = None,
        sampling: str = "random",
        samples_per_epoch: int | None = None,
        max_nodata_fraction: float = 0.5,
        nodata: float | None = None,
        max_redraws: int = 20,
        seed: int = 0,
        cache: DecodedCache | None = None,
        workers: int = 1,
    ) -> None:
        if tile_size < 1:
            raise ValueError(f"tile_size must be positive, got {tile_size}")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        if not 0.0 <= max_nodata_fraction <= 1.0:
            raise ValueError(f"max_nodata_fraction must be in [0, 1], got {max_nodata_fraction}")
        if max_redraws < 0 or seed < 0:
            raise ValueError(f"max_redraws and seed must be non-negative, got {max_redraws} and {seed}")
        self.tile_size = tile_size
        self.sampling = sampling
        self.samples_per_epoch = samples_per_epoch
        self.max_nodata_fraction = max_nodata_fraction
        self.max_redraws = max_redraws
        self.seed = seed
        self.files: list[Scene] = []
        dtypes: list[str] = []
        scenes = resolve_sources(sources, band_names)
        flat = [p for paths in scenes for p in paths]
        headers = read_headers(flat, workers, None if cache is None else cache.index)
        if cache is not None:  # larger PNG / JPEG read from their decoded, windowed copies (built where missing)
            mapped = cache.paths(flat, workers=workers, progress=True, headers=headers)
            headers.update(read_headers([m for m, p in zip(mapped, flat) if m != p], workers, cache.index))
            cached = iter(mapped)
            scenes = [tuple(next(cached) for _ in paths) for paths in scenes]
        scenes = one_grid(scenes, headers, workers)
        layouts: dict[tuple[FileHeader, ...], SceneLayout] = {}  # scenes sharing headers
        for paths in scenes:
            key = tuple(headers[p] for p in paths)
            if key not in layouts:
                layouts[key] = scene_layout(paths, bands, nodata, key)
            layout, dtype = layouts[key]
            scene = Scene(paths, key[0].height, key[0].width,
                          tuple(BandRef(paths[f], i, value, masked) for f, i, value, masked in layout))
            if self.files and len(scene.bands) != len(self.files[0].bands):
                raise DataError(
                    f"{paths[0]}: has {len(scene.bands)} bands, expected {len(self.files[0].bands)} "
                    f"like {self.files[0].paths[0]}"
                )
            if dtypes and dtype != dtypes[0]:
                raise DataError(
                    f"{paths[0]}: has dtype {dtype}, expected {dtypes[0]} like {self.files[0].paths[0]}"
                )
            self.files.append(scene)
            dtypes.append(dtype)
        self.num_bands = len(self.files[0].bands)
        self.dtype = np.dtype(dtypes[0])
        areas = np.array([s.height * s.width for s in self.files], dtype=np.float64)
        self._scene_probs = areas / areas.sum()
        self._grid_shape = [
            (math.ceil(s.height / tile_size), math.ceil(s.width / tile_size)) for s in self.files
        ]
        self._grid_ends = np.cumsum([rows * cols for rows, cols in self._grid_shape])
        self._handles: OrderedDict[Path, DatasetReader] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        if self.sampling == "random" and self.samples_per_epoch is not None:
            return self.samples_per_epoch
        return int(self._grid_ends[-1])

    def __getitem__(self, index: int) -> torch.Tensor:
        """Tile [C, tile_size, tile_size] for any non-negative ``index``."""
        return torch.from_numpy(self._sample(index, want_valid=False)[0])

    def read_tile(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``self[index]`` and its valid-pixel mask [tile_size, tile_size] (bool, False = nodata)."""
        data, valid = self._sample(index, want_valid=True)
        return torch.from_numpy(data), torch.from_numpy(valid)

    def read_window(self, scene: int, row: int, col: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tile [C, tile_size, tile_size] at (row, col) of ``self.files[scene]`` and its valid-pixel mask (any window,
        e.g. a strided grid's; pixels outside the scene are padded and invalid)."""
        data, valid = self._read(self.files[scene], row, col, need_valid=True)
        return torch.from_numpy(data), torch.from_numpy(valid)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    def _sample(self, index: int, want_valid: bool) -> tuple[np.ndarray, np.ndarray]:
        """(data [C, T, T], valid [T, T]); ``valid`` marks only padding unless wanted or needed to re-draw."""
        index = int(index)
        if index < 0:
            raise IndexError(f"TileDataset index must be non-negative, got {index}")
        if self.sampling == "grid":
            return self._read(*self._grid_window(index % len(self)), need_valid=want_valid)
        rng = np.random.default_rng([self.seed, index])
        redraw = self.max_nodata_fraction < 1.0  # float NaNs are always found (and filled) by _read
        for _ in range(self.max_redraws + 1):
            data, valid = self._read(*self._random_window(rng), need_valid=want_valid or redraw)
            if not redraw or 1.0 - valid.mean() <= self.max_nodata_fraction:
                break
        return data, valid

    def _random_window(self, rng: np.random.Generator) -> tuple[Scene, int, int]:
        scene = self.files[int(rng.choice(len(self.files), p=self._scene_probs))]
        row = int(rng.integers(max(scene.height - self.tile_size, 0) + 1))
        col = int(rng.integers(max(scene.width - self.tile_size, 0) + 1))
        return scene, row, col

    def _grid_window(self, k: int) -> tuple[Scene, int, int]:
        i = int(np.searchsorted(self._grid_ends, k, side="right"))
        k -= int(self._grid_ends[i - 1]) if i else 0
        scene, cols = self.files[i], self._grid_shape[i][1]
        row = min(k // cols * self.tile_size, max(scene.height - self.tile_size, 0))
        col = min(k % cols * self.tile_size, max(scene.width - self.tile_size, 0))
        return scene, row, col

    def _read(self, scene: Scene, row: int, col: int, need_valid: bool) -> tuple[np.ndarray, np.ndarray]:
        """Read the window at (row, col); pixels outside the scene are padded and count as nodata."""
        size = self.tile_size
        height, width = min(size, scene.height - row), min(size, scene.width - col)
        window = Window(col, row, width, height)
        data = np.empty((len(scene.bands), size, size), dtype=self.dtype)
        nodata = np.zeros((len(scene.bands), height, width), dtype=bool)
        for path in dict.fromkeys(b.path for b in scene.bands):
            slots = [k for k, b in enumerate(scene.bands) if b.path == path]
            indexes = [scene.bands[k].index for k in slots]
            masked = [k for k in slots if scene.bands[k].masked]
            try:
                src = self.handle(path)
                data[slots, :height, :width] = src.read(indexes, window=window)
                if need_valid and masked:
                    masks = src.read_masks([scene.bands[k].index for k in masked], window=window)
                    nodata[masked] = masks == 0
            except RasterioError as exc:
                raise DataError(f"{path}: cannot read window {window} ({exc})") from exc
        valid = np.zeros((size, size), dtype=bool)
        valid[:height, :width] = True
        inside = data[:, :height, :width]
        if need_valid and all(b.masked or b.nodata is not None for b in scene.bands):
            for k, band in enumerate(scene.bands):
                if band.nodata is not None:
                    nodata[k] = np.isnan(inside[k]) if math.isnan(band.nodata) else inside[k] == band.nodata
            valid[:height, :width] = ~nodata.all(axis=0)
        if self.dtype.kind == "f":  # NaN is nodata in every float raster, tagged or not; the model gets it filled
            nan = np.isnan(inside)
            if nan.any():
                valid[:height, :width] &= ~nan.any(axis=0)
                for k, band in enumerate(scene.bands):
                    inside[k][nan[k]] = _fill_value(band.nodata, self.dtype)
        if height < size or width < size:
            for k, band in enumerate(scene.bands):
                data[k, height:, :] = data[k, :, width:] = _fill_value(band.nodata, self.dtype)
        return data, valid

    def handle(self, path: Path) -> DatasetReader:
        """Open file handle of this process (a forked worker must not reuse its parent's handles); at most
        ``_MAX_OPEN`` are kept, least recently used closed first."""
        if self._pid != os.getpid():
            self._handles, self._pid = OrderedDict(), os.getpid()
        if path in self._handles:
            self._handles.move_to_end(path)
        else:
            self._handles[path] = open_raster(path)
            if len(self._handles) > _MAX_OPEN:
                self._handles.popitem(last=False)[1].close()
        return self._handles[path]


def _fill_value(nodata: float | None, dtype: np.dtype) -> float:
    """Padding (and NaN fill) value: the band's nodata value where ``dtype`` holds it exactly and it is finite,
    else 0."""
    if nodata is None or not math.isfinite(nodata):
        return 0
    with np.errstate(invalid="ignore"):
        cast = np.array(nodata).astype(dtype)
    return cast.item() if cast == nodata or (np.isnan(cast) and math.isnan(nodata)) else 0
