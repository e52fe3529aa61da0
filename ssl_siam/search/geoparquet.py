"""GeoParquet for the tile table: each tile's footprint as a WKB polygon in lon/lat and the ``geo`` file metadata
(GeoParquet 1.1), so GeoPandas, GDAL / QGIS and DuckDB open ``tiles/part-*.parquet`` as a layer.

The footprint is the window's four CRS corners (the table's ``left`` / ``bottom`` / ``right`` / ``top``) taken to
lon/lat, so a UTM tile is the slightly rotated quadrilateral it is; the ring starts at the top-left corner and runs
counterclockwise (RFC 7946's right-hand rule). No ``crs`` key is written: GeoParquet's default, OGC:CRS84 (WGS 84,
longitude first). Tiles without a CRS (PNG / JPEG) have a null geometry.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import shapely
from rasterio.warp import transform

GEOMETRY = "geometry"
GEO_VERSION = "1.1.0"


def footprints(table: pa.Table) -> pa.Array:
    """WKB polygons (binary, null without a CRS) of the rows of a table with columns ``crs``, ``left``, ``bottom``,
    ``right``, ``top``: one coordinate transform per CRS."""
    crs = np.array(table.column("crs").to_pylist(), dtype=object)
    box = {k: table.column(k).to_numpy(zero_copy_only=False).astype(np.float64)
           for k in ("left", "bottom", "right", "top")}
    xs = np.stack([box["left"], box["left"], box["right"], box["right"]], axis=1)  # [N, 4]: TL, BL, BR, TR
    ys = np.stack([box["top"], box["bottom"], box["bottom"], box["top"]], axis=1)
    polygons = np.full(len(crs), None, dtype=object)
    for name in {c for c in crs if c is not None}:
        rows = np.flatnonzero(crs == name)
        lons, lats = transform(name, "EPSG:4326", xs[rows].ravel().tolist(), ys[rows].ravel().tolist())
        rings = np.stack([np.reshape(lons, (-1, 4)), np.reshape(lats, (-1, 4))], axis=-1)  # [n, 4, 2]
        polygons[rows] = shapely.orient_polygons(shapely.polygons(rings))
    return pa.array(shapely.to_wkb(polygons), pa.binary())


def geo_metadata(geometry: pa.Array) -> dict[str, object]:
    """The ``geo`` file metadata of a part whose footprints are ``geometry`` (WKB); ``bbox`` covers its
    georeferenced tiles and is left out when it has none."""
    column: dict[str, object] = {"encoding": "WKB", "geometry_types": ["Polygon"], "orientation": "counterclockwise"}
    shapes = shapely.from_wkb(geometry.drop_null().to_numpy(zero_copy_only=False))
    if len(shapes):
        column["bbox"] = [float(v) for v in shapely.total_bounds(shapes)]
    return {"version": GEO_VERSION, "primary_column": GEOMETRY, "columns": {GEOMETRY: column}}


def to_geoparquet(table: pa.Table) -> pa.Table:
    """``table`` (the tile columns, no geometry) with its ``geometry`` column appended and the ``geo`` metadata."""
    geometry = footprints(table)
    table = table.append_column(pa.field(GEOMETRY, pa.binary()), geometry)
    return table.replace_schema_metadata({"geo": json.dumps(geo_metadata(geometry))})
