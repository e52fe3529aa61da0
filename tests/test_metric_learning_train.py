"""Siamese metric learning: models, pair datasets, training that separates classes, ssl-siam verify."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import TEST_DATA, texture
from PIL import Image

from ssl_siam.cli import main
from ssl_siam.core.config import load_config
from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.data.cache import DecodedCache
from ssl_siam.data.stats import BandStats
from ssl_siam.encoders import EncoderMeta
from ssl_siam.eval.datasets import FolderDataset
from ssl_siam.metric_learning.config import MetricConfig
from ssl_siam.metric_learning.datasets import open_pair_dataset
from ssl_siam.metric_learning.model import build_siamese
from ssl_siam.metric_learning.run import build_task, load_metric_task, run_metric_train
from ssl_siam.metric_learning.validator import embed_pairs
from ssl_siam.metric_learning.verification_metrics import one_shot_accuracy, roc_auc
from ssl_siam.metric_learning.verify import model_similarity
from ssl_siam.tools.synthetic import make_xbd_split
from ssl_siam.train.checkpoint import atomic_save, load_checkpoint

TINY = ["model.backbone=resnet18", "model.embed_dim=16", "model.head_hidden_dim=32", "train.device=cpu",
        "data.num_workers=0", "train.progress=false", "train.log_every=1", "data.stats_samples=4",
        "optim.warmup_steps=0", "train.checkpoint_every=100"]


def write_geotiff(path: Path, data: np.ndarray, crs: str = "EPSG:32636", east: float = 500_000.0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=rasterio.Affine(1.0, 0, east, 0, -1.0, 4_000_000)) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def dates(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two dates of one 96² 3-band uint16 scene; the second is the first + 1000 (a uniform 'seasonal' change)."""
    root = tmp_path_factory.mktemp("dates")
    first = (texture(np.random.default_rng(0), 96, 3) * 10_000).astype(np.uint16)
    (root / "d1").mkdir()
    (root / "d2").mkdir()
    write_geotiff(root / "d1" / "scene.tif", first)
    write_geotiff(root / "d2" / "scene.tif", first + 1000)
    return [root / "d1", root / "d2"]


