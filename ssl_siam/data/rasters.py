"""Opening rasters (PNG, JPEG, GeoTIFF, VRT, ...) with one-line errors, and co-registered pre / post pairs read by
row ranges (windowed for random-access formats)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from ssl_siam.core.errors import DataError
from ssl_siam.data.display import rgb_bands

RASTER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".vrt")
_MAX_SHIFT_PX = 0.01  # pre / post footprints further apart than this many pixels are a mismatch
OVERVIEW_SIDE = 512  # longest side of an overview (scene statistics of a pair)

Profile = dict[str, Any]  # {"crs": rasterio CRS, "transform": affine.Affine}

# GDAL lists a file's whole folder on every open to find its side-car files (.aux.xml, .ovr, .msk): 1 ms per open
# in a folder of 10⁴ tiles, growing with the folder. TRUE skips the listing and probes the side-cars one by one
# instead (same result); a value the user set wins.
os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "TRUE")

#: GDAL drivers without random access: a window read decodes from the top, so these files are read whole.
SEQUENTIAL_DRIVERS = ("PNG", "JPEG", "GIF", "BMP")
SEQUENTIAL_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")  # their files, told by name without opening


def open_raster(path: Path) -> DatasetReader:
    """``rasterio.open`` with a one-line DataError for unreadable files, including truncated PNGs (which GDAL
    would otherwise read as zero-filled rows)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except RasterioError as exc:
        raise DataError(f"{path}: cannot open as a raster image ({exc})") from exc
    if src.driver == "PNG" and not _png_complete(Path(path)):
        src.close()
        raise DataError(f"{path}: truncated PNG (no IEND chunk at the end of the file)")
    return src


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk every complete PNG ends with


def _png_complete(path: Path) -> bool:
    """Whether the file ends with the PNG IEND chunk: O(1), reads 12 bytes."""
    try:
        with path.open("rb") as handle:
            handle.seek(-len(_PNG_END), os.SEEK_END)
            return handle.read() == _PNG_END
    except OSError:
        return False



