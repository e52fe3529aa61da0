"""Siamese damage finetuning on xBD: pairs → SiameseDamageNet → Focal + Dice (deep supervision) → shared loop.

Validation runs the sliding-window predictor on whole held-out images and scores them with the xView2 metric;
``best.pt`` keeps the best score.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ssl_siam.change import SiameseDamageNet, build_damage_net
from ssl_siam.checkpoint import load_checkpoint
from ssl_siam.config import from_dict, to_dict
from ssl_siam.data.photometric import jitter_raw
from ssl_siam.data.sampling import ResumableSampler, make_loader
from ssl_siam.data.stats import BandStats, compute_stats
from ssl_siam.data.tiles import TileDataset
from ssl_siam.data.xbd import PairRecord, XBDPairDataset, ensure_targets, find_pairs
from ssl_siam.distributed import World, barrier, init_distributed, sum_across
from ssl_siam.engine import Trainer, autocast_dtype, memory_format, param_groups, resolve_device
from ssl_siam.errors import ConfigError
from ssl_siam.losses import DeepSupervisionLoss, build_loss
from ssl_siam.metrics import XView2Accumulator
from ssl_siam.models.encoders import read_encoder_meta
from ssl_siam.predict import decode, sliding_window
from ssl_siam.rundir import prepare_shared_run_dir
from ssl_siam.schema import FinetuneConfig
from ssl_siam.ssl.views import seeded_generator

log = logging.getLogger(__name__)


class FinetuneTask(nn.Module):
    """Batches ``{"pre", "post": raw [B, C, H, W], "mask": [B, H, W], "index"}`` → normalised pair → model → loss;
    with ``jitter_seed`` the training pairs are photometrically jittered on the device first."""

    def __init__(self, model: SiameseDamageNet, criterion: nn.Module, pre_stats: BandStats, post_stats: BandStats,
                 freeze_encoder_epochs: float = 0.0, encoder_lr_scale: float = 1.0,
                 memory_format: torch.memory_format = torch.contiguous_format, jitter_seed: int | None = None) -> None:
        super().__init__()
        self.model, self.criterion = model, criterion
        self.pre_stats, self.post_stats = pre_stats, post_stats
        self.freeze_epochs, self.encoder_lr_scale = freeze_encoder_epochs, encoder_lr_scale
        self.memory_format, self.freeze_steps, self.jitter_seed = memory_format, 0, jitter_seed

    def configure(self, total_steps: int, steps_per_epoch: int) -> None:
        self.freeze_steps = round(self.freeze_epochs * steps_per_epoch)

    def normalize(self, pre: torch.Tensor, post: torch.Tensor,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``[B, C, H, W]`` pair → standardised float pair in the training memory format. With ``generator``,
        the raw values are first photometrically jittered (:func:`jitter_raw`, drawn independently for pre and post;
        pixels that are 0 in every band stay 0)."""
        out = []
        for raw, stats in ((pre, self.pre_stats), (post, self.post_stats)):
            values = raw.to(torch.float32)
            if generator is not None:
                values = jitter_raw(values, raw.dtype, generator)
            out.append(stats.standardize(stats.to_unit(values)).contiguous(memory_format=self.memory_format))
        return out[0], out[1]

    def training_step(self, batch: dict[str, Any], step: int, micro: int) -> dict[str, torch.Tensor]:
        generator = None  # seeded by the batch's first sample index: a resumed run jitters exactly the same
        if self.jitter_seed is not None:
            generator = seeded_generator(batch["pre"].device, self.jitter_seed, int(batch["index"][0]))
        pre, post = self.normalize(batch["pre"], batch["post"], generator)
        total, parts = self.criterion(self.model(pre, post), batch["mask"])
        return {"loss": total, **{k: v for k, v in parts.items() if k != "total"}}

    def param_groups(self) -> list[dict]:
        return [*param_groups(self.model.encoder_parameters(), lr_scale=self.encoder_lr_scale),
                *param_groups(self.model.decoder_parameters())]

    def forward(self, batch: object, step: int, micro: int) -> dict[str, torch.Tensor]:
        """The training step (what DistributedDataParallel wraps)."""
        return self.training_step(batch, step, micro)  # type: ignore[arg-type]

    def before_optimizer_step(self, step: int) -> None:
        if step < self.freeze_steps:  # encoder frozen: its weights get no update (BN statistics still adapt)
            for param in self.model.encoder_parameters():
                param.grad = None

    def after_optimizer_step(self, step: int) -> None:
        """Nothing to do after the step (no EMA in finetuning)."""


