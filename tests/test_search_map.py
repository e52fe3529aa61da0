"""The map panels of a contact sheet: a georeferenced scene's quicklook with the hits' windows outlined where the
tiles are (a bright tile in a dark UTM scene, read 4× downsampled), lon/lat ticks from the scene's corners, the map
beside the thumbnails in the PNG, and no map for tiles without a CRS."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import rasterio
from matplotlib.patches import Rectangle
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import transform

from ssl_siam.search import scene_map
from ssl_siam.search.embed import embed_archive
from ssl_siam.search.index import load_index
from ssl_siam.search.run import run_search
from ssl_siam.search.sheet import TileReader

TILE, ROW, COL = 32, 64, 96  # the bright tile's window
WEST, NORTH = 500000.0, 5500000.0


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scene.tif: 3 × 256 × 192 uint16 in UTM 33N, dark but for one bright 32² tile at row 64, col 96."""
    root = tmp_path_factory.mktemp("map")
    pixels = np.random.default_rng(0).integers(100, 200, (3, 256, 192)).astype(np.uint16)
    pixels[:, ROW:ROW + TILE, COL:COL + TILE] = 4000
    with rasterio.open(root / "scene.tif", "w", driver="GTiff", height=256, width=192, count=3, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(WEST, NORTH, 10.0, 10.0)) as dst:
        dst.write(pixels)
    embed_archive("random:resnet18", [root / "scene.tif"], root / "index", tile=TILE, device="cpu", workers=0)
    return root / "index"


def _bright_id(index: Path) -> int:
    rows = load_index(index)[2].to_pylist()
    return next(r["id"] for r in rows if (r["row"], r["col"]) == (ROW, COL))


def test_outlines_land_on_their_tiles_in_the_quicklook(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scene_map, "MAX_SIDE", 64)  # 256 × 192 read as 64 × 48
    state, _, table = load_index(index)
    rows = table.to_pylist()
    bright = _bright_id(index)
    hits = [{"rank": rank, **rows[i]} for rank, i in enumerate([bright, 0, 47], 1)]
    (panel,) = scene_map.map_panels(hits, [("+", rows[bright])], TileReader(state), (0, 1, 2), count=2)
    assert panel.rgb.shape == (64, 48, 3) and panel.scale == (4.0, 4.0) and panel.crs == "EPSG:32633"
    lit = np.argwhere(panel.rgb[..., 0] > 128)  # the bright tile in the quicklook: rows 16..23, cols 24..31
    (top, left), (bottom, right) = lit.min(axis=0), lit.max(axis=0)
    assert (top, left, bottom, right) == (16, 24, 23, 31)
    expected = (left - 0.5, top - 0.5, right - left + 1.0, bottom - top + 1.0)  # its pixel edges as imshow draws
    assert [panel.box(o) for o in panel.outlines if o.label in ("1", "+")] == [expected, expected]
    assert panel.box(next(o for o in panel.outlines if o.label == "3")) == (39.5, 55.5, 8.0, 8.0)  # row 224, col 160
    fig, ax = plt.subplots()
    scene_map.draw_map(ax, panel)
    drawn = {(r.get_x(), r.get_y(), r.get_width(), r.get_height()) for r in ax.patches if isinstance(r, Rectangle)}
    assert expected in drawn and len(drawn) == 3  # hits 1, 2, 3; the example on hit 1
    (west,), (south,) = transform("EPSG:32633", "EPSG:4326", [WEST], [NORTH - 2560.0])
    assert ax.get_xticklabels()[0].get_text() == f"{west:.3f}°"
    assert ax.get_yticklabels()[-1].get_text() == f"{south:.3f}°"
    plt.close(fig)


def test_the_sheet_draws_the_map_beside_the_thumbnails(index: Path, tmp_path: Path) -> None:
    query = [("--id", str(_bright_id(index)), "id")]
    result = run_search(index, tmp_path / "map", query, k=4)
    run_search(index, tmp_path / "plain", query, k=4, map_scenes=0)
    assert result.hits[0]["id"] == _bright_id(index)
    with Image.open(tmp_path / "map" / "contact_sheet.png") as with_map, \
            Image.open(tmp_path / "plain" / "contact_sheet.png") as plain:
        assert with_map.size[0] >= plain.size[0] + 400  # a 5-inch map column at 100 dpi


def test_tiles_without_crs_get_no_map(tile_dir: Path, tmp_path: Path) -> None:
    embed_archive("random:resnet18", [tile_dir / "tile_0.png"], tmp_path / "index", tile=64, device="cpu",
                  workers=0)
    state, _, table = load_index(tmp_path / "index")
    hits = [{"rank": 1, **table.to_pylist()[0]}]
    assert scene_map.map_panels(hits, [], TileReader(state), (0, 1, 2)) == []
