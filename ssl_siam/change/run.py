"""``ssl-siam finetune``: pairs → Siamese UNet → Focal + Dice with deep supervision, run by the shared launcher;
validation scores whole held-out images (xView2 score for damage, F1 of the change class for binary change, SeK
for semantic change) and ``best.pt`` keeps the best."""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ssl_siam.change.config import FinetuneConfig, LossConfig
from ssl_siam.change.data import resolve_format, split_records, unlabeled_records
from ssl_siam.change.losses import LOSSES, DeepSupervisionLoss, build_loss
from ssl_siam.change.models.siamese import SiameseChangeNet, build_change_net
from ssl_siam.change.synthetic import SyntheticChange
from ssl_siam.change.tasks import ChangeTask, change_task
from ssl_siam.change.training import FinetuneTask, Geometry, JitterCollate
from ssl_siam.core.config import from_dict
from ssl_siam.core.errors import ConfigError
from ssl_siam.data.pair_crops import PairCropDataset
from ssl_siam.data.stats import BandStats, compute_stats, given_stats, resolve_stats
from ssl_siam.data.tiles import TileDataset
from ssl_siam.encoders import EncoderMeta
from ssl_siam.train.checkpoint import load_checkpoint
from ssl_siam.train.distributed import main_first
from ssl_siam.train.launch import Built, launch, training_loader
from ssl_siam.train.rundir import last_checkpoint, last_checkpoint_path
from ssl_siam.train.runtime import Runtime

log = logging.getLogger(__name__)


def resolve_pair_stats(cfg: FinetuneConfig, dataset: PairCropDataset, run_dir: Path, encoder: BandStats | None,
                       save: bool = True) -> tuple[BandStats, BandStats]:
    """Normalization of the pre image (``stats_pre.json``) and of the post image: the post image shares the pre
    one unless its bands, encoder or ``data.post_stats`` differ (``stats_post.json``). Precedence:
    :func:`~ssl_siam.data.stats.resolve_stats` (config, the run's saved file, ``encoder``: the SSL encoder's or the
    ``model.init_weights`` run's, computed)."""
    d = cfg.data

    def compute(images: list[Path], bands: list[int] | None) -> BandStats:
        tiles = TileDataset(images, tile_size=min(256, d.crop_size), bands=bands, seed=cfg.train.seed)
        return compute_stats(tiles, num_samples=d.stats_samples, seed=cfg.train.seed)

    records = dataset.records
    pre = resolve_stats(run_dir / "stats_pre.json", dataset.num_bands_pre,
                        lambda: compute([r.pre_image for r in records], d.bands), given=given_stats(d.stats),
                        encoder=encoder, save=save)
    if not (cfg.model.siamese == "asymmetric" or d.post_bands is not None or d.post_stats):
        return pre, pre
    post = resolve_stats(run_dir / "stats_post.json", dataset.num_bands_post,
                         lambda: compute([r.post_image for r in records], d.post_bands or d.bands),
                         given=given_stats(d.post_stats), save=save)
    return pre, post


def build_model(cfg: FinetuneConfig, task: ChangeTask, in_chans: int, post_in_chans: int,
                encoder: EncoderMeta | None = None, with_weights: bool = True) -> SiameseChangeNet:
    """The configured Siamese UNet with ``task``'s heads; ``encoder`` is the SSL export of ``model.encoder_weights``,
    read once."""
    m = cfg.model
    return build_change_net(
        m.backbone, in_chans, siamese=m.siamese, encoder=encoder if with_weights else None,
        pretrained=m.pretrained if with_weights else None, post_backbone=m.post_backbone,
        post_in_chans=post_in_chans if m.siamese == "asymmetric" else None, fusion=m.fusion,
        decoder_channels=m.decoder_channels, attention=m.attention, num_classes=task.head_classes(m.num_classes),
        deep_supervision=m.deep_supervision, timm_kwargs=m.timm_kwargs,
        semantic_classes=task.semantic_classes)


_LOSS_OPTIONS = ("focal_weight", "dice_weight", "gamma", "alpha", "class_weights")  # loss.* passed to the loss


