"""A decoded-image cache: PNG / JPEG (sequential formats, where every window read decodes the file from its top)
decoded once into tiled, uncompressed GeoTIFFs that are read by window, with the same pixels, dtype, band count,
nodata and (where the source has them) CRS and transform.

An entry is keyed by its source's resolved path, size and mtime (``<root>/decoded/<key>/<source stem>.tif``, so
outputs named after the file keep their names): a changed source gets a new entry, never a stale one. Entries are
written to a temporary name and renamed, so a killed build leaves no file that is later trusted, and concurrent
builders of one entry each write their own temporary file (the last rename wins, with identical content). Every
entry records its source and the SHA-1 of the decoded pixels in GeoTIFF tags, which :func:`check_cache` verifies.
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from tqdm import tqdm

from ssl_siam.core.errors import DataError
from ssl_siam.core.files import atomic_path
from ssl_siam.data.headers import TAG_DRIVER, FileHeader, read_headers
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.rasters import SEQUENTIAL_SUFFIXES, open_raster

BLOCK = 256  # GeoTIFF tile size: a 512² crop touches at most 9 tiles
SMALL_PIXELS = 128 * 128  # images up to this size are read from the source: decoding one whole costs about what
# opening its entry would (measured: 96² PNG 0.9 ms per read, its entry 0.7 ms; 256²: 2.5 vs 0.6 ms)
_TAG_SOURCE, _TAG_SIZE, _TAG_MTIME, _TAG_SHA = (
    "SSL_SIAM_SOURCE", "SSL_SIAM_SOURCE_SIZE", "SSL_SIAM_SOURCE_MTIME_NS", "SSL_SIAM_PIXELS_SHA1")


def needs_decoding(path: Path) -> bool:
    """Whether ``path`` is in a sequential format (by its suffix: PNG, JPEG, GIF, BMP) that the cache decodes."""
    return os.path.splitext(path)[1].lower() in SEQUENTIAL_SUFFIXES


@dataclass(frozen=True)
class DecodedCache:
    """The decoded-image cache under ``root`` (``<root>/decoded/``, headers in ``<root>/headers.json``); PNG / JPEG
    of at most ``min_pixels`` pixels are read from the source (0: every one is decoded)."""

    root: Path
    min_pixels: int = SMALL_PIXELS

    @property
    def index(self) -> Path:
        """The header index of the sources and entries (:func:`~ssl_siam.data.headers.read_headers`)."""
        return Path(self.root) / "headers.json"

    def entry(self, source: Path) -> Path:
        """Where ``source``'s decoded copy lives (whether or not it exists yet)."""
        return Path(self._entry(str(source), {}))

    def _entry(self, source: str, parents: dict[str, str]) -> str:
        """:meth:`entry` as a string, resolving each folder once (``parents``): one ``lstat`` per regular file."""
        try:
            info = os.lstat(source)
            if stat.S_ISLNK(info.st_mode):
                real = os.path.realpath(source)
                info = os.stat(real)
            else:
                folder, name = os.path.split(os.path.abspath(source))
                if folder not in parents:
                    parents[folder] = os.path.realpath(folder)
                real = os.path.join(parents[folder], name)
        except OSError as exc:
            raise DataError(f"{source}: cannot read ({exc.strerror})") from None
        key = hashlib.sha1(f"{real}|{info.st_size}|{info.st_mtime_ns}".encode()).hexdigest()[:16]
        stem = os.path.splitext(os.path.basename(real))[0]
        return os.path.join(self.root, "decoded", key[:2], key, f"{stem}.tif")

    def entries(self, sources: Sequence[Path], workers: int = 1,
                headers: Mapping[Path, FileHeader] | None = None) -> dict[Path, Path]:
        """The entry of every source the cache decodes (built or not): PNG / JPEG, by suffix, of more than
        ``min_pixels`` pixels (sizes from ``headers`` where given, else from the header index, ``workers``
        processes reading the missing ones)."""
        decodable = [s for s in dict.fromkeys(sources) if needs_decoding(s)]
        if self.min_pixels and decodable:
            if headers is None or any(s not in headers for s in decodable):
                headers = read_headers(decodable, workers, self.index)
            decodable = [s for s in decodable if headers[s].height * headers[s].width > self.min_pixels]
        parents: dict[str, str] = {}
        return {s: Path(self._entry(str(s), parents)) for s in decodable}

    def path(self, source: Path) -> Path:
        """``source`` itself when it is read by window anyway (GeoTIFF, VRT) or small, else its entry, built if
        missing."""
        return self.paths([source])[0]

    def paths(self, sources: Sequence[Path], workers: int = 1, progress: bool = False,
              headers: Mapping[Path, FileHeader] | None = None) -> list[Path]:
        """:meth:`path` of every source, the missing entries built by ``workers`` processes (``headers``: as
        :meth:`entries`)."""
        entries = self.entries(sources, workers, headers)
        missing = list({e: (s, e) for s, e in entries.items() if not os.path.isfile(e)}.values())  # links: one build
        if missing:
            jobs = zip(*missing)
            if workers > 1 and len(missing) > 1:
                with ProcessPoolExecutor(workers) as pool:
                    done: Iterable[Path] = pool.map(build_entry, *jobs, chunksize=max(1, len(missing) // 64))
                    list(tqdm(done, total=len(missing), desc="decoding", unit="file", disable=not progress))
            else:
                for source, entry in tqdm(missing, desc="decoding", unit="file", disable=not progress):
                    build_entry(source, entry)
        return [entries.get(s) or Path(s) for s in sources]


def decoded(cache: DecodedCache, records: list[PairRecord], workers: int = 1) -> list[PairRecord]:
    """``records`` with every PNG / JPEG (images and target masks) replaced by its decoded cache entry (built by
    ``workers`` processes where missing); the ids, and so every output name, stay the same."""
    fields = ("pre_image", "post_image", "damage_target", "loc_target")
    sources = [getattr(r, f) for r in records for f in fields if getattr(r, f) is not None]
    entries = dict(zip(sources, cache.paths(sources, workers=workers, progress=True)))
    return [replace(r, **{f: entries[getattr(r, f)] for f in fields if getattr(r, f) is not None}) for r in records]


def build_entry(source: Path, entry: Path) -> Path:
    """Decode ``source`` into the tiled GeoTIFF ``entry`` (temporary file, then rename); returns ``entry``."""
    with open_raster(source) as src:
        try:
            data = src.read()
        except rasterio.errors.RasterioError as exc:
            raise DataError(f"{source}: cannot read pixels ({exc})") from exc
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": src.count,
                   "dtype": data.dtype.name, "tiled": True, "blockxsize": _block(src.width),
                   "blockysize": _block(src.height),
                   "interleave": "pixel", "photometric": "minisblack", "compress": None}
        if src.crs is not None:
            profile.update(crs=src.crs, transform=src.transform)
        if src.nodata is not None:
            profile["nodata"] = src.nodata
        colorinterp, driver, info = src.colorinterp, src.driver, source.stat()
    entry.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(entry, suffix=".tif") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dst = rasterio.open(tmp, "w", **profile)
        with dst:
            dst.write(data)
            dst.colorinterp = colorinterp  # an alpha band stays an alpha band
            dst.update_tags(**{_TAG_SOURCE: str(source.resolve()), _TAG_SIZE: str(info.st_size),
                               _TAG_MTIME: str(info.st_mtime_ns), _TAG_SHA: pixels_sha1(data), TAG_DRIVER: driver})
    return entry


def _block(size: int) -> int:
    """GeoTIFF tile edge: :data:`BLOCK`, or the image's edge rounded up to GDAL's multiple of 16 when smaller."""
    return min(BLOCK, -(-size // 16) * 16)


def pixels_sha1(data: np.ndarray) -> str:
    """SHA-1 of a decoded array's dtype, shape and bytes."""
    digest = hashlib.sha1(f"{data.dtype.name}{data.shape}".encode())
    digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()


def check_cache(cache: DecodedCache, sources: Sequence[Path], workers: int = 1) -> list[str]:
    """Problems of the cache against ``sources`` (empty: every entry present, from this very source file, with
    the source's decoded pixels): missing entries, entries of another file, and pixels that differ."""
    jobs = list(cache.entries(sources, workers).items())
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            found = list(pool.map(_check_one, *zip(*jobs), chunksize=8))
    else:
        found = [_check_one(source, entry) for source, entry in jobs]
    return [p for p in found if p]


def _check_one(source: Path, entry: Path) -> str:
    if not entry.is_file():
        return f"{source}: no cache entry (expected {entry})"
    with open_raster(entry) as cached:
        tags, pixels = cached.tags(), cached.read()
    if tags.get(_TAG_SOURCE) != str(source.resolve()):
        return f"{entry}: made from {tags.get(_TAG_SOURCE)}, expected {source.resolve()}"
    with open_raster(source) as src:
        decoded = src.read()
    if pixels_sha1(decoded) != tags.get(_TAG_SHA) or not np.array_equal(decoded, pixels):
        return f"{entry}: pixels differ from {source}"
    return ""