class XView2Validator:
    """Scores whole validation images with the xView2 metric (``un-classified`` counted as no-damage).

    Sharded: rank ``r`` of ``n`` predicts images ``r, r + n, ...`` and the TP/FP/FN counts are summed over
    ranks before the F1s are computed, so the score equals a single-process one (never an average of F1s).
    """

    sharded = True

    def __init__(self, task: FinetuneTask, dataset: XBDPairDataset, device: torch.device, window: int,
                 tta: bool, ignore_index: int, amp_dtype: torch.dtype | None = None,
                 world: World | None = None) -> None:
        self.task, self.dataset, self.device, self.window = task, dataset, device, window
        self.tta, self.ignore_index, self.amp_dtype = tta, ignore_index, amp_dtype
        self.world = world or World()

    def __call__(self) -> dict[str, float]:
        acc = XView2Accumulator()
        self.task.eval()
        for i in range(self.world.rank, len(self.dataset), self.world.size):
            item = self.dataset[i]
            pre, post = self.task.normalize(item["pre"][None].to(self.device), item["post"][None].to(self.device))
            probs = sliding_window(self.task.model, pre[0], post[0], window=self.window, tta=self.tta,
                                   device=self.device, amp_dtype=self.amp_dtype)
            loc, damage, _ = decode(probs)
            target = item["mask"].numpy()
            target = np.where(target == self.ignore_index, 1, target).astype(np.uint8)
            acc.update(loc, damage, (target > 0).astype(np.uint8), target)
        images = np.zeros((1, 5), np.int64)
        images[0, 0] = len(range(self.world.rank, len(self.dataset), self.world.size))
        counts = torch.from_numpy(np.concatenate([np.stack(list(acc.counts.values())), images]))  # tp, fp, fn, n
        counts = sum_across(counts.to(self.device), self.world).cpu().numpy()
        score = XView2Accumulator(dict(zip(("tp", "fp", "fn"), counts[:3]))).result()
        per_class = {f"f1_{name}": value for name, value in score.damage_f1_per_class.items()}
        return {"score": score.score, "localization_f1": score.localization_f1, "damage_f1": score.damage_f1,
                **per_class, "images": float(counts[3, 0])}


def split_records(cfg: FinetuneConfig, cache_dir: Path) -> tuple[list[PairRecord], list[PairRecord]]:
    """Training and validation pairs (explicit ``data.val_root`` or a seeded ``val_fraction`` of the ids)."""
    if not cfg.data.root:
        raise ConfigError("data.root is required: one or more xBD split directories")
    records, skipped = find_pairs(cfg.data.root, skip_bad=cfg.data.skip_bad)
    for reason in skipped:
        log.warning("skipped: %s", reason)
    if cfg.data.val_root:
        val, skipped = find_pairs(cfg.data.val_root, skip_bad=cfg.data.skip_bad)
    else:
        order = np.random.default_rng(cfg.train.seed).permutation(len(records))
        n_val = min(max(round(cfg.data.val_fraction * len(records)), 1), len(records) - 1)
        if cfg.data.val_fraction <= 0 or n_val == 0:
            n_val = 0
            log.warning("no validation pairs (data.val_fraction=%s of %d pairs): validation is skipped",
                        cfg.data.val_fraction, len(records))
        val = [records[i] for i in sorted(order[:n_val])]
        records = [records[i] for i in sorted(order[n_val:])]
    if not records:
        raise ConfigError(f"data.root {cfg.data.root}: no training pairs left after holding out validation pairs")
    kwargs = dict(unclassified="ignore", ignore_index=cfg.data.ignore_index)
    return ensure_targets(records, cache_dir, **kwargs), ensure_targets(val, cache_dir, **kwargs)


