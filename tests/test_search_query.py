"""``ssl-siam search`` on a synthetic index (no encoder): the tile containing a lon/lat, in EPSG:4326 and in UTM;
positives and negatives rank a planted cluster first; GeoJSON / CSV outputs, null geometry without a CRS."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rasterio.warp import transform, transform_bounds

from ssl_siam.core.errors import UserError
from ssl_siam.search.index import IndexState, load_index, write_part, write_state
from ssl_siam.search.query import tile_at
from ssl_siam.search.run import run_search

N, D, COLS = 200, 16, 20  # 10 rows of 20 tiles: rows 0-4 in EPSG:4326, 5-8 in UTM 33N, 9 without a CRS
CLUSTER = range(50, 60)
DEG, METRES = 0.032, 320.0  # tile side


def _row(i: int) -> dict[str, object]:
    r, c = divmod(i, COLS)
    if r < 5:
        crs, box = "EPSG:4326", (10 + c * DEG, 50 - (r + 1) * DEG, 10 + (c + 1) * DEG, 50 - r * DEG)
        lonlat = box
    elif r < 9:
        crs = "EPSG:32633"
        box = (500000 + c * METRES, 5500000 - (r - 4) * METRES, 500000 + (c + 1) * METRES, 5500000 - (r - 5) * METRES)
        lonlat = transform_bounds(crs, "EPSG:4326", *box)
    else:
        crs, box, lonlat = None, (None,) * 4, (None,) * 4
    return {"id": i, "scene": f"/nowhere/scene{min(r // 5, 1) + (r == 9)}.tif", "row": r * 32, "col": c * 32,
            "size": 32, "crs": crs, "left": box[0], "bottom": box[1], "right": box[2], "top": box[3],
            "lon_min": lonlat[0], "lat_min": lonlat[1], "lon_max": lonlat[2], "lat_max": lonlat[3],
            "nodata_fraction": 0.0}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 random unit vectors, ids 50-59 a tight cluster around one direction."""
    root = tmp_path_factory.mktemp("index")
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((N, D))
    emb[list(CLUSTER)] = rng.standard_normal(D) * 3 + 0.3 * rng.standard_normal((len(CLUSTER), D))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = [_row(i) for i in range(N)]
    write_part(root, 0, emb.astype(np.float16), {k: [r[k] for r in rows] for k in rows[0]})
    encoder = {"spec": "random:resnet18", "kind": "random", "backbone": "resnet18", "in_chans": 3,
               "objective": None, "step": None, "weights_sha256": None, "seed": 0}
    tiling = {"tile": 32, "stride": 32, "bands": None, "band_names": None, "max_nodata": 0.5}
    norm = {"low": [0.0] * 3, "high": [1.0] * 3, "mean": [0.5] * 3, "std": [0.2] * 3}
    write_state(root, IndexState(encoder, tiling, norm, D, ["/nowhere/scene0.tif"], None, 1, N, 0))
    return root


def test_a_lonlat_picks_the_tile_that_contains_it(index: Path) -> None:
    table = load_index(index)[2]
    rng = np.random.default_rng(1)
    for i in [0, 7, 99, 100, 133, 179]:  # EPSG:4326 and UTM tiles
        row = _row(i)
        x = row["left"] + rng.uniform(0.05, 0.95) * (row["right"] - row["left"])
        y = row["bottom"] + rng.uniform(0.05, 0.95) * (row["top"] - row["bottom"])
        (lon,), (lat,) = transform(row["crs"], "EPSG:4326", [x], [y])
        assert tile_at(table, lon, lat) == i
    with pytest.raises(UserError, match=r"--lonlat 0.0,0.0: no indexed tile contains this point \(the index spans"):
        tile_at(table, 0.0, 0.0)


def test_positives_and_negatives_rank_the_planted_cluster_first(index: Path, tmp_path: Path) -> None:
    positives = [("--positive", str(i), None) for i in (50, 53, 57)]
    result = run_search(index, tmp_path / "a", positives, [("--negative", str(i), None) for i in (0, 120, 190)],
                        k=10)
    assert result.mode == "classifier" and (result.positives, result.negatives) == (3, 3)
    assert {h["id"] for h in result.hits} == set(CLUSTER)
    assert all(h["score"] > 0.5 for h in result.hits)
    background = run_search(index, tmp_path / "b", positives, k=10, background_size=50)  # no negatives given
    assert background.negatives == 50 and {h["id"] for h in background.hits} == set(CLUSTER)
    assert (tmp_path / "b" / "contact_sheet.png").stat().st_size > 0  # scenes missing: grey thumbnails


def test_hits_geojson_and_csv(index: Path, tmp_path: Path) -> None:
    result = run_search(index, tmp_path, [("--id", "185", "id")], k=N)
    assert result.mode == "similarity" and result.hits[0]["id"] == 185
    assert result.hits[0]["score"] == pytest.approx(1.0, abs=2e-3)
    collection = json.loads((tmp_path / "hits.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == N
    by_id = {f["properties"]["id"]: f for f in collection["features"]}
    assert [f["properties"]["rank"] for f in collection["features"]] == list(range(1, N + 1))
    assert by_id[185]["geometry"] is None  # row 9: no CRS
    ring = by_id[21]["geometry"]["coordinates"][0]  # EPSG:4326: the window's corners as they are, counterclockwise
    assert ring == [[10.032, 49.968], [10.032, 49.936], [10.064, 49.936], [10.064, 49.968], [10.032, 49.968]]
    assert by_id[21]["properties"]["window"] == {"row": 32, "col": 32, "size": 32}
    utm = by_id[100]["geometry"]["coordinates"][0]  # UTM: the corners taken to lon/lat, not the bounding box
    lons, lats = transform("EPSG:32633", "EPSG:4326", [500000.0, 500320.0], [5499680.0, 5499680.0])
    np.testing.assert_allclose([utm[1], utm[2]], np.array([lons, lats]).T, atol=1e-12)  # counterclockwise
    with open(tmp_path / "hits.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N and rows[0]["id"] == "185" and rows[0]["crs"] == "" and rows[0]["lon_min"] == ""
