"""``oscd``: Onera Satellite Change Detection (Daudt et al., IGARSS 2018) in its published layout::

    <root>/Onera Satellite Change Detection dataset - Images/
        train.txt, test.txt                 one line each: comma-separated city names
        <city>/imgs_1/*_B01.tif … *_B12.tif, *_B8A.tif   one uint16 GeoTIFF per Sentinel-2 band (10 / 20 / 60 m)
        <city>/imgs_2/…                      the later date (may be a few pixels smaller: coarser pixels)
        <city>/pair/img{1,2}.png, dates.txt  previews and dates, never read as data
    <root>/Onera Satellite Change Detection dataset - Train Labels/<city>/cm/<city>-cm.tif, cm.png

Both dates are stacked (``data.oscd_bands``, in that order) and put on the grid of ``imgs_1``'s B02 — the older
10 m image is the reference, as the dataset's README says — by georeferencing: every band of either date is
resampled (bilinear) to where its transform puts it on that grid. Labels: ``<city>-cm.tif`` holds 1 = no change,
2 = change (read and mapped to 0 / 1, other values refused); without it ``cm.png`` is read as grey, change ≥ 128
(RGBA 0 / 255 for most cities, anti-aliased RGB for aguasclaras). Either is cached as a 0 / 255 GeoTIFF on the
reference grid. Cities without labels (the official test cities of this copy) have images only: they are mapped
by ``ssl-siam predict`` and refused, in one line, as training or validation data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import rasterio
from PIL import Image

from ssl_siam.change.datasets.base import LAYOUTS, PairLayout, ReadOptions
from ssl_siam.core.errors import DataError
from ssl_siam.core.files import atomic_path
from ssl_siam.data.oscd import IMAGES, band_files, cities, city_dates
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.rasters import open_raster

LABELS = ("Onera Satellite Change Detection dataset - Train Labels",
          "Onera Satellite Change Detection dataset - Test Labels")


@LAYOUTS.register("oscd")
class OSCDLayout(PairLayout):
    task = "binary"
    mask_map: ClassVar[dict[int, int] | None] = {255: 1}

    @staticmethod
    def detect(root: Path) -> bool:
        return (root / IMAGES).is_dir()

    def find(self, root: Path, options: ReadOptions) -> list[PairRecord]:
        records = []
        for city in cities(root, options.split):
            mask = city_mask(root, city, options.cache_dir) if options.read_masks else None
            if mask is None and options.require_masks:
                raise DataError(f"{root}: city {city} ({options.split} split) has no change labels in this copy "
                                f"(expected {root / LABELS[0] / city / 'cm' / f'{city}-cm.tif'}); train and validate "
                                "on labelled cities: data.train_ids / data.val_ids name them (ssl-siam predict maps "
                                "unlabelled ones)")
            pre, post = city_dates(root, city, options.oscd_bands, options.cache_dir / "oscd")
            records.append(PairRecord(city, root, pre, post, damage_target=mask))
        return records


def city_mask(root: Path, city: str, cache_dir: Path) -> Path | None:
    """``city``'s change mask as a cached 0 / 255 uint8 GeoTIFF on the reference grid (0 / 255 like every binary
    layout's masks, so ``data.mask_threshold`` reads it alike), or None without labels."""
    folders = [root / labels / city / "cm" for labels in LABELS]
    source = next((p for f in folders for p in (f / f"{city}-cm.tif", f / "cm.png") if p.is_file()), None)
    if source is None:
        return None
    reference = band_files(root / IMAGES / city / "imgs_1", ["B02"])["B02"]
    stat = source.stat()
    key = hashlib.sha1(f"{source.resolve()}{stat.st_size}{stat.st_mtime_ns}{reference.resolve()}".encode())
    out = cache_dir / "oscd" / key.hexdigest()[:12] / f"{city}-cm.tif"
    if out.is_file():
        return out
    mask = read_label(source)
    with open_raster(reference) as ref:
        if mask.shape != (ref.height, ref.width):
            raise DataError(f"{source}: size {mask.shape[1]}x{mask.shape[0]}, expected {ref.width}x{ref.height} "
                            f"like {city}'s imgs_1 B02")
        profile = {"driver": "GTiff", "width": ref.width, "height": ref.height, "count": 1, "dtype": "uint8",
                   "crs": ref.crs, "transform": ref.transform, "compress": "deflate"}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(mask[None] * np.uint8(255))
    return out


def read_label(path: Path) -> np.ndarray:
    """A city's change map as uint8 0 / 1 [H, W]: ``*-cm.tif`` 1 / 2 → 0 / 1; ``cm.png`` grey ≥ 128 → 1."""
    if path.suffix.lower() == ".tif":
        with open_raster(path) as src:
            values = src.read(1)
        if unknown := sorted(set(np.unique(values).tolist()) - {1, 2}):
            raise DataError(f"{path}: value {unknown[0]}, expected 1 (no change) or 2 (change)")
        return (values == 2).astype(np.uint8)
    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
    except (OSError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable, expected the OSCD change map PNG ({exc})") from None
    return (grey >= 128).astype(np.uint8)
