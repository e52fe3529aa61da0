"""xBD pre/post pairs: discovery across split folders, target masks cached once, and a crop dataset.

A split folder holds ``images/<id>_{pre,post}_disaster.(png|tif)`` and ``labels/<id>_{pre,post}_disaster.json``
(rasterised into a :class:`MaskCache`) or ``targets/<id>_{damage,localization}_target.(png|tif)``, which win.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from ssl_siam.data.pair_augment import PairAugment
from ssl_siam.data.tiles import SEQUENTIAL_DRIVERS, open_raster
from ssl_siam.data.xbd_labels import damage_mask, load_label, localization_mask
from ssl_siam.errors import DataError

_IMAGE = re.compile(r"^(?P<id>.+)_(?P<phase>pre|post)_disaster\.(?:png|tiff?|jpe?g)$", re.IGNORECASE)
_TARGET_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass(frozen=True)
class PairRecord:
    """One pre/post pair of a split folder; label and target paths are None where absent."""

    id: str  # e.g. "joplin-tornado_00000000"
    split_dir: Path
    pre_image: Path
    post_image: Path
    pre_label: Path | None = None
    post_label: Path | None = None
    damage_target: Path | None = None
    loc_target: Path | None = None

    @property
    def disaster(self) -> str:
        """The id without its trailing ``_<number>``, e.g. "joplin-tornado"."""
        return self.id.rsplit("_", 1)[0]


def find_pairs(
    roots: str | Path | Sequence[str | Path], skip_bad: bool = False, require_labels: bool = True
) -> tuple[list[PairRecord], list[str]]:
    """Pairs of every split folder in ``roots`` (in order, ids sorted) and the one-line reasons of skipped pairs.

    A pair is bad (DataError, or skipped with ``skip_bad``) when its partner image is missing, a file is unreadable,
    pre, post and targets differ in size (read from the headers), or (with ``require_labels``) it has neither both
    label JSONs nor a damage target. Missing or empty split folders always raise.
    """
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    if not roots:
        raise DataError("no xBD split folders given: expected folders holding images/ and labels/ or targets/")
    records, skipped, seen = [], [], {}
    for root in map(Path, roots):
        for image_id, phases in _scan_images(root).items():
            try:
                if image_id in seen:
                    first = next(iter(phases.values()))[0]
                    raise DataError(f"{first}: id {image_id} also in {seen[image_id]}, expected unique ids")
                records.append(_make_record(root, image_id, phases, require_labels))
                seen[image_id] = root
            except DataError as exc:
                if not skip_bad:
                    raise
                skipped.append(str(exc).replace("\n", " "))
    if not records:
        raise DataError(f"{roots[0]}: no usable pre/post pairs ({len(skipped)} skipped, first: {skipped[0]})")
    return records, skipped


def _scan_images(root: Path) -> dict[str, dict[str, list[Path]]]:
    images = root / "images"
    if not images.is_dir():
        raise DataError(f"{images}: missing, expected an xBD split folder with an images/ folder")
    found: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(images.iterdir()):
        match = _IMAGE.match(path.name)
        if match and path.is_file():
            found.setdefault(match["id"], {}).setdefault(match["phase"].lower(), []).append(path)
    if not found:
        raise DataError(f"{images}: no <id>_pre_disaster / <id>_post_disaster .png or .tif images")
    return found


def _make_record(root: Path, image_id: str, phases: dict[str, list[Path]], require_labels: bool) -> PairRecord:
    for phase, other in (("pre", "post"), ("post", "pre")):
        if phase not in phases:
            expected = root / "images" / f"{image_id}_{phase}_disaster.png"
            raise DataError(f"{phases[other][0]}: no {phase}-disaster partner, expected {expected} (or .tif)")
        if len(phases[phase]) > 1:
            raise DataError(f"{phases[phase][0]}: several {phase}-disaster images for {image_id}, expected one")
    pre, post = phases["pre"][0], phases["post"][0]
    labels = [root / "labels" / f"{image_id}_{phase}_disaster.json" for phase in ("pre", "post")]
    damage, loc = (_find_target(root, f"{image_id}_{kind}_target") for kind in ("damage", "localization"))
    if require_labels and damage is None and not all(label.is_file() for label in labels):
        missing = next(label for label in labels if not label.is_file())
        raise DataError(f"{post}: no labels and no targets, expected {missing} or targets/{image_id}_damage_target.png")
    size, crs = None, None
    for path in (pre, post, damage, loc):
        if path is not None:
            (width, height), path_crs = _image_header(path)
            size, crs = size or (width, height), crs or path_crs
            if (width, height) != size:
                raise DataError(f"{path}: size {width}x{height}, expected {size[0]}x{size[1]} like {pre}")
            if path_crs is not None and path_crs != crs:
                raise DataError(f"{path}: CRS {path_crs} differs from {crs} of {pre}; pre and post must share a CRS")
    return PairRecord(image_id, root, pre, post, *(p if p.is_file() else None for p in labels), damage, loc)


def _image_header(path: Path) -> tuple[tuple[int, int], CRS | None]:
    """(width, height) and CRS from the header only: PIL for PNG/JPEG (≈10× faster than opening with GDAL, which
    counts when pairing tens of thousands of xBD images; no CRS), rasterio otherwise."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        try:
            with Image.open(path) as image:
                return image.size, None
        except (OSError, SyntaxError) as exc:
            raise DataError(f"{path}: cannot open as a raster image ({exc})") from None
    with open_raster(path) as src:
        return (src.width, src.height), src.crs


