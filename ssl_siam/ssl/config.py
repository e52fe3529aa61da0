"""The ``ssl-siam pretrain`` config schema; defaults follow the papers cited."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ssl_siam.train.config import LoaderConfig, OptimConfig, RunConfig, TrainConfig


@dataclass
class ModelConfig:
    backbone: str = "resnet50"  # any timm model name
    pretrained: str | None = None  # a LOCAL weight file (.safetensors / .pt / .pth); never downloaded
    timm_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {drop_path_rate: 0.1}


@dataclass
class TileDataConfig(LoaderConfig):
    root: str = ""  # folder, glob, file, or `{band}` pattern (see README)
    tile_size: int = 256
    bands: list[int] | None = None  # 1-based band indices, e.g. [4, 3, 2, 8]
    band_names: list[str] | None = None  # values substituted for `{band}` in `root`
    sampling: Literal["random", "grid"] = "random"
    samples_per_epoch: int | None = None
    max_nodata_fraction: float = 0.5
    nodata: float | None = None  # override the files' nodata value
    stats: str | None = None  # per-band stats JSON from `ssl-siam stats`; None = computed and saved to run_dir
    normalization: dict[str, list[float]] | None = None  # or the values themselves: {low, high, mean, std}
    stats_samples: int = 256
    skip_bad: bool = False  # skip (log and count) unreadable windows instead of failing
    max_bad_fraction: float = 0.01  # with skip_bad: stop when more than this fraction of reads failed


@dataclass
class AugmentConfig:
    """View generation; defaults are SimSiam's (MoCo v2 augmentations) + dihedral flips/rotations."""

    global_size: int = 224
    global_scale: tuple[float, float] = (0.2, 1.0)
    n_global: int = 2
    local_size: int = 96
    local_scale: tuple[float, float] = (0.05, 0.4)
    n_local: int = 0  # DINO multi-crop
    flip_p: float = 0.5
    rot90: bool = True
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4  # RGB only
    hue: float = 0.1  # RGB only
    grayscale_p: float = 0.2  # RGB only
    blur_p: list[float] = field(default_factory=lambda: [0.5, 0.5])  # per global view
    local_blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: list[float] = field(default_factory=lambda: [0.0, 0.0])  # per global view
    rgb_bands: list[int] | None = None  # 0-based positions of R, G, B among loaded bands; 3 bands → [0, 1, 2]
    on_device: bool = True  # augment the batch on the training device; False: in the DataLoader workers


@dataclass
class SimSiamConfig:  # Chen & He 2021
    proj_hidden_dim: int = 2048
    out_dim: int = 2048
    pred_hidden_dim: int = 512
    fix_pred_lr: bool = True


@dataclass
class BYOLConfig:  # Grill et al. 2020
    proj_hidden_dim: int = 4096
    out_dim: int = 256
    pred_hidden_dim: int = 4096
    momentum_start: float = 0.99
    momentum_end: float = 1.0


@dataclass
class DINOConfig:  # Caron et al. 2021
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    out_dim: int = 65536
    batch_norm: bool = False  # BN in the head (official default for ResNet: False)
    norm_last_layer: bool = True
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 30
    student_temp: float = 0.1
    center_momentum: float = 0.9
    momentum_start: float = 0.996
    momentum_end: float = 1.0
    freeze_last_layer_epochs: int = 1


@dataclass
class KNNMonitorConfig:
    """Optional kNN accuracy on a labeled set during pretraining (logged as val/knn_top1; best.pt by it)."""

    data: list[str] = field(default_factory=list)  # labeled data: image-folder root or xBD split dirs; empty = off
    dataset: Literal["folder", "xbd-crops"] = "folder"
    every_epochs: float = 1.0
    k: int = 20
    temperature: float = 0.07
    crop_size: int = 64


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
