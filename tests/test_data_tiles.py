"""TileDataset (windowed tile reading) and BandStats / compute_stats."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader
from rasterio.transform import Affine
from rasterio.windows import Window

from ssl_siam.core.errors import DataError
from ssl_siam.data.stats import BandStats, compute_stats
from ssl_siam.data.tiles import TileDataset

DATA = Path(__file__).parent / "data"
S2_BANDS = ["B02", "B03", "B04", "B08"]
BIG, BLOCK = 10_000, 256


def write_tif(path: Path, array: np.ndarray, nodata: float | None = None, **profile) -> Path:
    """Write a [C, H, W] array as a georeferenced GeoTIFF."""
    count, height, width = array.shape
    profile = (
        dict(
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype=array.dtype,
            crs="EPSG:32633",
            transform=Affine(10, 0, 500_000, 0, -10, 4_000_000),
            nodata=nodata,
        )
        | profile
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def block_value(row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Pixel value of the big synthetic scene: one constant per 256x256 block."""
    return np.asarray(row // BLOCK * 64 + col // BLOCK, dtype=np.uint16)


@pytest.fixture(scope="module")
def big_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 000 x 10 000 uint16 GeoTIFF (200 MB raw), tiled + deflate, written block by block (~0.4 s)."""
    path = tmp_path_factory.mktemp("big") / "big.tif"
    profile = dict(tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress="deflate")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=BIG,
        height=BIG,
        count=1,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(1, 0, 0, 0, -1, BIG),
        **profile,
    ) as dst:
        for row in range(0, BIG, BLOCK):
            for col in range(0, BIG, BLOCK):
                h, w = min(BLOCK, BIG - row), min(BLOCK, BIG - col)
                dst.write(np.full((1, h, w), block_value(row, col), np.uint16), window=Window(col, row, w, h))
    return path


def reset_peak_rss() -> str:
    """Reset the kernel's peak-RSS counter where allowed; return the /proc/self/status field to measure."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return "VmRSS"
    return "VmHWM"


def rss(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def test_reads_are_windowed_and_memory_stays_small(big_tif: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    windows: list[Window] = []
    original = DatasetReader.read

    def spy(self, *args, **kwargs):
        windows.append(kwargs.get("window"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DatasetReader, "read", spy)
    ds = TileDataset(big_tif, 256, samples_per_epoch=100)
    assert len(TileDataset(big_tif, 256, sampling="grid")) == 40 * 40
    field = reset_peak_rss()
    before = rss(field)
    for index in range(20):
        tile = ds[index]
        window = windows[-1]
        assert window is not None and (window.width, window.height) == (256, 256)
        rows, cols = np.mgrid[window.row_off : window.row_off + 256, window.col_off : window.col_off + 256]
        assert tile.shape == (1, 256, 256) and tile.dtype == torch.uint16
        np.testing.assert_array_equal(tile[0].numpy(), block_value(rows, cols))
    assert len(windows) == 20
    assert rss(field) - before < 40e6  # the file is 200 MB raw


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_band_selection_and_native_dtype(tmp_path: Path, dtype: str) -> None:
    array = (np.arange(5 * 40 * 50).reshape(5, 40, 50) % 120).astype(dtype) + np.arange(5, dtype=dtype)[
        :, None, None
    ]
    path = write_tif(tmp_path / "five.tif", array)
    ds = TileDataset(path, 40, bands=[4, 2, 4], sampling="grid")
    assert (ds.num_bands, ds.dtype, len(ds)) == (3, np.dtype(dtype), 2)
    first, last = ds[0], ds[1]
    assert first.dtype == getattr(torch, dtype)
    np.testing.assert_array_equal(first.numpy(), array[[3, 1, 3], :, :40])
    np.testing.assert_array_equal(last.numpy(), array[[3, 1, 3], :, 10:])  # last column shifted back inside
    np.testing.assert_array_equal(TileDataset(path, 40, sampling="grid")[0].numpy(), array[:, :, :40])


def half_nodata_scene(tmp_path: Path, nodata: float | None = 0) -> tuple[Path, np.ndarray]:
    array = np.full((2, 200, 200), 500, np.uint16)
    array[:, :, :100] = 0
    return write_tif(tmp_path / "half.tif", array, nodata=nodata), array


def nodata_fractions(ds: TileDataset, count: int = 40, zero_is_nodata: bool = True) -> np.ndarray:
    fractions = []
    for index in range(count):
        tile, valid = ds.read_tile(index)
        assert torch.equal(tile, ds[index])
        assert torch.equal(~valid, (tile == 0).all(dim=0) & zero_is_nodata)
        fractions.append(1.0 - valid.float().mean().item())
    return np.array(fractions)


def test_nodata_redraw(tmp_path: Path) -> None:
    path, _ = half_nodata_scene(tmp_path)
    assert nodata_fractions(TileDataset(path, 64, max_nodata_fraction=1.0)).max() > 0.25  # would happen
    assert nodata_fractions(TileDataset(path, 64, max_nodata_fraction=0.25)).max() <= 0.25
    assert nodata_fractions(TileDataset(path, 64, max_nodata_fraction=0.0)).max() == 0.0


def test_nodata_argument_overrides_file(tmp_path: Path) -> None:
    path, _ = half_nodata_scene(tmp_path, nodata=None)
    unknown = TileDataset(path, 64, max_nodata_fraction=0.0)  # the file declares no nodata
    assert nodata_fractions(unknown, 10, zero_is_nodata=False).max() == 0.0
    assert nodata_fractions(TileDataset(path, 64, max_nodata_fraction=0.0, nodata=0), 20).max() == 0.0
    ds = TileDataset(path, 64, sampling="grid", nodata=0)
    assert not ds.read_tile(0)[1].any() and ds.read_tile(len(ds) - 1)[1].all()


def test_all_nodata_scene_is_returned_after_max_redraws(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "empty.tif", np.zeros((1, 100, 100), np.uint16), nodata=0)
    tile, valid = TileDataset(path, 32, max_redraws=3).read_tile(7)
    assert tile.shape == (1, 32, 32) and not valid.any()


def test_alpha_mask_is_nodata_for_geotiff_but_not_for_png(tmp_path: Path) -> None:
    rgba = np.full((4, 128, 128), 200, np.uint8)
    rgba[3, :, :64] = 0  # transparent left half
    tif = write_tif(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")
    for bands in ([1, 2, 3], None):
        ds = TileDataset(tif, 64, bands=bands, sampling="grid")
        assert [ds.read_tile(i)[1].all().item() for i in range(4)] == [False, True, False, True]
    png = tmp_path / "rgba.png"
    Image.fromarray(rgba.transpose(1, 2, 0), mode="RGBA").save(png)
    assert all(TileDataset(png, 64, bands=[1, 2, 3], sampling="grid").read_tile(i)[1].all() for i in range(4))
    ds = TileDataset(png, 64, sampling="grid")  # alpha selected: transparent pixels are nodata
    assert [ds.read_tile(i)[1].all().item() for i in range(4)] == [False, True, False, True]


def test_grid_covers_every_pixel(tmp_path: Path) -> None:
    first = np.arange(300 * 250, dtype=np.float32).reshape(1, 300, 250)
    second = -np.arange(70 * 90, dtype=np.float32).reshape(1, 70, 90) - 1
    write_tif(tmp_path / "a.tif", first)
    write_tif(tmp_path / "b.tif", second)
    ds = TileDataset(tmp_path, 64, sampling="grid")
    assert len(ds) == 5 * 4 + 2 * 2
    seen = np.concatenate([ds[i].numpy().ravel() for i in range(len(ds))])
    assert set(seen.tolist()) == set(first.ravel().tolist()) | set(second.ravel().tolist())
    assert torch.equal(ds[len(ds) + 3], ds[3]) and torch.equal(ds[5 * len(ds)], ds[0])
    assert TileDataset(tmp_path, 64, samples_per_epoch=7).__len__() == 7
    assert len(TileDataset(tmp_path, 64)) == len(ds)


def test_scene_smaller_than_tile_is_padded(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "small.tif", np.full((1, 20, 30), 7, np.int16), nodata=-1)
    for sampling in ("grid", "random"):
        tile, valid = TileDataset(path, 32, sampling=sampling, max_nodata_fraction=1.0).read_tile(3)
        assert (tile[0, :20, :30] == 7).all() and (tile[0, 20:] == -1).all() and (tile[0, :, 30:] == -1).all()
        assert valid[:20, :30].all() and valid.sum() == 20 * 30


def test_determinism_and_pickling(tmp_path: Path) -> None:
    write_tif(tmp_path / "a.tif", np.random.default_rng(0).integers(0, 60000, (3, 300, 200), dtype=np.uint16))
    write_tif(tmp_path / "b.tif", np.random.default_rng(1).integers(0, 60000, (3, 100, 400), dtype=np.uint16))
    ds = TileDataset(str(tmp_path / "*.tif"), 48, seed=3)
    tiles = [ds[i] for i in (0, 1, 2, 10**9)]
    again = TileDataset(str(tmp_path / "*.tif"), 48, seed=3)
    assert all(torch.equal(a, again[i]) for a, i in zip(tiles, (0, 1, 2, 10**9), strict=True))
    assert not any(torch.equal(tiles[i], tiles[j]) for i in range(4) for j in range(i))
    assert not torch.equal(TileDataset(str(tmp_path / "*.tif"), 48, seed=4)[0], tiles[0])
    clone = pickle.loads(pickle.dumps(ds))  # open handles are not pickled
    assert all(torch.equal(clone[i], ds[i]) for i in (0, 1, 2))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    assert torch.equal(torch.cat(batches), torch.stack([ds[i] for i in range(len(ds))]))


def test_band_stack_from_single_band_files() -> None:
    ds = TileDataset(DATA / "geotiff/sentinel2_{band}.tif", 128, band_names=S2_BANDS, sampling="grid")
    assert (len(ds.files), len(ds), ds.num_bands, ds.dtype) == (1, 1, 4, np.dtype("uint16"))
    expected = []
    for band in S2_BANDS:
        with rasterio.open(DATA / f"geotiff/sentinel2_{band}.tif") as src:
            assert src.nodata == 0 and src.crs == "EPSG:32736"
            expected.append(src.read(1))
    np.testing.assert_array_equal(ds[0].numpy(), np.stack(expected))
    selected = TileDataset(DATA / "geotiff/sentinel2_{band}.tif", 64, band_names=S2_BANDS, bands=[4, 1])
    tile, valid = selected.read_tile(0)
    assert tile.shape == (2, 64, 64) and valid.all()


def test_band_stack_pattern_groups_scenes(tmp_path: Path) -> None:
    for scene in ("x", "y"):
        (tmp_path / scene).mkdir()
        for k, band in enumerate(["red", "nir"]):
            write_tif(tmp_path / scene / f"s2_{band}.tif", np.full((1, 50, 50), k + ord(scene), np.uint16))
    ds = TileDataset(str(tmp_path / "*" / "s2_{band}.tif"), 50, band_names=["red", "nir"], sampling="grid")
    assert [scene.paths[1].parent.name for scene in ds.files] == ["x", "y"]
    assert ds[0][:, 0, 0].tolist() == [ord("x"), ord("x") + 1] and ds[1][:, 0, 0].tolist() == [
        ord("y"),
        ord("y") + 1,
    ]
    with pytest.raises(DataError, match=r"s2_swir\.tif"):
        TileDataset(str(tmp_path / "*" / "s2_{band}.tif"), 50, band_names=["red", "swir"])


def test_png_reading_without_georeferencing_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        ds = TileDataset(DATA / "xbd/images", 128, sampling="grid")
        tiles = [ds[i] for i in range(len(ds))]
    assert (len(ds.files), len(ds), ds.num_bands, ds.dtype) == (2, 8, 3, np.dtype("uint8"))
    image = np.asarray(Image.open(DATA / "xbd/images/joplin-tornado_00000000_post_disaster.png"))
    np.testing.assert_array_equal(tiles[3].numpy(), image[128:, 128:].transpose(2, 0, 1))


def test_opencities_crop() -> None:
    ds = TileDataset(DATA / "geotiff/opencities_crop.tif", 256, bands=[1, 2, 3], sampling="grid")
    tile, valid = ds.read_tile(0)
    assert tile.shape == (3, 256, 256) and tile.dtype == torch.uint8 and valid.all()
    with rasterio.open(DATA / "geotiff/opencities_crop.tif") as src:
        assert src.count == 4 and src.crs == "EPSG:4326" and src.width == 256
        np.testing.assert_array_equal(tile.numpy(), src.read([1, 2, 3]))


def test_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing_folder"):
        TileDataset(tmp_path / "missing_folder", 64)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a raster")
    with pytest.raises(DataError, match="empty"):
        TileDataset(tmp_path / "empty", 64)
    with pytest.raises(DataError, match=r"nothing_\*"):
        TileDataset(str(tmp_path / "nothing_*.tif"), 64)
    good = write_tif(tmp_path / "good.tif", np.ones((3, 64, 64), np.uint8))
    with pytest.raises(DataError, match=r"good\.tif: band 5 out of range, expected 1\.\.3"):
        TileDataset(good, 32, bands=[1, 5])
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x17" * 500)
    with pytest.raises(DataError, match=r"corrupt\.tif"):
        TileDataset([good, corrupt], 32)
    with pytest.raises(DataError, match=r"two\.tif: has 2 bands, expected 3"):
        TileDataset([good, write_tif(tmp_path / "two.tif", np.ones((2, 64, 64), np.uint8))], 32)
    with pytest.raises(DataError, match=r"wide\.tif: has dtype uint16, expected uint8"):
        TileDataset([good, write_tif(tmp_path / "wide.tif", np.ones((3, 64, 64), np.uint16))], 32)


def test_truncated_file_raises_on_read(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (1, 512, 512), dtype=np.uint8)
    path = write_tif(
        tmp_path / "cut.tif", noise, tiled=True, blockxsize=128, blockysize=128, compress="deflate"
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    ds = TileDataset(path, 128, sampling="grid")
    with pytest.raises(DataError, match=r"cut\.tif"):
        [ds[i] for i in range(len(ds))]


def test_band_stats_to_unit_and_standardize() -> None:
    stats = BandStats(low=[10.0, 0.0], high=[20.0, 1000.0], mean=[0.5, 0.25], std=[0.25, 0.5])
    x = torch.tensor([[[5, 15]], [[500, 65535]]], dtype=torch.uint16).expand(3, 2, 1, 2)  # [B, C, H, W]
    unit = stats.to_unit(x)
    expected = torch.tensor([[[0.0, 0.5]], [[0.5, 1.0]]]).expand(3, 2, 1, 2)
    assert unit.dtype == torch.float32 and torch.allclose(unit, expected)
    assert torch.allclose(
        stats.to_unit(torch.tensor([[[12]], [[-4]]], dtype=torch.int16)), torch.tensor([[[0.2]], [[0.0]]])
    )
    standard = stats.standardize(unit)
    assert torch.allclose(standard, torch.tensor([[[-2.0, 0.0]], [[0.5, 1.5]]]).expand(3, 2, 1, 2))
    assert stats.num_bands == 2
    with pytest.raises(ValueError, match="2, H, W"):
        stats.to_unit(torch.zeros(3, 4, 4))


def test_band_stats_save_load(tmp_path: Path) -> None:
    stats = BandStats(low=[1.5, 2.0], high=[100.0, 3000.25], mean=[0.4, 0.6], std=[0.2, 0.1])
    stats.save(tmp_path / "stats.json")
    assert BandStats.load(tmp_path / "stats.json") == stats
    bad = {
        "missing.json": None,
        "not_json.json": "{low:",
        "no_std.json": json.dumps({"low": [0], "high": [1], "mean": [0]}),
        "lengths.json": json.dumps({"low": [0, 1], "high": [1], "mean": [0], "std": [1]}),
        "strings.json": json.dumps({"low": ["0"], "high": [1], "mean": [0], "std": [1]}),
        "zero_std.json": json.dumps({"low": [0], "high": [1], "mean": [0], "std": [0]}),
    }
    for name, text in bad.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=name):
            BandStats.load(tmp_path / name)


def test_compute_stats_13_band_uint16(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tops = 1000 * np.arange(1, 14)
    array = np.stack([rng.integers(1, top + 1, (256, 256)) for top in tops]).astype(np.uint16)
    array[:, :100, :] = 0  # 39 % nodata in every band
    path = write_tif(tmp_path / "s2.tif", array, nodata=0)
    ds = TileDataset(path, 64, max_nodata_fraction=1.0)
    stats = compute_stats(ds, num_samples=64, seed=1)
    assert stats.num_bands == 13
    np.testing.assert_allclose(stats.low, 0.01 * tops, rtol=0.1)
    np.testing.assert_allclose(stats.high, 0.99 * tops, rtol=0.01)
    np.testing.assert_allclose(stats.mean, 0.5, atol=0.02)
    np.testing.assert_allclose(stats.std, np.sqrt(0.98 / 3 + 0.01 - 0.25), atol=0.02)
    assert compute_stats(ds, num_samples=64, seed=1) == stats
    grid = compute_stats(TileDataset(path, 64, sampling="grid"), num_samples=1000)
    np.testing.assert_allclose(grid.low, 0.01 * tops, rtol=0.1)


def test_symlinked_sub_folders_are_followed_without_looping(tmp_path: Path) -> None:
    import os

    from ssl_siam.data.tiles import TileDataset

    root, other = tmp_path / "root", tmp_path / "elsewhere"
    (root / "a").mkdir(parents=True)
    other.mkdir()
    for folder, name in ((root / "a", "x.png"), (other, "y.png")):
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / name)
    os.symlink(other, root / "linked")  # a sub-folder that lives elsewhere (a mounted archive, say)
    os.symlink(root, root / "a" / "loop")  # and a link back up: must not be walked forever
    tiles = TileDataset(root, 32)
    assert sorted(p.name for s in tiles.files for p in s.paths) == ["x.png", "y.png"]
