"""Finetuning end to end: loss goes down, validation scores with xView2, best.pt, predict round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import ROOT, killed_after_first_checkpoint
from rasterio.transform import from_origin

from ssl_siam.change.config import FinetuneConfig
from ssl_siam.change.run import FinetuneTask, build_criterion, build_model, load_finetuned, run_finetune
from ssl_siam.change.tasks import change_task
from ssl_siam.core.config import load_config
from ssl_siam.data.stats import BandStats
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder
from ssl_siam.tools.synthetic import make_xbd_split
from ssl_siam.train.checkpoint import load_checkpoint

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def xbd_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xbd") / "train"
    make_xbd_split(root, 6, size=128, seed=0)
    return root


def tiny(split: Path, run_dir: Path, steps: int = 4) -> list[str]:
    return [f"data.root={split}", f"run_dir={run_dir}", "model.backbone=resnet18", "data.crop_size=64",
            "train.batch_size=2", f"train.max_steps={steps}", "train.device=cpu", "data.num_workers=0",
            "train.progress=false", "train.log_every=1", "data.stats_samples=8", "data.val_fraction=0.34",
            "model.decoder_channels=[32,16,16,8,8]", "optim.warmup_steps=0"]


def test_loss_decreases_on_a_fixed_batch() -> None:
    cfg = load_config(FinetuneConfig, None, ["model.backbone=resnet18", "model.decoder_channels=[32,16,16,8,8]"])
    torch.manual_seed(0)
    stats = BandStats(low=[0.0] * 3, high=[255.0] * 3, mean=[0.5] * 3, std=[0.25] * 3)
    change = change_task(cfg.task)
    task = FinetuneTask(build_model(cfg, change, 3, 3), build_criterion(cfg, change), stats, stats)
    g = torch.Generator().manual_seed(0)
    pre = torch.randint(0, 255, (2, 3, 64, 64), generator=g, dtype=torch.uint8)
    mask = torch.zeros(2, 64, 64, dtype=torch.long)
    mask[:, 16:40, 16:40] = 4
    post = pre.clone()
    post[:, :, 16:40, 16:40] = 30  # "destroyed" area changes in the post image
    mask[0, 0, 0] = 255  # an ignored pixel
    batch = {"pre": pre, "post": post, "mask": mask}
    opt = torch.optim.AdamW([g for g in task.param_groups()], lr=1e-3)
    losses = []
    for step in range(6):
        out = task.training_step(batch, step, 0)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
        assert {"main_focal", "main_dice", "aux0"} <= out.keys()
    assert losses[-1] < losses[0], losses


def test_freeze_encoder_and_encoder_lr(xbd_split: Path) -> None:
    cfg = load_config(FinetuneConfig, None, ["model.backbone=resnet18", "model.decoder_channels=[32,16,16,8,8]"])
    stats = BandStats(low=[0.0] * 3, high=[255.0] * 3, mean=[0.5] * 3, std=[0.25] * 3)
    change = change_task(cfg.task)
    task = FinetuneTask(build_model(cfg, change, 3, 3), build_criterion(cfg, change), stats, stats,
                        freeze_encoder_epochs=1, encoder_lr_scale=0.1)
    task.configure(total_steps=10, steps_per_epoch=3)
    encoder = {id(p) for p in task.model.encoder_parameters()}
    for group in task.param_groups():
        in_encoder = {id(p) in encoder for p in group["params"]}
        assert len(in_encoder) == 1 and (group.get("lr_scale", 1.0) == 0.1) == in_encoder.pop()
    for p in task.model.parameters():
        p.grad = torch.ones_like(p)
    task.before_optimizer_step(2)  # still in the first epoch: encoder gradients dropped
    assert all(p.grad is None for p in task.model.encoder_parameters())
    assert all(p.grad is not None for p in task.model.decoder_parameters())


def test_encoder_lr_scale_zero_freezes_the_encoder_but_not_its_batchnorm_statistics() -> None:
    cfg = load_config(FinetuneConfig, None, ["model.backbone=resnet18", "model.decoder_channels=[32,16,16,8,8]"])
    torch.manual_seed(0)
    stats = BandStats(low=[0.0] * 3, high=[255.0] * 3, mean=[0.5] * 3, std=[0.25] * 3)
    change = change_task(cfg.task)
    task = FinetuneTask(build_model(cfg, change, 3, 3), build_criterion(cfg, change), stats, stats,
                        encoder_lr_scale=0.0)
    encoder = {id(p) for p in task.model.encoder_parameters()}
    assert all(id(p) not in encoder for g in task.param_groups() for p in g["params"])
    before = {k: v.clone() for k, v in task.model.encoder.state_dict().items()}
    decoder_before = [p.detach().clone() for p in task.model.decoder_parameters()]
    g = torch.Generator().manual_seed(0)
    batch = {"pre": torch.randint(0, 255, (2, 3, 64, 64), generator=g, dtype=torch.uint8),
             "post": torch.randint(0, 255, (2, 3, 64, 64), generator=g, dtype=torch.uint8),
             "mask": torch.randint(0, 2, (2, 64, 64), generator=g)}
    opt = torch.optim.AdamW(task.param_groups(), lr=1e-2)
    task.train()
    for step in range(2):
        loss = task.training_step(batch, step, 0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = task.model.encoder.state_dict()
    for name, value in before.items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.equal(value, after[name]), name  # weights untouched
    assert all(p.grad is None for p in task.model.encoder_parameters())  # no backward through the encoder
    moved = [n for n in before if n.endswith("running_mean") and not torch.equal(before[n], after[n])]
    assert moved  # BatchNorm statistics still adapt to the new data
    assert any(not torch.equal(b, p) for b, p in zip(decoder_before, task.model.decoder_parameters()))


def test_finetune_cli_contract_then_predict(xbd_split: Path, tmp_path: Path) -> None:
    enc_dir = tmp_path / "ssl"
    export_encoder(create_encoder("resnet18", 3), enc_dir, EncoderMeta("resnet18", 3))
    run_dir = tmp_path / "ft"
    proc = subprocess.run(
        [sys.executable, "finetune/finetune.py", "--config", "configs/finetune/xbd_resnet50.yaml",
         *tiny(xbd_split, run_dir, steps=6), f"model.encoder_weights={enc_dir / 'encoder.safetensors'}",
         "train.val_every=3"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.json", "targets"):
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == 6 and len(metrics["val_history"]) == 2
    val = metrics["val"]
    assert 0.0 <= val["score"] <= 1.0 and {"localization_f1", "damage_f1", "f1_destroyed"} <= val.keys()
    assert metrics["best_score"] == max(v["score"] for v in metrics["val_history"])

    # predict on a georeferenced GeoTIFF pair: outputs keep CRS and transform
    pre_png = sorted((xbd_split / "images").glob("*_pre_disaster.png"))[0]
    from PIL import Image

    transform = from_origin(500000.0, 4200000.0, 0.5, 0.5)
    pair = {}
    for phase in ("pre", "post"):
        img = np.asarray(Image.open(str(pre_png).replace("_pre_", f"_{phase}_"))).transpose(2, 0, 1)
        pair[phase] = tmp_path / f"scene_{phase}_disaster.tif"
        with rasterio.open(pair[phase], "w", driver="GTiff", width=128, height=128, count=3, dtype="uint8",
                           crs="EPSG:32636", transform=transform) as dst:
            dst.write(img)
    out = tmp_path / "pred"
    proc = subprocess.run(
        [sys.executable, "-m", "ssl_siam.cli", "predict", "--ckpt", str(run_dir / "checkpoints" / "best.pt"),
         "--pre", str(pair["pre"]), "--post", str(pair["post"]), "--out", str(out), "--device", "cpu",
         "--window", "64"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr  # nothing from GDAL / libtiff on a successful GeoTIFF prediction
    damage = np.asarray(Image.open(out / "scene_damage_prediction.png"))
    assert damage.shape == (128, 128) and damage.dtype == np.uint8 and damage.max() <= 4
    for name in ("scene_localization_prediction.png", "scene_overlay.png", "scene_buildings.geojson"):
        assert (out / name).is_file(), name
    with rasterio.open(out / "scene_damage.tif") as src:
        assert src.crs.to_epsg() == 32636 and src.transform == transform

    task, cfg, runtime, change = load_finetuned(run_dir / "checkpoints" / "last.pt", "cpu")
    assert runtime.device == torch.device("cpu") and runtime.amp_dtype is None
    assert change.name == "damage" and change.mask_threshold is None
    # a checkpoint written before checkpoints stored their kind (0.1) still loads, to the same weights
    from ssl_siam.train.checkpoint import atomic_save

    legacy = {k: v for k, v in load_checkpoint(run_dir / "checkpoints" / "last.pt").items() if k != "kind"}
    atomic_save(legacy, tmp_path / "legacy.pt")
    old = load_finetuned(tmp_path / "legacy.pt", "cpu").task
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), task.state_dict().values()))
    assert cfg.model.backbone == "resnet18" and not task.training


def test_resume_equals_uninterrupted(xbd_split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crops, worker geometry and the device-side photometric jitter are functions of the sample index, so a run
    cut after its step-3 checkpoint and resumed ends with the uninterrupted run's weights, bit for bit."""
    def finetune(name: str) -> Path:
        cfg = load_config(FinetuneConfig, None, [*tiny(xbd_split, tmp_path / name, steps=6), "train.val_every=100",
                                                 "train.checkpoint_every=3", "data.misregistration_px=2",
                                                 "data.photometric_on_device=true"])
        return run_finetune(cfg)

    full = finetune("full")
    killed_after_first_checkpoint(monkeypatch, lambda: finetune("cut"))
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 3
    resumed = finetune("cut")
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (full, resumed))
    assert a["step"] == b["step"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


@pytest.mark.parametrize(("overrides", "kind", "expected"), [
    (["loss.name=focal", "loss.gamma=0.5", "loss.alpha=[1,2,3,4,5]"], "FocalLoss", {"gamma": 0.5}),
    (["loss.name=dice", "loss.class_weights=[0,1,1,1,2]"], "DiceLoss", {}),
    (["loss.focal_weight=0.3", "loss.gamma=1.0"], "FocalDiceLoss", {"focal_weight": 0.3}),
])
def test_loss_options_reach_the_chosen_loss(overrides: list[str], kind: str, expected: dict) -> None:
    cfg = load_config(FinetuneConfig, None, overrides)
    base = build_criterion(cfg, change_task(cfg.task)).base
    assert type(base).__name__ == kind
    assert all(getattr(base, k) == v for k, v in expected.items())
    if kind == "FocalLoss":
        torch.testing.assert_close(base.alpha, torch.tensor([1.0, 2, 3, 4, 5]))
    if kind == "DiceLoss":
        torch.testing.assert_close(base.class_weights, torch.tensor([0.0, 1, 1, 1, 2]))


@pytest.mark.parametrize(("overrides", "key"), [
    (["loss.name=focal", "loss.class_weights=[1,1,1,1,2]"], "loss.class_weights"),
    (["loss.name=dice", "loss.gamma=0.5"], "loss.gamma"),
    (["loss.name=dice", "loss.alpha=[1,1,1,1,2]"], "loss.alpha"),
    (["loss.name=focal", "loss.dice_weight=2"], "loss.dice_weight"),
])
def test_loss_options_the_loss_ignores_are_refused(overrides: list[str], key: str) -> None:
    from ssl_siam.core.errors import ConfigError

    cfg = load_config(FinetuneConfig, None, overrides)
    with pytest.raises(ConfigError, match=rf"{key}=.* has no effect with loss.name="):
        build_criterion(cfg, change_task(cfg.task))


def test_finetuning_starts_from_the_exported_encoder_with_its_normalization(xbd_split: Path, tmp_path: Path) -> None:
    """The plumbing of "does pretraining help": at step 0 the finetune encoder holds exactly the exported weights
    (BN running statistics included) and the inputs are normalised with the statistics pretraining used."""
    from ssl_siam.change.run import build_finetuning
    from ssl_siam.train.launch import prepare

    torch.manual_seed(3)
    exported = create_encoder("resnet18", 3)
    for module in exported.modules():  # non-trivial BN statistics, as after pretraining
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    stats = BandStats([3.0] * 3, [240.0] * 3, [0.45, 0.5, 0.55], [0.2, 0.21, 0.22])
    export_encoder(exported, tmp_path / "ssl", EncoderMeta("resnet18", 3, normalization=stats))
    cfg = load_config(FinetuneConfig, None, [*tiny(xbd_split, tmp_path / "run"),
                                             f"model.encoder_weights={tmp_path / 'ssl'}"])
    session = prepare(cfg, "finetune", build_finetuning)
    session.close()
    task = session.built.task
    state = task.model.encoder.state_dict()
    reference = exported.state_dict()
    assert set(state) == set(reference) - {"fc.weight", "fc.bias"}  # features_only drops nothing else
    assert all(torch.equal(state[k], reference[k]) for k in state)
    assert task.pre_stats == stats and task.post_stats == stats
    assert BandStats.load(tmp_path / "run" / "stats_pre.json") == stats
