"""Frozen-feature probes: metrics, linear probe, weighted kNN, probe datasets, splits and `run_probe` end to end."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import SHARED_DATA, TEST_DATA, texture
from PIL import Image

import ssl_siam.eval.features as probe_features
from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.data.stats import BandStats
from ssl_siam.data.xbd.labels import DAMAGE_CLASSES
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder
from ssl_siam.eval.classifiers import knn_predict, knn_votes, linear_probe
from ssl_siam.eval.datasets import XBDCropDataset, open_dataset
from ssl_siam.eval.scores import confusion_matrix, macro_f1, per_class_f1
from ssl_siam.probe.run import run_probe
from ssl_siam.tools.synthetic import make_xbd_split

REQUIRED = {"encoder", "dataset", "method", "top1", "macro_f1", "n_train", "n_test", "per_class_f1", "confusion",
            "classes"}


def test_metrics_hand_example() -> None:
    y_true, y_pred = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    assert confusion_matrix(y_true, y_pred, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # class 0: TP 1, FP 1, FN 1 -> 0.5; class 1: TP 2, FP 1 -> 0.8; class 2: TP 0 -> 0
    np.testing.assert_allclose(per_class_f1(y_true, y_pred, 3), [0.5, 0.8, 0.0])
    assert macro_f1(y_true, y_pred, 3) == pytest.approx(1.3 / 3)
    # a class neither present nor predicted is undefined and left out of the mean
    assert np.isnan(per_class_f1(y_true, y_pred, 4)[3])
    assert macro_f1(y_true, y_pred, 4) == pytest.approx(1.3 / 3)
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def blobs(rng: np.random.Generator, n: int, dim: int = 16) -> tuple[torch.Tensor, np.ndarray]:
    centres = np.eye(3, dim) * 4.0
    labels = rng.integers(0, 3, n)
    return torch.from_numpy(centres[labels] + rng.normal(size=(n, dim))).float(), labels


def test_linear_probe_learns_blobs_and_not_shuffled_labels() -> None:
    rng = np.random.default_rng(0)
    (train_x, train_y), (test_x, test_y) = blobs(rng, 240), blobs(rng, 300)
    predictions, best = linear_probe(train_x, train_y, test_x, 3, seed=0)
    assert (predictions == test_y).mean() >= 0.95
    assert set(best) == {"lr", "weight_decay"}
    # labels shuffled on both sides are independent of the features: nothing to learn
    shuffled, _ = linear_probe(train_x, rng.permutation(train_y), test_x, 3, seed=0)
    assert (shuffled == rng.permutation(test_y)).mean() <= 1 / 3 + 0.15


def test_knn_weighted_votes_by_hand() -> None:
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = np.array([0, 1, 1, 2])
    query = torch.tensor([[1.0, 0.2]])
    norm = math.hypot(1.0, 0.2)
    sim_a, sim_b, sim_c = 1 / norm, 0.2 / norm, 1.2 / (norm * math.sqrt(2))  # the 3 nearest; [-1, 0] is not
    for temperature, winner in ((0.07, 0), (1.0, 1)):  # one very close neighbour vs two fairly close ones
        votes = knn_votes(train, labels, query, 3, k=3, temperature=temperature)
        expected = [math.exp(sim_a / temperature), math.exp(sim_b / temperature) + math.exp(sim_c / temperature), 0]
        np.testing.assert_allclose(votes[0].numpy(), expected, rtol=1e-5)
        assert knn_predict(train, labels, query, 3, k=3, temperature=temperature).tolist() == [winner]


def expected_buildings(split_dir: Path) -> Counter:
    counts = Counter()
    for path in sorted((split_dir / "labels").glob("*_post_disaster.json")):
        subtypes = [f["properties"].get("subtype") for f in json.loads(path.read_text())["features"]["xy"]]
        counts.update(s for s in subtypes if s in DAMAGE_CLASSES)
    return counts


def test_xbd_crops_on_sample_data() -> None:
    split = TEST_DATA / "xbd"
    data = XBDCropDataset(split, split, 32, seed=0)  # the same pair as explicit test split
    expected = expected_buildings(split)
    assert len(data) == 2 * sum(expected.values()) == 2 * 19
    assert Counter(data.classes[i] for i in data.labels[~data.is_test]) == expected
    assert data.is_test.sum() == len(data) // 2
    crops = data[0]
    assert crops.shape == (2, 3, 32, 32) and crops.dtype == torch.float32
    pre = np.array(Image.open(split / "images" / "joplin-tornado_00000000_pre_disaster.png"))
    corners = [(round(b.y - 16), round(b.x - 16)) for b in data.crops.buildings]  # centred on the centroids
    inside = [i for i, (top, left) in enumerate(corners) if 0 <= top <= 256 - 32 and 0 <= left <= 256 - 32]
    top, left = corners[inside[0]]
    expected_crop = pre[top : top + 32, left : left + 32].transpose(2, 0, 1)
    np.testing.assert_array_equal(data[inside[0]][0].numpy(), expected_crop)
    border = next(i for i, (top, left) in enumerate(corners) if min(top, left) < 0 or max(top, left) > 256 - 32)
    assert data[border].shape == (2, 3, 32, 32)  # zero-padded at the image border
    with pytest.raises(DataError, match="only one image"):
        open_dataset("xbd-crops", split, None, 32, seed=0)


@pytest.mark.skipif(not (SHARED_DATA / "xbd").is_dir(), reason="shared xBD sample data not present")
def test_xbd_crops_on_two_shared_images() -> None:
    data = XBDCropDataset(SHARED_DATA / "xbd", None, 32, seed=0)
    groups = [data.records[b.record].id for b in data.crops.buildings]
    expected = expected_buildings(SHARED_DATA / "xbd")
    assert Counter(data.classes[i] for i in data.labels) == expected
    assert len({groups[i] for i in np.flatnonzero(data.is_test)}) == 1  # one of two images
    assert not {groups[i] for i in np.flatnonzero(data.is_test)} & {groups[i] for i in np.flatnonzero(~data.is_test)}


def test_xbd_split_by_image_never_by_building(tmp_path: Path) -> None:
    make_xbd_split(tmp_path / "xbd", 3, size=128, seed=0, disaster="alpha-flood")
    make_xbd_split(tmp_path / "xbd", 3, size=128, seed=1, disaster="beta-fire")
    for seed in range(3):
        data = XBDCropDataset(tmp_path / "xbd", None, 32, seed=seed)
        test, train = np.flatnonzero(data.is_test), np.flatnonzero(~data.is_test)
        assert len(test) and len(train)
        records = [data.records[b.record] for b in data.crops.buildings]
        assert len({records[i].disaster for i in test}) == 1  # whole disasters
        test_images = {records[i].id for i in test}
        assert not test_images & {records[i].id for i in train}
        assert not {data.ids[i] for i in test} & {data.ids[i] for i in train}
        assert not {data.ids[i].split("/")[1] for i in test} & {data.ids[i].split("/")[1] for i in train}


def test_run_probe_end_to_end_with_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_xbd_split(tmp_path / "xbd", 4, size=128, seed=0)
    stats = BandStats([0.0] * 3, [255.0] * 3, [0.4] * 3, [0.2] * 3)
    weights = export_encoder(create_encoder("resnet18", 3), tmp_path / "ssl-run",
                             EncoderMeta("resnet18", 3, normalization=stats))
    encoders = [str(weights), "random:resnet18"]
    rows = run_probe(encoders, tmp_path / "xbd", "xbd-crops", tmp_path / "out", crop_size=32, k=5)
    records = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert len(records) == 4 and all(REQUIRED <= set(r) for r in records)
    assert [(r["encoder"], r["method"]) for r in records] == [
        ("ssl-run", "linear"), ("ssl-run", "knn"), ("random:resnet18", "linear"), ("random:resnet18", "knn")]
    total = sum(expected_buildings(tmp_path / "xbd").values())
    assert all(r["n_train"] + r["n_test"] == total and r["n_test"] > 0 for r in records)
    assert all(np.sum(r["confusion"]) == r["n_test"] and r["classes"] == list(DAMAGE_CLASSES) for r in records)
    markdown = (tmp_path / "out" / "probe.md").read_text()
    assert f"| random:resnet18 | xbd-crops | knn | {rows[3].top1:.3f} |" in markdown
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert len(pngs) == 5 and "probe_comparison.png" in pngs and "confusion_ssl-run_xbd-crops_linear.png" in pngs
    assert len(list((tmp_path / "out" / "cache").glob("*.pt"))) == 2

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(probe_features, "extract_features", fail)
    again = run_probe(encoders, tmp_path / "xbd", "xbd-crops", tmp_path / "out2", crop_size=32, k=5,
                      cache_dir=tmp_path / "out" / "cache")
    assert [asdict(r) for r in again] == [asdict(r) for r in rows]
    with pytest.raises(AssertionError, match="from the cache"):  # another crop size is another cache entry
        run_probe(encoders[1:], tmp_path / "xbd", "xbd-crops", tmp_path / "out3", crop_size=48,
                  cache_dir=tmp_path / "out" / "cache")


def write_folder(root: Path, suffix: str, rng: np.random.Generator, per_class: int) -> None:
    for c, name in enumerate(("forest", "river", "urban")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = texture(rng, 48, 4) * 0.5 + 0.25 * c  # class-dependent brightness
            if suffix == ".png":
                Image.fromarray((img[:3, :40] * 255).astype(np.uint8).transpose(1, 2, 0)).save(root / name / f"{i}.png")
            else:
                with rasterio.open(root / name / f"{i}.tif", "w", driver="GTiff", width=48, height=48, count=4,
                                   dtype="uint16", transform=rasterio.Affine(1, 0, 0, 0, -1, 48)) as dst:
                    dst.write((img * 10_000).astype(np.uint16))


def test_folder_dataset_pngs_and_geotiffs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_folder(tmp_path / "png", ".png", rng, 6)
    rows = run_probe(["random:resnet18"], tmp_path / "png", "folder", tmp_path / "out", crop_size=32, k=3)
    assert [(r.method, r.n_train, r.n_test) for r in rows] == [("linear", 12, 6), ("knn", 12, 6)]
    assert rows[0].classes == ["forest", "river", "urban"] and rows[0].top1 > 0.5

    write_folder(tmp_path / "tif", ".tif", rng, 4)
    write_folder(tmp_path / "tif_val", ".tif", rng, 2)
    data = open_dataset("folder", tmp_path / "tif", tmp_path / "tif_val", 32, seed=0)
    assert data[0].shape == (1, 4, 32, 32) and data.num_bands == 4
    rows = run_probe(["random:resnet18"], tmp_path / "tif", "folder", tmp_path / "out_tif",
                     val_data=tmp_path / "tif_val", crop_size=32, k=3)
    assert [(r.n_train, r.n_test) for r in rows] == [(12, 6), (12, 6)]


def test_bad_options_name_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--encoder foo:resnet18"):
        run_probe(["foo:resnet18"], TEST_DATA / "xbd", "xbd-crops", tmp_path)
    with pytest.raises(ConfigError, match="--encoder random:no_such_net"):
        run_probe(["random:no_such_net"], TEST_DATA / "xbd", "xbd-crops", tmp_path)
    with pytest.raises(ConfigError, match="--dataset 'eurosat'; valid: folder, xbd-crops"):
        run_probe(["random:resnet18"], TEST_DATA / "xbd", "eurosat", tmp_path)
