"""End to end through the command line, exactly as users and outside checks call it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import ROOT, TEST_DATA, tiny_overrides, write_scene_folder

import ssl_siam
from ssl_siam.core.config import load_config
from ssl_siam.data.sampling import IndexedDataset, seeded_generator
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.ssl.run import build_pretraining
from ssl_siam.train.runtime import Runtime

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(*args: str, script: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, script] if script else [sys.executable, "-m", "ssl_siam.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)


def test_contract_command(tmp_path: Path, tile_dir: Path) -> None:
    run_dir = tmp_path / "run"
    proc = cli("pretrain", "--config", "configs/pretrain/simsiam_resnet50.yaml", "objective=simsiam",
               f"data.root={tile_dir}", "model.backbone=resnet18", "data.tile_size=64", "train.batch_size=8",
               "train.max_steps=20", "train.device=cpu", f"run_dir={run_dir}", "data.num_workers=0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("config.yaml", "checkpoints/last.pt", "encoder.safetensors", "encoder.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == 20 and {"loss", "collapse_std"} <= metrics.keys()
    encoder = ssl_siam.load_encoder(run_dir)
    assert encoder(torch.rand(1, 3, 64, 64)).shape == (1, 512)


def test_script_multiband_geotiff_dino(tmp_path: Path) -> None:
    """`python pretrain/pretrain.py`, 4 stacked Sentinel-2 uint16 bands, DINO multi-crop."""
    run_dir = tmp_path / "s2"
    over = tiny_overrides("dino", TEST_DATA / "geotiff" / "sentinel2_{band}.tif", run_dir, steps=2)
    proc = cli("--config", "configs/pretrain/dino_resnet50.yaml", *over, "data.band_names=[B02,B03,B04,B08]",
               "augment.n_local=2", script="pretrain/pretrain.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((run_dir / "encoder.json").read_text())
    assert meta["in_chans"] == 4 and meta["objective"] == "dino" and len(meta["normalization"]["mean"]) == 4


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    for args, expected in (
        (["data.root=/nonexistent/tiles"], "/nonexistent/tiles"),
        ([f"data.root={TEST_DATA / 'xbd' / 'images'}", "objective=simclr"], "unknown objective 'simclr'"),
        ([f"data.root={TEST_DATA / 'xbd' / 'images'}", "data.bands=[9]"], "band"),
    ):
        proc = cli("pretrain", f"run_dir={tmp_path / 'bad'}", "train.device=cpu", *args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_worker_augmentation_matches_on_device(tile_dir: Path, tmp_path: Path) -> None:
    """augment.on_device=false (views built in 2 DataLoader workers) gives the same views as on-device."""
    cfg = load_config(PretrainConfig, None, tiny_overrides("simsiam", tile_dir, tmp_path / "w") + [
        "augment.on_device=false", "data.num_workers=2"])
    built = build_pretraining(cfg, tmp_path, Runtime.create("cpu"))
    built.loader.sampler.set_epoch(0)
    index, worker_views = next(iter(built.loader))
    tiles = torch.stack([IndexedDataset(built.dataset)[int(i)][1] for i in index])
    pipeline = built.task.pipeline
    device_views = pipeline(tiles, seeded_generator(tiles.device, cfg.train.seed, int(index[0])))
    for a, b in zip(worker_views, device_views):
        torch.testing.assert_close(a, b)


def test_scene_recipe_monitors_knn_on_its_own_class_folder(tmp_path: Path) -> None:
    """`simsiam_resnet18_scenes` pretrains on a class folder and, with knn.on_data_root, reads its labels only for
    the kNN monitor: val/knn_top1 is logged and a planted folder is separated."""
    from ssl_siam.cli import main

    folder = write_scene_folder(tmp_path / "scenes", per_class=8)
    assert main(["pretrain", "--config", "simsiam_resnet18_scenes", *tiny_overrides("simsiam", folder, tmp_path / "r"),
                 "data.tile_size=32", "knn.crop_size=32", "knn.every_epochs=1", "knn.k=3"]) == 0
    cfg = load_config(PretrainConfig, "pretrain/simsiam_resnet18_scenes")
    assert cfg.knn.on_data_root and not cfg.knn.data and cfg.augment.global_size == 64 and cfg.data.tile_size == 160
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["val"]["knn_top1"] == 1.0 and len(metrics["val_history"]) >= 1
