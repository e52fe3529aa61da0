"""What every change-dataset layout provides, and the registry ``data.format`` names one from.

A layout is one class in one file of this package: it says whether a root is laid out its way (``detect``), which
task its masks label, how its mask values map to classes, and reads a root into :class:`PairRecord` s (``find``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from ssl_siam.core.errors import DataError
from ssl_siam.core.registry import Registry
from ssl_siam.data.oscd import BANDS
from ssl_siam.data.pairs import MaskPolicy, PairRecord

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
OSCD_BANDS = BANDS  # the official order, B8A after B08


@dataclass(frozen=True)
class ReadOptions:
    """How a root is read: ``cache_dir`` for derived files (stacks, code masks), ``split`` for layouts with official
    splits (OSCD's train / test cities), ``masks`` (:data:`MaskPolicy`), layout-specific options after."""

    cache_dir: Path
    split: str = "train"  # train | test | all: a layout's official splits (OSCD's city lists)
    masks: MaskPolicy = "required"
    skip_bad: bool = False  # xBD: skip (and log) unpairable pairs
    oscd_bands: tuple[str, ...] = field(default=OSCD_BANDS)

    @property
    def require_masks(self) -> bool:
        return self.masks == "required"

    @property
    def read_masks(self) -> bool:
        return self.masks != "none"


class PairLayout:
    """One published layout of pre/post pairs (and their masks)."""

    task: ClassVar[str]  # the change task its masks label (change/tasks/)
    mask_map: ClassVar[dict[int, int] | None] = None  # mask value → class, e.g. {255: 1} for 0 / 255 masks

    @staticmethod
    def detect(root: Path) -> bool:
        """True when ``root`` is laid out this way."""
        raise NotImplementedError

    def find(self, root: Path, options: ReadOptions) -> list[PairRecord]:
        """The pairs of one root, sizes checked from the headers; a one-line DataError naming a bad file."""
        raise NotImplementedError


#: ``data.format`` name → layout class; a new layout is a file here with ``@LAYOUTS.register("name")``.
LAYOUTS: Registry[type[PairLayout]] = Registry("data.format")


def detect_format(root: Path) -> str:
    """The registered layout of a data root; a DataError when none or several fit."""
    root = Path(root)
    found = [name for name in LAYOUTS.names() if LAYOUTS.get(name).detect(root)]
    if len(found) != 1:
        raise DataError(f"{root}: cannot tell the dataset layout ({' or '.join(found) or 'none recognised'}); set "
                        f"data.format to one of {', '.join(LAYOUTS.names())}")
    return found[0]


def data_format(root: Path, trained: str) -> str:
    """The layout of data given for prediction: its own when it can be told (a model trained on LEVIR chips can
    map a pairs CSV), else the ``data.format`` the model was trained with."""
    try:
        return detect_format(root)
    except DataError:
        if trained == "auto":
            raise
        return trained


def find_change_pairs(roots: Sequence[str | Path], fmt: str, cache_dir: Path, *, test: bool = False,
                      bands: Sequence[str] = OSCD_BANDS, masks: MaskPolicy = "required", skip_bad: bool = False,
                      every_split: bool = False) -> list[PairRecord]:
    """The pairs of every root in layout ``fmt`` (ids unique across roots); ``test`` selects a layout's test split
    (OSCD's test cities), ``every_split`` all of them; ``masks`` (:data:`MaskPolicy`): with ``"none"`` no record has
    a mask, whatever the layout; a DataError when no pairs."""
    layout = LAYOUTS.get(fmt)()
    split = "all" if every_split else "test" if test else "train"
    options = ReadOptions(Path(cache_dir), split, masks, skip_bad, tuple(bands))
    records: list[PairRecord] = []
    for root in map(Path, roots):
        records += layout.find(root, options)
    seen: dict[str, Path] = {}
    for record in records:
        if record.id in seen:
            raise DataError(f"{record.post_image}: id {record.id} also in {seen[record.id]}, expected unique ids")
        seen[record.id] = record.post_image
    if not records:
        raise DataError(f"{roots[0]}: no pre/post pairs in the {fmt} layout")
    return records if options.read_masks else [replace(r, damage_target=None) for r in records]