def stripes(rng: np.random.Generator, horizontal: bool, size: int = 32) -> np.ndarray:
    """RGB uint8 stripes of random period and phase: the class is the orientation."""
    period, phase = rng.uniform(4, 8), rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.4 * np.sin(2 * np.pi * np.arange(size) / period + phase)
    img = np.repeat(wave[:, None] if horizontal else wave[None, :], size, axis=1 if horizontal else 0)
    img = img[None] * rng.uniform(0.6, 1.0, (3, 1, 1)) + 0.05 * rng.standard_normal((3, size, size))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def pattern(rng: np.random.Generator, kind: str, size: int = 32) -> np.ndarray:
    """RGB uint8 diagonal / antidiagonal stripes or a checkerboard of random period and phase."""
    period, phase = rng.uniform(5, 9), rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:size, 0:size]
    if kind == "checker":
        wave = 0.5 + 0.4 * np.sign(np.sin(2 * np.pi * rows / period + phase) * np.sin(2 * np.pi * cols / period))
    else:
        wave = 0.5 + 0.4 * np.sin(2 * np.pi * (rows + (cols if kind == "diagonal" else -cols)) / period + phase)
    img = wave[None] * rng.uniform(0.6, 1.0, (3, 1, 1)) + 0.05 * rng.standard_normal((3, size, size))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def stripe_pairs(root: Path, n_pairs: int, seed: int) -> Path:
    """``root/pairs.csv`` of ``n_pairs`` pairs, half same orientation (label 1), half different (0)."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n_pairs):
        first = bool(rng.integers(2))
        second = first if i % 2 == 0 else not first
        for name, horizontal in ((f"img/{i}a.png", first), (f"img/{i}b.png", second)):
            Image.fromarray(stripes(rng, horizontal)).save(root / name)
        rows.append((f"img/{i}a.png", f"img/{i}b.png", int(first == second)))
    with (root / "pairs.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("path_a", "path_b", "label"), *rows])
    return root / "pairs.csv"


# ---------------------------------------------------------------- models
def test_variants_share_or_separate_weights() -> None:
    classic = build_siamese("resnet18", 3, "classic", embed_dim=8, head_hidden_dim=16)
    pseudo = build_siamese("resnet18", 3, "pseudo", embed_dim=8, head_hidden_dim=16)
    triplet = build_siamese("resnet18", 3, "triplet", embed_dim=8, head_hidden_dim=16)
    n_params = [sum(p.numel() for p in m.parameters()) for m in (classic, pseudo, triplet)]
    assert n_params[1] == 2 * n_params[0] and n_params[2] == n_params[0]
    x = torch.rand(4, 3, 32, 32)
    for model in (classic, pseudo, triplet):
        model.eval()
        e = model(x, 0)
        assert e.shape == (4, 8)
        torch.testing.assert_close(e.norm(dim=1), torch.ones(4))
    assert torch.equal(classic(x, 0), classic(x, 1))
    assert not torch.allclose(pseudo(x, 0), pseudo(x, 1))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_sequence_encoders(cell: str, bidirectional: bool) -> None:
    model = build_siamese(cell, 4, embed_dim=8, head_hidden_dim=16, rnn_hidden_dim=12, rnn_layers=2,
                          bidirectional=bidirectional).eval()
    series = torch.rand(5, 4, 7, 1)  # [B, C, T, 1]
    assert model.encoder(series).shape == (5, 12 * (2 if bidirectional else 1))
    assert model(series).shape == (5, 8)
    assert not torch.allclose(model(series)[0], model(series.flip(2))[0])  # order of the dates matters


def test_recurrent_encoder_refuses_image_weights(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recurrent"):
        build_siamese("gru", 3, encoder=EncoderMeta("resnet18", 3))


# ---------------------------------------------------------------- datasets
def test_geotiff_dates_pairs_are_colocated(dates: list[Path]) -> None:
    data = open_pair_dataset("geotiff-dates", [str(d) for d in dates], crop_size=32, samples_per_epoch=16,
                             negatives=True)
    assert (len(data), data.num_bands, data.labelled) == (16, 3, False)
    for i in range(8):
        item = data[i]
        low, high = sorted([item["a"], item["b"]], key=lambda t: int(t.sum()))
        assert torch.equal(high.int() - low.int(), torch.full_like(low, 1000, dtype=torch.int32))  # same ground
        assert int(item["group"]) == i and int(item["group_n"]) != i
        assert not torch.equal(item["n"].int() % 1000, item["a"].int() % 1000)  # the negative is another place
    assert torch.equal(data[3]["a"], data[3]["a"])  # deterministic
    single = open_pair_dataset("geotiff-dates", [str(dates[0])], crop_size=32, samples_per_epoch=4)
    assert torch.equal(single[0]["a"], single[0]["b"])  # one date: the two views differ only by augmentation


def test_one_date_views_differ_by_augmentation(dates: list[Path]) -> None:
    from ssl_siam.data.stats import BandStats
    from ssl_siam.metric_learning.config import MetricAugmentConfig
    from ssl_siam.metric_learning.task import InputPipeline

    stats = BandStats([0.0] * 3, [11_000.0] * 3, [0.5] * 3, [0.2] * 3)
    pipeline = InputPipeline(stats, MetricAugmentConfig(), 32, series=False)
    raw = open_pair_dataset("geotiff-dates", [str(dates[0])], crop_size=32, samples_per_epoch=4)[0]["a"][None]
    generator = torch.Generator().manual_seed(0)
    first, second = pipeline(raw, generator), pipeline(raw, generator)
    assert first.shape == (1, 3, 32, 32) and not torch.allclose(first, second)
    joint = InputPipeline(stats, MetricAugmentConfig(jitter_p=0.0), 32, series=False)
    a, b = joint.pair(raw, raw.clone(), torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)  # one geometric draw for both inputs of a pair
    assert not torch.allclose(a, stats.standardize(stats.to_unit(raw)))  # ... and it did transform them
    separate = InputPipeline(stats, MetricAugmentConfig(jitter_p=0.0, joint=False), 32, series=False)
    a, b = separate.pair(raw, raw.clone(), torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)
    pipeline.eval()
    torch.testing.assert_close(pipeline(raw), stats.standardize(stats.to_unit(raw)))  # no augmentation in eval


def test_geotiff_dates_must_share_a_grid(tmp_path: Path, dates: list[Path]) -> None:
    (tmp_path / "moved").mkdir()
    with rasterio.open(dates[0] / "scene.tif") as src:
        write_geotiff(tmp_path / "moved" / "scene.tif", src.read(), east=500_010.0)
    with pytest.raises(DataError, match="transform .* dates must share one grid"):
        open_pair_dataset("geotiff-dates", [str(dates[0]), str(tmp_path / "moved")], crop_size=32)


def test_geotiff_dates_match_scenes_by_relative_path(tmp_path: Path, dates: list[Path]) -> None:
    """Scenes pair up by their path under each date's folder, as temporal pretraining pairs them: a date whose
    second scene has another name is refused naming the missing file (sorted order would pair b with c)."""
    with rasterio.open(dates[0] / "scene.tif") as src:
        pixels = src.read()
    for date, names in (("d1", ("a/scene.tif", "b.tif")), ("d2", ("a/scene.tif", "c.tif"))):
        for name in names:
            (tmp_path / date / name).parent.mkdir(parents=True, exist_ok=True)
            write_geotiff(tmp_path / date / name, pixels)
    roots = [str(tmp_path / "d1"), str(tmp_path / "d2")]
    with pytest.raises(DataError, match=r"d2/b.tif: missing, expected every date of .*d1/b.tif"):
        open_pair_dataset("geotiff-dates", roots, crop_size=32)
    (tmp_path / "d2" / "c.tif").rename(tmp_path / "d2" / "b.tif")
    assert open_pair_dataset("geotiff-dates", roots, crop_size=32, samples_per_epoch=2).num_bands == 3


def test_pixel_series_positive_is_a_neighbour(tmp_path: Path) -> None:
    """Each pixel's value encodes its position (band 0 = row, band 1 = column), the date adds 100·t."""
    rows, cols = np.mgrid[0:40, 0:40].astype(np.uint16)
    roots = []
    for t in range(3):
        (tmp_path / f"t{t}").mkdir()
        write_geotiff(tmp_path / f"t{t}" / "s.tif", np.stack([rows, cols]) + np.uint16(100 * t))
        roots.append(str(tmp_path / f"t{t}"))
    data = open_pair_dataset("pixel-series", roots, crop_size=0, samples_per_epoch=32, neighbour_px=2)
    assert data.series and data.num_bands == 2
    for i in range(32):
        a, b = data[i]["a"][..., 0].int(), data[i]["b"][..., 0].int()  # [C, T]
        assert a.shape == (2, 3)
        torch.testing.assert_close(a[:, 1:] - a[:, :-1], torch.full((2, 2), 100, dtype=torch.int32))
        offset = (b - a)[:, 0].abs()
        assert 0 < int(offset.max()) <= 2  # a different pixel within neighbour_px
    with pytest.raises(DataError, match="at least 2"):
        open_pair_dataset("pixel-series", roots[:1], crop_size=0)


