"""Scene finetuning (the finetune arm of task=scene studies): encoder + linear head on the shared loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_scene_folder

from ssl_siam.core.config import from_dict, load_config
from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.data.class_folders import split_scenes
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder, read_state_dict
from ssl_siam.scenes.config import SceneFinetuneConfig
from ssl_siam.scenes.run import predict_scenes, run_scene_finetune
from ssl_siam.scenes.task import dihedral
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.run import run_study
from ssl_siam.train.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scene_folder(tmp_path_factory.mktemp("scenes") / "scenes", per_class=6)


def config(root: Path, run_dir: Path, *extra: tuple[str, object]) -> SceneFinetuneConfig:
    data = {"run_dir": str(run_dir), "data": {"root": str(root), "image_size": 32, "num_workers": 0},
            "optim": {"lr": 0.05, "base_batch_size": 8, "warmup_steps": 0},
            "train": {"device": "cpu", "batch_size": 8, "max_steps": 12, "checkpoint_every": 6, "progress": False}}
    for key, value in extra:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return from_dict(SceneFinetuneConfig, data)


def test_dihedral_draws_each_of_the_eight_and_keeps_pixels() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = dihedral(x, torch.Generator().manual_seed(0))
    variants = {tuple(o.flatten().tolist()) for o in out}
    assert len(variants) == 8  # 64 draws hit all 8 flips / rotations
    assert all(sorted(v) == list(range(16)) for v in variants)


def test_finetune_learns_planted_scenes_and_predicts_from_the_checkpoint(folder: Path, tmp_path: Path) -> None:
    run = run_scene_finetune(config(folder, tmp_path / "run"))
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt", kind="scene")
    assert ckpt["step"] == 12 and ckpt["extra"]["classes"] == ["field", "forest", "water"]
    split = split_scenes(folder, 0.5, 0)
    test = [f for f, t in zip(split.files, split.is_test) if t]
    predicted = predict_scenes(run / "checkpoints" / "last.pt", test, torch.device("cpu"))
    assert (predicted == split.labels[split.is_test]).mean() == 1.0
    with pytest.raises(DataError, match="is a scene checkpoint, expected a finetune checkpoint"):
        load_checkpoint(run / "checkpoints" / "last.pt", kind="finetune")


def test_frozen_encoder_keeps_its_weights_and_ids_are_checked(folder: Path, tmp_path: Path) -> None:
    export_encoder(create_encoder("resnet18", 3), tmp_path / "ssl", EncoderMeta("resnet18", 3))
    run = run_scene_finetune(config(folder, tmp_path / "frozen", ("model.encoder_weights", str(tmp_path / "ssl")),
                                    ("model.encoder_lr_scale", 0.0), ("train.max_steps", 3)))
    trained = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    exported = read_state_dict(tmp_path / "ssl" / "encoder.safetensors")
    assert all(torch.equal(trained[f"model.encoder.{k}"], v) for k, v in exported.items()
               if "running" not in k and "num_batches" not in k)  # BN statistics are buffers, not weights
    with pytest.raises(ConfigError, match="data.train_ids: field/nope.png is not a training image"):
        run_scene_finetune(config(folder, tmp_path / "bad", ("data.train_ids", ["field/nope.png"])))


def test_study_finetune_arm(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(StudyConfig, "study/scenes_label_efficiency", [
        f"data.root={folder}", "encoders=[random:resnet18]", "budgets=[2]", "seeds=[0]", f"run_dir={tmp_path / 's'}",
        "scene.image_size=32", "scene.device=cpu", "scene.methods=[knn,finetune]", "scene.finetune_steps=4",
        "scene.finetune_batch_size=4"])
    run_study(cfg)
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert [r["method"] for r in study["rows"]] == ["knn", "finetune"]
    cell = tmp_path / "s" / "cells" / "random_resnet18" / "n2" / "seed0"
    ckpt = load_checkpoint(cell / "finetune" / "checkpoints" / "last.pt", kind="scene")
    assert ckpt["step"] == 4 and len(ckpt["config"]["data"]["train_ids"]) == 6  # 2 per class
    finetune = next(r for r in json.loads((cell / "score.json").read_text()) if r["method"] == "finetune")
    assert finetune["n_train"] == 6 and finetune["n_test"] == 9 and np.isfinite(finetune["score"])

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("finetuning alone needs no frozen features")

    monkeypatch.setattr("ssl_siam.study.scenes.encoder_features", fail)
    alone = load_config(StudyConfig, str(tmp_path / "s" / "config.yaml"), [f"run_dir={tmp_path / 'alone'}",
                                                                          "scene.methods=[finetune]"])
    run_study(alone)
    assert [r["method"] for r in json.loads((tmp_path / "alone" / "study.json").read_text())["rows"]] == ["finetune"]