def resolve_pair_stats(cfg: FinetuneConfig, records: list[PairRecord], run_dir: Path) -> tuple[BandStats, BandStats]:
    """Pre-image normalization: ``data.stats``, else the SSL encoder's, else computed from the training pairs
    (saved as ``stats_pre.json``). The post image shares it unless its bands or encoder differ."""

    def resolve(path: str | None, images: list[Path], bands: list[int] | None, name: str) -> BandStats:
        saved = run_dir / f"stats_{name}.json"
        if path:
            stats = BandStats.load(path)
        elif saved.is_file():
            stats = BandStats.load(saved)
        else:
            tiles = TileDataset(images, tile_size=min(256, cfg.data.crop_size), bands=bands, seed=cfg.train.seed)
            stats = compute_stats(tiles, num_samples=cfg.data.stats_samples, seed=cfg.train.seed)
        stats.save(saved)
        return stats

    pre_path = cfg.data.stats
    if pre_path is None and cfg.model.encoder_weights and not (run_dir / "stats_pre.json").is_file():
        _, meta = read_encoder_meta(cfg.model.encoder_weights)
        if "normalization" in meta:
            BandStats(**meta["normalization"]).save(run_dir / "stats_pre.json")
    pre = resolve(pre_path, [r.pre_image for r in records], cfg.data.bands, "pre")
    separate = cfg.model.siamese == "asymmetric" or cfg.data.post_bands is not None or cfg.data.post_stats
    if not separate:
        return pre, pre
    post_bands = cfg.data.post_bands or cfg.data.bands
    return pre, resolve(cfg.data.post_stats, [r.post_image for r in records], post_bands, "post")


def build_model(cfg: FinetuneConfig, in_chans: int, post_in_chans: int, with_weights: bool = True) -> SiameseDamageNet:
    m = cfg.model
    return build_damage_net(
        m.backbone, in_chans, siamese=m.siamese, encoder_weights=m.encoder_weights if with_weights else None,
        pretrained=m.pretrained if with_weights else None, post_backbone=m.post_backbone,
        post_in_chans=post_in_chans if m.siamese == "asymmetric" else None, fusion=m.fusion,
        decoder_channels=m.decoder_channels, attention=m.attention, num_classes=m.num_classes,
        deep_supervision=m.deep_supervision, timm_kwargs=m.timm_kwargs)


def build_criterion(cfg: FinetuneConfig) -> nn.Module:
    lc = cfg.loss
    kwargs: dict[str, Any] = dict(num_classes=cfg.model.num_classes, ignore_index=cfg.data.ignore_index)
    if lc.name == "focal_dice":
        kwargs.update(focal_weight=lc.focal_weight, dice_weight=lc.dice_weight, gamma=lc.gamma, alpha=lc.alpha,
                      class_weights=lc.class_weights)
    aux = lc.aux_weights if cfg.model.deep_supervision else []
    return DeepSupervisionLoss(build_loss(lc.name, **kwargs), aux)


class FinetunePipeline(NamedTuple):
    """Everything between the training pairs and the loop (shared by ``run_finetune`` and ``ssl-siam bench``)."""

    dataset: XBDPairDataset
    task: FinetuneTask
    loader: DataLoader


