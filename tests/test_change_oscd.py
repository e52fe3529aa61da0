"""OSCD in its exact published layout (a generated copy, tests/conftest.py ``write_oscd``): dates of different
sizes put on imgs_1's B02 grid, the 1 / 2 label GeoTIFFs and the PNG fallback, cities picked by name, and
finetune → predict → score on the raw root."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import OSCD_PIXEL, SHARED_DATA, oscd_value, write_oscd
from PIL import Image

from ssl_siam.change.change_outputs import change_features
from ssl_siam.change.datasets import detect_format, find_change_pairs
from ssl_siam.change.datasets.oscd import IMAGES, read_label
from ssl_siam.cli import main
from ssl_siam.core.errors import DataError

TRAIN = ["paris", "bordeaux", "hongkong", "pisa"]  # the recipe validates on bordeaux, hongkong, pisa
TINY = ["model.backbone=resnet18", "data.crop_size=32", "train.batch_size=2", "train.max_steps=2",
        "train.device=cpu", "data.num_workers=0", "train.progress=false", "data.stats_samples=4",
        "model.decoder_channels=[16,16,8,8,8]", "optim.warmup_steps=0", "data.val_window=64",
        "data.samples_per_epoch=4"]


@pytest.fixture(scope="module")
def oscd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_oscd(tmp_path_factory.mktemp("oscd"), TRAIN, ["dubai"], shrink=("hongkong", "dubai"),
                      png_only=("paris",))


def test_both_dates_on_the_grid_of_imgs_1(oscd_root: Path, tmp_path: Path) -> None:
    assert detect_format(oscd_root) == "oscd"
    records = find_change_pairs([oscd_root], "oscd", tmp_path)
    assert [r.id for r in records] == TRAIN  # train.txt's order; previews and dates.txt are not pairs
    hongkong = records[2]
    b02 = next((oscd_root / IMAGES / "hongkong" / "imgs_1").glob("*B02.tif"))
    with rasterio.open(b02) as ref, rasterio.open(hongkong.pre_image) as pre, \
            rasterio.open(hongkong.post_image) as post:
        assert post.shape == pre.shape == ref.shape == (48, 48)  # imgs_2 is 45² with coarser pixels
        assert post.transform == pre.transform == ref.transform and post.crs == ref.crs
        assert post.count == 13 and post.descriptions[8] == "B8A"
        b04 = next((oscd_root / IMAGES / "hongkong" / "imgs_1").glob("*B04.tif"))
        with rasterio.open(b04) as src:  # a 10 m band of the reference date passes unchanged
            np.testing.assert_array_equal(pre.read(4), src.read(1))
        centres = (np.arange(48) + 0.5) * OSCD_PIXEL
        west, north = ref.transform.c, ref.transform.f
        for band in (1, 4, 10):  # B02 (10 m), B05 (20 m), B10 (60 m) of the later date, warped
            expected = oscd_value(west + centres[None, :], north - centres[:, None], band, 2)
            inner = (slice(8, -8), slice(8, -8))  # away from the border, where bilinear has no neighbours
            np.testing.assert_allclose(post.read(band + 1)[inner], expected[inner], atol=3)


def test_labels_from_the_1_2_geotiff_and_the_png(oscd_root: Path, tmp_path: Path) -> None:
    records = {r.id: r for r in find_change_pairs([oscd_root], "oscd", tmp_path)}
    for city in ("bordeaux", "paris"):  # from <city>-cm.tif; paris from its anti-aliased RGB cm.png
        with rasterio.open(records[city].damage_target) as src:
            np.testing.assert_array_equal(src.read(1), 255 * (_rectangle() if city == "bordeaux" else _thresholded()))
            assert src.crs == "EPSG:4326"  # on the reference grid
    bad = tmp_path / "bad-cm.tif"
    with rasterio.open(bad, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.full((1, 4, 4), 3, np.uint8))
    with pytest.raises(DataError, match=r"bad-cm.tif: value 3, expected 1 \(no change\) or 2 \(change\)"):
        read_label(bad)


def _rectangle() -> np.ndarray:
    truth = np.zeros((48, 48), np.uint8)
    truth[5:20, 10:30] = 1
    return truth


def _thresholded() -> np.ndarray:
    truth = _rectangle()
    truth[20, 10:30] = 1  # grey 170 ≥ 128; the 90 row stays 0
    return truth


def test_finetune_predict_score_on_the_raw_root(oscd_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["finetune", "--config", "oscd_resnet50", f"data.root={oscd_root}", f"run_dir={run}", *TINY]) == 0
    split = json.loads((run / "split.json").read_text())
    assert split == {"format": "oscd", "train": ["paris"], "val": ["bordeaux", "hongkong", "pisa"]}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val"]["images"] == 3 and metrics["val_ids"] == ["bordeaux", "hongkong", "pisa"]
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "last.pt"), "--data", str(oscd_root),
                 "--out", str(out), "--device", "cpu", "--window", "64"]) == 0
    for city in [*TRAIN, "dubai"]:  # every city with both dates, the unlabelled test city too
        b02 = next((oscd_root / IMAGES / city / "imgs_1").glob("*B02.tif"))
        with rasterio.open(out / f"{city}_change_mask.tif") as mask, rasterio.open(b02) as ref:
            assert (mask.shape, mask.transform, mask.crs, mask.dtypes[0]) == (ref.shape, ref.transform, ref.crs,
                                                                             "uint8")
            assert set(np.unique(mask.read(1)).tolist()) <= {0, 1}
    assert (out / ".stacks").is_dir() and not list(out.rglob("*-cm.tif"))  # prediction never converts labels
    ckpt = ["predict", "--ckpt", str(run / "checkpoints" / "last.pt"), "--device", "cpu", "--window", "64"]
    one = tmp_path / "one"  # a city by name, and the same city from its two date folders
    assert main([*ckpt, "--data", str(oscd_root), "--ids", "dubai", "--out", str(one / "by_id")]) == 0
    folders = oscd_root / IMAGES / "dubai"
    assert main([*ckpt, "--pre", str(folders / "imgs_1"), "--post", str(folders / "imgs_2"),
                 "--out", str(one / "folders")]) == 0
    for variant in ("by_id", "folders"):
        assert sorted(p.name for p in (one / variant).glob("*_change_mask.tif")) == ["dubai_change_mask.tif"]
        with (rasterio.open(one / variant / "dubai_change_mask.tif") as a,
              rasterio.open(out / "dubai_change_mask.tif") as b):
            assert (a.transform, a.crs) == (b.transform, b.crs) and np.array_equal(a.read(1), b.read(1))
    assert main([*ckpt, "--data", str(oscd_root), "--ids", "atlantis", "--out", str(one / "bad")]) == 2
    assert "--ids: atlantis is not a pair of" in capsys.readouterr().err
    features = json.loads((out / "dubai_changes.geojson").read_text())["features"]
    for feature in features:  # lon / lat polygons, area in m² (≈ 6.9 m × 10.4 m pixels at 49° N)
        lon, lat = np.array(feature["geometry"]["coordinates"][0]).T
        assert 2.0 < lon.min() and lon.max() < 2.2 and 48.9 < lat.min() and lat.max() <= 49.0
        per_pixel = feature["properties"]["area_m2"] / feature["properties"]["area_px"]
        assert per_pixel == pytest.approx(OSCD_PIXEL * 111_320 * np.cos(np.radians(49)) * OSCD_PIXEL * 111_200,
                                          rel=0.01)
    report = tmp_path / "score.json"
    assert main(["score", "--task", "binary", "--pred", str(out), "--targ", str(oscd_root),
                 "--json", str(report)]) == 0
    score = json.loads(report.read_text())
    tp = fp = fn = 0
    for city in TRAIN:  # the four labelled cities, by hand
        truth = _thresholded() if city == "paris" else _rectangle()
        predicted = np.asarray(Image.open(out / f"{city}_change_mask.png"))
        tp += int(((predicted == 1) & (truth == 1)).sum())
        fp += int(((predicted == 1) & (truth == 0)).sum())
        fn += int(((predicted == 0) & (truth == 1)).sum())
    assert score["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    assert {"precision", "recall", "iou"} <= score.keys()


def test_cache_on_the_raw_root(oscd_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``ssl-siam cache`` accepts the published root: nothing to decode (GeoTIFF bands), stacks and labels ready."""
    assert main(["cache", str(oscd_root), "--out", str(tmp_path / "cache")]) == 0
    assert "4 pairs, nothing to decode" in capsys.readouterr().out
    assert len(list((tmp_path / "cache" / "oscd").rglob("*_pre_disaster.vrt"))) == 4
    assert main(["cache", str(oscd_root), "--out", str(tmp_path / "cache"), "--check"]) == 0


