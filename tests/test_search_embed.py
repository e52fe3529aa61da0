"""``ssl-siam embed``: unit-norm float16 embeddings, georeferenced tile table, nodata skipping, resume, append and
the one-encoder rule, on a few 128² GeoTIFFs and PNGs with a random resnet18."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from ssl_siam.cli import main
from ssl_siam.search import embed as embed_module
from ssl_siam.search.embed import embed_archive, grid_starts
from ssl_siam.search.index import load_index

PIXEL = 0.001  # degrees
ENCODER = "random:resnet18"


def _write(path: Path, data: np.ndarray, west: float, nodata: float | None = None) -> None:
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=data.dtype, crs="EPSG:4326", transform=from_origin(west, 50.0, PIXEL, PIXEL),
                       nodata=nodata) as dst:
        dst.write(data)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.tif and b.tif (the same uint16 pixels at two places), c.tif (top half nodata), all 3 × 128²."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    pixels = rng.integers(100, 4000, size=(3, 128, 128)).astype(np.uint16)
    _write(root / "a.tif", pixels, 10.0)
    _write(root / "b.tif", pixels, 11.0)
    holed = rng.integers(100, 4000, size=(3, 128, 128)).astype(np.uint16)
    holed[:, :64] = 0
    _write(root / "c.tif", holed, 12.0, nodata=0)
    return root


def _embed(data: list[Path] | Path, out: Path, **kw: object) -> embed_module.EmbedResult:
    data = data if isinstance(data, list) else [data]
    return embed_archive(ENCODER, data, out, tile=64, device="cpu", workers=0, batch_size=4, **kw)


def test_grid_starts_cover_the_edge() -> None:
    assert grid_starts(128, 64, 64) == [0, 64]
    assert grid_starts(100, 64, 64) == [0, 36]
    assert grid_starts(128, 64, 32) == [0, 32, 64]
    assert grid_starts(40, 64, 64) == [0]


def test_embed_writes_unit_float16_and_the_georeferenced_table(archive: Path, tmp_path: Path) -> None:
    result = _embed(archive, tmp_path / "index")
    state, emb, table = load_index(tmp_path / "index")
    assert (result.new_scenes, result.new_tiles, result.new_skipped) == (3, 10, 2)  # c.tif: its top row is nodata
    assert emb.dtype == np.float16 and emb.shape == (10, 512) and state.dim == 512
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == list(range(10))
    assert [Path(r["scene"]).name for r in rows] == ["a.tif"] * 4 + ["b.tif"] * 4 + ["c.tif"] * 2
    assert {(r["row"], r["col"]) for r in rows if r["scene"].endswith("c.tif")} == {(64, 0), (64, 64)}
    tile = next(r for r in rows if r["scene"].endswith("a.tif") and (r["row"], r["col"]) == (64, 0))
    assert tile["crs"] == "EPSG:4326" and tile["size"] == 64
    expected = (10.0, 50.0 - 128 * PIXEL, 10.0 + 64 * PIXEL, 50.0 - 64 * PIXEL)  # left, bottom, right, top
    np.testing.assert_allclose([tile[k] for k in ("left", "bottom", "right", "top")], expected, atol=1e-9)
    np.testing.assert_allclose([tile[k] for k in ("lon_min", "lat_min", "lon_max", "lat_max")], expected, atol=1e-9)
    np.testing.assert_array_equal(emb[:4], emb[4:8])  # the same pixels at another place: the same vectors
    _embed(archive, tmp_path / "again")  # normalised with the same archive statistics
    np.testing.assert_array_equal(load_index(tmp_path / "again")[1], emb)  # embedded twice: identical


def test_png_tiles_have_no_footprint(tile_dir: Path, tmp_path: Path) -> None:
    _embed([tile_dir / "tile_0.png"], tmp_path / "index", stride=16)
    _, emb, table = load_index(tmp_path / "index")
    rows = table.to_pylist()
    assert len(rows) == len(emb) == 9  # 96 px, tile 64, stride 16: rows and columns at 0, 16, 32
    assert all(r["crs"] is None and r["lon_min"] is None and r["left"] is None for r in rows)


def test_a_killed_run_resumes_to_the_same_index(archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    _embed(archive, tmp_path / "whole", chunk_size=3)
    real = embed_module.write_part

    def crash_after_first(index: Path, part: int, *args: object) -> None:
        if part == 1:
            raise RuntimeError("killed")
        real(index, part, *args)

    monkeypatch.setattr(embed_module, "write_part", crash_after_first)
    with pytest.raises(RuntimeError, match="killed"):
        _embed(archive, tmp_path / "resumed", chunk_size=3)
    assert load_index(tmp_path / "resumed")[0].partial is not None  # a.tif cut after 3 of its 4 windows
    monkeypatch.setattr(embed_module, "write_part", real)
    _embed(archive, tmp_path / "resumed", chunk_size=3)
    whole, resumed = load_index(tmp_path / "whole"), load_index(tmp_path / "resumed")
    assert resumed[0].to_json() == whole[0].to_json()
    np.testing.assert_array_equal(resumed[1], whole[1])
    assert resumed[2].equals(whole[2])


def test_append_adds_only_new_scenes(archive: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    _embed([archive / "a.tif", archive / "c.tif"], index)
    result = _embed(archive, index)
    assert (result.new_scenes, result.new_tiles) == (1, 4)
    state, emb, table = load_index(index)
    assert state.tiles == len(emb) == 10 and state.skipped_nodata == 2
    assert sorted(Path(s).name for s in table.column("scene").unique().to_pylist()) == ["a.tif", "b.tif", "c.tif"]
    assert _embed(archive, index).new_tiles == 0


def test_another_encoder_is_a_one_line_error(archive: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "index"
    _embed(archive / "a.tif", index)
    shutil.copytree(index, tmp_path / "before")
    code = main(["embed", "--encoder", "random:resnet34", "--data", str(archive / "b.tif"), "--out", str(index),
                 "--device", "cpu", "--workers", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "random:resnet34" in err and ENCODER in err
    assert (index / "index.json").read_text() == (tmp_path / "before" / "index.json").read_text()


def test_an_exported_encoder_brings_its_normalization(tmp_path: Path) -> None:
    """A ``ssl-siam pretrain`` export: its band statistics and weights hash go into the index; a UTM scene whose
    west edge is zone 33's central meridian (easting 500 000 m) has lon_min 15°."""
    from ssl_siam.data.stats import BandStats
    from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder

    stats = BandStats(low=[0.0] * 4, high=[5000.0] * 4, mean=[0.4] * 4, std=[0.2] * 4)
    run = tmp_path / "run"
    export_encoder(create_encoder("resnet18", 4), run, EncoderMeta("resnet18", 4, normalization=stats))
    data = np.random.default_rng(1).integers(0, 4000, size=(4, 64, 64)).astype(np.uint16)
    with rasterio.open(tmp_path / "utm.tif", "w", driver="GTiff", height=64, width=64, count=4, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000.0, 5500000.0, 10.0, 10.0)) as dst:
        dst.write(data)
    embed_archive(str(run), [tmp_path / "utm.tif"], tmp_path / "index", tile=64, device="cpu", workers=0)
    state, _, table = load_index(tmp_path / "index")
    assert state.normalization == {"low": stats.low, "high": stats.high, "mean": stats.mean, "std": stats.std}
    assert state.encoder["kind"] == "export" and len(state.encoder["weights_sha256"]) == 64
    row = table.to_pylist()[0]
    assert row["crs"] == "EPSG:32633" and (row["left"], row["top"]) == (500000.0, 5500000.0)
    assert row["lon_min"] == pytest.approx(15.0, abs=1e-9) and 49.6 < row["lat_min"] < row["lat_max"] < 49.7
    three = tmp_path / "rgb.tif"
    _write(three, data[:3], 10.0)
    code = main(["embed", "--encoder", str(run), "--data", str(three), "--out", str(tmp_path / "other"),
                 "--device", "cpu", "--workers", "0"])
    assert code == 2
