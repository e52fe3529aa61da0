"""Temporal positives (``data.temporal``): the two views of a sample are the same window of two dates of one place,
on OSCD roots, xBD split folders and one GeoTIFF folder per date."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import TEST_DATA, tiny_overrides, write_oscd

from ssl_siam.cli import main
from ssl_siam.core.config import load_config
from ssl_siam.core.errors import DataError
from ssl_siam.data.sampling import IndexedDataset, seeded_generator
from ssl_siam.data.stats import BandStats, compute_stats
from ssl_siam.data.temporal import TemporalTileDataset, find_places
from ssl_siam.ssl.config import AugmentConfig, PretrainConfig
from ssl_siam.ssl.run import build_pretraining
from ssl_siam.ssl.views import ViewPipeline
from ssl_siam.train.runtime import Runtime

SCENES = {"a.tif": (40, 40), "sub/b.tif": (30, 50)}  # two places: relative path → (height, width)
STATS = BandStats([0.0] * 3, [4000.0] * 3, [0.5] * 3, [0.25] * 3)


def write_dates(root: Path, dates: int = 2, scenes: dict[str, tuple[int, int]] = SCENES) -> list[Path]:
    """``root/t<d>/<scene>``: 3-band uint16 GeoTIFFs whose pixels encode where they come from: band 0 = 1000 · date
    + place, band 1 = row, band 2 = column (every date of a place on the same grid)."""
    folders = []
    for date in range(1, dates + 1):
        for place, (name, (height, width)) in enumerate(scenes.items()):
            rows, cols = np.mgrid[0:height, 0:width]
            data = np.stack([np.full_like(rows, 1000 * date + place), rows, cols]).astype(np.uint16)
            path = root / f"t{date}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint16",
                               crs="EPSG:32631", transform=rasterio.Affine(10, 0, 500_000 + 1000 * place, 0, -10,
                                                                           5_000_000)) as dst:
                dst.write(data)
        folders.append(root / f"t{date}")
    return folders


def test_a_temporal_tile_is_one_window_on_two_dates(tmp_path: Path) -> None:
    roots = write_dates(tmp_path, dates=3)
    places = find_places([str(r) for r in roots])
    assert [tuple(p.relative_to(tmp_path).as_posix() for p in place) for place in places] == [
        ("t1/a.tif", "t2/a.tif", "t3/a.tif"), ("t1/sub/b.tif", "t2/sub/b.tif", "t3/sub/b.tif")]
    tiles = TemporalTileDataset(places, 16, samples_per_epoch=32, seed=3)
    pairs = set()
    for i in range(32):
        tile = tiles[i].numpy().astype(int)  # [2, 3, 16, 16]
        assert tile.shape == (2, 3, 16, 16)
        first, second = (tile[d, 0, 0, 0] // 1000 for d in (0, 1))
        assert first != second and (tile[:, 0] % 1000 == tile[0, 0, 0, 0] % 1000).all()  # two dates, one place
        np.testing.assert_array_equal(tile[0, 1:], tile[1, 1:])  # the same window
        row, col = tile[0, 1, 0, 0], tile[0, 2, 0, 0]
        np.testing.assert_array_equal(tile[0, 1:], np.mgrid[0:16, 0:16] + np.array([row, col])[:, None, None])
        pairs.add((first, second))
    assert len(pairs) >= 4 and {d for pair in pairs for d in pair} == {1, 2, 3}  # dates drawn per index, any order
    again = TemporalTileDataset(places, 16, samples_per_epoch=32, seed=3)
    assert torch.equal(again[5], tiles[5]) and torch.equal(again[40], tiles[40])  # a pure function of (seed, index)
    two = TemporalTileDataset(find_places([str(r) for r in roots[:2]]), 16, sampling="grid")
    assert len(two) == 9 + 8 and two[0].shape == (2, 3, 16, 16)
    stats = compute_stats(two, num_samples=8)  # over both dates' pixels
    assert stats.low[0] < 1100 and stats.high[0] > 2000


def test_views_come_from_the_two_dates(tmp_path: Path) -> None:
    """Without augmentation the views are the two dates' window exactly (global k and DINO's local views from date
    k mod 2); with it each view is still drawn from its own date's tile."""
    tiles = TemporalTileDataset(find_places([str(r) for r in write_dates(tmp_path)]), 16, seed=1,
                                samples_per_epoch=8)
    raw = torch.stack([tiles[i] for i in range(8)])  # [8, 2, 3, 16, 16]
    still = AugmentConfig(global_size=16, global_scale=(1.0, 1.0), local_size=16, local_scale=(1.0, 1.0), n_local=2,
                          flip_p=0.0, rot90=False, jitter_p=0.0, grayscale_p=0.0, blur_p=[0.0], local_blur_p=0.0)
    views = ViewPipeline(STATS, still, 16)(raw, torch.Generator().manual_seed(0))
    dates = [STATS.standardize(STATS.to_unit(raw[:, d])) for d in (0, 1)]
    assert len(views) == 4
    for k, view in enumerate(views):
        torch.testing.assert_close(view, dates[k % 2], atol=1e-5, rtol=0)
    moving = AugmentConfig(global_size=16, local_size=8, n_local=2, jitter_p=0.0, grayscale_p=0.0)
    views = ViewPipeline(STATS, moving, 16)(raw, torch.Generator().manual_seed(0))
    for k, view in enumerate(views):  # band 0 (date, place) is constant over a tile, whatever the crop / flip / blur
        torch.testing.assert_close(view[:, 0], dates[k % 2][:, 0, :1, :1].expand_as(view[:, 0]), atol=1e-4, rtol=0)
    assert not torch.allclose(views[0][:, 1:], dates[0][:, 1:])  # ... and the views were augmented
    one_date = raw[:, 0]
    plain = ViewPipeline(STATS, moving, 16)(one_date, torch.Generator().manual_seed(2))
    stacked = ViewPipeline(STATS, moving, 16)(one_date[:, None], torch.Generator().manual_seed(2))
    for a, b in zip(plain, stacked):  # [B, 1, C, H, W] is [B, C, H, W]
        assert torch.equal(a, b)


