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

from rasterio.enums import ColorInterp, MaskFlags

from ssl_siam.data.cache import source_driver
from ssl_siam.data.rasters import open_raster

_PARALLEL_FROM = 256  # fewer files are read in this process: a pool costs more than it saves
_INDEX_VERSION = 1


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


def _identity(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def read_headers(paths: Sequence[Path], workers: int = 1, index: Path | None = None) -> dict[Path, FileHeader]:
    """Headers of ``paths``: from ``index`` (a JSON file) where the file's size and mtime are unchanged, the rest
    read by ``workers`` processes (in this one for few files) and written back to ``index`` atomically."""
    paths = list(dict.fromkeys(Path(p) for p in paths))
    known: dict[str, dict] = {}
    if index is not None and index.is_file():
        try:
            stored = json.loads(index.read_text())
            known = stored["files"] if stored.get("version") == _INDEX_VERSION else {}
        except (OSError, ValueError, KeyError):
            known = {}  # an unreadable index is rebuilt, never trusted
    headers: dict[Path, FileHeader] = {}
    missing = []
    for path in paths:
        entry = known.get(str(path))
        if entry is not None and entry["identity"] == _identity(path):
            headers[path] = FileHeader.from_json(entry["header"])
        else:
            missing.append(path)
    if workers > 1 and len(missing) >= _PARALLEL_FROM:
        with ProcessPoolExecutor(workers) as pool:
            headers.update(zip(missing, pool.map(read_header, missing, chunksize=64)))
    else:
        headers.update((p, read_header(p)) for p in missing)
    if index is not None and missing:
        known.update({str(p): {"identity": _identity(p), "header": headers[p].to_json()} for p in missing})
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": _INDEX_VERSION, "files": known}))
        os.replace(tmp, index)
    return headers
