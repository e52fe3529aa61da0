"""``ssl-siam search`` end to end on a tiny UTM archive embedded with a random resnet18 at 32 px: a query tile that
is in the index comes back first, footprints agree with rasterio, lon/lat and id queries, contact sheets of
1 / 3 / 4 / 13 bands, and bad input as one-line errors (exit 2)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin, xy
from rasterio.warp import transform

from ssl_siam.cli import main
from ssl_siam.data.display import rgb_bands
from ssl_siam.search.embed import embed_archive
from ssl_siam.search.sheet import Thumb, stack_pattern, write_contact_sheet

TILE = 32


def _write(path: Path, data: np.ndarray, west: float | None) -> None:
    geo = {} if west is None else {"crs": "EPSG:32633", "transform": from_origin(west, 5500000.0, 10.0, 10.0)}
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=data.dtype, **geo) as dst:
        dst.write(data)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """a.tif, b.tif: 3 × 64 × 96 uint16 in UTM 33N (6 tiles each); q.tif: a's window at row 32, col 0 (no CRS)."""
    root = tmp_path_factory.mktemp("search")
    rng = np.random.default_rng(0)
    pixels = [rng.integers(100, 4000, size=(3, 64, 96)).astype(np.uint16) for _ in range(2)]
    _write(root / "a.tif", pixels[0], 500000.0)
    _write(root / "b.tif", pixels[1], 502000.0)
    _write(root / "q.tif", pixels[0][:, 32:64, 0:32], None)
    _write(root / "one_band.tif", pixels[0][:1, :32, :32], None)
    embed_archive("random:resnet18", [root / "a.tif", root / "b.tif"], root / "index", tile=TILE, device="cpu",
                  workers=0)
    return {"root": root, "index": root / "index"}


def _search(archive: dict[str, Path], out: Path, *args: str) -> int:
    return main(["search", "--index", str(archive["index"]), "--out", str(out), *args])


