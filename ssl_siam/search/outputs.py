"""A search's hits as files: ``hits.geojson`` (lon/lat footprints, RFC 7946) and ``hits.csv``.

A hit's footprint is its window's four corners (the CRS bounds of the tile table) taken to EPSG:4326, so a
UTM tile is the slightly rotated quadrilateral it is, not its lon/lat bounding box. A tile without georeferencing
(PNG / JPEG) is kept with ``"geometry": null`` (an unlocated feature, RFC 7946 §3.2), so ranks stay contiguous.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rasterio.warp import transform

CSV_COLUMNS = ("rank", "id", "score", "scene", "row", "col", "size", "crs", "lon_min", "lat_min", "lon_max", "lat_max")


def hit_rows(table: pa.Table, ids: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """The tile-table rows of the hits ``ids`` (best first) with their ``rank`` (1-based) and ``score``."""
    rows = table.take(pa.array(ids, pa.int64())).to_pylist()
    return [{"rank": rank, "score": float(score), **row} for rank, (row, score) in enumerate(zip(rows, scores), 1)]


def footprint(row: dict[str, Any]) -> list[list[float]] | None:
    """The closed lon/lat ring [[lon, lat] × 5] of a tile (top-left, top-right, bottom-right, bottom-left), or
    None without a CRS."""
    if row["crs"] is None:
        return None
    xs = [row["left"], row["right"], row["right"], row["left"]]
    ys = [row["top"], row["top"], row["bottom"], row["bottom"]]
    lons, lats = transform(row["crs"], "EPSG:4326", xs, ys)
    ring = [[float(lon), float(lat)] for lon, lat in zip(lons, lats)]
    return [*ring, ring[0]]


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
    tmp = out / f".hits.geojson.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(to_geojson(rows), indent=1))
    tmp.replace(out / "hits.geojson")
    tmp = out / f".hits.csv.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out / "hits.csv")
