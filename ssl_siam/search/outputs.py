"""A search's hits as files: ``hits.geojson`` (lon/lat footprints, RFC 7946) and ``hits.csv``.

A hit's footprint is the tile table's ``geometry`` (:mod:`ssl_siam.search.geoparquet`): its window's four corners
taken to lon/lat, so a UTM tile is the slightly rotated quadrilateral it is, not its lon/lat bounding box, the ring
counterclockwise from the top-left corner. A tile without georeferencing (PNG / JPEG) is kept with
``"geometry": null`` (an unlocated feature, RFC 7946 §3.2), so ranks stay contiguous.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from ssl_siam.core.files import atomic_path

CSV_COLUMNS = ("rank", "id", "score", "scene", "row", "col", "size", "crs", "lon_min", "lat_min", "lon_max", "lat_max")


def hit_rows(table: pa.Table, ids: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """The tile-table rows of the hits ``ids`` (best first) with their ``rank`` (1-based) and ``score``."""
    rows = table.take(pa.array(ids, pa.int64())).to_pylist()
    return [{"rank": rank, "score": float(score), **row} for rank, (row, score) in enumerate(zip(rows, scores), 1)]


def footprint(row: dict[str, Any]) -> list[list[float]] | None:
    """The closed lon/lat ring [[lon, lat] × 5] of a tile (top-left, bottom-left, bottom-right, top-right), or
    None without a CRS."""
    if row["geometry"] is None:
        return None
    return shapely.get_coordinates(shapely.from_wkb(row["geometry"]).exterior).tolist()


def to_geojson(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A FeatureCollection: one Feature per hit (a Polygon, or null geometry without a CRS) with the properties
    ``rank``, ``score``, ``id``, ``scene`` and ``window`` ({row, col, size} in the scene's pixels)."""
    features = []
    for row in rows:
        ring = footprint(row)
        features.append({
            "type": "Feature",
            "geometry": None if ring is None else {"type": "Polygon", "coordinates": [ring]},
            "properties": {"rank": row["rank"], "score": row["score"], "id": row["id"], "scene": row["scene"],
                           "window": {"row": row["row"], "col": row["col"], "size": row["size"]}},
        })
    return {"type": "FeatureCollection", "features": features}


def write_hits(out: Path, rows: list[dict[str, Any]]) -> None:
    """``out/hits.geojson`` and ``out/hits.csv`` (columns :data:`CSV_COLUMNS`; empty cells for missing values),
    each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "hits.geojson") as tmp:
        tmp.write_text(json.dumps(to_geojson(rows), indent=1))
    with atomic_path(out / "hits.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