def _find_target(root: Path, stem: str) -> Path | None:
    return next((p for s in _TARGET_SUFFIXES if (p := root / "targets" / f"{stem}{s}").is_file()), None)


class MaskCache:
    """xView2-style target PNGs rasterised once from the label JSONs, rewritten only when missing or older.

    Kept per split directory (``<cache>/<split name>-<hash of its path>/``) so equal ids never collide.

    ``<id>_damage_target.png`` (post JSON: 0 background, 1-4 damage, un-classified → ``ignore_index`` or 1) and
    ``<id>_localization_target.png`` (pre JSON: 0/1); ``settings.txt`` keeps a cache from other settings' use.
    """

    def __init__(self, cache_dir: str | Path, unclassified: str = "ignore", ignore_index: int = 255) -> None:
        if unclassified not in ("ignore", "no-damage"):
            raise ValueError(f"unclassified must be 'ignore' or 'no-damage', got {unclassified!r}")
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"ignore_index must fit a uint8 PNG (0..255), got {ignore_index}")
        self.dir, self.unclassified, self.ignore_index = Path(cache_dir), unclassified, ignore_index
        self.dir.mkdir(parents=True, exist_ok=True)
        settings, text = self.dir / "settings.txt", f"unclassified={unclassified} ignore_index={ignore_index}\n"
        if not settings.exists():
            _atomic_write(settings, text)
        elif settings.read_text() != text:
            raise DataError(f"{settings}: cache made with {settings.read_text().strip()}, expected {text.strip()}")

    def ensure(self, record: PairRecord) -> PairRecord:
        """``record`` with ``damage_target`` / ``loc_target`` set; records that already have targets pass."""
        if record.damage_target is not None:
            return record
        if record.pre_label is None or record.post_label is None:
            raise DataError(f"{record.post_image}: no label JSONs to rasterise, expected pre and post labels")
        # one sub-folder per split directory: ids repeat across datasets (and across synthetic splits)
        split = Path(record.split_dir).resolve()
        folder = self.dir / f"{split.name}-{hashlib.sha1(str(split).encode()).hexdigest()[:8]}"
        folder.mkdir(exist_ok=True)
        damage = folder / f"{record.id}_damage_target.png"
        loc = folder / f"{record.id}_localization_target.png"
        if _stale(damage, record.post_label):
            _atomic_write(damage, damage_mask(load_label(record.post_label), self.unclassified, self.ignore_index))
        if _stale(loc, record.pre_label):
            _atomic_write(loc, localization_mask(load_label(record.pre_label)))
        return replace(record, damage_target=damage, loc_target=loc)


