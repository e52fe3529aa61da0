"""The ``ssl-siam track-train`` config schema (SiamFC, Bertinetto et al. 2016, sized for small objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ssl_siam.core.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from ssl_siam.train.config import LoaderConfig, OptimConfig, RunConfig, TrainConfig


@dataclass
class SyntheticConfig:
    """Sequences generated into ``RUN/synthetic/{train,val}`` when ``data.root`` is unset (track/synthetic.py)."""

    sequences: PositiveInt = 24  # training sequences
    val_sequences: PositiveInt = 4  # held-out sequences the validator tracks
    num_frames: PositiveInt = 40
    size: PositiveInt = 128  # frame side in pixels
    object_size: tuple[PositiveInt, PositiveInt] = (8, 20)  # object side range in pixels
    max_speed: NonNegativeFloat = 2.5  # pixels per frame
    occlusion_p: Fraction = 0.3  # probability that a sequence has an occlusion
    background: str | None = None  # an image folder or GeoTIFF for real backgrounds (e.g. ../shared/data/rsscn7)
    seed: NonNegativeInt = 0  # the training sequences' seed; the validation ones use seed + 1


@dataclass
class TrackDataConfig(LoaderConfig):
    """Where sequences come from and how training pairs are drawn from them (track/pairs.py)."""

    root: str | None = None  # sequences (`<seq>/img/*` + groundtruth_rect.txt) or a folder of them; None: synthetic
    val_root: str | None = None  # held-out sequences tracked during training (best.pt by success AUC)
    bands: list[PositiveInt] | None = None  # 1-based bands of the frames (None = all)
    max_gap: PositiveInt = 10  # exemplar and search frames at most this many frames apart
    max_shift: NonNegativeFloat = 12.0  # search crop centre moved off the target by up to this many search px
    stretch: Fraction = 0.05  # search crop scale drawn in [1 - stretch, 1 + stretch] (SiamFC's random stretch)
    samples_per_epoch: PositiveInt = 2048
    stats: str | None = None  # band stats JSON; default: the SSL encoder's, else computed and saved
    stats_frames: PositiveInt = 32  # frames read to compute the band statistics
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class TrackModelConfig:
    """SiamFC's embedding and crop geometry (the tracker crops exactly as training did)."""

    backbone: str = "resnet18"  # any timm model with features_only
    out_stride: PositiveInt = 4  # the feature level used: resnet18 layer1 (4) or layer2 (8)
    border: NonNegativeInt = 1  # feature cells dropped at each side of both embeddings (zero-padding effects)
    siamese: Literal["classic", "pseudo"] = "classic"  # shared θ | one encoder per branch, same start
    encoder_weights: str | None = None  # an exported SSL encoder (run dir or encoder.safetensors)
    pretrained: str | None = None  # or a local timm weight file
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    exemplar_size: PositiveInt = 32  # exemplar crop side in px (a multiple of out_stride)
    search_size: PositiveInt = 64  # search crop side in px (a multiple of out_stride, larger than the exemplar)
    context: NonNegativeFloat = 0.5  # exemplar side = sqrt((w + p)(h + p)) in the frame, p = context · (w + h)


@dataclass
class TrackLossConfig:
    radius: PositiveFloat = 4.0  # response cells within this many search px of the target are positive


@dataclass
class TrackAugmentConfig:
    """Augmentation of the pair on the training device."""

    dihedral: bool = True  # one random flip / quarter turn for exemplar, search and label map together
    jitter: bool = True  # photometric jitter (brightness/contrast, gamma, noise, blur) drawn per crop
    brightness: NonNegativeFloat = 0.15
    contrast: NonNegativeFloat = 0.15


@dataclass
class TrackTrainConfig(TrainConfig):
    val_every: NonNegativeInt = 0  # steps between tracking validations; 0 = once per epoch


@dataclass
class TrackConfig(RunConfig):
    data: TrackDataConfig = field(default_factory=TrackDataConfig)
    model: TrackModelConfig = field(default_factory=TrackModelConfig)
    loss: TrackLossConfig = field(default_factory=TrackLossConfig)
    augment: TrackAugmentConfig = field(default_factory=TrackAugmentConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adamw", lr=1e-3, base_batch_size=32,
                                                                  weight_decay=1e-4, warmup_steps=50))
    train: TrackTrainConfig = field(default_factory=lambda: TrackTrainConfig(batch_size=32, epochs=20))
