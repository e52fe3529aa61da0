"""What a change task owns, and the registry ``task=`` names one from.

A task is one class in one file of this package: the classes of its change head (and any extra head), the mask
classes its crop dataset reads, the loss wrapped around the change loss, the validator (and with it the metric
``best.pt`` follows), the held-out targets and scoring, the study's score, and the prediction maps it writes.
Nothing outside ``change/tasks/`` branches on a task name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from ssl_siam.change.config import FinetuneConfig, LossConfig
from ssl_siam.change.datasets import LAYOUTS
from ssl_siam.change.validate import PairValidator
from ssl_siam.core.errors import ConfigError
from ssl_siam.core.registry import Registry
from ssl_siam.data.pair_crops import PairCropDataset
from ssl_siam.data.pairs import PairRecord


class Score(Protocol):
    """A task's held-out score: ``score`` is the study's number, ``to_dict()`` every metric."""

    @property
    def score(self) -> float: ...

    def to_dict(self) -> dict[str, Any]: ...


class ChangeTask:
    """The defaults are binary change's: two classes, the mask read as it is stored, the change loss alone."""

    name: str = ""  # set by change_task() from the registered name
    mask_threshold: int | None = None  # set by change_task(): binary masks' values ≥ it are change, < it no change
    num_classes: ClassVar[int] = 2  # classes of the change head
    fixed_classes: ClassVar[bool] = True  # False: model.num_classes may change them
    semantic_classes: ClassVar[int] = 0  # classes of the per-date land-cover head (0: none)
    metric: ClassVar[str]  # the study's score, in words
    components: ClassVar[tuple[str, ...]]  # reported beside the score in studies
    validator: ClassVar[type[PairValidator]]
    building_labels: ClassVar[bool] = False  # its pairs carry building polygons (the study's building probes)
    binary_masks: ClassVar[bool] = True  # its masks are 0 / 255 (or 0 / 1) change masks: a mask threshold applies
    synthetic_targets: ClassVar[bool] = True  # data.synthetic_change can make its targets (pasted area = change)

    def head_classes(self, requested: int | None) -> int:
        """Classes of the change head: ``model.num_classes`` when this task lets it differ, else the task's."""
        n = requested or self.num_classes
        if self.fixed_classes and n != self.num_classes:
            raise ConfigError(f"model.num_classes={n}: task={self.name} has {self.num_classes} change classes "
                              "(no change, change)")
        return n

    def layouts(self) -> list[str]:
        """The registered dataset layouts whose masks label this task."""
        return [name for name in LAYOUTS.names() if LAYOUTS.get(name).task == self.name]

    def mask_classes(self, head_classes: int) -> int:
        """Classes of the stored training masks (values at or above are a data error)."""
        return head_classes

    def dataset(self, cfg: FinetuneConfig, fmt: str, records: list[PairRecord], train: bool) -> PairCropDataset:
        """Random training crops (``train``) or whole evaluation images of ``records`` in layout ``fmt``, with this
        task's classes and the layout's mask values (or every value binarised by :attr:`mask_threshold`)."""
        d = cfg.data
        common = dict(bands=d.bands, post_bands=d.post_bands, ignore_index=d.ignore_index, seed=cfg.train.seed,
                      num_classes=self.mask_classes(self.head_classes(cfg.model.num_classes)),
                      mask_map=LAYOUTS.get(fmt).mask_map, mask_threshold=self.mask_threshold, radiometric=d.radiometric)
        if not train:
            return PairCropDataset(records, None, train=False, **common)
        device = d.geometric_on_device  # then the training step applies the geometry to whole batches
        return PairCropDataset(records, d.crop_size, train=True, building_bias=d.building_bias, augment=not device,
                               misregistration_px=0 if device else d.misregistration_px,
                               masks=not d.synthetic_change.enabled, **common)

    def criterion(self, change_loss: nn.Module, loss: LossConfig, ignore_index: int) -> nn.Module:
        """The training loss around ``change_loss`` (deep-supervised loss of the change logits)."""
        return change_loss

    def prepare_records(self, records: Sequence[PairRecord], cache_dir: Path) -> Sequence[PairRecord]:
        """Records ready for :meth:`write_target` (e.g. xBD masks rasterised as the challenge scored them)."""
        return records

    def write_target(self, record: PairRecord, stem: str, folder: Path, ignore_index: int) -> None:
        """Write ``record``'s target into ``folder`` in the layout :meth:`score_dirs` reads."""
        raise NotImplementedError

    def score_dirs(self, pred: Path, targ: Path, workers: int = 2) -> Score:
        """Score a folder of predictions against a folder of targets (``workers`` threads where it helps)."""
        raise NotImplementedError

    def decode(self, probs: torch.Tensor) -> dict[str, np.ndarray]:
        """Probabilities ``[K, H, W]`` of a window row → the output maps ``{name: [H, W]}``; the first map of a
        scene fixes its dtype."""
        raise NotImplementedError

    def write_outputs(self, out_dir: Path, stem: str, maps: dict[str, np.ndarray], display: np.ndarray,
                      profile: dict[str, Any] | None, holes: np.ndarray | None) -> list[Path]:
        """Write a scene's maps (PNGs, overlay, and GeoTIFF + GeoJSON when georeferenced); the written paths."""
        raise NotImplementedError


#: ``task`` name → task class; a new task is a file here with ``@TASKS.register("name")``.
TASKS: Registry[type[ChangeTask]] = Registry("task")


def change_task(name: str, mask_threshold: int | None = None) -> ChangeTask:
    """The registered task ``name``, reading its target masks with ``mask_threshold`` (``data.mask_threshold``,
    ``score --mask-threshold``; binary masks only); an unknown name is a ConfigError listing the valid ones."""
    task = TASKS.get(name)()
    if mask_threshold is not None and not task.binary_masks:
        raise ConfigError(f"mask threshold {mask_threshold}: it binarises 0 / 255 change masks, task={name} masks "
                          "hold classes; leave it unset")
    task.name, task.mask_threshold = name, mask_threshold
    return task