def build_criterion(cfg: FinetuneConfig, task: ChangeTask) -> nn.Module:
    """``loss.name`` with the ``loss.*`` options its constructor takes, wrapped in deep supervision and ``task``'s
    loss; an option set to a non-default value that the chosen loss does not take is a one-line ConfigError naming
    it."""
    lc, defaults = cfg.loss, LossConfig()
    cls = LOSSES.get(lc.name)
    accepted = inspect.signature(cls).parameters
    for name in _LOSS_OPTIONS:
        if name not in accepted and getattr(lc, name) != getattr(defaults, name):
            takes = ", ".join(f"loss.{k}" for k in _LOSS_OPTIONS if k in accepted) or "none of them"
            raise ConfigError(f"loss.{name}={getattr(lc, name)} has no effect with loss.name={lc.name} "
                              f"(it takes {takes}); unset it or choose loss.name=focal_dice")
    kwargs = {k: getattr(lc, k) for k in _LOSS_OPTIONS if k in accepted}
    base = build_loss(lc.name, num_classes=task.head_classes(cfg.model.num_classes), ignore_index=cfg.data.ignore_index,
                      **kwargs)
    change = DeepSupervisionLoss(base, lc.aux_weights if cfg.model.deep_supervision else [])
    return task.criterion(change, lc, cfg.data.ignore_index)


def build_finetuning(cfg: FinetuneConfig, run_dir: Path, runtime: Runtime) -> Built:
    """Training pairs (random crops) → normalization → model + loss → loader, and the task's validator (xView2
    score, binary change F1 or semantic change SeK). Rank 0 rasterises the masks and resolves the normalization
    first; the other ranks then read them. The task is resolved here, once, and passed down."""
    d, world = cfg.data, runtime.world
    change = change_task(cfg.task, d.mask_threshold)  # an unknown task is named before any layout is checked
    encoder = EncoderMeta.read(cfg.model.encoder_weights) if cfg.model.encoder_weights else None
    cache_dir = Path(d.cache_dir or d.targets_dir or run_dir / "targets")
    fmt = resolve_format(cfg, change)
    synthetic = synthetic_change(cfg, change)
    if synthetic is None:
        train_records, val_records = main_first(world, lambda: split_records(cfg, fmt, cache_dir))
    else:  # self-supervised: every pair trains, unlabeled, nothing to validate against
        train_records, val_records = main_first(world, lambda: unlabeled_records(cfg, fmt, cache_dir)), []
    if world.is_main:  # which pairs trained and which were held out, by id (OSCD: city names)
        split = {"format": fmt, "train": [r.id for r in train_records], "val": [r.id for r in val_records]}
        (run_dir / "split.json").write_text(json.dumps(split, indent=1) + "\n")
    dataset = change.dataset(cfg, fmt, train_records, train=True)
    resuming = last_checkpoint(run_dir) is not None
    init = read_init(cfg.model.init_weights) if cfg.model.init_weights and not resuming else None
    start_stats = encoder.normalization if encoder else init.pre_stats if init else None
    pre_stats, post_stats = main_first(world, lambda: resolve_pair_stats(cfg, dataset, run_dir, start_stats,
                                                                         save=world.is_main))
    model = build_model(cfg, change, dataset.num_bands_pre, dataset.num_bands_post, encoder)
    if init is not None:
        init.load_into(model)
    task = FinetuneTask(model, build_criterion(cfg, change), pre_stats, post_stats, cfg.train.freeze_encoder_epochs,
                        cfg.train.encoder_lr_scale, runtime.memory_format,
                        jitter_seed=cfg.train.seed if d.photometric_on_device else None,
                        encoder_bn=cfg.train.encoder_bn,
                        geometry=Geometry(cfg.train.seed, d.misregistration_px, d.ignore_index)
                        if d.geometric_on_device else None, radiometric=d.radiometric, synthetic=synthetic,
                        export_meta=None if synthetic is None else EncoderMeta(
                            cfg.model.backbone, dataset.num_bands_pre, dict(cfg.model.timm_kwargs),
                            num_features=model.encoder.feature_info.channels()[-1], objective="synthetic-change",
                            bands=d.bands, normalization=pre_stats))
    collate = None if d.photometric_on_device else JitterCollate(cfg.train.seed)
    per_epoch = d.samples_per_epoch or max(len(dataset), cfg.train.batch_size)
    loader = training_loader(dataset, cfg, runtime, per_epoch, collate)
    built = Built(dataset, task, loader, val_every=cfg.train.val_every)
    if val_records:
        val_set = change.dataset(cfg, fmt, val_records, train=False)
        built.validator = change.validator(task, val_set, runtime, d.val_window, cfg.train.tta, d.ignore_index)
    return built