def test_similarity_csv_paths_stay_inside_the_data_root(tmp_path: Path) -> None:
    csv_path = stripe_pairs(tmp_path / "ok", 2, seed=0)
    data = open_pair_dataset("similarity-csv", [str(csv_path)], crop_size=24)
    item = data[1]
    assert item["a"].shape == (3, 24, 24) and float(item["label"]) == 0.0
    outside = tmp_path / "ok" / "evil.csv"
    outside.write_text("path_a,path_b,label\n../secret.png,img/0a.png,1\n")
    (tmp_path / "secret.png").write_bytes((tmp_path / "ok" / "img" / "0a.png").read_bytes())
    with pytest.raises(DataError, match=r"evil.csv:2: image path '../secret.png' must be a file inside"):
        open_pair_dataset("similarity-csv", [str(outside)], crop_size=24)
    bad = tmp_path / "ok" / "bad.csv"
    bad.write_text("path_a,path_b,label\nimg/0a.png,img/0b.png,yes\n")
    with pytest.raises(DataError, match=r"bad.csv:2: label 'yes'"):
        open_pair_dataset("similarity-csv", [str(bad)], crop_size=24)
    header = tmp_path / "ok" / "header.csv"
    header.write_text("a,b\n")
    with pytest.raises(DataError, match="header path_a,path_b,label"):
        open_pair_dataset("similarity-csv", [str(header)], crop_size=24)


