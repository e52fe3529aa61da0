"""Self-supervised pretraining, assembled from config: tiles → views → objective → shared loop → export."""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader

from ssl_siam.config import to_dict
from ssl_siam.data.robust import SkipBad
from ssl_siam.data.sampling import IndexedDataset, ResumableSampler, make_loader
from ssl_siam.data.stats import BandStats, compute_stats
from ssl_siam.data.tiles import TileDataset
from ssl_siam.distributed import World, barrier, init_distributed
from ssl_siam.engine import Trainer, memory_format, resolve_device
from ssl_siam.errors import ConfigError, DataError
from ssl_siam.models.encoders import create_encoder, export_encoder
from ssl_siam.probe.datasets import open_dataset
from ssl_siam.rundir import prepare_shared_run_dir
from ssl_siam.schema import PretrainConfig, TileDataConfig
from ssl_siam.ssl import OBJECTIVES
from ssl_siam.ssl.base import Objective
from ssl_siam.ssl.monitor import KNNMonitor
from ssl_siam.ssl.task import AugmentCollate, PretrainTask
from ssl_siam.ssl.views import ViewPipeline

log = logging.getLogger(__name__)


def build_tiles(cfg: TileDataConfig, seed: int) -> TileDataset:
    if not cfg.root:
        raise ConfigError("data.root is required: a folder, glob or file of unlabeled tiles")
    return TileDataset(cfg.root, cfg.tile_size, bands=cfg.bands, band_names=cfg.band_names,
                       sampling=cfg.sampling, samples_per_epoch=cfg.samples_per_epoch,
                       max_nodata_fraction=cfg.max_nodata_fraction, nodata=cfg.nodata, seed=seed)


def resolve_stats(cfg: TileDataConfig, dataset: TileDataset, run_dir: Path, seed: int) -> BandStats:
    """Stats from ``data.normalization`` or ``data.stats``, else the run's saved ``stats.json``, else computed
    once and saved there."""
    saved = run_dir / "stats.json"
    if cfg.normalization is not None:
        try:
            stats = BandStats(**cfg.normalization)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.normalization: expected lists low, high, mean, std per band ({exc})") from None
    elif cfg.stats:
        stats = BandStats.load(cfg.stats)
    elif saved.is_file():
        stats = BandStats.load(saved)
    else:
        stats = compute_stats(dataset, num_samples=cfg.stats_samples, seed=seed)
    if stats.num_bands != dataset.num_bands:
        source = "data.normalization" if cfg.normalization is not None else cfg.stats or saved
        raise DataError(f"{source}: stats for {stats.num_bands} bands, data has {dataset.num_bands}")
    stats.save(saved)
    return stats


def build_loader(dataset: TileDataset, cfg: PretrainConfig, pipeline: ViewPipeline,
                 device: torch.device, rank: int = 0, world: int = 1) -> DataLoader:
    sampler = ResumableSampler(len(dataset), cfg.train.batch_size, seed=cfg.train.seed, rank=rank,
                               num_replicas=world)
    collate = None if cfg.augment.on_device else AugmentCollate(pipeline, cfg.train.seed)
    return make_loader(IndexedDataset(dataset), sampler, num_workers=cfg.data.num_workers, collate_fn=collate,
                       pin_memory=cfg.data.pin_memory and device.type == "cuda",
                       prefetch_factor=cfg.data.prefetch_factor)


class PretrainPipeline(NamedTuple):
    """Everything between the config and the training loop (shared by ``run_pretrain`` and ``ssl-siam bench``)."""

    dataset: TileDataset | SkipBad
    stats: BandStats
    objective: Objective
    views: ViewPipeline
    task: PretrainTask
    loader: DataLoader


def build_pipeline(cfg: PretrainConfig, run_dir: Path, device: torch.device, world: World | None = None
                   ) -> PretrainPipeline:
    """Tiles → band statistics (computed once by rank 0, saved as ``stats.json``) → views → objective → loader."""
    world = world or World()
    dataset = build_tiles(cfg.data, cfg.train.seed)
    if cfg.data.skip_bad:
        dataset = SkipBad(dataset, cfg.data.max_bad_fraction)
    if world.is_main:
        resolve_stats(cfg.data, dataset, run_dir, cfg.train.seed)
    barrier(world)
    stats = BandStats.load(run_dir / "stats.json")
    make_encoder = functools.partial(create_encoder, cfg.model.backbone, dataset.num_bands, cfg.model.pretrained,
                                     **cfg.model.timm_kwargs)
    objective = OBJECTIVES.get(cfg.objective)(make_encoder, cfg)
    views = ViewPipeline(stats, cfg.augment, cfg.data.tile_size)
    task = PretrainTask(objective, views, cfg.train.seed, memory_format(device, cfg.train))
    loader = build_loader(dataset, cfg, views, device, world.rank, world.size)
    return PretrainPipeline(dataset, stats, objective, views, task, loader)


def run_pretrain(cfg: PretrainConfig) -> Path:
    """Pretrain (or resume) as configured; returns the run directory holding ``encoder.safetensors``."""
    OBJECTIVES.get(cfg.objective)  # fail on a typo before touching the disk
    world, device = init_distributed(resolve_device(cfg.train.device))
    run_dir, resume_from = prepare_shared_run_dir(cfg, cfg.objective, world)
    torch.manual_seed(cfg.train.seed)
    dataset, stats, objective, _, task, loader = build_pipeline(cfg, run_dir, device, world)
    validate, val_every = None, 0
    if cfg.knn.data:
        probe_data = open_dataset(cfg.knn.dataset, cfg.knn.data, None, cfg.knn.crop_size, cfg.train.seed)
        validate = KNNMonitor(objective.export_encoder(), stats, probe_data, device, cfg.knn.k, cfg.knn.temperature)
        val_every = max(1, round(cfg.knn.every_epochs * loader.sampler.batches_per_epoch / cfg.train.accumulate))
    trainer = Trainer(task, loader, cfg.optim, cfg.train, run_dir, to_dict(cfg), device, validate=validate,
                      val_every=val_every, best_metric="knn_top1", world=world)
    if resume_from is not None:
        trainer.resume(resume_from)
        log.info("resumed from %s at step %d", resume_from, trainer.state.step)
    trainer.fit()
    if world.is_main:
        export_encoder(objective.export_encoder(), run_dir, {
            "format": "ssl-siam-encoder",
            "backbone": cfg.model.backbone,
            "in_chans": dataset.num_bands,
            "timm_kwargs": cfg.model.timm_kwargs,
            "num_features": objective.export_encoder().num_features,
            "objective": cfg.objective,
            "step": trainer.state.step,
            "bands": cfg.data.bands,
            "normalization": dataclasses.asdict(stats),
        })
    barrier(world)
    return run_dir
