"""The ``ssl-siam finetune`` config schema (Siamese damage segmentation on xBD, binary and semantic change)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ssl_siam.change.datasets.base import OSCD_BANDS
from ssl_siam.core.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveInt, Range
from ssl_siam.train.config import LoaderConfig, OptimConfig, RunConfig, TrainConfig


@dataclass
class SyntheticChangeConfig:
    """Self-supervised change pretraining (docs/finetuning.md): unlabeled pairs, pasted changes as the target."""

    enabled: bool = False  # true: every pair of data.root trains, labels not used, no validation
    patches: PositiveInt = 4  # 1..patches rectangles pasted per pair
    min_size: PositiveInt = 4  # rectangle sides in pixels, uniform in [min_size, max_size]
    max_size: PositiveInt = 24
    same_date: Fraction = 0.0  # probability that a pair is one of its dates twice, the copy photometrically
    # jittered: the real second date's changes then never train as "no change"
    no_change: Fraction = 0.0  # probability that a pair gets no rectangle (an all "no change" target)


@dataclass
class ChangeDataConfig(LoaderConfig):
    format: str = "auto"  # a registered layout (change/datasets/): xbd, levir, s2looking, oscd, pairs-csv, second;
    # auto: detected from the first root
    root: list[str] = field(default_factory=list)  # split dirs (xBD: train, tier3, ...); a single string is accepted
    val_root: list[str] = field(default_factory=list)  # explicit validation splits; empty = hold out val_fraction
    val_fraction: Fraction = 0.1  # of the pairs in `root`, by a seeded shuffle of image ids
    train_ids: list[str] | None = None  # train on these pair ids of `root` only (label budgets: ssl-siam study)
    val_ids: list[str] | None = None  # validate on these pair ids of `root` (OSCD: city names) instead of
    # val_fraction; the others train (or data.train_ids); the held-out ids are in split.json and metrics.json
    crop_size: PositiveInt = 512
    val_window: PositiveInt = 1024  # sliding-window size for validation on whole images
    samples_per_epoch: PositiveInt | None = None  # random crops per epoch; None = one per training pair (≥ one batch)
    building_bias: Fraction = 0.8  # probability that a training crop is centred on a building pixel
    misregistration_px: NonNegativeInt = 0  # max independent shift of the post image (augmentation)
    photometric_on_device: bool = False  # true: jitter on the training device, not in the workers (docs/finetuning.md)
    geometric_on_device: bool = False  # true: flips / rotations / affine / misregistration on the device, batched
    bands: list[PositiveInt] | None = None  # 1-based bands of the pre image (and post, unless post_bands)
    post_bands: list[PositiveInt] | None = None
    # match: each post image's bands get the pre image's scene mean / std (relative radiometric normalisation, one
    # gain and offset per pair and band: a date's haze, sun or gain is not change); kept in the checkpoint, so
    # validation and predict apply it too (docs/finetuning.md). none: the files' values
    radiometric: Literal["none", "match"] = "none"
    ignore_index: Annotated[int, Range(0, 255)] = 255  # `un-classified` buildings in training masks
    # binary change masks: values ≥ it are change, below it no change (anti-aliased 0 / 255 masks); None: masks
    # must hold 0 / 1 or 0 / 255. Applies in training, validation and held-out scoring (docs/finetuning.md)
    mask_threshold: Annotated[int, Range(1, 255)] | None = None
    skip_bad: bool = False  # skip (and report) unpairable/unreadable pairs instead of failing
    cache_dir: str | None = None  # masks rasterised and PNG / JPEG decoded here (ssl-siam cache, docs/benchmark.md)
    targets_dir: str | None = None  # without cache_dir: where masks are rasterised; default <run_dir>/targets
    stats: str | None = None  # stats JSON for the pre image; default: the encoder's, else computed
    post_stats: str | None = None
    stats_samples: PositiveInt = 128
    oscd_bands: list[str] = field(default_factory=lambda: list(OSCD_BANDS))  # OSCD: bands stacked, in this order
    synthetic_change: SyntheticChangeConfig = field(default_factory=SyntheticChangeConfig)


@dataclass
class ChangeModelConfig:
    backbone: str = "resnet50"
    encoder_weights: str | None = None  # an exported SSL encoder (run dir or encoder.safetensors)
    pretrained: str | None = None  # or a local timm weight file
    # the whole network (encoder, fusion, decoder, heads) from a finetune checkpoint or run dir (its last.pt), e.g. a
    # data.synthetic_change run; same model.* settings; its band statistics are the default normalization
    init_weights: str | None = None
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    siamese: Literal["classic", "pseudo", "asymmetric"] = "classic"
    post_backbone: str | None = None  # asymmetric only
    fusion: str = "absdiff"  # absdiff | concat | concat_diff | learned
    decoder_channels: list[PositiveInt] = field(default_factory=lambda: [256, 128, 64, 32, 16])
    attention: bool = True
    deep_supervision: bool = True
    num_classes: Annotated[int, Range(2)] | None = None  # default: the task's (damage 5, binary / semantic change 2)


@dataclass
class LossConfig:
    name: str = "focal_dice"
    focal_weight: NonNegativeFloat = 1.0
    dice_weight: NonNegativeFloat = 1.0
    gamma: NonNegativeFloat = 2.0
    alpha: list[NonNegativeFloat] | None = None  # per-class focal α
    class_weights: list[NonNegativeFloat] | None = None  # per-class Dice weights (xBD imbalance)
    semantic_weight: NonNegativeFloat = 1.0  # task=semantic: weight of the land-cover cross-entropy (both dates)
    aux_weights: list[NonNegativeFloat] = field(default_factory=lambda: [0.5, 0.25, 0.125, 0.0625])  # finest aux first


@dataclass
class FinetuneTrainConfig(TrainConfig):
    freeze_encoder_epochs: NonNegativeFloat = 0.0  # encoder weights fixed for the first k epochs
    encoder_lr_scale: NonNegativeFloat = 0.1  # encoder LR = this × decoder LR; 0 = encoder weights frozen
    encoder_bn: Literal["train", "frozen"] = "train"  # frozen: encoder BatchNorm keeps its (pretrained) statistics
    val_every: NonNegativeInt = 0  # steps between validations; 0 = once per epoch
    tta: bool = False  # flip TTA in validation


@dataclass
class FinetuneConfig(RunConfig):
    # a registered change task (change/tasks/): damage = xBD's 5 classes, xView2 score; binary = change / no change,
    # F1; semantic = SECOND change + land cover, SeK
    task: str = "damage"
    data: ChangeDataConfig = field(default_factory=ChangeDataConfig)
    model: ChangeModelConfig = field(default_factory=ChangeModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adamw", lr=2e-4, base_batch_size=16,
                                                                  weight_decay=1e-4, warmup_steps=100))
    train: FinetuneTrainConfig = field(default_factory=lambda: FinetuneTrainConfig(batch_size=8, epochs=50))
