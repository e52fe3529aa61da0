"""``ssl-siam metric-train``: pairs → Siamese embedding → metric loss (mined or given pairs), run by the shared
launcher; verification on held-out pairs picks ``best.pt`` by ROC AUC."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from ssl_siam.core.config import from_dict
from ssl_siam.core.errors import ConfigError
from ssl_siam.data.cache import DecodedCache
from ssl_siam.data.stats import BandStats, compute_stats, given_stats, resolve_stats
from ssl_siam.data.tiles import TileDataset
from ssl_siam.encoders import EncoderMeta
from ssl_siam.metric_learning.config import MetricConfig
from ssl_siam.metric_learning.datasets import METRIC_DATASETS, PairDataset, open_pair_dataset
from ssl_siam.metric_learning.losses import METRIC_LOSSES, PAIR_LOSSES, TRIPLET_LOSSES, build_metric_loss
from ssl_siam.metric_learning.model import SEQUENCE_ENCODERS, build_siamese
from ssl_siam.metric_learning.task import InputPipeline, MetricTask
from ssl_siam.metric_learning.validator import VAL_LOCATIONS, VerificationValidator
from ssl_siam.train.checkpoint import load_checkpoint
from ssl_siam.train.collapse import CollapseMonitor
from ssl_siam.train.distributed import main_first
from ssl_siam.train.launch import Built, launch, training_loader
from ssl_siam.train.runtime import Runtime


def resolve_mining(cfg: MetricConfig, labelled: bool) -> str:
    """``loss.mining`` with ``auto`` resolved; ConfigError for a combination that cannot work."""
    mining, name = cfg.loss.mining, cfg.loss.name
    METRIC_LOSSES.get(name)  # an unknown name lists the metric losses
    if mining == "auto":
        mining = "none" if labelled else "batch-hard"
    if labelled and (mining != "none" or name in TRIPLET_LOSSES):
        raise ConfigError(f"data.dataset={cfg.data.dataset} gives labelled pairs: it needs loss.mining=none and a "
                          f"pair loss ({', '.join(PAIR_LOSSES)}), got loss.mining={mining} loss.name={name}")
    if cfg.model.variant == "triplet" and name not in TRIPLET_LOSSES:
        raise ConfigError(f"model.variant=triplet needs loss.name=triplet, got {name}")
    if mining == "semi-hard" and name not in TRIPLET_LOSSES:
        raise ConfigError("loss.mining=semi-hard applies to the triplet loss; pair losses take all or batch-hard")
    return mining


def open_data(cfg: MetricConfig, roots: list[str], seed: int, samples: int, objects: str | None = None,
              negatives: bool = False) -> PairDataset:
    """The configured dataset over ``roots``; ``negatives`` (the triplet variant's third input) only for training,
    as verification builds its negative pairs from the batch."""
    d = cfg.data
    return open_pair_dataset(d.dataset, roots, crop_size=d.crop_size, bands=d.bands, samples_per_epoch=samples,
                             seed=seed, negatives=negatives, neighbour_px=d.neighbour_px, objects=objects or d.objects,
                             cache=DecodedCache(Path(d.cache_dir)) if d.cache_dir else None)


def build_task(cfg: MetricConfig, in_chans: int, series: bool, stats: BandStats, mining: str,
               encoder: EncoderMeta | None = None, with_weights: bool = True,
               memory_format: torch.memory_format = torch.contiguous_format) -> MetricTask:
    """The embedding model, loss and input pipeline; ``encoder`` is the SSL export of ``model.encoder_weights``."""
    m, t = cfg.model, cfg.train
    if series != (m.backbone in SEQUENCE_ENCODERS):
        want = f"a recurrent backbone ({', '.join(SEQUENCE_ENCODERS.names())})" if series else "an image backbone"
        raise ConfigError(f"model.backbone={m.backbone}: data.dataset={cfg.data.dataset} needs {want}")
    model = build_siamese(m.backbone, in_chans, m.variant, m.embed_dim, m.head_hidden_dim,
                          encoder=encoder if with_weights else None,
                          pretrained=m.pretrained if with_weights else None, timm_kwargs=m.timm_kwargs,
                          rnn_hidden_dim=m.rnn_hidden_dim, rnn_layers=m.rnn_layers, bidirectional=m.bidirectional)
    criterion = build_metric_loss(cfg.loss.name, m.embed_dim, cfg.loss.margin, cfg.loss.distance,
                                  cfg.loss.metric_hidden_dim)
    pipeline = InputPipeline(stats, cfg.augment, cfg.data.crop_size, series)
    meta = None if series else EncoderMeta(m.backbone, in_chans, m.timm_kwargs, objective=f"metric-{cfg.loss.name}",
                                           bands=cfg.data.bands, normalization=stats)
    return MetricTask(model, criterion, pipeline, cfg.loss.name, mining, cfg.loss.distance, t.seed, memory_format,
                      cfg.loss.gather, CollapseMonitor(t.collapse_every, t.collapse_threshold, t.stop_on_collapse),
                      meta)


def build_metric_learning(cfg: MetricConfig, run_dir: Path, runtime: Runtime) -> Built:
    """Pairs → band statistics (``stats.json``, resolved once by rank 0) → task → loader, and the verification
    validator on ``data.val_root`` (every rank holds it; rank 0 runs it and broadcasts the metrics)."""
    mining = resolve_mining(cfg, METRIC_DATASETS.get(cfg.data.dataset).labelled)
    encoder = EncoderMeta.read(cfg.model.encoder_weights) if cfg.model.encoder_weights else None
    dataset = main_first(runtime.world, lambda: open_data(  # rank 0 fills the decoded cache, the others read it
        cfg, cfg.data.root, cfg.train.seed, cfg.data.samples_per_epoch, negatives=cfg.model.variant == "triplet"))

    def compute() -> BandStats:
        tiles = TileDataset(dataset.stats_sources, tile_size=64, bands=dataset.stats_bands, seed=cfg.train.seed)
        return compute_stats(tiles, num_samples=cfg.data.stats_samples, seed=cfg.train.seed)

    stats = main_first(runtime.world, lambda: resolve_stats(
        run_dir / "stats.json", dataset.num_bands, compute, given=given_stats(cfg.data.stats),
        encoder=encoder.normalization if encoder else None, save=runtime.world.is_main))
    task = build_task(cfg, dataset.num_bands, dataset.series, stats, mining, encoder,
                      memory_format=runtime.memory_format)
    built = Built(dataset, task, training_loader(dataset, cfg, runtime), val_every=cfg.train.val_every)
    if cfg.data.val_root:
        val_set = open_data(cfg, cfg.data.val_root, cfg.train.seed + 1, VAL_LOCATIONS, cfg.data.val_objects)
        built.validator = VerificationValidator(task, val_set, runtime.device, cfg.train.batch_size)
    return built


def run_metric_train(cfg: MetricConfig) -> Path:
    """Train (or resume) a Siamese embedding as configured; returns the run directory."""
    resolve_mining(cfg, METRIC_DATASETS.get(cfg.data.dataset).labelled)  # refuse before touching the disk
    if not cfg.data.root:
        raise ConfigError("data.root is required (see data.dataset for its form)")
    return launch(cfg, f"metric-{cfg.loss.name}", build_metric_learning)


class TrainedMetric(NamedTuple):
    """A trained metric model rebuilt from its checkpoint, with the run's config."""

    task: MetricTask
    cfg: MetricConfig


def load_metric_task(ckpt_path: str | Path, device: torch.device) -> TrainedMetric:
    """Rebuild a trained metric model (eval mode) from its checkpoint alone."""
    ckpt = load_checkpoint(ckpt_path, kind="metric")
    extra = ckpt["extra"]
    cfg = from_dict(MetricConfig, ckpt["config"])
    task = build_task(cfg, extra["in_chans"], extra["series"], BandStats(**extra["stats"]), extra["mining"],
                      with_weights=False)
    task.load_state_dict(ckpt["model"])
    return TrainedMetric(task.to(device).eval(), cfg)
