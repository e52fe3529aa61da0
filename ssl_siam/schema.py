"""Typed config schemas. YAML files in ``configs/`` fill these; defaults follow the papers cited."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class ModelConfig:
    backbone: str = "resnet50"  # any timm model name
    pretrained: str | None = None  # a LOCAL weight file (.safetensors / .pt / .pth); never downloaded
    timm_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {drop_path_rate: 0.1}


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd", "lars"] = "sgd"
    lr: float = 0.05  # base LR for `base_batch_size` samples; scaled linearly with the effective batch
    base_batch_size: int = 256
    weight_decay: float = 1e-4
    weight_decay_end: float | None = None  # cosine weight-decay schedule (DINO); None = constant
    momentum: float = 0.9  # SGD/LARS
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    warmup_steps: int = 0  # takes precedence over warmup_epochs when > 0
    warmup_epochs: float = 0.0
    min_lr: float = 0.0  # the cosine schedule ends here (absolute, not scaled)
    clip_grad: float | None = None  # max global grad norm


@dataclass
class TrainConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"  # autocast dtype on CUDA; CPU always runs fp32
    channels_last: bool = True  # CUDA only
    batch_size: int = 64  # per process
    accumulate: int = 1  # gradient accumulation steps per optimizer step
    max_steps: int | None = None  # optimizer steps; None = `epochs` worth of steps
    epochs: int = 100
    checkpoint_every: int = 500  # steps
    log_every: int = 10  # steps
    collapse_every: int = 50  # steps between collapse-monitor readings
    collapse_threshold: float = 0.25  # warn when std·sqrt(d) falls below this
    stop_on_collapse: bool = False
    max_bad_steps: int = 20  # consecutive non-finite steps tolerated (each is skipped) before stopping
    seed: int = 0
    progress: bool = True  # tqdm bar on a terminal
    sync_bn: bool = False  # SyncBatchNorm across processes (torchrun / Slurm)
    compile: bool = False  # torch.compile the backbones (in place: checkpoints stay interchangeable)
    compile_mode: str | None = None  # torch.compile mode: default | reduce-overhead | max-autotune


@dataclass
class LoaderConfig:
    """DataLoader settings shared by every data section."""

    num_workers: int = 4
    pin_memory: bool = True
    prefetch_factor: int = 4


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
class RunConfig:
    """What every training command's config starts with: where the run lives and whether to resume it."""

    run_dir: str = ""  # default: runs/<command or objective>-<timestamp>
    resume: Literal["auto", True, False] = "auto"  # auto: resume when run_dir has a checkpoint


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


@dataclass
class XBDDataConfig(LoaderConfig):
    root: list[str] = field(default_factory=list)  # xBD split dirs (train, tier3, ...); a single string is accepted
    val_root: list[str] = field(default_factory=list)  # explicit validation splits; empty = hold out val_fraction
    val_fraction: float = 0.1  # of the pairs in `root`, by a seeded shuffle of image ids
    crop_size: int = 512
    val_window: int = 1024  # sliding-window size for validation on whole images
    samples_per_epoch: int | None = None  # random crops per epoch; None = one per training pair (≥ one batch)
    building_bias: float = 0.8  # probability that a training crop is centred on a building pixel
    misregistration_px: int = 0  # max independent shift of the post image (augmentation)
    photometric_on_device: bool = False  # true: jitter on the training device instead of in the workers (see README)
    bands: list[int] | None = None  # 1-based bands of the pre image (and post, unless post_bands)
    post_bands: list[int] | None = None
    ignore_index: int = 255  # `un-classified` buildings in training masks
    skip_bad: bool = False  # skip (and report) unpairable/unreadable pairs instead of failing
    cache_dir: str | None = None  # rasterised target masks; default <run_dir>/targets
    stats: str | None = None  # stats JSON for the pre image; default: the encoder's, else computed
    post_stats: str | None = None
    stats_samples: int = 128


@dataclass
class DamageModelConfig:
    backbone: str = "resnet50"
    encoder_weights: str | None = None  # an exported SSL encoder (run dir or encoder.safetensors)
    pretrained: str | None = None  # or a local timm weight file
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    siamese: Literal["classic", "pseudo", "asymmetric"] = "classic"
    post_backbone: str | None = None  # asymmetric only
    fusion: str = "absdiff"  # absdiff | concat | concat_diff | learned
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])
    attention: bool = True
    deep_supervision: bool = True
    num_classes: int = 5


@dataclass
class LossConfig:
    name: str = "focal_dice"
    focal_weight: float = 1.0
    dice_weight: float = 1.0
    gamma: float = 2.0
    alpha: list[float] | None = None  # per-class focal α
    class_weights: list[float] | None = None  # per-class Dice weights (xBD imbalance)
    aux_weights: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.125, 0.0625])  # finest aux first


