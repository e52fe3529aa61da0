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
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from tqdm import tqdm

from ssl_siam.core.errors import DataError
from ssl_siam.data.rasters import SEQUENTIAL_SUFFIXES, open_raster
from ssl_siam.data.xbd.pairs import PairRecord

BLOCK = 256  # GeoTIFF tile size: a 512² crop touches at most 9 tiles
_TAG_SOURCE, _TAG_SIZE, _TAG_MTIME, _TAG_SHA, _TAG_DRIVER = (
    "SSL_SIAM_SOURCE", "SSL_SIAM_SOURCE_SIZE", "SSL_SIAM_SOURCE_MTIME_NS", "SSL_SIAM_PIXELS_SHA1", "SSL_SIAM_DRIVER")


def needs_decoding(path: Path) -> bool:
    """Whether ``path`` is in a sequential format (by its suffix: PNG, JPEG, GIF, BMP) that the cache decodes."""
    return os.path.splitext(path)[1].lower() in SEQUENTIAL_SUFFIXES


def source_driver(src: rasterio.io.DatasetReader) -> str:
    """The GDAL driver of the file a raster came from: a cache entry's source driver (e.g. PNG), else its own."""
    return src.tags().get(_TAG_DRIVER, src.driver) if src.driver == "GTiff" else src.driver


@dataclass(frozen=True)
class DecodedCache:
    """The decoded-image cache under ``root`` (``<root>/decoded/``)."""

    root: Path

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

    def path(self, source: Path) -> Path:
        """``source`` itself when it is read by window anyway (GeoTIFF, VRT), else its entry, built if missing."""
        if not needs_decoding(source):
            return Path(source)
        entry = self.entry(source)
        return entry if entry.is_file() else build_entry(Path(source), entry)

    def paths(self, sources: Sequence[Path], workers: int = 1, progress: bool = False) -> list[Path]:
        """:meth:`path` of every source, the missing entries built by ``workers`` processes."""
        parents: dict[str, str] = {}
        entries = {s: Path(self._entry(str(s), parents)) for s in dict.fromkeys(sources) if needs_decoding(s)}
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
    tmp = entry.with_name(f".{entry.stem}.{os.getpid()}.tmp.tif")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dst = rasterio.open(tmp, "w", **profile)
        with dst:
            dst.write(data)
            dst.colorinterp = colorinterp  # an alpha band stays an alpha band
            dst.update_tags(**{_TAG_SOURCE: str(source.resolve()), _TAG_SIZE: str(info.st_size),
                               _TAG_MTIME: str(info.st_mtime_ns), _TAG_SHA: pixels_sha1(data), _TAG_DRIVER: driver})
        os.replace(tmp, entry)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
    decodable = [Path(s) for s in sources if needs_decoding(Path(s))]
    if workers > 1 and len(decodable) > 1:
        with ProcessPoolExecutor(workers) as pool:
            found = list(pool.map(_check_one, [cache] * len(decodable), decodable, chunksize=8))
    else:
        found = [_check_one(cache, s) for s in decodable]
    return [p for p in found if p]


def _check_one(cache: DecodedCache, source: Path) -> str:
    entry = cache.entry(source)
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
