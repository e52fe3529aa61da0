"""Labelled probe datasets: image-folder scene classification and xBD building damage crops.

An item is the raw pixel values ``[V, C, S, S]`` (float32, not normalised: the encoder's band statistics are
applied at extraction) of ``V`` views: one scene for ``folder``, the pre and post crops for ``xbd-crops``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.errors import RasterioError

from ssl_siam.data.tiles import open_raster
from ssl_siam.data.xbd import PairRecord, find_pairs
from ssl_siam.data.xbd_labels import DAMAGE_CLASSES, load_label
from ssl_siam.errors import DataError
from ssl_siam.probe.splits import group_split, stratified_split
from ssl_siam.registry import Registry

FOLDER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
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


class _Building(NamedTuple):
    id: str  # "<image id>/<uid>"
    label: int  # damage class index 0..3
    x: float  # centroid column (pixels)
    y: float  # centroid row
    record: int  # index of the pair


def _buildings(record: PairRecord, record_index: int) -> list[_Building]:
    """The damage-labelled (not un-classified, non-empty) buildings of a pair's post label."""
    if record.post_label is None:
        raise DataError(f"{record.post_image}: no post label JSON, expected labels/{record.id}_post_disaster.json")
    return [
        _Building(f"{record.id}/{p.uid or i}", DAMAGE_CLASSES[p.subtype] - 1, p.geometry.centroid.x,
                  p.geometry.centroid.y, record_index)
        for i, p in enumerate(load_label(record.post_label).polygons)
        if p.subtype in DAMAGE_CLASSES and not p.geometry.is_empty
    ]


def _read(path: Path) -> np.ndarray:
    """All bands [C, H, W] of a raster file."""
    try:
        with open_raster(path) as src:
            return src.read()
    except RasterioError as exc:
        raise DataError(f"{path}: cannot read pixels ({exc})") from exc


@DATASETS.register("folder")
class FolderDataset(ProbeDataset):
    """Scene classification from ``root/<class name>/*.{tif,tiff,png,jpg}`` (EuroSAT layout), any band count.

    Each image is resized (shorter side to ``crop_size``, bilinear with antialiasing) and centre-cropped. The
    test split is ``val_root`` (same class folders) or a seeded stratified 25% of ``root``.
    """

    kind = "folder"
    num_views = 1

    def __init__(self, root: Roots, val_root: Roots | None, crop_size: int, seed: int) -> None:
        root = self._single(root, "--data")
        self.crop_size = crop_size
        found = self._scan(root)
        self.classes = sorted(found)
        if not self.classes:
            raise DataError(f"{root}: no <class>/*{{{','.join(FOLDER_SUFFIXES)}}} images, expected an image folder")
        self.files = [path for name in self.classes for path in found[name]]
        self.ids = [f"{p.parent.name}/{p.name}" for p in self.files]
        labels = [self.classes.index(name) for name in self.classes for _ in found[name]]
        if val_root is None:
            self.is_test = stratified_split(np.array(labels), TEST_FRACTION, seed)
        else:
            val_root = self._single(val_root, "--val-data")
            test = self._scan(val_root)
            if unknown := sorted(set(test) - set(self.classes)):
                raise DataError(f"{val_root / unknown[0]}: class not in {root} (classes {', '.join(self.classes)})")
            test_files = [path for name in sorted(test) for path in test[name]]
            self.files += test_files
            self.ids += [f"val:{p.parent.name}/{p.name}" for p in test_files]
            labels += [self.classes.index(name) for name in sorted(test) for _ in test[name]]
            self.is_test = np.arange(len(labels)) >= len(labels) - len(test_files)
        self.labels = np.array(labels, dtype=np.int64)
        with open_raster(self.files[0]) as src:
            self.num_bands = src.count
        roots = [root] if val_root is None else [root, val_root]
        self.source = f"folder {[str(r.resolve()) for r in roots]} crop={crop_size}"

    @staticmethod
    def _single(roots: Roots, option: str) -> Path:
        paths = _roots(roots)
        if len(paths) != 1 or not paths[0].is_dir():
            raise DataError(f"{option} {' '.join(map(str, paths))}: expected one folder of <class>/ folders")
        return paths[0]

    @staticmethod
    def _scan(root: Path) -> dict[str, list[Path]]:
        """Class name -> sorted image files, for class folders holding any."""
        found = {}
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FOLDER_SUFFIXES and p.is_file())
            if files:
                found[folder.name] = files
        return found

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.files[index], self.crop_size, self.num_bands, self.files[0])[None]  # [1, C, S, S]


