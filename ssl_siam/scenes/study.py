"""The ``finetune`` arm of a scene study: one scene-finetuning run per cell, scored on the study's test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssl_siam.core.config import from_dict
from ssl_siam.data.class_folders import SceneSplit
from ssl_siam.scenes.config import SceneFinetuneConfig
from ssl_siam.scenes.run import predict_scenes, run_scene_finetune
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.scenes import SceneCell
from ssl_siam.train.rundir import last_checkpoint_path
from ssl_siam.train.runtime import resolve_device


def cell_config(cfg: StudyConfig, cell: SceneCell, split: SceneSplit, run_dir: Path) -> SceneFinetuneConfig:
    """The cell's finetuning: its labelled images, encoder and seed; the study's scene.finetune_* settings; SGD
    with a cosine schedule; no validation (scored on the test images with ``last.pt``, never selected on them)."""
    s, ids = cfg.scene, split.ids()
    return from_dict(SceneFinetuneConfig, {
        "run_dir": str(run_dir), "resume": "auto",
        "data": {"root": str(split.root), "val_root": split.val_root and str(split.val_root),
                 "test_fraction": split.test_fraction or 0.5, "split_seed": split.seed,
                 "train_ids": [ids[i] for i in cell.indices], "image_size": s.image_size, "num_workers": 0},
        "model": {"backbone": cell.encoder.backbone, "encoder_weights": cell.encoder.encoder_weights,
                  "pretrained": cell.encoder.pretrained, "encoder_lr_scale": s.finetune_encoder_lr_scale},
        "optim": {"name": "sgd", "lr": s.finetune_lr, "base_batch_size": s.finetune_batch_size,
                  "weight_decay": s.finetune_weight_decay, "momentum": 0.9},
        "train": {"device": s.device, "batch_size": s.finetune_batch_size, "max_steps": s.finetune_steps,
                  "checkpoint_every": s.finetune_steps, "log_every": max(1, s.finetune_steps // 10),
                  "seed": cell.seed, "progress": False},
    })


def finetune_cell(cfg: StudyConfig, cell: SceneCell, split: SceneSplit, run_dir: Path) -> tuple[np.ndarray, int]:
    """Finetune (or resume) the cell's run and predict the test images: ``(predicted [M], labelled images)``."""
    ft = cell_config(cfg, cell, split, run_dir)
    run_scene_finetune(ft)
    test = [f for f, t in zip(split.files, split.is_test) if t]
    predicted = predict_scenes(last_checkpoint_path(run_dir), test, resolve_device(cfg.scene.device,
                                                                                          "scene.device"))
    return predicted, len(cell.indices)
