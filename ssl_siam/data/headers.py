"""Raster headers (size, dtypes, nodata, colour interpretation, mask flags, driver) read once per file: in parallel
when asked, and kept in an index file keyed by each file's path, size and mtime, so a start-up over 10⁵ tiles
costs one ``stat`` per file instead of one GDAL open."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.io import DatasetReader

from ssl_siam.core.files import atomic_path
from ssl_siam.data.rasters import open_raster

_PARALLEL_FROM = 256  # fewer files are read in this process: a pool costs more than it saves
_CHUNK = 256  # files per task of the pool
_INDEX_VERSION = 2
TAG_DRIVER = "SSL_SIAM_DRIVER"  # a decoded cache entry's tag: the GDAL driver of its source (PNG / JPEG mask rules)


def source_driver(src: DatasetReader) -> str:
    """The GDAL driver of the file a raster came from: a cache entry's source driver (e.g. PNG), else its own."""
    return src.tags().get(TAG_DRIVER, src.driver) if src.driver == "GTiff" else src.driver


@dataclass(frozen=True)
class FileHeader:
    height: int
    width: int
    dtypes: tuple[str, ...]
    nodatavals: tuple[float | None, ...]
    colorinterp: tuple[ColorInterp, ...]
    mask_flags: tuple[tuple[MaskFlags, ...], ...]
    driver: str  # a cache entry's source driver (its PNG / JPEG mask rules), else the file's own

    def to_json(self) -> dict:
        data = asdict(self)
        data["colorinterp"] = [c.value for c in self.colorinterp]
        data["mask_flags"] = [[f.value for f in flags] for flags in self.mask_flags]
        return data

    @classmethod
    def from_json(cls, data: dict) -> FileHeader:
        return cls(data["height"], data["width"], tuple(data["dtypes"]), tuple(data["nodatavals"]),
                   tuple(ColorInterp(c) for c in data["colorinterp"]),
                   tuple(tuple(MaskFlags(f) for f in flags) for flags in data["mask_flags"]), data["driver"])


def read_header(path: Path) -> FileHeader:
    """The header of one raster (a one-line DataError when it cannot be opened)."""
    with open_raster(path) as src:
        return FileHeader(src.height, src.width, tuple(src.dtypes), tuple(src.nodatavals), tuple(src.colorinterp),
                          tuple(tuple(f) for f in src.mask_flag_enums), source_driver(src))


def _read_chunk(paths: Sequence[Path]) -> list[FileHeader]:
    """Headers of ``paths`` under one GDAL environment (an environment per open costs ~0.1 ms)."""
    with rasterio.Env():
        return [read_header(p) for p in paths]


def _identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def read_headers(paths: Sequence[Path], workers: int = 1, index: Path | None = None) -> dict[Path, FileHeader]:
    """Headers of ``paths``: from ``index`` (a JSON file) where the file's size and mtime are unchanged, the rest
    read by ``workers`` processes (in this one for few files) and written back to ``index`` atomically.

    The index stores each distinct header once (tiles of one archive mostly share theirs) and per file its size,
    mtime and header number, so a start-up over 10⁵ known tiles costs a ``stat`` per file and one small JSON."""
    paths = list(dict.fromkeys(paths))
    if not paths:
        return {}
    files, table = _load_index(index)
    decoded: dict[int, FileHeader] = {}
    headers: dict[Path, FileHeader] = {}
    identities: dict[Path, tuple[int, int]] = {}
    missing = []
    for path in paths:
        name = str(path)
        identities[path] = identity = _identity(name)
        entry = files.get(name)
        if entry is not None and (entry[0], entry[1]) == identity:
            number = entry[2]
            if number not in decoded:
                decoded[number] = FileHeader.from_json(table[number])
            headers[path] = decoded[number]
        else:
            missing.append(path)
    if workers > 1 and len(missing) >= _PARALLEL_FROM:
        chunks = [missing[i:i + _CHUNK] for i in range(0, len(missing), _CHUNK)]
        with ProcessPoolExecutor(workers) as pool:
            headers.update(zip(missing, (h for chunk in pool.map(_read_chunk, chunks) for h in chunk)))
    else:
        headers.update(zip(missing, _read_chunk(missing)))
    if index is not None and missing:
        numbers = {json.dumps(h, sort_keys=True): i for i, h in enumerate(table)}
        for path in missing:
            header = headers[path].to_json()
            number = numbers.setdefault(json.dumps(header, sort_keys=True), len(table))
            if number == len(table):
                table.append(header)
            files[str(path)] = [*identities[path], number]
        index.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(index) as tmp:
            tmp.write_text(json.dumps({"version": _INDEX_VERSION, "headers": table, "files": files}))
    return headers


def _load_index(index: Path | None) -> tuple[dict[str, list[int]], list[dict]]:
    """(files: path -> [size, mtime_ns, header number], headers) of an index; empty when absent, unreadable or of
    another version (rebuilt, never trusted)."""
    if index is None or not index.is_file():
        return {}, []
    try:
        stored = json.loads(index.read_text())
        if stored.get("version") == _INDEX_VERSION:
            return stored["files"], stored["headers"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return {}, []
