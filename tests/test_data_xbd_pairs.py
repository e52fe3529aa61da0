"""xBD pairs: discovery and pairing errors, cached target masks, the crop dataset and the joint pair augmentation."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import SHARED_DATA, TEST_DATA
from PIL import Image
from torch.utils.data import default_collate

from ssl_siam.core.errors import DataError
from ssl_siam.data.pair_crops import PairCropDataset
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.transforms.pair import PairAugment, shift
from ssl_siam.data.xbd.labels import damage_mask, load_label, localization_mask
from ssl_siam.data.xbd.pairs import find_pairs
from ssl_siam.data.xbd.targets import ensure_targets
from ssl_siam.tools.synthetic import make_xbd_split

IDS = [f"synthetic-storm_{i:08d}" for i in range(4)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xbd") / "train"
    make_xbd_split(root, 4, 128, seed=0)
    return root


@pytest.fixture
def split(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of a 4-pair, 128² synthetic split that the test may damage."""
    return Path(shutil.copytree(pristine, tmp_path / "train"))


@pytest.fixture(scope="module")
def records(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> list[PairRecord]:
    return ensure_targets(find_pairs(pristine)[0], tmp_path_factory.mktemp("cache"))


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_find_pairs_on_a_synthetic_split(split):
    found, skipped = find_pairs(split)
    assert skipped == [] and [r.id for r in found] == IDS
    first = found[0]
    assert first.disaster == "synthetic-storm" and first.split_dir == split
    paths = [first.pre_image, first.post_image, first.pre_label, first.post_label]
    assert [p.relative_to(split).as_posix() for p in paths] == [
        f"{folder}/{IDS[0]}_{phase}_disaster.{ext}" for folder, ext in (("images", "png"), ("labels", "json"))
        for phase in ("pre", "post")
    ]
    assert first.damage_target is None and first.loc_target is None
    shutil.rmtree(split / "labels")  # unlabelled pairs (e.g. for inference) on request
    unlabelled, _ = find_pairs(split, labels="if_present")
    assert len(unlabelled) == 4 and all(r.pre_label is r.post_label is r.damage_target is None for r in unlabelled)


def test_labels_none_never_looks_at_labels_or_targets(split):
    """Prediction and temporal pretraining read no labels: a broken target does not stop them (it stops training)."""
    (split / "targets").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(split / "targets" / f"{IDS[0]}_damage_target.png")
    with pytest.raises(DataError, match=f"{IDS[0]}_damage_target.png: size 16x16, expected 128x128"):
        find_pairs(split)
    bare, _ = find_pairs(split, labels="none")
    assert [r.id for r in bare] == IDS
    assert all(r.pre_label is r.post_label is r.damage_target is r.loc_target is None for r in bare)


def test_find_pairs_on_several_roots(split, tmp_path):
    tier3 = tmp_path / "tier3"
    make_xbd_split(tier3, 2, 64, seed=1, disaster="other-flood")
    found, _ = find_pairs([split, str(tier3)])
    assert [r.id for r in found] == [*IDS, "other-flood_00000000", "other-flood_00000001"]
    assert [r.split_dir for r in found] == [split] * 4 + [tier3] * 2
    assert {r.disaster for r in found} == {"synthetic-storm", "other-flood"}
    with pytest.raises(DataError, match="expected unique ids"):
        find_pairs([split, tier3, split])


@pytest.mark.parametrize(
    ("damage", "named"),  # how the split is broken, and what the error must name
    [
        pytest.param(lambda s: (s / "images" / f"{IDS[2]}_post_disaster.png").unlink(),
                     f"{IDS[2]}_post_disaster.png", id="missing-partner"),
        pytest.param(lambda s: Image.new("RGB", (64, 64)).save(s / "images" / f"{IDS[1]}_post_disaster.png"),
                     f"{IDS[1]}_post_disaster.png: size 64x64, expected 128x128", id="size-mismatch"),
        pytest.param(lambda s: (s / "images" / f"{IDS[3]}_pre_disaster.png").write_bytes(b"\x89PNG not really"),
                     f"{IDS[3]}_pre_disaster.png", id="corrupt-png"),
        pytest.param(lambda s: (s / "labels" / f"{IDS[0]}_post_disaster.json").unlink(),
                     f"{IDS[0]}_post_disaster.json", id="missing-label"),
    ],
)
def test_bad_pairs_raise_or_are_skipped(split, damage, named):
    damage(split)
    with pytest.raises(DataError, match=re.escape(named)):
        find_pairs(split)
    found, skipped = find_pairs(split, skip_bad=True)
    assert len(found) == 3
    assert len(skipped) == 1 and named in skipped[0] and "\n" not in skipped[0]


def test_missing_or_empty_split_folder(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nowhere" / "images"))):
        find_pairs(tmp_path / "nowhere", skip_bad=True)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="no <id>_pre_disaster"):
        find_pairs(tmp_path / "empty")
    with pytest.raises(DataError, match="no xBD split folders"):
        find_pairs([])


def test_mask_cache_is_written_once_and_matches_the_labels(split, tmp_path):
    cache = tmp_path / "cache"
    found = ensure_targets(find_pairs(split)[0], cache)
    for r in found:
        assert r.damage_target.parent.parent == cache and r.damage_target.name == f"{r.id}_damage_target.png"
        expected = damage_mask(load_label(r.post_label), unclassified="ignore", ignore_index=255)
        np.testing.assert_array_equal(read_png(r.damage_target), expected)
        np.testing.assert_array_equal(read_png(r.loc_target), localization_mask(load_label(r.pre_label)))
    # Pin the targets' mtimes after their JSONs: a second call must leave them alone.
    later = max(os.stat(r.post_label).st_mtime_ns for r in found) + 10**10
    for path in cache.glob("*/*.png"):
        os.utime(path, ns=(later, later))
    assert ensure_targets(find_pairs(split)[0], cache) == found
    assert {p.stat().st_mtime_ns for p in cache.glob("*/*.png")} == {later}
    # A label edited after its target was cached: only that target is rewritten.
    os.utime(found[1].post_label, ns=(later + 10**9, later + 10**9))
    ensure_targets(find_pairs(split)[0], cache)
    targets = (found[1].damage_target, found[1].loc_target, found[0].damage_target)
    assert [p.stat().st_mtime_ns != later for p in targets] == [True, False, False]
    with pytest.raises(DataError, match="settings.txt: cache made with unclassified=ignore"):
        ensure_targets(found, cache, unclassified="no-damage")


def test_cached_damage_target_of_the_real_sample(tmp_path):
    (record,) = ensure_targets(find_pairs(TEST_DATA / "xbd")[0], tmp_path)
    damage = read_png(record.damage_target)
    assert (record.id, record.disaster, damage.shape, damage.dtype) == ("joplin-tornado_00000000", "joplin-tornado",
                                                                        (256, 256), np.uint8)
    assert set(np.unique(damage).tolist()) == {0, 1, 2, 3, 4, 255}  # all damage classes and un-classified
    assert ((read_png(record.loc_target) == 1) >= ((damage > 0) & (damage < 255))).mean() > 0.98


@pytest.mark.skipif(not (SHARED_DATA / "xbd").is_dir(), reason="shared xBD sample not present")
def test_shared_xbd_sample(tmp_path):
    found = ensure_targets(find_pairs(SHARED_DATA / "xbd")[0], tmp_path)
    assert [r.id for r in found] == ["joplin-tornado_00000000", "joplin-tornado_00000001"]
    item = PairCropDataset(found, 256, True)[3]
    assert item["pre"].shape == item["post"].shape == (3, 256, 256) and item["mask"].shape == (256, 256)
    assert PairCropDataset(found, None, False)[0]["mask"].shape == (1024, 1024)


def test_dataset_items(records):
    train = PairCropDataset(records, 64, True, misregistration_px=2)
    assert len(train) == 4 and train.num_bands_pre == train.num_bands_post == 3
    item = train[5]
    assert item["index"] == 5 and item["id"] == IDS[1] and item["mask"].shape == (64, 64)
    assert item["pre"].shape == item["post"].shape == (3, 64, 64) and item["mask"].dtype == torch.int64
    assert item["pre"].dtype == item["post"].dtype == torch.uint8
    assert set(item["mask"].unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    batch = default_collate([train[i] for i in range(4)])
    assert batch["pre"].shape == (4, 3, 64, 64) and batch["mask"].shape == (4, 64, 64)
    assert torch.equal(pickle.loads(pickle.dumps(train))[5]["post"], item["post"])
    whole = PairCropDataset(records, None, False)[2]
    image = read_png(records[2].pre_image).transpose(2, 0, 1)
    np.testing.assert_array_equal(whole["pre"].numpy(), image)
    np.testing.assert_array_equal(whole["mask"].numpy(), read_png(records[2].damage_target))
    centre = PairCropDataset(records, 100, False)[2]
    np.testing.assert_array_equal(centre["pre"].numpy(), image[:, 14:114, 14:114])
    padded = PairCropDataset(records, 160, True)[0]
    assert padded["pre"].shape == (3, 160, 160) and (padded["mask"] == 255).float().mean() > 0.3


def test_determinism(records):
    dataset = PairCropDataset(records, 48, True, misregistration_px=2, seed=7)
    first, again = dataset[9], PairCropDataset(records, 48, True, misregistration_px=2, seed=7)[9]
    for key in ("pre", "post", "mask"):
        assert torch.equal(first[key], again[key]) and torch.equal(first[key], dataset[9][key])
    next_epoch = dataset[9 + len(dataset)]
    assert next_epoch["id"] == first["id"] and not torch.equal(next_epoch["pre"], first["pre"])
    assert not torch.equal(dataset[13]["pre"], first["pre"])
    assert not torch.equal(PairCropDataset(records, 48, True, seed=8)[9]["pre"], first["pre"])


def test_building_bias(tmp_path):
    make_xbd_split(tmp_path / "sparse", 6, 256, seed=3, buildings=(1, 2))
    sparse = ensure_targets(find_pairs(tmp_path / "sparse")[0], tmp_path / "cache")
    buildings = [(read_png(r.damage_target) % 255 > 0).mean() for r in sparse]
    assert max(buildings) < 0.05 and min(buildings) > 0

    def hit_rate(bias: float) -> float:
        dataset = PairCropDataset(sparse, 32, True, building_bias=bias)
        return float(np.mean([(dataset[i]["mask"] % 255 > 0).any().item() for i in range(120)]))

    biased, uniform = hit_rate(1.0), hit_rate(0.0)
    assert biased >= 0.95 and uniform < biased - 0.3


def _pattern(dtype: type, bands: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """8×8 blocks of classes 0..4 (mask) and an image [64, 64, bands] whose band 0 is (class + 1) * step."""
    classes = np.kron(np.random.default_rng(0).integers(0, 5, (8, 8)), np.ones((8, 8), int)).astype(np.uint8)
    image = np.stack([(classes.astype(np.int64) + 1) * step + b for b in range(bands)], axis=-1)
    return classes, image.astype(dtype)


@pytest.mark.parametrize(("dtype", "bands", "step"), [(np.uint8, 3, 40), (np.uint16, 5, 10_000)])
def test_geometry_is_shared_by_pre_post_and_mask(dtype, bands, step):
    classes, image = _pattern(dtype, bands, step)
    augment = PairAugment()
    moved = bordered = 0
    for seed in range(16):
        pre, post, mask = augment(image, image.copy(), classes, seed)
        assert pre.dtype == post.dtype == dtype and pre.shape == post.shape == image.shape
        np.testing.assert_array_equal(post, pre)
        labelled = mask != 255
        assert ((np.rint(pre[..., 0] / step) - 1)[labelled] == mask[labelled]).mean() > 0.9  # class decoded from pre
        outside = (pre == 0).all(axis=-1)  # the pattern is never 0: the affine border, ignored on the mask
        if outside.any():
            bordered += 1
            assert (mask[outside] == 255).mean() > 0.95
        moved += not np.array_equal(pre, image)
    assert moved >= 12 and bordered >= 2


def test_misregistration_moves_only_post():
    classes, image = _pattern(np.uint8, 3, 40)
    augment = PairAugment(misregistration_px=3, geometric=False)
    offsets = set()
    for seed in range(20):
        pre, post, mask = augment(image, image.copy(), classes, seed)
        np.testing.assert_array_equal(pre, image)
        np.testing.assert_array_equal(mask, classes)
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4) if np.array_equal(post, shift(image, dy, dx))]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) >= 5
    with_geometry = PairAugment(misregistration_px=2)
    for seed in range(6):
        pre, post, mask = with_geometry(image, image.copy(), classes, seed)
        labelled = mask != 255
        assert ((np.rint(pre[..., 0] / 40) - 1)[labelled] == mask[labelled]).mean() > 0.9  # mask follows pre
        assert any(np.array_equal(post, shift(pre, dy, dx)) for dy in range(-2, 3) for dx in range(-2, 3))


