"""Scene finetuning run by the shared launcher: the labelled images of a class folder's training split → encoder +
linear head; :func:`predict_scenes` classifies images with a finished run's checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_siam.core.config import from_dict
from ssl_siam.core.errors import ConfigError
from ssl_siam.data.class_folders import SceneSplit, split_scenes
from ssl_siam.data.rasters import load_image
from ssl_siam.data.stats import BandStats
from ssl_siam.encoders import EncoderMeta, create_encoder, load_encoder
from ssl_siam.eval.datasets import FolderDataset
from ssl_siam.eval.features import data_stats
from ssl_siam.scenes.config import SceneFinetuneConfig
from ssl_siam.scenes.task import SceneClassifier, SceneTask
from ssl_siam.train.checkpoint import load_checkpoint
from ssl_siam.train.launch import Built, launch, training_loader
from ssl_siam.train.runtime import Runtime


class LabelledScenes(torch.utils.data.Dataset):
    """``(index, image [C, S, S] raw float32, label)`` of the given files; the sampler's running index
    (``epoch · n + i``, :class:`~ssl_siam.data.sampling.ResumableSampler`) is taken modulo their number."""

    def __init__(self, files: list[Path], labels: np.ndarray, image_size: int, num_bands: int) -> None:
        self.files, self.labels, self.image_size, self.num_bands = files, labels, image_size, num_bands

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, int]:
        i = index % len(self.files)
        return index, load_image(self.files[i], self.image_size, self.num_bands, self.files[0]), int(self.labels[i])


def open_split(cfg: SceneFinetuneConfig) -> SceneSplit:
    if not cfg.data.root:
        raise ConfigError("data.root is required: a class folder <class>/*.{tif,png,jpg}")
    return split_scenes(cfg.data.root, cfg.data.test_fraction, cfg.data.split_seed, cfg.data.val_root)


def labelled_indices(split: SceneSplit, train_ids: list[str] | None) -> np.ndarray:
    """Indices of ``train_ids`` among the split's training images (all of them for None)."""
    training = {image_id: i for i, (image_id, test) in enumerate(zip(split.ids(), split.is_test)) if not test}
    if train_ids is None:
        return np.array(sorted(training.values()))
    if missing := next((i for i in train_ids if i not in training), None):
        raise ConfigError(f"data.train_ids: {missing} is not a training image of {split.root}")
    return np.array(sorted(training[i] for i in train_ids))


def build_encoder(cfg: SceneFinetuneConfig, split: SceneSplit, in_chans: int
                  ) -> tuple[torch.nn.Module, BandStats, dict[str, Any]]:
    """The encoder, the band statistics it expects (an export's own, else those of the training images) and what
    rebuilds it (``backbone``, ``in_chans``, ``timm_kwargs``)."""
    m = cfg.model
    if m.encoder_weights:
        meta = EncoderMeta.read(m.encoder_weights)
        if meta.in_chans != in_chans:
            raise ConfigError(f"model.encoder_weights: the encoder takes {meta.in_chans} bands, {split.root} has "
                              f"{in_chans}")
        arch = {"backbone": meta.backbone, "in_chans": in_chans, "timm_kwargs": dict(meta.timm_kwargs)}
        if meta.normalization is not None:
            return load_encoder(meta), meta.normalization, arch
        encoder = load_encoder(meta)
    else:
        arch = {"backbone": m.backbone, "in_chans": in_chans, "timm_kwargs": {}}
        encoder = create_encoder(m.backbone, in_chans, m.pretrained)
    pool = dataclasses.replace(split, files=[f for f, t in zip(split.files, split.is_test) if not t],
                               labels=split.labels[~split.is_test], is_test=np.zeros(int((~split.is_test).sum()), bool))
    return encoder, data_stats(FolderDataset.from_split(pool, cfg.data.image_size), cfg.train.seed), arch


def build_scene_finetune(cfg: SceneFinetuneConfig, run_dir: Path, runtime: Runtime) -> Built:
    split = open_split(cfg)
    chosen = labelled_indices(split, cfg.data.train_ids)
    num_bands = FolderDataset.from_split(split, cfg.data.image_size).num_bands
    dataset = LabelledScenes([split.files[i] for i in chosen], split.labels[chosen], cfg.data.image_size, num_bands)
    encoder, stats, arch = build_encoder(cfg, split, num_bands)
    task = SceneTask(SceneClassifier(encoder, len(split.classes), stats), split.classes, arch, cfg.train.seed,
                     cfg.model.encoder_lr_scale, cfg.data.dihedral, runtime.memory_format)
    repeats = -(-cfg.train.batch_size // len(dataset))  # an epoch holds at least one batch, every image equally
    return Built(dataset, task, training_loader(dataset, cfg, runtime, num_samples=len(dataset) * repeats))


def run_scene_finetune(cfg: SceneFinetuneConfig) -> Path:
    """Finetune (or resume) as configured; returns the run directory (``checkpoints/last.pt``)."""
    return launch(cfg, "scene-finetune", build_scene_finetune)


@torch.no_grad()
def predict_scenes(ckpt_path: str | Path, files: list[Path], device: torch.device, batch_size: int = 64
                   ) -> np.ndarray:
    """Predicted class indices [N] of ``files`` by a scene-finetuning checkpoint (resized as in training)."""
    ckpt = load_checkpoint(ckpt_path, kind="scene")
    cfg, extra = from_dict(SceneFinetuneConfig, ckpt["config"]), ckpt["extra"]
    stats, arch = BandStats(**extra["stats"]), extra["arch"]
    encoder = create_encoder(arch["backbone"], arch["in_chans"], **arch["timm_kwargs"])
    model = SceneClassifier(encoder, len(extra["classes"]), stats)
    model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["model"].items()})
    model.to(device).eval()
    dataset = LabelledScenes(files, np.zeros(len(files), np.int64), cfg.data.image_size, stats.num_bands)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=0)
    return torch.cat([model(images.to(device)).argmax(1).cpu() for _, images, _ in loader]).numpy()