def ensure_targets(
    records: Sequence[PairRecord], cache_dir: str | Path, unclassified: str = "ignore", ignore_index: int = 255
) -> list[PairRecord]:
    """Records with target paths, rasterising JSON-labelled pairs into ``cache_dir`` where needed."""
    cache = MaskCache(cache_dir, unclassified, ignore_index)
    return [cache.ensure(record) for record in records]


def _stale(target: Path, source: Path) -> bool:
    return not target.exists() or target.stat().st_mtime_ns < source.stat().st_mtime_ns


def _atomic_write(path: Path, data: np.ndarray | str) -> None:
    """Write a PNG (array) or text to a temporary file, then rename: concurrent workers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        Image.fromarray(data).save(tmp, format="PNG")
    os.replace(tmp, path)


class XBDPairDataset(torch.utils.data.Dataset):
    """Pre/post crops and damage masks of xBD-style pairs (targets set, see :func:`ensure_targets`).

    Item: ``{"pre": [C, h, w], "post": [C', h, w]`` (the files' dtype), ``"mask": [h, w]`` int64 (0-4 or
    ``ignore_index``), ``"index"``, ``"id"}``. ``index`` may exceed ``len``: the record is ``index % len`` and every
    random draw is a pure function of ``(seed, index)``, so resumed runs and workers see the same items.
    Train: a ``crop_size`` window, with probability ``building_bias`` centred (± crop/4 jitter) on a random
    building pixel, then :class:`PairAugment`. Eval: the whole image or its centre crop, no augmentation. Crops
    larger than the image are padded with 0 (images) and ``ignore_index`` (mask). ``post_bands`` defaults to ``bands``.
    """

    def __init__(
        self,
        records: Sequence[PairRecord],
        crop_size: int | None,
        train: bool,
        *,
        bands: Sequence[int] | None = None,
        post_bands: Sequence[int] | None = None,
        building_bias: float = 0.8,
        misregistration_px: int = 0,
        augment: bool = True,
        photometric: bool = True,
        seed: int = 0,
        ignore_index: int = 255,
    ) -> None:
        if not records:
            raise DataError("no xBD pairs given: expected at least one PairRecord")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"crop_size must be positive or None, got {crop_size}")
        if not 0.0 <= building_bias <= 1.0:
            raise ValueError(f"building_bias must be in [0, 1], got {building_bias}")
        if missing := next((r for r in records if r.damage_target is None), None):
            raise DataError(f"{missing.post_image}: no damage target, expected ensure_targets() to be run first")
        self.records, self.crop_size, self.train = list(records), crop_size, train
        self._bands_pre = None if bands is None else [int(b) for b in bands]
        self._bands_post = self._bands_pre if post_bands is None else [int(b) for b in post_bands]
        self.building_bias, self.seed, self.ignore_index = building_bias, seed, ignore_index
        first = self.records[0]
        with open_raster(first.pre_image) as pre, open_raster(first.post_image) as post:
            self.num_bands_pre = len(_indexes(first.pre_image, pre.count, self._bands_pre))
            self.num_bands_post = len(_indexes(first.post_image, post.count, self._bands_post))
        self.augment = PairAugment(misregistration_px, geometric=augment, photometric=augment and photometric,
                                   ignore_index=ignore_index) if train else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int | str]:
        index = int(index)
        if index < 0:
            raise IndexError(f"XBDPairDataset index must be non-negative, got {index}")
        record = self.records[index % len(self.records)]
        rng = np.random.default_rng([self.seed, index])
        mask, window, size = self._read_mask(record, rng)
        pre = self._read_image(record.pre_image, window, size, self._bands_pre, self.num_bands_pre)
        post = self._read_image(record.post_image, window, size, self._bands_post, self.num_bands_post)
        crop = (self.crop_size,) * 2 if self.crop_size is not None else size
        pre, post, mask = _pad(pre, crop, 0), _pad(post, crop, 0), _pad(mask[None], crop, self.ignore_index)[0]
        if self.augment is not None:
            seed = int(rng.integers(2**63))
            pre, post, mask = self.augment(pre.transpose(1, 2, 0), post.transpose(1, 2, 0), mask, seed)
            pre, post = pre.transpose(2, 0, 1), post.transpose(2, 0, 1)
        arrays = {"pre": pre, "post": post, "mask": mask.astype(np.int64)}
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        return {**tensors, "index": index, "id": record.id}

    def _read_mask(self, record: PairRecord, rng: np.random.Generator) -> tuple[np.ndarray, Window, tuple[int, int]]:
        """Damage target in the item's window [h, w] (uint8), the window, and the target's (height, width)."""
        path = record.damage_target
        with open_raster(path) as src:
            height, width = src.height, src.width
            crop_h, crop_w = min(self.crop_size or height, height), min(self.crop_size or width, width)
            row, col = (height - crop_h) // 2, (width - crop_w) // 2
            full = None
            if self.train:
                row, col = int(rng.integers(height - crop_h + 1)), int(rng.integers(width - crop_w + 1))
                if rng.random() < self.building_bias:
                    full = _read(src, path, [1], None)[0]
                    rows, cols = np.nonzero((full != 0) & (full != self.ignore_index))
                    if len(rows):
                        k, (jy, jx) = rng.integers(len(rows)), rng.integers(-(crop_h // 4), crop_h // 4 + 1, 2)
                        row = int(np.clip(rows[k] + jy - crop_h // 2, 0, height - crop_h))
                        col = int(np.clip(cols[k] + jx - crop_w // 2, 0, width - crop_w))
            window = Window(col, row, crop_w, crop_h)
            mask = _read(src, path, [1], window)[0] if full is None else full[row : row + crop_h, col : col + crop_w]
        return mask.astype(np.uint8), window, (height, width)

    def _read_image(
        self, path: Path, window: Window, size: tuple[int, int], bands: list[int] | None, num_bands: int
    ) -> np.ndarray:
        with open_raster(path) as src:
            if (src.height, src.width) != size:
                raise DataError(f"{path}: size {src.width}x{src.height}, expected {size[1]}x{size[0]} like its target")
            indexes = _indexes(path, src.count, bands)
            if len(indexes) != num_bands:
                raise DataError(f"{path}: has {src.count} bands, expected {num_bands} like {self.records[0].id}")
            return _read(src, path, indexes, window)


def _indexes(path: Path, count: int, bands: list[int] | None) -> list[int]:
    """1-based bands to read from ``path``, which has ``count`` bands (all when ``bands`` is None)."""
    if bands is not None and not all(1 <= b <= count for b in bands):
        raise DataError(f"{path}: has {count} bands, expected the selected bands {bands} in 1..{count}")
    return list(range(1, count + 1)) if bands is None else bands


def _read(src: DatasetReader, path: Path, indexes: list[int], window: Window | None) -> np.ndarray:
    """[C, h, w] of ``window`` (None: all). Random-access rasters (GeoTIFF, VRT, ...) are read window-only;
    sequential ones (PNG, JPEG) decode from the top row, so reading them whole and slicing is faster."""
    windowed = src.driver not in SEQUENTIAL_DRIVERS
    try:
        data = src.read(indexes, window=window if windowed else None)
    except RasterioError as exc:
        raise DataError(f"{path}: cannot read pixels ({exc})") from exc
    return data if windowed or window is None else data[(slice(None), *window.toslices())]


def _pad(x: np.ndarray, size: tuple[int, int], value: int) -> np.ndarray:
    """[C, h, w] padded at the bottom / right to ``size`` (at least h, w) with ``value``."""
    pad = ((0, 0), (0, size[0] - x.shape[1]), (0, size[1] - x.shape[2]))
    return x if x.shape[1:] == size else np.pad(x, pad, constant_values=value)