def load_image(path: Path, crop_size: int, num_bands: int, like: Path) -> torch.Tensor:
    """All bands of ``path`` as float32 ``[C, S, S]``: shorter side resized to ``crop_size`` (bilinear with
    antialiasing), then centre-cropped; DataError unless it has ``num_bands`` bands (as ``like``)."""
    image = torch.from_numpy(_read(path).astype(np.float32))  # [C, H, W]
    if image.shape[0] != num_bands:
        raise DataError(f"{path}: has {image.shape[0]} bands, expected {num_bands} like {like}")
    height, width = image.shape[1:]
    scale = crop_size / min(height, width)
    if scale != 1:
        size = (max(round(height * scale), crop_size), max(round(width * scale), crop_size))
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (image.shape[1] - crop_size) // 2, (image.shape[2] - crop_size) // 2
    return image[:, top : top + crop_size, left : left + crop_size]


@DATASETS.register("xbd-crops")
class XBDCropDataset(ProbeDataset):
    """Damage classification of xBD buildings: for every post-label polygon with a damage subtype (un-classified
    and empty polygons skipped), a pre and a post crop of ``crop_size`` centred on its centroid, zero-padded at the
    image border. Classes: the 4 damage levels. Split by image, never by building (:func:`group_split`): whole
    disasters when there are two or more, else whole images; ``val_roots`` gives the test split explicitly.
    """

    kind = "xbd-crops"
    num_views = 2

    def __init__(self, roots: Roots, val_roots: Roots | None, crop_size: int, seed: int) -> None:
        self.crop_size, self.classes = crop_size, list(DAMAGE_CLASSES)
        train_records, _ = find_pairs(_roots(roots))
        test_records = [] if val_roots is None else find_pairs(_roots(val_roots))[0]
        self.records = train_records + test_records
        buildings = [b for r, record in enumerate(self.records) for b in _buildings(record, r)]
        if not buildings:
            raise DataError(f"{self.records[0].post_label}: no buildings with a damage subtype in any label")
        self.ids = [b.id for b in buildings]
        self.labels = np.array([b.label for b in buildings], dtype=np.int64)
        self.centres = [(b.x, b.y) for b in buildings]
        self.record_index = np.array([b.record for b in buildings])
        self.groups = [self.records[r].id for r in self.record_index]
        if val_roots is None:
            disasters = [self.records[r].disaster for r in self.record_index]
            self.is_test = group_split(self.groups, disasters, TEST_FRACTION, seed)
        else:
            self.is_test = self.record_index >= len(train_records)
        with open_raster(self.records[0].pre_image) as src:
            self.num_bands = src.count
        sources = _roots(roots) + ([] if val_roots is None else _roots(val_roots))
        self.source = f"xbd-crops {[str(r.resolve()) for r in sources]} crop={crop_size}"
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def _images(self, record_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pre and post pixels [C, H, W] of a record; the last pair is kept, items are read image by image."""
        if self._cached is None or self._cached[0] != record_index:
            record = self.records[record_index]
            pre, post = _read(record.pre_image), _read(record.post_image)
            for path, image in ((record.pre_image, pre), (record.post_image, post)):
                if image.shape != (self.num_bands, *pre.shape[1:]):
                    raise DataError(f"{path}: shape {image.shape}, expected {self.num_bands} bands and the size of "
                                    f"{record.pre_image} {pre.shape[1:]}")
            self._cached = (record_index, pre, post)
        return self._cached[1], self._cached[2]

    def __getitem__(self, index: int) -> torch.Tensor:
        size = self.crop_size
        x, y = self.centres[index]
        top, left = round(y - size / 2), round(x - size / 2)
        crops = []
        for image in self._images(self.record_index[index]):
            crop = np.zeros((image.shape[0], size, size), dtype=np.float32)
            rows = slice(max(top, 0), min(top + size, image.shape[1]))
            cols = slice(max(left, 0), min(left + size, image.shape[2]))
            if rows.start < rows.stop and cols.start < cols.stop:
                crop[:, rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = image[:, rows, cols]
            crops.append(crop)
        return torch.from_numpy(np.stack(crops))  # [2, C, S, S]
