"""NaN is nodata in every float raster: band statistics, pretraining and prediction never see it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import torch
from conftest import texture, tiny_overrides
from PIL import Image
from torch import nn

from ssl_siam.change.predict import predict_pair
from ssl_siam.change.tasks import change_task
from ssl_siam.change.training import FinetuneTask
from ssl_siam.cli import main
from ssl_siam.data.stats import BandStats, compute_stats
from ssl_siam.data.tiles import TileDataset
from ssl_siam.train.checkpoint import load_checkpoint
from ssl_siam.train.runtime import Runtime


def float_scene(path: Path, seed: int, holes: bool = True, size: int = 96) -> Path:
    """A 3-band float32 GeoTIFF (no nodata tag) with NaN holes: a 10×10 block and a few scattered pixels."""
    data = (texture(np.random.default_rng(seed), size, 3) * 1000).astype(np.float32)
    if holes:
        data[:, 30:40, 50:60] = np.nan
        data[1, 5, 7] = data[0, 70, 20] = np.nan
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="float32",
                       crs="EPSG:32636", transform=rasterio.Affine(1, 0, 5e5, 0, -1, 4e6)) as dst:
        dst.write(data)
    return path


def test_tiles_and_stats_count_nan_as_nodata(tmp_path: Path) -> None:
    scene = float_scene(tmp_path / "s.tif", 0)
    tiles = TileDataset(scene, 48, sampling="grid")
    for i in range(len(tiles)):
        tile, valid = tiles.read_tile(i)
        assert torch.isfinite(tile).all()  # filled: what reaches the model is finite
    tile, valid = tiles.read_tile(1)  # the window holding the 10×10 hole (rows 0-47, cols 48-95)
    assert (~valid).sum() == 100 and not valid[30:40, 2:12].any()
    stats = compute_stats(tiles, num_samples=4)
    assert all(np.isfinite(v).all() for v in (stats.low, stats.high, stats.mean, stats.std))
    with rasterio.open(scene) as src:
        values = src.read()
    assert stats.high[0] <= np.nanmax(values[0]) and stats.low[0] >= np.nanmin(values[0])
    out = tmp_path / "stats.json"
    assert main(["stats", str(scene), "--tile-size", "48", "--samples", "4", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert all(np.isfinite(v).all() for v in saved.values())


def test_random_windows_redraw_on_nan(tmp_path: Path) -> None:
    scene = float_scene(tmp_path / "s.tif", 1)
    tiles = TileDataset(scene, 16, max_nodata_fraction=0.0, seed=3)
    hits = 0
    for i in range(40):  # max_nodata_fraction=0: a window touching a NaN is drawn again
        _, valid = tiles.read_tile(i)
        assert valid.all() and torch.isfinite(tiles[i]).all()
        _, first = TileDataset(scene, 16, max_nodata_fraction=0.0, max_redraws=0, seed=3).read_tile(i)
        hits += not first.all()
    assert hits >= 3  # without re-draws some of these windows do hold NaN pixels


def test_pretraining_on_nan_scenes_trains_every_step(tmp_path: Path) -> None:
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i in range(3):
        float_scene(folder / f"s{i}.tif", i)
    run = tmp_path / "run"
    assert main(["pretrain", *tiny_overrides("simsiam", folder, run, steps=4)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["bad_steps"] == 0 and all(np.isfinite(h["loss"]) for h in metrics["history"])
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4


class PixelModel(nn.Module):
    """Per-pixel logits (receptive field 1 px): a hole can only change its own pixels."""

    output_stride = 32

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(6, 5, 1)

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": 3 * self.conv(torch.cat([pre, post], dim=1))}


def test_a_nan_hole_in_predict_changes_nothing_outside_it(tmp_path: Path) -> None:
    stats = BandStats([0.0] * 3, [1000.0] * 3, [0.5] * 3, [0.25] * 3)
    task = FinetuneTask(PixelModel(), nn.Identity(), stats, stats).eval()
    maps = {}
    for name, holes in (("clean", False), ("holes", True)):
        pre = float_scene(tmp_path / f"{name}_pre_disaster.tif", 5, holes=holes)
        post = float_scene(tmp_path / f"{name}_post_disaster.tif", 6, holes=False)
        predict_pair(task, change_task("damage"), Runtime.create("cpu"), pre, post, tmp_path / name, bands=None,
                     post_bands=None,
                     window=64, overlap=0.25, tta=False, batch_size=2)
        with rasterio.open(tmp_path / name / f"{name}_damage.tif") as src:
            maps[name] = (np.asarray(Image.open(tmp_path / name / f"{name}_damage_prediction.png")), src.read(1),
                          src.nodata)
    hole = np.zeros((96, 96), bool)
    hole[30:40, 50:60] = hole[5, 7] = hole[70, 20] = True
    clean_png, _, _ = maps["clean"]
    png, tif, nodata = maps["holes"]
    np.testing.assert_array_equal(png[~hole], clean_png[~hole])  # neighbours unspoilt (receptive field 1 px)
    assert (png[hole] == 0).all() and nodata == 255 and (tif[hole] == 255).all()
    assert clean_png[hole].any()  # the clean scene has buildings there: the hole really removed them
    np.testing.assert_array_equal(tif[~hole], clean_png[~hole])
