"""The decoded-image cache: identical samples from source and cache, invalidation, atomic and concurrent builds,
``ssl-siam cache`` / ``--check``, and trainings reading through ``data.cache_dir``."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from ssl_siam.cli import main
from ssl_siam.data.cache import DecodedCache, build_entry, check_cache, decoded
from ssl_siam.data.pair_crops import PairCropDataset
from ssl_siam.data.tiles import TileDataset
from ssl_siam.data.xbd.pairs import find_pairs
from ssl_siam.data.xbd.targets import ensure_targets
from ssl_siam.tools.synthetic import make_xbd_split


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache") / "split"
    make_xbd_split(root, 3, size=160, seed=0)
    return root


def test_pair_crops_from_the_cache_are_bit_identical(split: Path, tmp_path: Path) -> None:
    records = ensure_targets(find_pairs(split)[0], tmp_path / "targets")
    cached = decoded(DecodedCache(tmp_path / "cache"), records, workers=2)
    assert all(r.pre_image.suffix == ".tif" and r.damage_target.suffix == ".tif" for r in cached)
    assert [r.id for r in cached] == [r.id for r in records]
    assert [r.post_image.stem for r in cached] == [r.post_image.stem for r in records]  # output names kept
    for train in (True, False):
        # building-centred crops: the PNG mask is decoded whole, the cached one found through its row index
        kwargs = dict(train=True, seed=5, misregistration_px=2, building_bias=1.0) if train else dict(train=False)
        crop = 96 if train else None
        a, b = PairCropDataset(records, crop, **kwargs), PairCropDataset(cached, crop, **kwargs)
        for i in range(9 if train else 3):  # every pair visited three times
            x, y = a[i], b[i]
            for key in ("pre", "post", "mask"):
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), (train, i, key)


def test_tiles_from_the_cache_are_bit_identical_and_keep_georeferencing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "tiles"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(folder / f"t{i}.png")
    rgba = rng.integers(0, 256, (80, 80, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0  # transparent rows: nodata only when the alpha band is selected, as for the PNG itself
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    with rasterio.open(folder / "geo.tif", "w", driver="GTiff", width=64, height=64, count=2, dtype="uint16",
                       crs="EPSG:32636", transform=rasterio.Affine(0.5, 0, 1e5, 0, -0.5, 3e6)) as dst:
        dst.write(rng.integers(1, 5000, (2, 64, 64), dtype=np.uint16))
    cache = DecodedCache(tmp_path / "cache", min_pixels=0)  # small tiles decoded too
    for bands in (None, [1, 2, 3], [1, 4]):
        sources = [folder / "alpha.png"] if bands == [1, 4] else [folder / f"t{i}.png" for i in range(3)]
        plain = TileDataset(sources, 48, bands=bands, seed=1)
        fast = TileDataset(sources, 48, bands=bands, seed=1, cache=cache)
        assert all(p.suffix == ".tif" for s in fast.files for p in s.paths)
        for i in range(8):
            (x, vx), (y, vy) = plain.read_tile(i), fast.read_tile(i)
            assert torch.equal(x, y) and torch.equal(vx, vy)
    assert cache.path(folder / "geo.tif") == folder / "geo.tif"  # read by window already: not copied
    entry = cache.path(folder / "t0.png")
    with rasterio.open(entry) as src:
        assert src.profile["tiled"] and src.compression is None and src.count == 3


def test_small_images_are_read_from_the_source(tmp_path: Path) -> None:
    """Decoding a small PNG whole costs about what opening its entry would: only larger ones are decoded."""
    rng = np.random.default_rng(0)
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(small)
    Image.fromarray(rng.integers(0, 256, (130, 130, 3), dtype=np.uint8)).save(large)
    cache = DecodedCache(tmp_path / "cache")
    assert cache.paths([small, large]) == [small, cache.entry(large)]
    assert list(cache.entries([small, large])) == [large]
    plain, fast = TileDataset([small, large], 48, seed=2), TileDataset([small, large], 48, seed=2, cache=cache)
    assert [s.paths[0].suffix for s in fast.files] == [".png", ".tif"]
    for i in range(6):
        assert torch.equal(plain[i], fast[i])
    assert check_cache(cache, [small, large]) == []


def test_a_changed_source_gets_a_new_entry(tmp_path: Path) -> None:
    source = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(source)
    cache = DecodedCache(tmp_path / "cache", min_pixels=0)
    first = cache.path(source)
    Image.fromarray(np.full((40, 40), 7, np.uint8)).save(source)
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    second = cache.path(source)
    assert second != first and second.name == first.name == "a.tif"
    with rasterio.open(second) as src:
        assert int(src.read(1).max()) == 7  # never the stale pixels
    assert check_cache(cache, [source]) == []


def test_a_killed_build_leaves_nothing_that_is_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "a.png"
    Image.fromarray(np.arange(1600, dtype=np.uint16).reshape(40, 40).astype(np.uint8)).save(source)
    cache = DecodedCache(tmp_path / "cache", min_pixels=0)
    entry = cache.entry(source)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rasterio.io.DatasetWriter, "update_tags", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.path(source)
    monkeypatch.undo()
    assert not entry.exists() and list(entry.parent.iterdir()) == []  # temporary file removed, no entry
    (entry.parent / f".{entry.stem}.99999.tmp.tif").write_bytes(b"half a file")  # a build killed with -9
    assert "no cache entry" in check_cache(cache, [source])[0]
    assert cache.path(source) == entry and check_cache(cache, [source]) == []


def _build(args: tuple[str, str]) -> str:
    return str(build_entry(Path(args[0]), Path(args[1])))


def test_concurrent_builders_of_one_entry(tmp_path: Path) -> None:
    source = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)).save(source)
    cache = DecodedCache(tmp_path / "cache")
    entry = cache.entry(source)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert set(pool.map(_build, [(str(source), str(entry))] * 4)) == {str(entry)}
    assert check_cache(cache, [source]) == [] and [p.name for p in entry.parent.iterdir()] == ["big.tif"]


def test_cache_cli_check_and_a_finetune_reading_through_it(split: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cache"
    assert main(["cache", str(split), "--out", str(out), "--workers", "2"]) == 0
    assert "12 files (12 decoded now" in capsys.readouterr().out  # 3 pairs: pre, post, damage and loc masks
    entries = sorted(out.glob("decoded/*/*/*.tif"))
    assert len(entries) == 12
    assert main(["cache", str(split), "--out", str(out), "--check"]) == 0
    run = tmp_path / "run"
    assert main(["finetune", f"data.root={split}", f"data.cache_dir={out}", "model.backbone=resnet18",
                 "data.crop_size=64", "train.batch_size=2", "train.max_steps=2", "train.device=cpu",
                 "data.num_workers=0", "train.progress=false", "data.stats_samples=4", "data.val_fraction=0",
                 "model.decoder_channels=[16,16,8,8,8]", f"run_dir={run}"]) == 0
    assert sorted(out.glob("decoded/*/*/*.tif")) == entries  # every entry reused, none rebuilt
    assert json.loads((run / "metrics.json").read_text())["step"] == 2
    with rasterio.open(entries[0], "r+") as dst:  # corrupt one entry
        dst.write(np.full((dst.count, dst.height, dst.width), 7, dst.dtypes[0]))
    capsys.readouterr()
    assert main(["cache", str(split), "--out", str(out), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 of 12 cache entries are missing or wrong" in err and "differ" in err


def test_parallel_mask_rasterisation_equals_serial_and_resumes(tmp_path: Path) -> None:
    make_xbd_split(tmp_path / "s", 16, size=64, seed=3)
    records = find_pairs(tmp_path / "s")[0]
    serial = ensure_targets(records, tmp_path / "a")
    parallel = ensure_targets(records, tmp_path / "b", workers=2)
    assert [r.id for r in parallel] == [r.id for r in records]
    for one, two in zip(serial, parallel):
        assert one.damage_target.read_bytes() == two.damage_target.read_bytes()
        assert one.loc_target.read_bytes() == two.loc_target.read_bytes()
    parallel[3].damage_target.unlink()  # an interrupted run: the rest is kept, the missing mask is made again
    kept = parallel[4].damage_target.stat().st_mtime_ns
    again = ensure_targets(records, tmp_path / "b", workers=2)
    assert again[3].damage_target.read_bytes() == serial[3].damage_target.read_bytes()
    assert again[4].damage_target.stat().st_mtime_ns == kept


def test_pretrain_reads_tiles_through_the_cache(split: Path, tmp_path: Path) -> None:
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["pretrain", "--config", "pretrain/simsiam_resnet50", f"data.root={split / 'images'}",
                 f"data.cache_dir={cache}", "model.backbone=resnet18", "data.tile_size=64", "augment.global_size=48",
                 "train.batch_size=4", "train.max_steps=2", "train.device=cpu", "data.num_workers=0",
                 "train.progress=false", "data.stats_samples=4", f"run_dir={run}"]) == 0
    entries = list(cache.glob("decoded/*/*/*.tif"))
    assert len(entries) == 6  # the 3 pairs' pre and post images
    headers = json.loads((cache / "headers.json").read_text())["files"]  # of the sources and of their entries
    sources = sorted((split / "images").glob("*.png"))
    assert sorted(headers) == sorted(map(str, entries + sources))
    assert json.loads((run / "metrics.json").read_text())["step"] == 2
