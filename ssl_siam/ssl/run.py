"""``ssl-siam pretrain``: tiles → band statistics → views → objective, run by the shared launcher."""

from __future__ import annotations

import functools
from pathlib import Path

from ssl_siam.core.errors import ConfigError
from ssl_siam.data.cache import DecodedCache
from ssl_siam.data.robust import SkipBad
from ssl_siam.data.sampling import IndexedDataset
from ssl_siam.data.stats import compute_stats, given_stats, resolve_stats
from ssl_siam.data.temporal import TemporalTileDataset, find_places
from ssl_siam.data.tiles import TileDataset
from ssl_siam.encoders import EncoderMeta, create_encoder
from ssl_siam.eval.datasets import open_dataset
from ssl_siam.ssl import OBJECTIVES
from ssl_siam.ssl.config import PretrainConfig, TileDataConfig
from ssl_siam.ssl.monitor import KNNMonitor
from ssl_siam.ssl.task import AugmentCollate, PretrainTask
from ssl_siam.ssl.views import ViewPipeline
from ssl_siam.train.collapse import CollapseMonitor
from ssl_siam.train.distributed import main_first
from ssl_siam.train.launch import Built, launch, training_loader
from ssl_siam.train.runtime import Runtime


def build_tiles(cfg: TileDataConfig, seed: int) -> TileDataset:
    """The unlabeled tiles of ``data.*``: ``[C, h, w]``, or ``[2, C, h, w]`` (two dates) with ``data.temporal``."""
    if not cfg.root:
        raise ConfigError("data.root is required: a folder, glob or file of unlabeled tiles")
    options = dict(bands=cfg.bands, sampling=cfg.sampling, samples_per_epoch=cfg.samples_per_epoch,
                   max_nodata_fraction=cfg.max_nodata_fraction, nodata=cfg.nodata, seed=seed,
                   cache=DecodedCache(Path(cfg.cache_dir)) if cfg.cache_dir else None, workers=max(1, cfg.num_workers))
    if cfg.temporal:
        tiles = TemporalTileDataset(find_places(cfg.root, cfg.band_names), cfg.tile_size, **options)
    else:
        tiles = TileDataset(cfg.root, cfg.tile_size, band_names=cfg.band_names, **options)
    largest = max(tiles.files, key=lambda s: min(s.height, s.width))
    if min(largest.height, largest.width) < cfg.tile_size:
        raise ConfigError(f"data.tile_size={cfg.tile_size} is larger than every image (the largest, "
                          f"{largest.paths[0]}, is {largest.width}×{largest.height}); tiles would be mostly padding")
    return tiles


def build_pretraining(cfg: PretrainConfig, run_dir: Path, runtime: Runtime) -> Built:
    """Tiles → band statistics (resolved once by rank 0, saved as ``stats.json``) → views → objective → loader,
    plus the kNN monitor when ``knn.data`` is given (or ``knn.on_data_root``)."""
    dataset = main_first(runtime.world, lambda: build_tiles(cfg.data, cfg.train.seed))  # rank 0 fills the cache
    if cfg.data.skip_bad:
        dataset = SkipBad(dataset, cfg.data.max_bad_fraction)
    stats = main_first(runtime.world, lambda: resolve_stats(
        run_dir / "stats.json", dataset.num_bands,
        lambda: compute_stats(dataset, num_samples=cfg.data.stats_samples, seed=cfg.train.seed),
        given=given_stats(cfg.data.stats, cfg.data.normalization), save=runtime.world.is_main))
    make_encoder = functools.partial(create_encoder, cfg.model.backbone, dataset.num_bands, cfg.model.pretrained,
                                     **cfg.model.timm_kwargs)
    objective = OBJECTIVES.get(cfg.objective)(make_encoder, cfg)
    views = ViewPipeline(stats, cfg.augment, cfg.data.tile_size)
    t = cfg.train
    meta = EncoderMeta(cfg.model.backbone, dataset.num_bands, cfg.model.timm_kwargs, objective=cfg.objective,
                       bands=cfg.data.bands, normalization=stats)
    collapse = CollapseMonitor(t.collapse_every, t.collapse_threshold, t.stop_on_collapse)
    task = PretrainTask(objective, views, t.seed, collapse, meta, runtime.memory_format,
                        identity_keys=(f"{cfg.objective}.",))  # the objective's options must match to resume
    collate = None if cfg.augment.on_device else AugmentCollate(views, t.seed)
    loader = training_loader(IndexedDataset(dataset), cfg, runtime, collate_fn=collate)
    built = Built(dataset, task, loader)
    if knn_data := cfg.knn.data or (cfg.data.root if cfg.knn.on_data_root else []):
        probe_data = open_dataset(cfg.knn.dataset, knn_data, None, cfg.knn.crop_size, t.seed)
        built.validator = KNNMonitor(objective.export_encoder(), stats, probe_data, runtime.device, cfg.knn.k,
                                     cfg.knn.temperature)
        built.val_every_epochs = cfg.knn.every_epochs
    return built


def run_pretrain(cfg: PretrainConfig) -> Path:
    """Pretrain (or resume) as configured; returns the run directory holding ``encoder.safetensors``."""
    OBJECTIVES.get(cfg.objective)  # fail on a typo before touching the disk
    return launch(cfg, cfg.objective, build_pretraining)