def overview(src: DatasetReader, indexes: Sequence[int], side: int = OVERVIEW_SIDE) -> np.ndarray:
    """Bands ``indexes`` of ``src`` [C, h, w], decimated (nearest) so the longer side is at most ``side``;
    sequential formats (PNG / JPEG) are decoded whole and strided alike."""
    step = _step(src, side)
    if src.driver in SEQUENTIAL_DRIVERS:
        return src.read(list(indexes))[:, ::step, ::step]
    shape = (len(indexes), -(-src.height // step), -(-src.width // step))
    return src.read(list(indexes), out_shape=shape, resampling=Resampling.nearest)


def _step(src: DatasetReader, side: int) -> int:
    """Decimation step that brings ``src``'s longer side to at most ``side`` pixels."""
    return max(1, -(-max(src.height, src.width) // side))


def nodata_mask(data: np.ndarray, nodata: Sequence[float | None]) -> np.ndarray:
    """``[h, w]`` True where a pixel of ``data`` ``[C, h, w]`` is nodata: NaN in any band (a float raster's NaN is
    always nodata, tagged or not), or equal to its band's ``nodata`` value in every band (when every band has one)."""
    invalid = np.isnan(data).any(axis=0) if data.dtype.kind == "f" else np.zeros(data.shape[1:], bool)
    if data.shape[0] and all(v is not None for v in nodata):
        equal = [np.isnan(band) if math.isnan(v) else band == v for band, v in zip(data, nodata)]  # type: ignore[arg-type]
        invalid |= np.logical_and.reduce(equal)
    return invalid


class RasterPair:
    """An opened pre / post image pair, checked at opening, read by row ranges.

    DataError naming the files when one is unreadable, a band index is out of range, the sizes differ, or both
    are georeferenced with different CRSs or footprints (transforms more than 0.01 px apart at any corner).
    ``bands``: 1-based band indices (default all), read from both images unless ``post_bands`` selects the post
    image's own; ``num_bands`` counts them (pre, post). :meth:`nodata` marks the pixels nodata in either image
    (:func:`nodata_mask`: NaN, or the files' nodata value in every band; ``nodata_values``: each selected band's,
    pre and post). ``profile`` is the pre image's
    {"crs", "transform"} when georeferenced (None for PNG / JPEG).
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
            self.num_bands = (len(self._indexes[0]), len(self._indexes[1]))
            self.nodata_values = [[src.nodatavals[b - 1] for b in idx]
                                  for src, idx in zip(self._sources, self._indexes)]
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

    def nodata(self, pre: np.ndarray, post: np.ndarray) -> np.ndarray:
        """``[h, W]`` True where rows read by :meth:`rows` are nodata in the pre or the post image."""
        return nodata_mask(pre, self.nodata_values[0]) | nodata_mask(post, self.nodata_values[1])

    def overviews(self, side: int = OVERVIEW_SIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pre [C, h, w] and post [C', h, w] images decimated to at most ``side`` pixels a side
        (:func:`overview`), and ``[h, w]`` True where either is nodata: a whole-scene view for statistics."""
        pre, post = (overview(src, idx, side) if whole is None else whole[:, :: (k := _step(src, side)), ::k]
                     for src, idx, whole in zip(self._sources, self._indexes, self._whole))
        return pre, post, self.nodata(pre, post)

    def display_bands(self) -> np.ndarray:
        """The pre image's red, green and blue among its selected bands [3, H, W] (:func:`display.rgb_bands`: by
        band description, e.g. an OSCD stack's B04 / B03 / B02, else Sentinel-2 order for 13 bands, else the first
        three; its first band [1, H, W] when it has fewer), whole, in their native dtype: what
        ``outputs.to_display_rgb`` shows."""
        selected = self._indexes[0]
        names = [self._sources[0].descriptions[b - 1] or "" for b in selected]
        rgb = rgb_bands(len(selected), names)
        indexes = [selected[i] for i in rgb] if len(selected) >= 3 else selected[:1]
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


def _footprint_shift(pre_transform: Any, post_transform: Any, height: int, width: int) -> float:
    """Largest distance, in pre pixels, between where the pre and post transforms put the image corners."""
    to_pre_pixels = ~pre_transform
    corners = [(0, 0), (width, 0), (0, height), (width, height)]
    return max(math.dist(_apply(to_pre_pixels, _apply(post_transform, corner)), corner) for corner in corners)


def _apply(t: Any, point: tuple[float, float]) -> tuple[float, float]:
    """Affine ``t`` applied to (x, y), spelled out: ``*`` on points is deprecated in affine 3, ``@`` new there."""
    x, y = point
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def read_all_bands(path: Path) -> np.ndarray:
    """All bands [C, H, W] of a raster file."""
    try:
        with open_raster(path) as src:
            return src.read()
    except RasterioError as exc:
        raise DataError(f"{path}: cannot read pixels ({exc})") from exc


def load_image(path: Path, crop_size: int, num_bands: int, like: Path) -> torch.Tensor:
    """All bands of ``path`` as float32 ``[C, S, S]``: shorter side resized to ``crop_size`` (bilinear with
    antialiasing), then centre-cropped; DataError unless it has ``num_bands`` bands (as ``like``)."""
    image = torch.from_numpy(read_all_bands(path).astype(np.float32))  # [C, H, W]
    if image.shape[0] != num_bands:
        raise DataError(f"{path}: has {image.shape[0]} bands, expected {num_bands} like {like}")
    height, width = image.shape[1:]
    scale = crop_size / min(height, width)
    if scale != 1:
        size = (max(round(height * scale), crop_size), max(round(width * scale), crop_size))
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (image.shape[1] - crop_size) // 2, (image.shape[2] - crop_size) // 2
    return image[:, top : top + crop_size, left : left + crop_size]
