"""The ``ssl-siam study`` config schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ssl_siam.core.config import Fraction, NonNegativeInt, PositiveFloat, PositiveInt
from ssl_siam.damage.config import FinetuneConfig


@dataclass
class StudyDataConfig:
    root: list[str] = field(default_factory=list)  # xBD split dirs: the pool of labelled pairs (and, with
    # split=disaster, the held-out disaster's pairs)
    val_root: list[str] = field(default_factory=list)  # split=image: the held-out test pairs (default: a seeded
    # test_fraction of the images of `root`); split=disaster: more pairs of the held-out disaster


@dataclass
class StudyConfig:
    run_dir: str = ""  # the study directory: one finetune run dir per cell under cells/, study.json, study.md
    encoders: list[str] = field(default_factory=lambda: ["random:resnet50"])  # RUN_DIR | random:<timm> |
    # timm:<name>=<local weight file>; the first random: one is the baseline of the paired differences
    budgets: list[PositiveFloat] = field(default_factory=lambda: [8, 32, 128])  # labelled training pairs per cell:
    # a count (>= 1) or a fraction of the pool (< 1); subsets are nested across budgets
    seeds: list[NonNegativeInt] = field(default_factory=lambda: [0, 1, 2])  # subset draw and finetuning seed
    split: Literal["image", "disaster"] = "image"  # test on held-out images, or on a disaster never labelled
    holdout: str | None = None  # split=disaster: the held-out disaster (default: the one with the most pairs)
    test_fraction: Fraction = 0.25  # split=image without data.val_root: images of `root` kept for testing
    test_window: PositiveInt = 512  # sliding-window size when scoring the test pairs
    probes: bool = False  # also frozen-feature probes (linear, kNN) of each encoder at each cell's labelled pairs
    # (xBD building damage; study.json "probes", a table per method in study.md)
    probe_crop_size: PositiveInt = 64  # probes: building crop side in pixels
    probe_k: PositiveInt = 20  # probes: neighbours of the kNN
    data: StudyDataConfig = field(default_factory=StudyDataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # every cell's finetune config (any key)