def test_xbd_pairs_label_unchanged_buildings(tmp_path: Path) -> None:
    split = tmp_path / "train"
    make_xbd_split(split, 2, size=96, seed=3)
    data = open_pair_dataset("xbd-pairs", [str(split)], crop_size=16)
    labels = np.array([float(data[i]["label"]) for i in range(len(data))])
    expected = np.array([b.label == 0 for b in data.crops.buildings], float)  # class 0 = no-damage → unchanged
    assert len(data) > 0 and np.array_equal(labels, expected)
    assert data[0]["a"].shape == data[0]["b"].shape == (3, 16, 16)
    with pytest.raises(ConfigError, match="triplet variant needs location data"):
        open_pair_dataset("xbd-pairs", [str(split)], crop_size=16, negatives=True)
    cache = DecodedCache(tmp_path / "cache", min_pixels=0)  # these 96² images are decoded too
    cached = open_pair_dataset("xbd-pairs", [str(split)], crop_size=16, cache=cache)
    assert all(r.pre_image.suffix == ".tif" for r in cached.crops.records)
    for i in range(len(data)):  # the same crops through the decoded cache
        assert all(torch.equal(data[i][k], cached[i][k]) for k in ("a", "b", "label"))


def test_one_shot_scores_with_the_models_own_similarity() -> None:
    """A learned metric ranks supports by its head's probability, not by the embeddings' cosine."""
    cfg = load_config(MetricConfig, None, [*TINY, "loss.name=learned_metric", "data.dataset=similarity-csv"])
    task = build_task(cfg, 3, False, BandStats([0.0] * 3, [1.0] * 3, [0.5] * 3, [0.25] * 3), "none").eval()
    rng = np.random.default_rng(0)
    query = rng.normal(size=(7, 16)).astype(np.float32)
    supports = rng.normal(size=(7, 4, 16)).astype(np.float32)
    scores = model_similarity(task)(query, supports)
    with torch.no_grad():
        head = torch.sigmoid(task.criterion.logits(torch.from_numpy(np.repeat(query, 4, 0)),
                                                   torch.from_numpy(supports.reshape(28, 16)))).view(7, 4)
    np.testing.assert_allclose(scores, head.numpy(), rtol=1e-6)
    cosine = np.einsum("td,tnd->tn", query, supports) / np.linalg.norm(supports, axis=2)
    assert (scores.argmax(1) != cosine.argmax(1)).any()  # a different ranking: the head really decides


