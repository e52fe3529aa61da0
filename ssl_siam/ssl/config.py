"""The ``ssl-siam pretrain`` config schema; defaults follow the papers cited.

Each objective's section (``simsiam:``, ``byol:``, ``dino:``, ...) is declared by the objective's own file
(:attr:`Objective.options`) and added here from the registry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ssl_siam.core.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range
from ssl_siam.ssl import OBJECTIVES  # importing the package registers every objective
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
    temporal: bool = False  # temporal positives (SeCo, CaCo): the two global views of a sample are two dates of one
    # place; `root` is then an OSCD root, xBD split folders, or one folder / glob per date whose files with the same
    # relative path are the same place on one grid (docs/pretraining.md)


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
class SharedPretrainConfig(RunConfig):
    """What every objective's run is configured by; :data:`PretrainConfig` adds the objectives' sections."""

    objective: str = "simsiam"  # a name in OBJECTIVES
    data: TileDataConfig = field(default_factory=TileDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_SECTIONS = [*((name, OBJECTIVES.get(name).options) for name in OBJECTIVES), ("knn", KNNMonitorConfig)]
if clash := {f.name for f in dataclasses.fields(SharedPretrainConfig)} & {name for name, _ in _SECTIONS}:
    raise ValueError(f"objective names {sorted(clash)} are taken by config sections")

#: the schema: the shared sections, then one section per registered objective (named as it, typed by its
#: ``options``, in registration order) and the kNN monitor's
PretrainConfig = dataclasses.make_dataclass(
    "PretrainConfig", [(name, schema, field(default_factory=schema)) for name, schema in _SECTIONS],
    bases=(SharedPretrainConfig,), namespace={"__module__": __name__})
