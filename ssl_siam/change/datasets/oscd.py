"""``oscd``: Onera Satellite Change Detection (Daudt et al. 2018) in its published layout:
``<root>/Onera Satellite Change Detection dataset - Images/<city>/imgs_{1,2}/*_B??.tif`` (one GeoTIFF per Sentinel-2
band at 10 / 20 / 60 m, stacked and resampled to the 10 m grid of B02 on read through a VRT), the official
``train.txt`` / ``test.txt`` city lists, and ``... - Train Labels`` / ``... - Test Labels`` ``/<city>/cm/cm.png``.
A root given as ``data.root`` stands for its training cities, as ``data.val_root`` for its test cities."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar
from xml.sax.saxutils import escape

from ssl_siam.change.datasets.base import LAYOUTS, PairLayout, ReadOptions
from ssl_siam.core.errors import DataError
from ssl_siam.data.pairs import PairRecord, check_sizes
from ssl_siam.data.rasters import open_raster

IMAGES = "Onera Satellite Change Detection dataset - Images"


@LAYOUTS.register("oscd")
class OSCDLayout(PairLayout):
    task = "binary"
    mask_map: ClassVar[dict[int, int] | None] = {255: 1}  # masks 0 / 255 (or 0 / 1)

    @staticmethod
    def detect(root: Path) -> bool:
        return (root / IMAGES).is_dir()

    def find(self, root: Path, options: ReadOptions) -> list[PairRecord]:
        return _oscd_pairs(root, options.cache_dir, "test" if options.test else "train", options.oscd_bands)


def _oscd_pairs(root: Path, cache_dir: Path, split: str, bands: Sequence[str]) -> list[PairRecord]:
    images = root / IMAGES
    listing = images / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"{listing}: missing, expected the OSCD city list of the {split} split")
    cities = [c.strip() for c in listing.read_text().replace("\n", ",").split(",") if c.strip()]
    labels = root / f"Onera Satellite Change Detection dataset - {split.capitalize()} Labels"
    records = []
    for city in cities:
        mask = labels / city / "cm" / "cm.png"
        if not mask.is_file():
            raise DataError(f"{mask}: missing, expected the change mask of {city}")
        pre, post = (_stack(images / city / f"imgs_{k}", bands, cache_dir / "oscd", f"{city}_{phase}_disaster")
                     for k, phase in ((1, "pre"), (2, "post")))
        check_sizes(pre, [post, mask])
        records.append(PairRecord(city, root, pre, post, damage_target=mask))
    return records


def _stack(folder: Path, bands: Sequence[str], out: Path, name: str) -> Path:
    """A VRT stacking one file per band of ``folder`` (``*_<band>.tif`` or ``<band>.tif``), every band resampled
    (bilinear) onto the grid of the first 10 m band (B02, else the finest); rewritten when a source changes."""
    files = {}
    for band in bands:
        found = sorted(folder.glob(f"*{band}.tif"))
        if len(found) != 1:
            raise DataError(f"{folder}: {len(found)} files *{band}.tif, expected one per band ({', '.join(bands)})")
        files[band] = found[0]
    sizes = {}
    for band, path in files.items():
        with open_raster(path) as src:
            sizes[band] = (src.width, src.height, src.transform, src.crs, src.dtypes[0])
    reference = "B02" if "B02" in sizes else max(sizes, key=lambda b: sizes[b][0] * sizes[b][1])
    width, height, transform, crs, _ = sizes[reference]
    key = hashlib.sha1("".join(f"{p.resolve()}{p.stat().st_mtime_ns}" for p in files.values()).encode())
    vrt = out / key.hexdigest()[:12] / f"{name}.vrt"  # the name gives the outputs their stem: <city>_...
    if vrt.is_file():
        return vrt
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if crs is not None:
        parts.append(f"<SRS>{escape(crs.to_wkt())}</SRS>")
    parts.append(f"<GeoTransform>{', '.join(map(str, transform.to_gdal()))}</GeoTransform>")
    for i, (band, path) in enumerate(files.items(), start=1):
        w, h, _, _, dtype = sizes[band]
        parts.append(f'<VRTRasterBand dataType="{_GDAL_TYPES.get(dtype, "Float32")}" band="{i}"><Description>{band}'
                     f'</Description><ComplexSource resampling="bilinear"><SourceFilename relativeToVRT="0">'
                     f"{escape(str(path.resolve()))}</SourceFilename><SourceBand>1</SourceBand>"
                     f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                     f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/></ComplexSource></VRTRasterBand>')
    parts.append("</VRTDataset>")
    vrt.parent.mkdir(parents=True, exist_ok=True)
    tmp = vrt.with_name(f".{vrt.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(vrt)
    return vrt


_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
               "float32": "Float32", "float64": "Float64"}
