"""Metric learning assembled from config (``ssl-siam metric-train``) and verification (``ssl-siam verify``)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ssl_siam.checkpoint import load_checkpoint
from ssl_siam.config import from_dict, to_dict
from ssl_siam.data.sampling import ResumableSampler, make_loader
from ssl_siam.data.stats import BandStats, compute_stats
from ssl_siam.data.tiles import TileDataset
from ssl_siam.distributed import barrier, init_distributed
from ssl_siam.engine import Trainer, memory_format, resolve_device
from ssl_siam.errors import ConfigError, DataError
from ssl_siam.metric.datasets import METRIC_DATASETS, PairDataset, open_pair_dataset
from ssl_siam.metric.losses import METRIC_LOSSES, PAIR_LOSSES, TRIPLET_LOSSES, build_metric_loss
from ssl_siam.metric.model import SEQUENCE_ENCODERS, build_siamese
from ssl_siam.metric.task import InputPipeline, MetricTask
from ssl_siam.metric.verification import one_shot_accuracy, plot_roc, roc_curve, verification_report
from ssl_siam.models.encoders import export_encoder, read_encoder_meta
from ssl_siam.probe.datasets import FolderDataset
from ssl_siam.rundir import prepare_shared_run_dir
from ssl_siam.schema import MetricConfig

log = logging.getLogger(__name__)
VAL_LOCATIONS = 512  # verification pairs drawn from location data: 512 positives + 512 negatives


def resolve_mining(cfg: MetricConfig, labelled: bool) -> str:
    """``loss.mining`` with ``auto`` resolved; ConfigError for a combination that cannot work."""
    mining, name = cfg.loss.mining, cfg.loss.name
    if name not in METRIC_LOSSES:
        raise ConfigError(f"loss.name={name!r}: metric losses are {', '.join(METRIC_LOSSES)}")
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
                             seed=seed, negatives=negatives, neighbour_px=d.neighbour_px, objects=objects or d.objects)


def resolve_stats(cfg: MetricConfig, dataset: PairDataset, run_dir: Path) -> BandStats:
    """``data.stats``, else the run's saved ``stats.json``, else the SSL encoder's, else computed and saved."""
    saved = run_dir / "stats.json"
    encoder_meta = read_encoder_meta(cfg.model.encoder_weights)[1] if cfg.model.encoder_weights else {}
    if cfg.data.stats:
        stats = BandStats.load(cfg.data.stats)
    elif saved.is_file():
        stats = BandStats.load(saved)
    elif "normalization" in encoder_meta:
        stats = BandStats(**encoder_meta["normalization"])
    else:
        tiles = TileDataset(dataset.stats_sources, tile_size=64, bands=dataset.stats_bands, seed=cfg.train.seed)
        stats = compute_stats(tiles, num_samples=cfg.data.stats_samples, seed=cfg.train.seed)
    if stats.num_bands != dataset.num_bands:
        raise DataError(f"{cfg.data.stats or saved}: stats for {stats.num_bands} bands, data has {dataset.num_bands}")
    stats.save(saved)
    return stats


def build_task(cfg: MetricConfig, in_chans: int, series: bool, stats: BandStats, mining: str,
               with_weights: bool = True, memory_format: torch.memory_format = torch.contiguous_format) -> MetricTask:
    m = cfg.model
    if series != (m.backbone in SEQUENCE_ENCODERS):
        want = f"a recurrent backbone ({', '.join(SEQUENCE_ENCODERS.names())})" if series else "an image backbone"
        raise ConfigError(f"model.backbone={m.backbone}: data.dataset={cfg.data.dataset} needs {want}")
    model = build_siamese(m.backbone, in_chans, m.variant, m.embed_dim, m.head_hidden_dim,
                          encoder_weights=m.encoder_weights if with_weights else None,
                          pretrained=m.pretrained if with_weights else None, timm_kwargs=m.timm_kwargs,
                          rnn_hidden_dim=m.rnn_hidden_dim, rnn_layers=m.rnn_layers, bidirectional=m.bidirectional)
    criterion = build_metric_loss(cfg.loss.name, m.embed_dim, cfg.loss.margin, cfg.loss.distance,
                                  cfg.loss.metric_hidden_dim)
    pipeline = InputPipeline(stats, cfg.augment, cfg.data.crop_size, series)
    return MetricTask(model, criterion, pipeline, cfg.loss.name, mining, cfg.loss.distance, cfg.train.seed,
                      memory_format, cfg.loss.gather)


@torch.no_grad()
def embed_pairs(task: MetricTask, dataset: PairDataset, device: torch.device, batch_size: int = 64,
                num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Verification (scores, labels) of a dataset without augmentation: its labelled pairs, or for location
    data each location's two observations (label 1) and its first one vs the next location's second (label 0)."""
    task.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    ea, eb, labels = [], [], []
    for batch in loader:
        ea.append(task.embed(batch["a"].to(device), 0))
        eb.append(task.embed(batch["b"].to(device), 1))
        if "label" in batch:
            labels.append(batch["label"].float())
    a, b = torch.cat(ea), torch.cat(eb)
    if labels:
        return task.similarity(a, b).float().cpu().numpy(), torch.cat(labels).numpy()
    scores = torch.cat([task.similarity(a, b), task.similarity(a, b.roll(1, dims=0))]).float().cpu().numpy()
    return scores, np.concatenate([np.ones(len(a)), np.zeros(len(a))])


