"""The on-disk embedding index: ``index.json`` (encoder identity, tiling, progress, counts), float16 L2-normalised
embeddings in ``embeddings/part-NNNNN.npy`` and one GeoParquet row per tile in ``tiles/part-NNNNN.parquet``.

A part is written (embeddings, then table, each atomically) before ``index.json`` records it: ``index.json`` is
the commit point, so a part on disk that it does not count is simply rewritten by the next run. Indexes written
before the GeoParquet table (plain Parquet, no ``geometry`` column) still load, their footprints computed from the
table's CRS bounds; ``ssl-siam embed`` upgrades their parts before appending (:func:`upgrade_parts`), so an index's
parts never mix the two schemas once it grows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ssl_siam.core.errors import DataError, UserError
from ssl_siam.core.files import atomic_path
from ssl_siam.search.geoparquet import GEOMETRY, footprints, to_geoparquet

INDEX_FORMAT = "ssl-siam-index"
INDEX_FILE = "index.json"
WINDOW_SCHEMA = pa.schema([  # what embed records per tile; the whole table of indexes older than GeoParquet
    ("id", pa.int64()),  # global tile id: row of the concatenated embeddings
    ("scene", pa.string()),  # the scene's file (a band stack: its files joined by ';')
    ("row", pa.int32()), ("col", pa.int32()), ("size", pa.int32()),  # the window, pixels
    ("crs", pa.string()),  # e.g. EPSG:32633; null when not georeferenced
    ("left", pa.float64()), ("bottom", pa.float64()), ("right", pa.float64()), ("top", pa.float64()),  # CRS bounds
    ("lon_min", pa.float64()), ("lat_min", pa.float64()), ("lon_max", pa.float64()), ("lat_max", pa.float64()),
    ("nodata_fraction", pa.float32()),
])
TILE_SCHEMA = WINDOW_SCHEMA.append(pa.field(GEOMETRY, pa.binary()))  # + the lon/lat footprint, WKB (geoparquet.py)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class IndexState:
    """What ``index.json`` holds. ``encoder`` identifies the encoder (compared on append), ``tiling`` the grid and
    bands, ``done`` the scenes fully embedded, ``partial`` the scene cut by the last part and its windows done."""

    encoder: dict[str, Any]
    tiling: dict[str, Any]
    normalization: dict[str, list[float]]
    dim: int
    done: list[str] = field(default_factory=list)
    partial: tuple[str, int] | None = None
    parts: int = 0
    tiles: int = 0
    skipped_nodata: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"format": INDEX_FORMAT, "encoder": self.encoder, "tiling": self.tiling,
                "normalization": self.normalization, "embedding_dim": self.dim, "embedding_dtype": "float16",
                "counts": {"scenes": len(self.done), "tiles": self.tiles, "skipped_nodata": self.skipped_nodata,
                           "parts": self.parts},
                "partial": None if self.partial is None else {"scene": self.partial[0], "windows": self.partial[1]},
                "scenes": self.done}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexState:
        partial = data.get("partial")
        counts = data["counts"]
        return cls(data["encoder"], data["tiling"], data["normalization"], int(data["embedding_dim"]),
                   list(data["scenes"]), None if partial is None else (partial["scene"], int(partial["windows"])),
                   int(counts["parts"]), int(counts["tiles"]), int(counts["skipped_nodata"]))


def read_state(index: Path) -> IndexState | None:
    """The state of an existing index, None for a missing or empty folder; DataError for anything else."""
    path = index / INDEX_FILE
    if not path.is_file():
        if index.is_dir() and any(index.iterdir()):
            raise DataError(f"{index}: not an embedding index (no {INDEX_FILE}) and not empty; use a new --out")
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != INDEX_FORMAT:
            raise KeyError("format")
        return IndexState.from_json(data)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise DataError(f"{path}: not an ssl-siam embedding index") from None


def check_compatible(stored: IndexState, encoder: dict[str, Any], tiling: dict[str, Any], index: Path) -> None:
    """UserError (one line, naming both) unless the index was built by this encoder with this tiling."""
    if {k: v for k, v in stored.encoder.items() if k != "spec"} != {k: v for k, v in encoder.items() if k != "spec"}:
        raise UserError(f"--encoder {encoder['spec']}: {index} holds embeddings of another encoder "
                        f"({stored.encoder['spec']}); one index holds one encoder, use another --out")
    if stored.tiling != tiling:
        raise UserError(f"{index} was built with tiling {stored.tiling}, not {tiling}; use the same options or "
                        "another --out")


def write_state(index: Path, state: IndexState) -> None:
    """Write ``index.json`` atomically."""
    index.mkdir(parents=True, exist_ok=True)
    with atomic_path(index / INDEX_FILE) as tmp:
        tmp.write_text(json.dumps(state.to_json(), indent=1))


def part_paths(index: Path, part: int) -> tuple[Path, Path]:
    """(embeddings ``.npy``, tiles ``.parquet``) of part number ``part``."""
    return index / "embeddings" / f"part-{part:05d}.npy", index / "tiles" / f"part-{part:05d}.parquet"


def write_part(index: Path, part: int, embeddings: np.ndarray, rows: dict[str, list[Any]]) -> None:
    """Write one part's embeddings ``[N, D]`` float16 and its N table rows (columns of :data:`WINDOW_SCHEMA`; the
    table is written as GeoParquet)."""
    emb_path, table_path = part_paths(index, part)
    for path in (emb_path, table_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(emb_path) as tmp, open(tmp, "wb") as f:
        np.save(f, embeddings.astype(np.float16))
    _write_table(table_path, to_geoparquet(pa.table(rows, schema=WINDOW_SCHEMA)))


def _write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_part(path: Path) -> pa.Table:
    """One part's tile table as :data:`TILE_SCHEMA`; a part older than GeoParquet gets its footprints computed."""
    table = pq.read_table(path)
    if GEOMETRY not in table.column_names:
        table = table.append_column(GEOMETRY, footprints(table))
    return table.select(TILE_SCHEMA.names).cast(TILE_SCHEMA)


def upgrade_parts(index: Path, parts: int) -> int:
    """Rewrite the plain-Parquet table parts of an index (older than GeoParquet) as GeoParquet, each atomically (a
    killed upgrade goes on at the next call); returns how many were rewritten."""
    tables = [part_paths(index, p)[1] for p in range(parts)]
    old = [path for path in tables if GEOMETRY not in pq.read_schema(path).names]
    for path in old:
        _write_table(path, to_geoparquet(pq.read_table(path).select(WINDOW_SCHEMA.names).cast(WINDOW_SCHEMA)))
    return len(old)


def load_index(index: str | Path) -> tuple[IndexState, np.ndarray, pa.Table]:
    """The state, all embeddings ``[N, D]`` float16 and the whole tile table of a committed index (for search
    and tests; a huge index is better read part by part)."""
    index = Path(index)
    state = read_state(index)
    if state is None:
        raise DataError(f"{index}: no embedding index here")
    parts = [part_paths(index, p) for p in range(state.parts)]
    embeddings = [np.load(e) for e, _ in parts]
    table = pa.concat_tables([read_part(t) for _, t in parts]) if parts else TILE_SCHEMA.empty_table()
    emb = np.concatenate(embeddings) if embeddings else np.zeros((0, state.dim), np.float16)
    return state, emb, table
