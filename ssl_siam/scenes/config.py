"""The scene-finetuning config schema (written into every run's ``config.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ssl_siam.core.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveInt
from ssl_siam.train.config import LoaderConfig, OptimConfig, RunConfig, TrainConfig


@dataclass
class SceneDataConfig(LoaderConfig):
    root: str = ""  # class folder: <class>/*.{tif,png,jpg}, any band count
    val_root: str | None = None  # class folder of test images (default: test_fraction of root)
    test_fraction: Fraction = 0.5  # seeded stratified split of root (as `ssl-siam split-scenes`)
    split_seed: NonNegativeInt = 0
    train_ids: list[str] | None = None  # the labelled images, as `<class>/<file>`; None = every training image
    image_size: PositiveInt = 64  # shorter side resized to this, centre-cropped
    dihedral: bool = True  # random flips and 90° rotations, on the device


@dataclass
class SceneModelConfig:
    backbone: str = "resnet18"  # timm name (of the export's, when encoder_weights is given)
    encoder_weights: str | None = None  # an `ssl-siam pretrain` run dir or encoder.safetensors
    pretrained: str | None = None  # a LOCAL timm weight file; never downloaded
    encoder_lr_scale: NonNegativeFloat = 1.0  # encoder LR = this × the head's (0 freezes the encoder)


@dataclass
class SceneFinetuneConfig(RunConfig):
    data: SceneDataConfig = field(default_factory=SceneDataConfig)
    model: SceneModelConfig = field(default_factory=SceneModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, max_steps=200,
                                                                   checkpoint_every=100))
    stats_samples: PositiveInt = 64  # training images read for band statistics (random / timm encoders)