def test_a_query_tile_in_the_index_comes_back_first_with_its_footprint(archive: dict[str, Path], tmp_path: Path
                                                                       ) -> None:
    assert _search(archive, tmp_path, "--query", str(archive["root"] / "q.tif"), "--k", "5") == 0
    features = json.loads((tmp_path / "hits.geojson").read_text())["features"]
    first = features[0]["properties"]
    assert len(features) == 5 and first["rank"] == 1 and first["id"] == 3  # a.tif, row 32, col 0
    assert first["window"] == {"row": 32, "col": 0, "size": TILE} and first["scene"].endswith("a.tif")
    assert first["score"] == pytest.approx(1.0, abs=2e-3)
    with rasterio.open(archive["root"] / "a.tif") as src:  # the window's corners, by rasterio from the file
        xs, ys = xy(src.transform, [32, 64, 64, 32, 32], [0, 0, 32, 32, 0], offset="ul")  # rows, cols: ccw
        lons, lats = transform(src.crs, "EPSG:4326", xs, ys)
    np.testing.assert_allclose(features[0]["geometry"]["coordinates"][0], np.array([lons, lats]).T, atol=1e-9)
    with open(tmp_path / "hits.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5] and rows[0]["crs"] == "EPSG:32633"
    with Image.open(tmp_path / "contact_sheet.png") as sheet:
        assert sheet.size[0] > 100 and sheet.size[1] > 100


def test_lonlat_and_id_queries(archive: dict[str, Path], tmp_path: Path) -> None:
    with rasterio.open(archive["root"] / "b.tif") as src:  # the centre of b's tile at row 0, col 64: id 8
        (lon,), (lat,) = transform(src.crs, "EPSG:4326", *xy(src.transform, [16], [80]))
    assert _search(archive, tmp_path / "ll", "--lonlat", f"{lon},{lat}", "--k", "2") == 0
    assert json.loads((tmp_path / "ll" / "hits.geojson").read_text())["features"][0]["properties"]["id"] == 8
    assert _search(archive, tmp_path / "id", "--id", "10", "--k", "2") == 0
    assert json.loads((tmp_path / "id" / "hits.geojson").read_text())["features"][0]["properties"]["id"] == 10


@pytest.mark.parametrize(("args", "expected"), [
    (["--lonlat", "north"], "--lonlat north: expected LON,LAT"),
    (["--lonlat", "0,0"], "--lonlat 0.0,0.0: no indexed tile contains this point"),
    (["--id", "99"], "--id 99: no such tile id, expected 0..11"),
    (["--query", "missing.tif"], "--query missing.tif: no such file"),
    (["--positive", "3", "--negative", "nope.png"], "--negative nope.png: no such file"),
    (["--query", "ONE_BAND"], "expected one image of 3 bands (the index's), got 1 image(s) of 1"),
    (["--id", "1", "--encoder", "random:resnet18"], "--encoder random:resnet18: --index is searched with its own"),
    ([], "no query: expected --query FILE, --lonlat LON,LAT, --id N or --positive"),
])
def test_bad_input_is_a_one_line_error(archive: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       args: list[str], expected: str) -> None:
    args = [str(archive["root"] / "one_band.tif") if a == "ONE_BAND" else a for a in args]
    assert _search(archive, tmp_path, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_a_missing_index_and_eval_with_a_query_are_one_line_errors(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--index", str(tmp_path / "none"), "--id", "0", "--out", str(tmp_path / "o")]) == 2
    assert "none: no embedding index here" in capsys.readouterr().err
    assert main(["search", "--eval", str(tmp_path), "--id", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--eval evaluates --encoder(s) on a labelled folder" in capsys.readouterr().err


def test_contact_sheets_of_1_3_4_and_13_bands(tmp_path: Path) -> None:
    assert rgb_bands(1, None) == (0, 0, 0) and rgb_bands(3, None) == (0, 1, 2) and rgb_bands(4, None) == (0, 1, 2)
    assert rgb_bands(13, None) == (3, 2, 1)
    assert rgb_bands(4, ["B08", "B04", "B03", "B02"]) == (1, 2, 3)
    assert rgb_bands(3, ["Red", "Green", "Blue"]) == (0, 1, 2)
    assert stack_pattern("/d/x_B02.tif;/d/x_B03.tif;/d/x_B8A.tif") == ("/d/x_{band}.tif", ["B02", "B03", "B8A"])
    assert stack_pattern("/d/a.tif") == ("/d/a.tif", None)
    rng = np.random.default_rng(0)
    for bands in (1, 3, 4, 13):
        thumbs = [Thumb(f"#{i}", torch.from_numpy(rng.integers(0, 3000, (bands, 16, 16)).astype(np.uint16)))
                  for i in range(3)]
        write_contact_sheet(tmp_path / f"{bands}.png", thumbs[:1], [*thumbs[1:], Thumb("gone", None)],
                            rgb_bands(bands, None), f"{bands} bands")
        with Image.open(tmp_path / f"{bands}.png") as sheet:
            assert sheet.mode == "RGBA" and min(sheet.size) > 100


def test_band_stack_tiles_are_read_back_for_the_sheet(tmp_path: Path) -> None:
    """A {band} stack's scene key (its files joined by ';') opens again as a stack; its names pick the RGB bands."""
    from ssl_siam.search.index import load_index
    from ssl_siam.search.sheet import TileReader

    names = ["B02", "B03", "B04", "B08"]
    pixels = np.random.default_rng(2).integers(0, 3000, (4, 32, 32)).astype(np.uint16)
    for k, name in enumerate(names):
        _write(tmp_path / f"x_{name}.tif", pixels[k:k + 1], 500000.0)
    embed_archive("random:resnet18", [str(tmp_path / "x_{band}.tif")], tmp_path / "index", tile=TILE, device="cpu",
                  workers=0, band_names=names)
    state, _, table = load_index(tmp_path / "index")
    scene = table.column("scene")[0].as_py()
    reader = TileReader(state)
    np.testing.assert_array_equal(reader.read(scene, 0, 0).numpy(), pixels)
    assert reader.names(scene) == names and rgb_bands(4, reader.names(scene)) == (2, 1, 0)
    assert reader.read("/gone/a.tif", 0, 0) is None