# ---------------------------------------------------------------- training and verification
def test_training_separates_two_classes_and_verify_reports_it(tmp_path: Path) -> None:
    train_csv, val_csv = stripe_pairs(tmp_path / "train", 64, seed=0), stripe_pairs(tmp_path / "val", 32, seed=1)
    run = tmp_path / "run"
    cfg = load_config(MetricConfig, None, [*TINY, "data.dataset=similarity-csv", f"data.root={train_csv}",
                                           f"data.val_root={val_csv}", "data.crop_size=32", f"run_dir={run}",
                                           "loss.name=contrastive", "train.batch_size=16", "train.max_steps=40",
                                           "train.val_every=40", "optim.lr=2e-3", "optim.base_batch_size=16",
                                           "augment.rot90=false"])  # rot90 would turn one class into the other
    run_metric_train(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["history"]]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert metrics["val"]["roc_auc"] >= 0.9, metrics["val"]
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "encoder.safetensors").is_file()

    task, _ = load_metric_task(run / "checkpoints" / "best.pt", torch.device("cpu"))
    val = open_pair_dataset("similarity-csv", [str(val_csv)], crop_size=32)
    scores, labels = embed_pairs(task, val, torch.device("cpu"))
    assert roc_auc(scores, labels) == pytest.approx(metrics["val"]["roc_auc"])

    # one-shot on classes never seen in training: stripes at 45° and 135°, and checkerboards
    oneshot = tmp_path / "oneshot"
    rng = np.random.default_rng(5)
    for name in ("diagonal", "antidiagonal", "checker"):
        (oneshot / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(pattern(rng, name)).save(oneshot / name / f"{i}.png")
    out = tmp_path / "verify"
    assert main(["verify", "--ckpt", str(run / "checkpoints" / "best.pt"), "--data", str(val_csv), "--out", str(out),
                 "--device", "cpu", "--oneshot", str(oneshot), "--n-way", "3", "--trials", "300"]) == 0
    result = json.loads((out / "verify.json").read_text())
    assert result["roc_auc"] >= 0.9 and result["n_pairs"] == 32 and result["n_positive"] == 16
    assert 0 <= result["eer"] <= 0.2 and result["best_accuracy"] >= 0.85
    assert result["oneshot_classes"] == 3
    folder = FolderDataset(oneshot, None, 32, 0)
    with torch.no_grad():
        embeddings = torch.cat([task.embed(folder[i], 0) for i in range(len(folder))]).numpy()
    assert result["oneshot_accuracy"] == pytest.approx(one_shot_accuracy(embeddings, folder.labels, 3, 300, 0))
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_old_pairs_csv_config_and_checkpoint_still_load_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """``data.dataset=pairs-csv`` (the old name of ``similarity-csv``) is read under the new name: old configs load,
    an old checkpoint resumes under a config saying ``similarity-csv``, a new one under ``pairs-csv``."""
    csv_path, run = stripe_pairs(tmp_path / "pairs", 8, seed=0), tmp_path / "run"
    with caplog.at_level("WARNING"):
        assert load_config(MetricConfig, None, ["data.dataset=pairs-csv"]).data.dataset == "similarity-csv"
    assert "data.dataset=pairs-csv is deprecated: it is now called similarity-csv" in caplog.text
    common = ["metric-train", *TINY, f"data.root={csv_path}", "data.crop_size=32", "train.batch_size=4",
              f"run_dir={run}"]
    last = run / "checkpoints" / "last.pt"
    assert main([*common, "data.dataset=similarity-csv", "train.max_steps=1"]) == 0
    old = load_checkpoint(last)
    old["config"]["data"]["dataset"] = "pairs-csv"  # as a checkpoint written before the rename holds it
    atomic_save(old, last)
    assert load_metric_task(last, torch.device("cpu")).cfg.data.dataset == "similarity-csv"
    assert main([*common, "data.dataset=similarity-csv", "train.max_steps=2"]) == 0
    assert load_checkpoint(last)["step"] == 2 and load_checkpoint(last)["config"]["data"]["dataset"] == "similarity-csv"
    assert main([*common, "data.dataset=pairs-csv", "train.max_steps=3"]) == 0
    assert load_checkpoint(last)["step"] == 3
    capsys.readouterr()
    assert main([*common, "data.dataset=pairs-csv", "model.embed_dim=8", "train.max_steps=4"]) == 2
    err = capsys.readouterr().err  # the identity check still runs, and the dataset is not a difference
    assert "holds another run (model.embed_dim=16 → 8)" in err and "data.dataset" not in err, err
    assert main(["verify", "--ckpt", str(last), "--data", str(csv_path), "--dataset", "pairs-csv", "--device", "cpu",
                 "--out", str(tmp_path / "verify")]) == 0
    assert json.loads((tmp_path / "verify" / "verify.json").read_text())["dataset"] == "similarity-csv"


@pytest.mark.parametrize(("loss", "variant", "mining"), [("triplet", "triplet", "semi-hard"),
                                                          ("triplet", "triplet", "none"),
                                                          ("learned_metric", "pseudo", "batch-hard"),
                                                          ("contrastive", "classic", "none")])
def test_location_training_runs_every_combination(tmp_path: Path, dates: list[Path], loss: str, variant: str,
                                                   mining: str) -> None:
    run = tmp_path / "run"
    code = main(["metric-train", *TINY, f"data.root=[{dates[0]},{dates[1]}]", "data.crop_size=32",
                 "data.samples_per_epoch=16", f"run_dir={run}", f"loss.name={loss}", f"model.variant={variant}",
                 f"loss.mining={mining}", "train.batch_size=8", "train.max_steps=2"])
    assert code == 0
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)


def test_gru_pixel_series_training(tmp_path: Path, dates: list[Path]) -> None:
    run = tmp_path / "run"
    code = main(["metric-train", "--config", "configs/metric/gru_pixel_series.yaml", *TINY, "model.backbone=gru",
                 f"data.root=[{dates[0]},{dates[1]}]", "data.samples_per_epoch=64", f"run_dir={run}",
                 "train.batch_size=32", "train.max_steps=3", "model.rnn_hidden_dim=8"])
    assert code == 0
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 3
    assert not (run / "encoder.safetensors").exists()  # recurrent encoders are not exported as timm encoders


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.dataset=similarity-csv", "loss.name=triplet"], "needs loss.mining=none and a pair loss"),
    (["model.variant=triplet", "loss.name=contrastive"], "model.variant=triplet needs loss.name=triplet"),
    (["loss.name=contrastive", "loss.mining=semi-hard"], "semi-hard applies to the triplet loss"),
    (["model.backbone=gru"], "needs an image backbone"),
    (["loss.name=focal"], "loss.name 'focal'; valid: contrastive, learned_metric, triplet"),
])
def test_bad_combinations_are_one_line_errors(tmp_path: Path, dates: list[Path], capsys: pytest.CaptureFixture,
                                              overrides: list[str], message: str) -> None:
    root = f"data.root=[{dates[0]},{dates[1]}]"
    if "data.dataset=similarity-csv" in overrides:
        root = f"data.root={stripe_pairs(tmp_path / 'p', 2, seed=0)}"
    code = main(["metric-train", *TINY, root, f"run_dir={tmp_path / 'run'}", "train.max_steps=1", *overrides])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    if "backbone" not in overrides[0]:  # a config combination is refused before the run dir is created
        assert not (tmp_path / "run").exists()