def test_worker_and_device_views_agree(tmp_path: Path) -> None:
    roots = write_dates(tmp_path / "dates")
    over = tiny_overrides("simsiam", f"[{roots[0]},{roots[1]}]", tmp_path / "w") + [
        "data.temporal=true", "data.tile_size=32", "augment.on_device=false"]
    cfg = load_config(PretrainConfig, None, over)
    built = build_pretraining(cfg, tmp_path, Runtime.create("cpu"))
    built.loader.sampler.set_epoch(0)
    index, worker_views = next(iter(built.loader))
    tiles = torch.stack([IndexedDataset(built.dataset)[int(i)][1] for i in index])
    assert tiles.shape == (4, 2, 3, 32, 32)
    device_views = built.task.pipeline(tiles, seeded_generator(tiles.device, cfg.train.seed, int(index[0])))
    for a, b in zip(worker_views, device_views):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("objective,layout", [("simsiam", "oscd"), ("byol", "dates"), ("dino", "xbd")])
def test_pretrain_with_temporal_positives(tmp_path: Path, objective: str, layout: str) -> None:
    extra = ["augment.n_local=2"] if objective == "dino" else []
    if layout == "oscd":  # dubai's imgs_2 is smaller: both dates go onto imgs_1's grid
        root, bands = str(write_oscd(tmp_path / "oscd", ["paris"], ["dubai"], size=40, shrink=("dubai",))), 13
        extra.append("data.tile_size=32")
    elif layout == "dates":
        root, bands = "[{},{}]".format(*write_dates(tmp_path / "dates")), 3
        extra.append("data.tile_size=32")
    else:
        root, bands = str(TEST_DATA / "xbd"), 3
    run = tmp_path / "run"
    assert main(["pretrain", *tiny_overrides(objective, root, run, steps=2), "data.temporal=true", *extra]) == 0
    assert json.loads((run / "metrics.json").read_text())["step"] == 2
    assert json.loads((run / "encoder.json").read_text())["in_chans"] == bands
    assert len(BandStats.load(run / "stats.json").mean) == bands


def test_a_mismatched_date_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roots = write_dates(tmp_path / "dates")
    (roots[1] / "sub" / "b.tif").unlink()
    other = write_dates(tmp_path / "other", scenes={"a.tif": (40, 40), "sub/b.tif": (30, 48)})[1]
    for second, expected in ((roots[1], f"{roots[1] / 'sub' / 'b.tif'}: missing"),
                             (other, f"{other / 'sub' / 'b.tif'}: size (30, 48) differs")):
        over = tiny_overrides("simsiam", f"[{roots[0]},{second}]", tmp_path / "run")
        assert main(["pretrain", *over, "data.temporal=true", "data.tile_size=32"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    with pytest.raises(DataError, match="one date"):
        find_places([str(roots[0])])
    with pytest.raises(DataError, match="band_names"):
        find_places([str(r) for r in roots], band_names=["B02"])