def _write_tif(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1],
                       count=array.shape[0], dtype=array.dtype, crs="EPSG:32615", tiled=True, blockxsize=32,
                       blockysize=32, transform=rasterio.Affine(0.5, 0, 360_000, 0, -0.5, 4_100_000)) as dst:
        dst.write(array)


def test_uint16_geotiff_pairs_with_target_files(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {}
    for i in range(2):
        image_id = f"geo-quake_{i:08d}"
        for phase in ("pre", "post"):
            arrays[image_id, phase] = rng.integers(1, 60_000, (4, 96, 96)).astype(np.uint16)
            _write_tif(tmp_path / "images" / f"{image_id}_{phase}_disaster.tif", arrays[image_id, phase])
        target = rng.choice(np.array([0, 1, 2, 3, 4, 255], np.uint8), (1, 96, 96))
        arrays[image_id, "target"] = target[0]
        _write_tif(tmp_path / "targets" / f"{image_id}_damage_target.tif", target)
    _write_tif(tmp_path / "targets" / "geo-quake_00000000_localization_target.tif", np.ones((1, 96, 96), np.uint8))
    found, _ = find_pairs(tmp_path)
    assert [r.loc_target is not None for r in found] == [True, False]
    assert all(r.pre_label is None and r.damage_target.suffix == ".tif" for r in found)
    assert ensure_targets(found, tmp_path / "cache") == found  # target files are used as they are
    whole = PairCropDataset(found, None, False)[1]
    assert whole["pre"].dtype == torch.uint16 and whole["pre"].shape == (4, 96, 96)
    np.testing.assert_array_equal(whole["post"].numpy(), arrays["geo-quake_00000001", "post"])
    np.testing.assert_array_equal(whole["mask"].numpy(), arrays["geo-quake_00000001", "target"])
    selected = PairCropDataset(found, 64, False, bands=[4, 2], post_bands=[3])
    assert (selected.num_bands_pre, selected.num_bands_post) == (2, 1)
    pre, post = arrays["geo-quake_00000000", "pre"], arrays["geo-quake_00000000", "post"]
    np.testing.assert_array_equal(selected[0]["pre"].numpy(), pre[[3, 1], 16:80, 16:80])  # bands 4, 2; centre crop
    np.testing.assert_array_equal(selected[0]["post"].numpy(), post[[2], 16:80, 16:80])
    item = PairCropDataset(found, 64, True, misregistration_px=2)[3]
    assert item["pre"].dtype == item["post"].dtype == torch.uint16 and item["post"].shape == (4, 64, 64)
    assert item["pre"].numpy().max() > 255  # torch has no max for uint16
    (tmp_path / "targets" / "geo-quake_00000001_damage_target.tif").unlink()
    with pytest.raises(DataError, match="geo-quake_00000001_post_disaster.tif: no labels and no targets"):
        find_pairs(tmp_path)


def test_cache_keeps_splits_with_equal_ids_apart(tmp_path: Path) -> None:
    from ssl_siam.data.xbd.labels import damage_mask, load_label

    a, b = tmp_path / "a" / "train", tmp_path / "b" / "hold"
    make_xbd_split(a, 1, size=64, seed=0)
    make_xbd_split(b, 1, size=64, seed=1)  # same id, other content
    cache = tmp_path / "cache"
    for split in (a, b):
        (record,) = ensure_targets(find_pairs(split)[0], cache)
        expected = damage_mask(load_label(record.post_label), "ignore", 255)
        np.testing.assert_array_equal(np.asarray(Image.open(record.damage_target)), expected)