@dataclass
class FinetuneTrainConfig(TrainConfig):
    freeze_encoder_epochs: float = 0.0  # encoder weights fixed for the first k epochs
    encoder_lr_scale: float = 0.1  # encoder LR = this × decoder LR
    val_every: int = 0  # steps between validations; 0 = once per epoch
    tta: bool = False  # flip TTA in validation


@dataclass
class FinetuneConfig(RunConfig):
    data: XBDDataConfig = field(default_factory=XBDDataConfig)
    model: DamageModelConfig = field(default_factory=DamageModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adamw", lr=2e-4, base_batch_size=16,
                                                                  weight_decay=1e-4, warmup_steps=100))
    train: FinetuneTrainConfig = field(default_factory=lambda: FinetuneTrainConfig(batch_size=8, epochs=50))


@dataclass
class MetricDataConfig(LoaderConfig):
    """Where pairs come from (see ``ssl_siam/metric/datasets.py``)."""

    dataset: Literal["geotiff-dates", "pixel-series", "object-series", "xbd-pairs", "pairs-csv"] = "geotiff-dates"
    # geotiff-dates / pixel-series / object-series: one folder or glob per date (scenes matched in sorted order,
    # same grid; object-series: one scene per date);
    # xbd-pairs: xBD split dirs; pairs-csv: the CSV file (path_a,path_b,label; paths relative to it)
    root: list[str] = field(default_factory=list)
    val_root: list[str] = field(default_factory=list)  # held-out pairs for verification during training
    crop_size: int = 64  # window / crop side in pixels (images)
    bands: list[int] | None = None  # 1-based bands (geotiff-dates, pixel-series)
    samples_per_epoch: int = 2048  # random locations per epoch (geotiff-dates, pixel-series)
    neighbour_px: int = 1  # pixel-series: the positive is a pixel at most this far from the anchor
    objects: str | None = None  # object-series: GeoJSON of polygons (scene CRS) whose mean series are embedded
    val_objects: str | None = None  # object-series: polygons of the val_root scenes (default: `objects`)
    stats: str | None = None  # band stats JSON; default: the SSL encoder's, else computed and saved
    stats_samples: int = 64


@dataclass
class MetricModelConfig:
    backbone: str = "resnet18"  # any timm model name, or gru | lstm for per-pixel time series
    encoder_weights: str | None = None  # an exported SSL encoder (run dir or encoder.safetensors)
    pretrained: str | None = None  # or a local timm weight file
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    variant: Literal["classic", "pseudo", "triplet"] = "classic"  # shared θ | separate θ | 3 branches, shared θ
    embed_dim: int = 128
    head_hidden_dim: int = 512
    rnn_hidden_dim: int = 128  # gru / lstm
    rnn_layers: int = 2
    bidirectional: bool = False


@dataclass
class MetricLossConfig:
    name: str = "contrastive"  # contrastive | triplet | learned_metric
    margin: float | None = None  # default: 1.0 contrastive, 0.2 triplet
    distance: Literal["euclidean", "cosine"] = "euclidean"
    # none: the pairs/triplets the data gives (location data: positive (a_i, b_i), negative a_i vs the next
    # location); all | semi-hard | batch-hard: mined among every embedding of the batch (location data only);
    # auto: batch-hard for location data, none for labelled pairs
    mining: Literal["auto", "none", "all", "semi-hard", "batch-hard"] = "auto"
    gather: bool = False  # torchrun: mine among the embeddings of all processes (anchors stay local)
    metric_hidden_dim: int = 256  # learned_metric MLP


@dataclass
class MetricAugmentConfig:
    """Augmentation of the branch inputs, on the training device."""

    joint: bool = True  # images: one crop/flip/rotation for both inputs of a pair (co-registered stay so);
    # per-band jitter is drawn for each input separately either way. false: fully independent views
    scale: tuple[float, float] = (0.6, 1.0)  # random resized crop area (images)
    flip_p: float = 0.5
    rot90: bool = True
    jitter_p: float = 0.8
    brightness: float = 0.2
    contrast: float = 0.2
    series_noise: float = 0.02  # pixel-series: Gaussian noise (in standardised units)
    series_dropout: float = 0.1  # pixel-series: fraction of dates blanked


@dataclass
class MetricTrainConfig(TrainConfig):
    val_every: int = 0  # steps between verification runs on data.val_root; 0 = once per epoch


@dataclass
class MetricConfig(RunConfig):
    data: MetricDataConfig = field(default_factory=MetricDataConfig)
    model: MetricModelConfig = field(default_factory=MetricModelConfig)
    loss: MetricLossConfig = field(default_factory=MetricLossConfig)
    augment: MetricAugmentConfig = field(default_factory=MetricAugmentConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adamw", lr=1e-3, base_batch_size=256,
                                                                  weight_decay=1e-4, warmup_steps=50))
    train: MetricTrainConfig = field(default_factory=lambda: MetricTrainConfig(batch_size=64, epochs=20))
