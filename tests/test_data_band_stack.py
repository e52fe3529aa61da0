"""Bands of different resolutions as one scene: a ``{band}`` pattern of Sentinel-2 files at 10 / 20 / 60 m, and an
OSCD root read as unlabeled 13-band scenes (both dates of every city) by pretraining and ``ssl-siam stats``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import OSCD_PIXEL, SHARED_DATA, oscd_value, write_oscd

from ssl_siam.cli import main
from ssl_siam.data.band_stack import Grid, stack_bands
from ssl_siam.data.tiles import TileDataset


def test_a_coarser_band_lands_where_its_transform_puts_it(tmp_path: Path) -> None:
    root = write_oscd(tmp_path / "oscd", ["paris"], [])
    folder = root / "Onera Satellite Change Detection dataset - Images" / "paris" / "imgs_1"
    files = {band: next(folder.glob(f"*{band}.tif")) for band in ("B02", "B05", "B09")}
    vrt = stack_bands(files, Grid.of(files["B02"]), tmp_path / "stacks", "paris")
    assert stack_bands(files, Grid.of(files["B02"]), tmp_path / "stacks", "paris") == vrt  # reused
    with rasterio.open(vrt) as src:
        assert (src.count, src.shape, src.descriptions) == (3, (48, 48), ("B02", "B05", "B09"))
        centres = (np.arange(48) + 0.5) * OSCD_PIXEL
        lon, lat = src.transform.c + centres[None, :], src.transform.f - centres[:, None]
        inner = (slice(9, -9), slice(9, -9))
        for i, band in ((1, 4), (2, 9)):  # B05 (20 m) and B09 (60 m), bilinear onto the 10 m grid
            np.testing.assert_allclose(src.read(i + 1)[inner], oscd_value(lon, lat, band, 1)[inner], atol=3)


def test_band_pattern_of_mixed_resolutions_and_an_oscd_root_are_tiles(tmp_path: Path) -> None:
    root = write_oscd(tmp_path / "oscd", ["paris", "rennes"], ["dubai"], shrink=("dubai",))
    pattern = str(root / "Onera Satellite Change Detection dataset - Images" / "*" / "imgs_1" / "*_{band}.tif")
    stacked = TileDataset(pattern, 16, band_names=["B02", "B05", "B09"])  # was "size 24x24, expected 48x48"
    assert len(stacked.files) == 3 and stacked.num_bands == 3 and stacked[0].shape == (3, 16, 16)
    oscd = TileDataset(root, 16)  # both dates of all three cities, 13 bands, previews and labels never read
    assert len(oscd.files) == 6 and oscd.num_bands == 13 and oscd.dtype == np.uint16
    assert {(s.height, s.width) for s in oscd.files} == {(48, 48), (45, 45)}  # dubai's imgs_2 on its own grid
    rgb = TileDataset(root, 16, band_names=["B04", "B03", "B02"])
    assert rgb.num_bands == 3
    out = tmp_path / "stats.json"
    assert main(["stats", str(root), "--band-names", "B04", "B03", "B02", "--tile-size", "16", "--samples", "8",
                 "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["mean"]) == 3


@pytest.mark.skipif(not (SHARED_DATA / "oscd").is_dir(), reason="../shared/data/oscd is absent (a fresh clone)")
def test_the_real_oscd_root_is_48_scenes_of_13_bands() -> None:
    tiles = TileDataset(SHARED_DATA / "oscd", 64, seed=0)
    assert len(tiles.files) == 48 and tiles.num_bands == 13
    tile = tiles[0]  # [13, 64, 64] in the files' uint16
    assert tuple(tile.shape) == (13, 64, 64) and str(tile.dtype) == "torch.uint16" and tile.float().std() > 0