def test_object_series_average_disjoint_halves_of_each_object(tmp_path: Path) -> None:
    """4 square objects with their own value (100·id + 10·date, ± noise): each observation is the object's mean
    series over one half of its pixels; training a GRU on them runs through the CLI."""
    rng = np.random.default_rng(0)
    squares = [(4, 4), (4, 30), (30, 4), (30, 30)]  # (row, col) of 16-pixel squares
    roots = []
    for t in range(2):
        data = rng.integers(0, 5, (2, 60, 60)).astype(np.uint16)
        for k, (r, c) in enumerate(squares):
            data[:, r:r + 16, c:c + 16] += np.uint16(100 * (k + 1) + 10 * t)
        (tmp_path / f"t{t}").mkdir()
        write_geotiff(tmp_path / f"t{t}" / "scene.tif", data)
        roots.append(str(tmp_path / f"t{t}"))
    features = [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
        [500_000 + c + 1, 4_000_000 - r - 1], [500_000 + c + 15, 4_000_000 - r - 1],
        [500_000 + c + 15, 4_000_000 - r - 15], [500_000 + c + 1, 4_000_000 - r - 15],
        [500_000 + c + 1, 4_000_000 - r - 1]]]}} for r, c in squares]
    objects = tmp_path / "objects.geojson"
    objects.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    data = open_pair_dataset("object-series", roots, crop_size=0, objects=str(objects), negatives=True)
    assert len(data) == 4 and data.series and data.num_bands == 2
    for k in range(4):
        item = data[k]
        assert item["a"].shape == item["b"].shape == (2, 2, 1) and int(item["group"]) == k
        expected = torch.tensor([[100.0 * (k + 1), 100.0 * (k + 1) + 10]] * 2)[..., None] + 2
        torch.testing.assert_close(item["a"], expected, atol=1.0, rtol=0)
        torch.testing.assert_close(item["b"], expected, atol=1.0, rtol=0)
        assert not torch.equal(item["a"], item["b"])  # two different halves of the pixels
        assert int(item["group_n"]) != k
    with pytest.raises(ConfigError, match="data.objects is required"):
        open_pair_dataset("object-series", roots, crop_size=0)
    run = tmp_path / "run"
    code = main(["metric-train", "--config", "configs/metric/gru_pixel_series.yaml", *TINY, "model.backbone=lstm",
                 "data.dataset=object-series", f"data.root=[{roots[0]},{roots[1]}]", f"data.objects={objects}",
                 f"run_dir={run}", "train.batch_size=4", "train.max_steps=2", "model.rnn_hidden_dim=8"])
    assert code == 0 and len(json.loads((run / "metrics.json").read_text())["history"]) == 2


def test_train_and_verify_on_an_xbd_split_with_a_single_image(tmp_path: Path) -> None:
    """xbd-pairs use every building of the given splits (no train/test split of their own): metric-train and
    ssl-siam verify both work on the one-image sample split, verify scores all 19 labelled buildings."""
    split = TEST_DATA / "xbd"
    run = tmp_path / "run"
    assert main(["metric-train", "--config", "metric/xbd_building_pairs", *TINY, f"data.root={split}",
                 f"data.val_root={split}", f"run_dir={run}", "data.crop_size=32", "train.batch_size=8",
                 "train.max_steps=2", "train.val_every=2"]) == 0
    out = tmp_path / "verify"
    assert main(["verify", "--ckpt", str(run / "checkpoints" / "last.pt"), "--data", str(split), "--out", str(out),
                 "--device", "cpu"]) == 0
    result = json.loads((out / "verify.json").read_text())
    assert result["n_pairs"] == 19 and 0 <= result["roc_auc"] <= 1
