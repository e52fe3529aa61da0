"""The tile table is GeoParquet 1.1: the ``geo`` metadata, WKB footprints equal to rasterio's corners in lon/lat
(counterclockwise), null geometry without a CRS; an index written before GeoParquet (plain Parquet) still loads and
searches, and appending to it upgrades every part first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin, xy
from rasterio.warp import transform

from ssl_siam.search.embed import embed_archive
from ssl_siam.search.geoparquet import GEO_VERSION
from ssl_siam.search.index import WINDOW_SCHEMA, load_index, part_paths
from ssl_siam.search.run import run_search

TILE = 32


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.tif, b.tif: 3 × 64 × 64 uint8 in UTM 33N (4 tiles each), 2 km apart."""
    root = tmp_path_factory.mktemp("geoparquet")
    rng = np.random.default_rng(0)
    for name, west in (("a", 500000.0), ("b", 502000.0)):
        with rasterio.open(root / f"{name}.tif", "w", driver="GTiff", height=64, width=64, count=3, dtype="uint8",
                           crs="EPSG:32633", transform=from_origin(west, 5500000.0, 10.0, 10.0)) as dst:
            dst.write(rng.integers(0, 255, (3, 64, 64)).astype(np.uint8))
    return root


def _embed(data: list[Path], out: Path) -> int:
    return embed_archive("random:resnet18", data, out, tile=TILE, device="cpu", workers=0).upgraded_parts


def _geo(path: Path) -> dict[str, object]:
    return json.loads(pq.read_schema(path).metadata[b"geo"])


def test_parts_are_geoparquet_with_rasterio_footprints(archive: Path, tmp_path: Path) -> None:
    _embed([archive / "a.tif", archive / "b.tif"], tmp_path / "index")
    path = part_paths(tmp_path / "index", 0)[1]
    geo = _geo(path)
    column = geo["columns"]["geometry"]
    assert geo["version"] == GEO_VERSION and geo["primary_column"] == "geometry"
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert "crs" not in column  # the default, OGC:CRS84: lon/lat on WGS 84
    table = pq.read_table(path)
    assert table.schema.field("geometry").type == pa.binary()
    shapes = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(column["bbox"], shapely.total_bounds(shapes))
    row = table.to_pylist()[5]  # b.tif, row 0, col 32
    assert (Path(row["scene"]).name, row["row"], row["col"]) == ("b.tif", 0, 32)
    with rasterio.open(archive / "b.tif") as src:  # the window's corners, by rasterio from the file
        xs, ys = xy(src.transform, [0, 32, 32, 0, 0], [32, 32, 64, 64, 32], offset="ul")
        lons, lats = transform(src.crs, "EPSG:4326", xs, ys)
    polygon = shapes[5]
    np.testing.assert_allclose(shapely.get_coordinates(polygon.exterior), np.array([lons, lats]).T, atol=1e-12)
    assert polygon.exterior.is_ccw
    assert row["lon_min"] <= polygon.bounds[0] and polygon.bounds[2] <= row["lon_max"]


def test_geopandas_reads_a_part(archive: Path, tmp_path: Path) -> None:
    geopandas = pytest.importorskip("geopandas")
    _embed([archive / "a.tif"], tmp_path / "index")
    frame = geopandas.read_parquet(part_paths(tmp_path / "index", 0)[1])
    assert frame.crs.to_string() == "OGC:CRS84" and len(frame) == 4 and (frame.geometry.geom_type == "Polygon").all()


def test_tiles_without_crs_have_null_geometry_and_no_bbox(tile_dir: Path, tmp_path: Path) -> None:
    embed_archive("random:resnet18", [tile_dir / "tile_0.png"], tmp_path / "index", tile=64, device="cpu",
                  workers=0)
    path = part_paths(tmp_path / "index", 0)[1]
    assert pq.read_table(path).column("geometry").null_count == 4 and "bbox" not in _geo(path)["columns"]["geometry"]


def _make_old(index: Path, parts: int) -> None:
    """Rewrite an index's table parts as ssl-siam wrote them before GeoParquet: plain Parquet, no geometry."""
    for part in range(parts):
        path = part_paths(index, part)[1]
        pq.write_table(pq.read_table(path).select(WINDOW_SCHEMA.names).cast(WINDOW_SCHEMA), path)


def test_an_old_index_loads_searches_and_is_upgraded_on_append(archive: Path, tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _embed([archive / "a.tif"], old)
    _make_old(old, 1)
    assert b"geo" not in (pq.read_schema(part_paths(old, 0)[1]).metadata or {})
    _embed([archive / "a.tif"], new)
    assert load_index(old)[2].equals(load_index(new)[2])  # footprints computed from the CRS bounds on load
    run_search(old, tmp_path / "hits_old", [("--id", "2", "id")], k=3)
    run_search(new, tmp_path / "hits_new", [("--id", "2", "id")], k=3)
    assert (tmp_path / "hits_old" / "hits.geojson").read_text() == (tmp_path / "hits_new" / "hits.geojson").read_text()
    assert _embed([archive / "a.tif", archive / "b.tif"], old) == 1  # the old part rewritten, then b.tif appended
    assert _embed([archive / "a.tif", archive / "b.tif"], new) == 0
    for part in range(2):
        assert "geometry" in _geo(part_paths(old, part)[1])["columns"]
    assert load_index(old)[2].equals(load_index(new)[2])
    assert pq.read_table(part_paths(old, 0)[1]).equals(pq.read_table(part_paths(new, 0)[1]))
