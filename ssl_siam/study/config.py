"""The ``ssl-siam study`` config schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ssl_siam.change.config import FinetuneConfig
from ssl_siam.core.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt


@dataclass
class StudyDataConfig:
    root: list[str] = field(default_factory=list)  # split dirs: the pool of labelled pairs (and, with
    # split=disaster, the held-out disaster's pairs); task=scene: one class folder
    val_root: list[str] = field(default_factory=list)  # split=image: the held-out test pairs (default: a seeded
    # test_fraction of the images of `root`); split=disaster: more pairs of the held-out disaster; task=scene: a
    # class folder of test images (default: scene.test_fraction of root)


@dataclass
class SceneStudyConfig:
    """task=scene: frozen-feature probes (and optional finetuning) on a class folder, scored on one fixed split."""

    test_fraction: Fraction = 0.5  # held out of each class of data.root (seeded, stratified); unused with val_root
    split_seed: NonNegativeInt = 0  # the test split's seed (`ssl-siam split-scenes` makes the same split)
    image_size: PositiveInt = 64  # scenes resized (shorter side) and centre-cropped to this many pixels
    methods: list[Literal["linear", "knn", "finetune"]] = field(default_factory=lambda: ["linear", "knn"])
    linear_c: PositiveFloat = 1.0  # inverse L2 strength of the logistic regression (scikit-learn's C), fixed
    k: PositiveInt = 20  # neighbours of the weighted kNN (cosine, DINO's exp(sim / T) votes)
    temperature: PositiveFloat = 0.07
    batch_size: PositiveInt = 128  # feature extraction
    device: str = "auto"  # auto | cpu | cuda[:N]
    finetune_steps: PositiveInt = 200  # method finetune: SGD steps of encoder + linear head per cell
    finetune_batch_size: PositiveInt = 32
    finetune_lr: PositiveFloat = 0.01  # head LR (cosine to 0); the encoder's is finetune_encoder_lr_scale × this
    finetune_encoder_lr_scale: NonNegativeFloat = 0.1
    finetune_weight_decay: NonNegativeFloat = 1e-4


@dataclass
class StudyConfig:
    run_dir: str = ""  # the study directory: one finetune run dir per cell under cells/, study.json, study.md
    encoders: list[str] = field(default_factory=lambda: ["random:resnet50"])  # RUN_DIR | random:<timm> |
    # timm:<name>=<local weight file>; the first random: one is the baseline of the paired differences
    task: str = "change"  # a registered study (study.design.STUDIES): change = finetunes of finetune.task;
    # scene: scene classification of a class folder (data.root = <class>/*.{tif,png,jpg}; see `scene`)
    budgets: list[PositiveFloat | Literal["all"]] = field(default_factory=lambda: [8, 32, 128])  # labelled training
    # pairs per cell (task=scene: labelled images per class): a count (>= 1), a fraction of the pool (< 1) or all;
    # subsets are nested across budgets
    seeds: list[NonNegativeInt] = field(default_factory=lambda: [0, 1, 2])  # subset draw and finetuning seed
    split: Literal["image", "disaster"] = "image"  # test on held-out images, or on a disaster never labelled
    holdout: str | None = None  # split=disaster: the held-out disaster (default: the one with the most pairs)
    test_fraction: Fraction = 0.25  # split=image without data.val_root: images of `root` kept for testing
    test_ids: list[str] | None = None  # split=image: these pairs of `root` are the test set (OSCD: cities), the
    # rest the pool (instead of test_fraction)
    test_window: PositiveInt = 512  # sliding-window size when scoring the test pairs
    probes: bool = False  # also frozen-feature probes (linear, kNN) of each encoder at each cell's labelled pairs
    # (xBD building damage; study.json "probes", a table per method in study.md)
    probe_crop_size: PositiveInt = 64  # probes: building crop side in pixels
    probe_k: PositiveInt = 20  # probes: neighbours of the kNN
    scene: SceneStudyConfig = field(default_factory=SceneStudyConfig)
    data: StudyDataConfig = field(default_factory=StudyDataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # every cell's finetune config (any key)
