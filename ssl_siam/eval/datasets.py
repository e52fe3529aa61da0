"""Labelled probe datasets: image-folder scene classification and xBD building damage crops.

An item is the raw pixel values ``[V, C, S, S]`` (float32, not normalised: the encoder's band statistics are
applied at extraction) of ``V`` views: one scene for ``folder``, the pre and post crops for ``xbd-crops``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ssl_siam.core.errors import DataError
from ssl_siam.core.registry import Registry
from ssl_siam.data.class_folders import SceneSplit, split_scenes
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.rasters import load_image, open_raster
from ssl_siam.data.xbd.buildings import BuildingCrops
from ssl_siam.data.xbd.labels import DAMAGE_CLASSES
from ssl_siam.data.xbd.pairs import find_pairs
from ssl_siam.eval.splits import group_split

TEST_FRACTION = 0.25
DATASETS: Registry[type[ProbeDataset]] = Registry("--dataset")

Roots = str | Path | Sequence[str | Path]


class ProbeDataset(torch.utils.data.Dataset):
    """Samples with ``labels`` [N] (indices into ``classes``), unique ``ids`` and the test mask ``is_test`` [N].

    ``source`` names the data (resolved roots, kind, crop size) for the feature-cache key.
    """

    kind: str
    classes: list[str]
    ids: list[str]
    labels: np.ndarray
    is_test: np.ndarray
    num_bands: int
    num_views: int
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        raise NotImplementedError


def combine_views(features: torch.Tensor) -> torch.Tensor:
    """[N, V, D] per-view features -> [N, F] probe input: the features for one view; for a pre/post pair
    [f_pre, f_post, |f_pre - f_post|] (F = 3D), so a linear probe sees both states and their change."""
    if features.shape[1] == 1:
        return features[:, 0]
    if features.shape[1] == 2:
        pre, post = features.unbind(1)
        return torch.cat([pre, post, (pre - post).abs()], dim=1)
    raise ValueError(f"expected 1 or 2 views, got features of shape {tuple(features.shape)}")


def open_dataset(kind: str, data: Roots, val_data: Roots | None, crop_size: int, seed: int) -> ProbeDataset:
    """The registered dataset ``kind`` (``folder`` | ``xbd-crops``); ConfigError naming --dataset otherwise."""
    if crop_size < 1:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    return DATASETS.get(kind)(data, val_data, crop_size, seed)


def _roots(roots: Roots) -> list[Path]:
    return [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]


@DATASETS.register("folder")
class FolderDataset(ProbeDataset):
    """Scene classification from ``root/<class name>/*.{tif,tiff,png,jpg}`` (EuroSAT layout), any band count.

    Each image is resized (shorter side to ``crop_size``, bilinear with antialiasing) and centre-cropped. The
    test split is ``val_root`` (same class folders) or a seeded stratified 25% of ``root``.
    """

    kind = "folder"
    num_views = 1

    def __init__(self, root: Roots, val_root: Roots | None, crop_size: int, seed: int) -> None:
        val = None if val_root is None else self._single(val_root, "--val-data")
        self._setup(split_scenes(self._single(root, "--data"), TEST_FRACTION, seed, val), crop_size)

    @classmethod
    def from_split(cls, split: SceneSplit, crop_size: int) -> FolderDataset:
        """The images of a scene split (:func:`~ssl_siam.data.class_folders.split_scenes`); its test images are the
        test split."""
        dataset = cls.__new__(cls)
        dataset._setup(split, crop_size)
        return dataset

    def _setup(self, split: SceneSplit, crop_size: int) -> None:
        self.crop_size, self.classes, self.files = crop_size, list(split.classes), list(split.files)
        self.ids, self.labels, self.is_test = split.ids(), split.labels.copy(), split.is_test.copy()
        with open_raster(self.files[0]) as src:
            self.num_bands = src.count
        roots = [split.root] if split.val_root is None else [split.root, split.val_root]
        self.source = f"folder {[str(r.resolve()) for r in roots]} crop={crop_size}"

    @staticmethod
    def _single(roots: Roots, option: str) -> Path:
        paths = _roots(roots)
        if len(paths) != 1 or not paths[0].is_dir():
            raise DataError(f"{option} {' '.join(map(str, paths))}: expected one folder of <class>/ folders")
        return paths[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.files[index], self.crop_size, self.num_bands, self.files[0])[None]  # [1, C, S, S]


@DATASETS.register("xbd-crops")
class XBDCropDataset(ProbeDataset):
    """Damage classification of xBD buildings (:class:`~ssl_siam.data.xbd.buildings.BuildingCrops`: a pre and a
    post crop around every damage-labelled building). Classes: the 4 damage levels. Split by image, never by
    building (:func:`group_split`): whole disasters when there are two or more, else whole images; ``val_roots``
    gives the test split explicitly.
    """

    kind = "xbd-crops"
    num_views = 2

    def __init__(self, roots: Roots, val_roots: Roots | None, crop_size: int, seed: int) -> None:
        train_records, _ = find_pairs(_roots(roots))
        test_records = [] if val_roots is None else find_pairs(_roots(val_roots))[0]
        sources = _roots(roots) + ([] if val_roots is None else _roots(val_roots))
        self._setup(train_records, test_records, crop_size,
                    f"xbd-crops {[str(r.resolve()) for r in sources]} crop={crop_size}")
        if val_roots is None:
            record_index = np.array([b.record for b in self.crops.buildings])
            groups = [self.records[r].id for r in record_index]
            self.is_test = group_split(groups, [self.records[r].disaster for r in record_index], TEST_FRACTION, seed)

    @classmethod
    def from_records(cls, train: Sequence[PairRecord], test: Sequence[PairRecord], crop_size: int) -> XBDCropDataset:
        """The buildings of ``train`` and ``test`` pairs (already found), the test split being ``test``'s."""
        dataset = cls.__new__(cls)
        ids = sorted(f"{r.split_dir.resolve()}/{r.id}" for r in [*train, *test])
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        dataset._setup(list(train), list(test), crop_size, f"xbd-crops records {digest} crop={crop_size}")
        return dataset

    def _setup(self, train: list[PairRecord], test: list[PairRecord], crop_size: int, source: str) -> None:
        self.classes = list(DAMAGE_CLASSES)
        self.crops = BuildingCrops(train + test, crop_size)
        self.records, buildings = self.crops.records, self.crops.buildings
        self.ids = [b.id for b in buildings]
        self.labels = np.array([b.label for b in buildings], dtype=np.int64)
        self.is_test = np.array([b.record for b in buildings]) >= len(train)
        self.num_bands = self.crops.num_bands
        self.source = source

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.crops[index]  # [2, C, S, S]
