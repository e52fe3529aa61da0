"""The ``ssl-siam metric-train`` config schema (Siamese metric learning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ssl_siam.core.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, renamed
from ssl_siam.train.config import LoaderConfig, OptimConfig, RunConfig, TrainConfig


@dataclass
class MetricDataConfig(LoaderConfig):
    """Where pairs come from (see ``ssl_siam/metric_learning/datasets.py``)."""

    # a registered METRIC_DATASETS name (metric_learning/datasets.py, dates.py):
    # geotiff-dates / pixel-series / object-series: one folder or glob per date (scenes matched by relative path,
    # same grid; object-series: one scene per date);
    # xbd-pairs: xBD split dirs; similarity-csv: the CSV file (path_a,path_b,label; paths relative to it); its old
    # name pairs-csv is still read (the change layout data.format=pairs-csv is another format: pre,post,mask)
    dataset: str = renamed("geotiff-dates", {"pairs-csv": "similarity-csv"})
    root: list[str] = field(default_factory=list)
    val_root: list[str] = field(default_factory=list)  # held-out pairs for verification during training
    crop_size: PositiveInt = 64  # window / crop side in pixels (images)
    bands: list[PositiveInt] | None = None  # 1-based bands (geotiff-dates, pixel-series)
    samples_per_epoch: PositiveInt = 2048  # random locations per epoch (geotiff-dates, pixel-series)
    neighbour_px: PositiveInt = 1  # pixel-series: the positive is a pixel at most this far from the anchor
    objects: str | None = None  # object-series: GeoJSON of polygons (scene CRS) whose mean series are embedded
    val_objects: str | None = None  # object-series: polygons of the val_root scenes (default: `objects`)
    stats: str | None = None  # band stats JSON; default: the SSL encoder's, else computed and saved
    stats_samples: PositiveInt = 64
    cache_dir: str | None = None  # decoded, windowed copies of PNG / JPEG inputs, built on first use (ssl-siam cache)


@dataclass
class MetricModelConfig:
    backbone: str = "resnet18"  # any timm model name, or gru | lstm for per-pixel time series
    encoder_weights: str | None = None  # an exported SSL encoder (run dir or encoder.safetensors)
    pretrained: str | None = None  # or a local timm weight file
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    variant: Literal["classic", "pseudo", "triplet"] = "classic"  # shared θ | separate θ | 3 branches, shared θ
    embed_dim: PositiveInt = 128
    head_hidden_dim: PositiveInt = 512
    rnn_hidden_dim: PositiveInt = 128  # gru / lstm
    rnn_layers: PositiveInt = 2
    bidirectional: bool = False


@dataclass
class MetricLossConfig:
    name: str = "contrastive"  # contrastive | triplet | learned_metric
    margin: PositiveFloat | None = None  # default: 1.0 contrastive, 0.2 triplet
    distance: Literal["euclidean", "cosine"] = "euclidean"
    # none: the pairs/triplets the data gives (location data: positive (a_i, b_i), negative a_i vs the next
    # location); all | semi-hard | batch-hard: mined among every embedding of the batch (location data only);
    # auto: batch-hard for location data, none for labelled pairs
    mining: Literal["auto", "none", "all", "semi-hard", "batch-hard"] = "auto"
    gather: bool = False  # torchrun: mine among the embeddings of all processes (anchors stay local)
    metric_hidden_dim: PositiveInt = 256  # learned_metric MLP


@dataclass
class MetricAugmentConfig:
    """Augmentation of the branch inputs, on the training device."""

    joint: bool = True  # images: one crop/flip/rotation for both inputs of a pair (co-registered stay so);
    # per-band jitter is drawn for each input separately either way. false: fully independent views
    scale: tuple[Fraction, Fraction] = (0.6, 1.0)  # random resized crop area (images)
    flip_p: Fraction = 0.5
    rot90: bool = True
    jitter_p: Fraction = 0.8
    brightness: NonNegativeFloat = 0.2
    contrast: NonNegativeFloat = 0.2
    series_noise: NonNegativeFloat = 0.02  # pixel-series: Gaussian noise (in standardised units)
    series_dropout: Fraction = 0.1  # pixel-series: fraction of dates blanked


@dataclass
class MetricTrainConfig(TrainConfig):
    val_every: NonNegativeInt = 0  # steps between verification runs on data.val_root; 0 = once per epoch


@dataclass
class MetricConfig(RunConfig):
    data: MetricDataConfig = field(default_factory=MetricDataConfig)
    model: MetricModelConfig = field(default_factory=MetricModelConfig)
    loss: MetricLossConfig = field(default_factory=MetricLossConfig)
    augment: MetricAugmentConfig = field(default_factory=MetricAugmentConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adamw", lr=1e-3, base_batch_size=256,
                                                                  weight_decay=1e-4, warmup_steps=50))
    train: MetricTrainConfig = field(default_factory=lambda: MetricTrainConfig(batch_size=64, epochs=20))