def build_pipeline(cfg: FinetuneConfig, records: list[PairRecord], run_dir: Path, device: torch.device,
                   world: World | None = None) -> FinetunePipeline:
    """Training pairs (random crops) → normalization (``stats_*.json`` in ``run_dir``) → model + loss → loader."""
    world = world or World()
    d = cfg.data
    dataset = XBDPairDataset(records, d.crop_size, train=True, bands=d.bands, post_bands=d.post_bands,
                             building_bias=d.building_bias, misregistration_px=d.misregistration_px,
                             photometric=not d.photometric_on_device,
                             ignore_index=d.ignore_index, seed=cfg.train.seed)
    pre_stats, post_stats = resolve_pair_stats(cfg, records, run_dir)
    model = build_model(cfg, dataset.num_bands_pre, dataset.num_bands_post)
    task = FinetuneTask(model, build_criterion(cfg), pre_stats, post_stats, cfg.train.freeze_encoder_epochs,
                        cfg.train.encoder_lr_scale, memory_format(device, cfg.train),
                        jitter_seed=cfg.train.seed if d.photometric_on_device else None)
    per_epoch = d.samples_per_epoch or max(len(dataset), cfg.train.batch_size)
    sampler = ResumableSampler(per_epoch, cfg.train.batch_size, seed=cfg.train.seed, rank=world.rank,
                               num_replicas=world.size)
    loader = make_loader(dataset, sampler, num_workers=d.num_workers, pin_memory=d.pin_memory and device.type == "cuda",
                         prefetch_factor=d.prefetch_factor)
    return FinetunePipeline(dataset, task, loader)


def run_finetune(cfg: FinetuneConfig) -> Path:
    """Finetune (or resume) as configured; returns the run directory (``checkpoints/best.pt``, ``last.pt``)."""
    world, device = init_distributed(resolve_device(cfg.train.device))
    run_dir, resume_from = prepare_shared_run_dir(cfg, "finetune", world)
    torch.manual_seed(cfg.train.seed)
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "targets"
    if world.is_main:  # rasterise the masks and compute the normalization once, then the others read them
        train_records, val_records = split_records(cfg, cache_dir)
        resolve_pair_stats(cfg, train_records, run_dir)
    barrier(world)
    if not world.is_main:
        train_records, val_records = split_records(cfg, cache_dir)
    train_set, task, loader = build_pipeline(cfg, train_records, run_dir, device, world)
    val_set = XBDPairDataset(val_records, None, train=False, bands=cfg.data.bands, post_bands=cfg.data.post_bands,
                             ignore_index=cfg.data.ignore_index, seed=cfg.train.seed) if val_records else None
    pre_stats, post_stats = task.pre_stats, task.post_stats
    validate = XView2Validator(task, val_set, device, cfg.data.val_window, cfg.train.tta, cfg.data.ignore_index,
                               autocast_dtype(device, cfg.train), world) if val_set is not None else None
    trainer = Trainer(task, loader, cfg.optim, cfg.train, run_dir, to_dict(cfg), device, validate=validate,
                      val_every=cfg.train.val_every, world=world, extra={
                          "pre_stats": dataclasses.asdict(pre_stats), "post_stats": dataclasses.asdict(post_stats),
                          "in_chans": train_set.num_bands_pre, "post_in_chans": train_set.num_bands_post})
    if resume_from is not None:
        trainer.resume(resume_from)
        log.info("resumed from %s at step %d", resume_from, trainer.state.step)
    trainer.fit()
    return run_dir


def load_finetuned(ckpt_path: str | Path, device: torch.device) -> tuple[FinetuneTask, FinetuneConfig]:
    """Rebuild the finetuned model (eval mode) and its normalization from a checkpoint file alone; on CUDA in the
    run's ``train.channels_last`` memory format."""
    ckpt = load_checkpoint(ckpt_path)
    if "pre_stats" not in ckpt.get("extra", {}):
        raise ConfigError(f"{ckpt_path} is not a finetuning checkpoint (no damage model in it)")
    cfg = from_dict(FinetuneConfig, ckpt["config"])
    extra = ckpt["extra"]
    model = build_model(cfg, extra["in_chans"], extra["post_in_chans"], with_weights=False)
    state = {k.removeprefix("model."): v for k, v in ckpt["model"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    fmt = memory_format(device, cfg.train)
    task = FinetuneTask(model, nn.Identity(), BandStats(**extra["pre_stats"]), BandStats(**extra["post_stats"]),
                        memory_format=fmt)
    return task.to(device, memory_format=fmt).eval(), cfg
