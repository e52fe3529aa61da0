"""Labelled scene folders (``root/<class>/*.{tif,png,jpg}``, EuroSAT / RSSCN7 layout) and their one fixed,
seeded, stratified train / test split — the split a scene study tests on and the only images an honest
pretraining may see (written out as folders of links by ``ssl-siam split-scenes``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_siam.core.errors import DataError
from ssl_siam.eval.splits import stratified_split

FOLDER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def scan_class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for the sub-folders of ``root`` that hold any (sorted by name)."""
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FOLDER_SUFFIXES and p.is_file())
        if files:
            found[folder.name] = files
    return found


@dataclass(frozen=True)
class SceneSplit:
    """Every image of a class folder (class-major, then file name), its label and whether it is a test image."""

    root: Path
    classes: list[str]
    files: list[Path]
    labels: np.ndarray  # [N] int64 indices into classes
    is_test: np.ndarray  # [N] bool
    test_fraction: float | None  # None: the test images are those of val_root
    seed: int
    val_root: Path | None = None

    def ids(self) -> list[str]:
        """``<class>/<file>`` per image (``val:<class>/<file>`` for the images of ``val_root``): unique."""
        prefix = "val:" if self.val_root is not None else ""
        return [f"{prefix if t else ''}{p.parent.name}/{p.name}" for p, t in zip(self.files, self.is_test)]

    def record(self) -> dict[str, object]:
        """What the split is, for study outputs: the rule and the test images (``<class>/<file>``)."""
        return {"root": str(self.root.resolve()), "val_root": self.val_root and str(self.val_root.resolve()),
                "test_fraction": self.test_fraction, "seed": self.seed, "classes": self.classes,
                "n_train": int((~self.is_test).sum()), "n_test": int(self.is_test.sum()),
                "test": [i for i, t in zip(self.ids(), self.is_test) if t]}


def _scan(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder of <class>/ folders of images")
    found = scan_class_folders(root)
    if not found:
        raise DataError(f"{root}: no <class>/ folders with images ({', '.join(FOLDER_SUFFIXES)})")
    return found


def split_scenes(root: str | Path, test_fraction: float, seed: int, val_root: str | Path | None = None
                 ) -> SceneSplit:
    """The scenes of ``root``, with a fixed test split: the seeded stratified ``test_fraction`` of each class
    (rounded, at least one, never all; :func:`~ssl_siam.eval.splits.stratified_split` over the class-major file
    order), or, when ``val_root`` is given, every image of ``val_root`` (its classes must be ``root``'s)."""
    root = Path(root)
    found = _scan(root)
    classes = sorted(found)
    if len(classes) < 2:
        raise DataError(f"{root}: one class folder ({classes[0]}); a classifier needs at least two classes")
    files = [path for name in classes for path in found[name]]
    labels = [i for i, name in enumerate(classes) for _ in found[name]]
    if val_root is None:
        is_test = stratified_split(np.array(labels), test_fraction, seed)
        return SceneSplit(root, classes, files, np.array(labels, dtype=np.int64), is_test, test_fraction, seed)
    val_root = Path(val_root)
    test = _scan(val_root)
    if unknown := sorted(set(test) - set(classes)):
        raise DataError(f"{val_root / unknown[0]}: class not in {root} (classes {', '.join(classes)})")
    test_files = [path for name in sorted(test) for path in test[name]]
    labels += [classes.index(name) for name in sorted(test) for _ in test[name]]
    is_test = np.arange(len(labels)) >= len(files)
    return SceneSplit(root, classes, files + test_files, np.array(labels, dtype=np.int64), is_test, None, seed,
                      val_root)


def write_split(split: SceneSplit, out: str | Path) -> Path:
    """``out/train/<class>/<file>`` and ``out/test/<class>/<file>`` as symbolic links to the images, and
    ``out/split.json`` (:meth:`SceneSplit.record`). Pretrain on ``out/train`` only. Refuses a non-empty ``out``
    that holds another split."""
    out = Path(out)
    manifest = out / "split.json"
    if out.exists() and any(out.iterdir()):
        if manifest.is_file() and json.loads(manifest.read_text()) == split.record():
            return out
        raise DataError(f"{out}: not empty and not this split; choose an empty folder")
    for path, test in zip(split.files, split.is_test):
        link = out / ("test" if test else "train") / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path.resolve(), link)
    manifest.write_text(json.dumps(split.record(), indent=1) + "\n")
    return out