@dataclass(frozen=True)
class InitialWeights:
    """``model.init_weights`` read once: the checkpoint's model weights and the band statistics it was trained on."""

    path: Path
    state: dict[str, torch.Tensor]
    pre_stats: BandStats

    def load_into(self, model: SiameseChangeNet) -> None:
        """Every weight of ``model`` from the checkpoint; another architecture is a one-line ConfigError."""
        mine = model.state_dict()
        missing, extra = sorted(mine.keys() - self.state.keys()), sorted(self.state.keys() - mine.keys())
        shape = next((k for k in mine.keys() & self.state.keys() if mine[k].shape != self.state[k].shape), None)
        if missing or extra or shape:
            what = (f"no {missing[0]}" if missing else f"an extra {extra[0]}" if extra else
                    f"{shape} of shape {tuple(self.state[shape].shape)}, this model's is {tuple(mine[shape].shape)}")
            raise ConfigError(f"model.init_weights: {self.path} holds another model ({what}); use the same model.* "
                              "settings and bands as that run")
        model.load_state_dict(self.state)


def read_init(source: str) -> InitialWeights:
    """A finetune checkpoint, or a run dir (its ``checkpoints/last.pt``), as :class:`InitialWeights`."""
    path = Path(source)
    path = last_checkpoint_path(path) if path.is_dir() else path
    ckpt = load_checkpoint(path, kind="finetune")
    state = {k.removeprefix("model."): v for k, v in ckpt["model"].items() if k.startswith("model.")}
    return InitialWeights(path, state, BandStats(**ckpt["extra"]["pre_stats"]))


def synthetic_change(cfg: FinetuneConfig, change: ChangeTask) -> SyntheticChange | None:
    """``data.synthetic_change`` checked (one-line ConfigErrors naming the key) and resolved; None when off."""
    sc = cfg.data.synthetic_change
    if not sc.enabled:
        return None
    if not change.synthetic_targets:
        raise ConfigError(f"data.synthetic_change.enabled=true makes binary change targets; task={change.name} has "
                          "other classes (use task=binary)")
    if sc.min_size > sc.max_size:
        raise ConfigError(f"data.synthetic_change.min_size={sc.min_size} is above max_size={sc.max_size}")
    if sc.same_date > 0 and cfg.data.post_bands is not None and cfg.data.post_bands != cfg.data.bands:
        raise ConfigError(f"data.synthetic_change.same_date={sc.same_date} copies one date into the other; "
                          "data.post_bands must then be unset or equal to data.bands")
    return SyntheticChange(cfg.train.seed, sc.patches, sc.min_size, sc.max_size, cfg.data.ignore_index, sc.same_date,
                           sc.no_change)


def run_finetune(cfg: FinetuneConfig) -> Path:
    """Finetune (or resume) as configured; returns the run directory (``checkpoints/best.pt``, ``last.pt``)."""
    return launch(cfg, "finetune", build_finetuning)


class Finetuned(NamedTuple):
    """A finetuned model rebuilt from its checkpoint, with the run's config, the runtime it predicts on and its
    change task (decoding, outputs, targets and scoring; reading masks with the run's ``data.mask_threshold``)."""

    task: FinetuneTask
    cfg: FinetuneConfig
    runtime: Runtime
    change: ChangeTask


def load_finetuned(ckpt_path: str | Path, device: str | torch.device = "auto") -> Finetuned:
    """Rebuild the finetuned model (eval mode) and its normalization from a checkpoint file alone, on ``device``
    with the run's ``train.precision`` autocast and ``train.channels_last`` memory format (where they apply)."""
    ckpt = load_checkpoint(ckpt_path, kind="finetune")
    cfg = from_dict(FinetuneConfig, ckpt["config"])
    runtime = Runtime.create(device, cfg.train.precision, cfg.train.channels_last)
    extra, change = ckpt["extra"], change_task(cfg.task, cfg.data.mask_threshold)
    model = build_model(cfg, change, extra["in_chans"], extra["post_in_chans"], with_weights=False)
    state = {k.removeprefix("model."): v for k, v in ckpt["model"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    task = FinetuneTask(model, nn.Identity(), BandStats(**extra["pre_stats"]), BandStats(**extra["post_stats"]),
                        memory_format=runtime.memory_format, radiometric=cfg.data.radiometric)
    return Finetuned(task.to(runtime.device, memory_format=runtime.memory_format).eval(), cfg, runtime, change)