class VerificationValidator:
    """ROC AUC / EER / best accuracy on held-out pairs during training (``best.pt`` by ROC AUC)."""

    def __init__(self, task: MetricTask, dataset: PairDataset, device: torch.device, batch_size: int) -> None:
        self.task, self.dataset, self.device, self.batch_size = task, dataset, device, batch_size

    def __call__(self) -> dict[str, float]:
        return {k: float(v) for k, v in verification_report(*embed_pairs(self.task, self.dataset, self.device,
                                                                          self.batch_size)).items()}


def run_metric_train(cfg: MetricConfig) -> Path:
    """Train (or resume) a Siamese embedding as configured; returns the run directory."""
    mining = resolve_mining(cfg, METRIC_DATASETS.get(cfg.data.dataset).labelled)  # before touching the disk
    if not cfg.data.root:
        raise ConfigError("data.root is required (see data.dataset for its form)")
    world, device = init_distributed(resolve_device(cfg.train.device))
    run_dir, resume_from = prepare_shared_run_dir(cfg, f"metric-{cfg.loss.name}", world)
    torch.manual_seed(cfg.train.seed)
    dataset = open_data(cfg, cfg.data.root, cfg.train.seed, cfg.data.samples_per_epoch,
                        negatives=cfg.model.variant == "triplet")
    if world.is_main:
        resolve_stats(cfg, dataset, run_dir)
    barrier(world)
    stats = BandStats.load(run_dir / "stats.json")
    task = build_task(cfg, dataset.num_bands, dataset.series, stats, mining,
                      memory_format=memory_format(device, cfg.train))
    sampler = ResumableSampler(len(dataset), cfg.train.batch_size, seed=cfg.train.seed, rank=world.rank,
                               num_replicas=world.size)
    loader = make_loader(dataset, sampler, num_workers=cfg.data.num_workers,
                         pin_memory=cfg.data.pin_memory and device.type == "cuda",
                         prefetch_factor=cfg.data.prefetch_factor)
    validate = None
    if cfg.data.val_root:  # every rank holds it; rank 0 validates and broadcasts the metrics
        val_set = open_data(cfg, cfg.data.val_root, cfg.train.seed + 1, VAL_LOCATIONS, cfg.data.val_objects)
        validate = VerificationValidator(task, val_set, device, cfg.train.batch_size)
    extra = {"stats": dataclasses.asdict(stats), "in_chans": dataset.num_bands, "series": dataset.series,
             "mining": mining}
    trainer = Trainer(task, loader, cfg.optim, cfg.train, run_dir, to_dict(cfg), device, validate=validate,
                      val_every=cfg.train.val_every, best_metric="roc_auc", world=world, extra=extra)
    if resume_from is not None:
        trainer.resume(resume_from)
        log.info("resumed from %s at step %d", resume_from, trainer.state.step)
    trainer.fit()
    if world.is_main and not dataset.series:
        export_encoder(task.model.encoder, run_dir, {
            "format": "ssl-siam-encoder", "backbone": cfg.model.backbone, "in_chans": dataset.num_bands,
            "timm_kwargs": cfg.model.timm_kwargs, "num_features": task.model.encoder.num_features,
            "objective": f"metric-{cfg.loss.name}", "step": trainer.state.step, "bands": cfg.data.bands,
            "normalization": dataclasses.asdict(stats)})
    barrier(world)
    return run_dir