def test_unlabelled_cities_are_refused_in_one_line(oscd_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    code = main(["finetune", "--config", "oscd_resnet50", f"data.root={oscd_root}", f"data.val_root={oscd_root}",
                 "data.val_ids=null", f"run_dir={tmp_path / 'a'}", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "city dubai (test split) has no change labels in this copy" in err and "data.val_ids" in err
    code = main(["finetune", "--config", "oscd_resnet50", f"data.root={oscd_root}", "data.val_ids=[dubai]",
                 f"run_dir={tmp_path / 'b'}", *TINY])
    assert code == 2 and "data.val_ids: dubai is not a pair of data.root" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.skipif(not (SHARED_DATA / "oscd").is_dir(), reason="../shared/data/oscd is absent (a fresh clone)")
def test_the_real_oscd_root_pairs_every_labelled_city(tmp_path: Path) -> None:
    root = SHARED_DATA / "oscd"
    records = find_change_pairs([root], "oscd", tmp_path, bands=["B04", "B03", "B02"])
    assert len(records) == 14 and "abudhabi" in {r.id for r in records}
    abudhabi = next(r for r in records if r.id == "abudhabi")  # imgs_2 is 782×795, imgs_1 785×799
    with rasterio.open(abudhabi.pre_image) as pre, rasterio.open(abudhabi.post_image) as post, \
            rasterio.open(abudhabi.damage_target) as mask:
        assert pre.shape == post.shape == mask.shape == (799, 785)
        assert 0 < (mask.read(1) > 0).mean() < 0.5  # a 0 / 255 mask, some change
    every = find_change_pairs([root], "oscd", tmp_path, bands=["B02"], masks="if_present", every_split=True)
    assert len(every) == 24 and sum(r.damage_target is None for r in every) == 10


def test_change_polygons_are_lon_lat_with_areas_in_square_metres() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[2:7, 3:11] = 1  # 40 pixels of 10 m × 10 m in UTM 31N
    transform = rasterio.Affine(10, 0, 400_000, 0, -10, 5_500_000)
    [feature] = change_features(mask, mask * 0.75, transform, rasterio.crs.CRS.from_epsg(32631))
    assert feature["properties"]["area_px"] == 40 and feature["properties"]["area_m2"] == pytest.approx(4000)
    assert feature["properties"]["mean_probability"] == pytest.approx(0.75)
    lon, lat = np.array(feature["geometry"]["coordinates"][0]).T
    assert 1.6 < lon.min() < lon.max() < 1.7 and 49.6 < lat.min() < lat.max() < 49.7  # 400 km E, 5 500 km N


def test_the_oscd_study_holds_out_cities_by_name(oscd_root: Path, tmp_path: Path) -> None:
    from ssl_siam.change.tasks import change_task
    from ssl_siam.core.config import load_config
    from ssl_siam.study.config import StudyConfig
    from ssl_siam.study.design import make_cells, make_split

    cfg = load_config(StudyConfig, "oscd_label_efficiency", [f"data.root={oscd_root}", "test_ids=[hongkong,pisa]",
                                                             "encoders=[random:resnet18]", "budgets=[1,all]"])
    split = make_split(cfg, change_task(cfg.finetune.task), tmp_path)
    assert [r.id for r in split.test] == ["hongkong", "pisa"]
    assert sorted(r.id for r in split.pool) == ["bordeaux", "paris"]
    cells = make_cells(cfg, split)
    for seed in (0, 1, 2):  # nested: the one-city budget is inside "all"
        one, every = (c for c in cells if c.seed == seed)
        assert len(one.ids) == 1 and set(one.ids) <= set(every.ids) == {"bordeaux", "paris"}
    wrong = load_config(StudyConfig, "oscd_label_efficiency", [f"data.root={oscd_root}", "test_ids=[dubai]"])
    with pytest.raises(Exception, match="test_ids: dubai is not a pair of data.root"):
        make_split(wrong, change_task(wrong.finetune.task), tmp_path)


def test_radiometric_matching_travels_with_the_run(oscd_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """data.radiometric=match trains, validates and is kept in the checkpoint, so predict applies it unasked;
    an unknown mode is one line naming the key."""
    from ssl_siam.change.run import load_finetuned

    run = tmp_path / "run"
    assert main(["finetune", "--config", "oscd_resnet50", f"data.root={oscd_root}", "data.radiometric=match",
                 f"run_dir={run}", *TINY]) == 0
    assert json.loads((run / "metrics.json").read_text())["val"]["images"] == 3
    assert load_finetuned(run / "checkpoints" / "last.pt", "cpu").task.radiometric == "match"
    assert main(["finetune", "--config", "oscd_resnet50", f"data.root={oscd_root}", "data.radiometric=histogram",
                 f"run_dir={tmp_path / 'bad'}", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.radiometric" in err[0] and not (tmp_path / "bad").exists()
