"""The ``ssl-siam pretrain`` config schema; defaults follow the papers cited."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ssl_siam.core.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range
from ssl_siam.train.config import LoaderConfig, OptimConfig, RunConfig, TrainConfig


@dataclass
class ModelConfig:
    backbone: str = "resnet50"  # any timm model name
    pretrained: str | None = None  # a LOCAL weight file (.safetensors / .pt / .pth); never downloaded
    timm_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {drop_path_rate: 0.1}


@dataclass
class TileDataConfig(LoaderConfig):
    root: list[str] = field(default_factory=list)  # folders, globs, files or `{band}` patterns (docs/pretraining.md)
    tile_size: PositiveInt = 256
    bands: list[PositiveInt] | None = None  # 1-based band indices, e.g. [4, 3, 2, 8]
    band_names: list[str] | None = None  # values substituted for `{band}` in `root`
    sampling: Literal["random", "grid"] = "random"
    samples_per_epoch: PositiveInt | None = None
    max_nodata_fraction: Fraction = 0.5
    nodata: float | None = None  # override the files' nodata value
    stats: str | None = None  # per-band stats JSON from `ssl-siam stats`; None = computed and saved to run_dir
    normalization: dict[str, list[float]] | None = None  # or the values themselves: {low, high, mean, std}
    stats_samples: PositiveInt = 256
    skip_bad: bool = False  # skip (log and count) unreadable windows instead of failing
    max_bad_fraction: Fraction = 0.01  # with skip_bad: stop when more than this fraction of reads failed
    cache_dir: str | None = None  # decoded, windowed copies of PNG / JPEG tiles, built on first use (ssl-siam cache)


@dataclass
class AugmentConfig:
    """View generation; defaults are SimSiam's (MoCo v2 augmentations) + dihedral flips/rotations."""

    global_size: PositiveInt = 224
    global_scale: tuple[Fraction, Fraction] = (0.2, 1.0)
    n_global: PositiveInt = 2
    local_size: PositiveInt = 96
    local_scale: tuple[Fraction, Fraction] = (0.05, 0.4)
    n_local: NonNegativeInt = 0  # DINO multi-crop
    flip_p: Fraction = 0.5
    rot90: bool = True
    jitter_p: Fraction = 0.8
    brightness: NonNegativeFloat = 0.4
    contrast: NonNegativeFloat = 0.4
    saturation: NonNegativeFloat = 0.4  # RGB only
    hue: Annotated[float, Range(0, 0.5)] = 0.1  # RGB only
    grayscale_p: Fraction = 0.2  # RGB only
    blur_p: list[Fraction] = field(default_factory=lambda: [0.5, 0.5])  # per global view
    local_blur_p: Fraction = 0.5
    blur_sigma: tuple[PositiveFloat, PositiveFloat] = (0.1, 2.0)
    solarize_p: list[Fraction] = field(default_factory=lambda: [0.0, 0.0])  # per global view
    rgb_bands: list[NonNegativeInt] | None = None  # 0-based R, G, B among the loaded bands; 3 bands → [0, 1, 2]
    on_device: bool = True  # augment the batch on the training device; False: in the DataLoader workers


@dataclass
class SimSiamConfig:  # Chen & He 2021
    proj_hidden_dim: PositiveInt = 2048
    out_dim: PositiveInt = 2048
    pred_hidden_dim: PositiveInt = 512
    fix_pred_lr: bool = True


@dataclass
class BYOLConfig:  # Grill et al. 2020
    proj_hidden_dim: PositiveInt = 4096
    out_dim: PositiveInt = 256
    pred_hidden_dim: PositiveInt = 4096
    momentum_start: Fraction = 0.99
    momentum_end: Fraction = 1.0


@dataclass
class DINOConfig:  # Caron et al. 2021
    hidden_dim: PositiveInt = 2048
    bottleneck_dim: PositiveInt = 256
    out_dim: PositiveInt = 65536
    batch_norm: bool = False  # BN in the head (official default for ResNet: False)
    norm_last_layer: bool = True
    warmup_teacher_temp: PositiveFloat = 0.04
    teacher_temp: PositiveFloat = 0.04
    warmup_teacher_temp_epochs: NonNegativeInt = 30
    student_temp: PositiveFloat = 0.1
    center_momentum: Fraction = 0.9
    momentum_start: Fraction = 0.996
    momentum_end: Fraction = 1.0
    freeze_last_layer_epochs: NonNegativeInt = 1


@dataclass
class KNNMonitorConfig:
    """Optional kNN accuracy on a labeled set during pretraining (logged as val/knn_top1; best.pt by it)."""

    data: list[str] = field(default_factory=list)  # labeled data: image-folder root or xBD split dirs; empty = off
    on_data_root: bool = False  # with data empty: data.root is itself a class folder (<class>/*) and serves as the
    # labelled set (labels never reach the objective; its own seeded 25 % are the kNN queries)
    dataset: Literal["folder", "xbd-crops"] = "folder"
    every_epochs: PositiveFloat = 1.0
    k: PositiveInt = 20
    temperature: PositiveFloat = 0.07
    crop_size: PositiveInt = 64


@dataclass
class PretrainConfig(RunConfig):
    objective: str = "simsiam"
    data: TileDataConfig = field(default_factory=TileDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    simsiam: SimSiamConfig = field(default_factory=SimSiamConfig)
    byol: BYOLConfig = field(default_factory=BYOLConfig)
    dino: DINOConfig = field(default_factory=DINOConfig)
    knn: KNNMonitorConfig = field(default_factory=KNNMonitorConfig)