def load_metric_task(ckpt_path: str | Path, device: torch.device) -> tuple[MetricTask, MetricConfig]:
    """Rebuild a trained metric model (eval mode) from its checkpoint alone."""
    ckpt = load_checkpoint(ckpt_path)
    extra = ckpt.get("extra", {})
    if "mining" not in extra:
        raise ConfigError(f"{ckpt_path} is not a metric-train checkpoint")
    cfg = from_dict(MetricConfig, ckpt["config"])
    task = build_task(cfg, extra["in_chans"], extra["series"], BandStats(**extra["stats"]), extra["mining"],
                      with_weights=False)
    task.load_state_dict(ckpt["model"])
    return task.to(device).eval(), cfg


def model_similarity(task: MetricTask) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The trained loss's own score (−distance, or the learned head's probability) as a one-shot metric:
    query vectors ``[T, D]`` and support vectors ``[T, N, D]`` → ``[T, N]``."""
    device = next(task.parameters()).device

    def similarity(query: np.ndarray, supports: np.ndarray) -> np.ndarray:
        n = supports.shape[1]
        q = torch.from_numpy(np.repeat(query, n, axis=0)).to(device)
        with torch.no_grad():
            return task.similarity(q, torch.from_numpy(supports.reshape(q.shape)).to(device)).view(-1, n).cpu().numpy()

    return similarity


def verify(ckpt_path: str | Path, data: list[str], out: str | Path, *, dataset: str | None = None,
           objects: str | None = None, oneshot: str | None = None, n_way: int = 5, trials: int = 1000,
           device: str = "auto", batch_size: int = 64, seed: int = 0) -> dict[str, Any]:
    """Verification metrics of a checkpoint on held-out pairs (+ optional one-shot N-way accuracy on an image
    folder of classes never seen in training); writes ``verify.json`` and ``roc.png`` to ``out``."""
    torch_device = resolve_device(device)
    task, cfg = load_metric_task(ckpt_path, torch_device)
    if dataset:
        cfg.data.dataset = dataset  # type: ignore[assignment]
    pairs = open_data(cfg, list(data), seed + 1, VAL_LOCATIONS, objects)
    if pairs.num_bands != task.pipeline.stats.num_bands:
        raise DataError(f"{data[0]}: {pairs.num_bands} bands, the model was trained on {task.pipeline.stats.num_bands}")
    scores, labels = embed_pairs(task, pairs, torch_device, batch_size)
    result: dict[str, Any] = {"checkpoint": str(ckpt_path), "data": list(data), "dataset": cfg.data.dataset,
                              **verification_report(scores, labels)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(scores, labels)
    result["roc_png"] = str(plot_roc({Path(str(ckpt_path)).parent.parent.name or "model": (fpr, tpr,
                                                                                            result["roc_auc"])},
                                     out / "roc.png"))
    if oneshot:
        folder = FolderDataset(oneshot, None, cfg.data.crop_size, seed)
        loader = DataLoader(folder, batch_size=batch_size)
        with torch.no_grad():
            embeddings = torch.cat([task.embed(x[:, 0].to(torch_device), 0) for x in loader]).float().cpu().numpy()
        accuracy = one_shot_accuracy(embeddings, folder.labels, n_way, trials, seed, model_similarity(task))
        result.update(oneshot_n_way=n_way, oneshot_trials=trials, oneshot_classes=len(folder.classes),
                      oneshot_accuracy=accuracy)
    (out / "verify.json").write_text(json.dumps(result, indent=2))
    return result
