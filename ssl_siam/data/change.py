"""Change-detection benchmarks in their published layouts, read into the same pair records as xBD.

``data.format`` (auto-detected from the layout when unambiguous):

* ``levir`` — LEVIR-CD / LEVIR-CD+ / WHU-CD chips: ``<split>/A/*.png``, ``<split>/B/*.png``, ``<split>/label/*.png``;
* ``s2looking`` — ``<split>/Image1``, ``<split>/Image2``, ``<split>/label`` (``label1`` / ``label2`` are ignored);
* ``oscd`` — Onera Satellite Change Detection: ``<root>/Onera Satellite Change Detection dataset - Images/<city>/
  imgs_{1,2}/*_B??.tif`` (one GeoTIFF per Sentinel-2 band at 10 / 20 / 60 m, stacked and resampled to the 10 m grid
  of B02 on read through a VRT), the official ``train.txt`` / ``test.txt`` city lists, and ``... - Train Labels`` /
  ``... - Test Labels`` ``/<city>/cm/cm.png``: a root given as ``data.root`` stands for its training cities, as
  ``data.val_root`` for its test cities;
* ``pairs-csv`` — a CSV ``pre,post,mask`` (paths relative to it, never outside its folder);
* ``second`` — SECOND semantic change: ``im1``, ``im2``, ``label1``, ``label2`` (see :mod:`ssl_siam.data.semantic`).

Change masks hold 0 / 255 (or 0 / 1): :data:`CHANGE_MASK_MAP` maps them to classes 0 / 1.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.data.rasters import open_raster
from ssl_siam.data.semantic import FOLDERS as SECOND_FOLDERS
from ssl_siam.data.semantic import second_pairs
from ssl_siam.data.xbd.pairs import PairRecord, check_sizes

CHANGE_FORMATS = ("levir", "s2looking", "oscd", "pairs-csv")  # binary change
SEMANTIC_FORMATS = ("second",)
CHANGE_MASK_MAP = {255: 1}
FOLDERS = {"levir": ("A", "B", "label"), "s2looking": ("Image1", "Image2", "label")}
OSCD_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
_OSCD_IMAGES = "Onera Satellite Change Detection dataset - Images"
_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def detect_format(root: Path) -> str:
    """The layout of a data root: ``xbd``, ``levir``, ``s2looking``, ``oscd`` or ``pairs-csv``."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return "pairs-csv"
    if (root / _OSCD_IMAGES).is_dir():
        return "oscd"
    found = [name for name, folders in {**FOLDERS, "second": SECOND_FOLDERS}.items()
             if all((root / f).is_dir() for f in folders)]
    if (root / "images").is_dir():
        found.append("xbd")
    if len(found) != 1:
        raise DataError(f"{root}: cannot tell the dataset layout ({' or '.join(found) or 'none recognised'}); set "
                        f"data.format to one of xbd, {', '.join(CHANGE_FORMATS + SEMANTIC_FORMATS)}")
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
                      bands: Sequence[str] = OSCD_BANDS, require_masks: bool = True) -> list[PairRecord]:
    """The pairs of every root in layout ``fmt`` (ids unique across roots); ``test`` selects OSCD's test cities;
    without ``require_masks`` (prediction) folder layouts may lack their mask folder."""
    records: list[PairRecord] = []
    for root in map(Path, roots):
        if fmt in FOLDERS:
            records += _folder_pairs(root, *FOLDERS[fmt], require_masks=require_masks)
        elif fmt == "pairs-csv":
            records += _csv_pairs(root, require_masks=require_masks)
        elif fmt == "oscd":
            records += _oscd_pairs(root, cache_dir, "test" if test else "train", bands)
        elif fmt == "second":
            records += second_pairs(root, cache_dir, require_masks=require_masks)
        else:
            raise ConfigError(f"data.format={fmt}: expected one of {', '.join(CHANGE_FORMATS + SEMANTIC_FORMATS)}")
    seen: dict[str, Path] = {}
    for record in records:
        if record.id in seen:
            raise DataError(f"{record.post_image}: id {record.id} also in {seen[record.id]}, expected unique ids")
        seen[record.id] = record.post_image
    if not records:
        raise DataError(f"{roots[0]}: no pre/post pairs in the {fmt} layout")
    return records


def _folder_pairs(root: Path, pre_dir: str, post_dir: str, mask_dir: str, require_masks: bool = True
                  ) -> list[PairRecord]:
    """Chips matched by file name across the three folders; sizes checked from the headers."""
    if not (root / pre_dir).is_dir():
        raise DataError(f"{root / pre_dir}: missing, expected the {pre_dir}/ {post_dir}/ {mask_dir}/ layout")
    records = []
    for pre in sorted(p for p in (root / pre_dir).iterdir() if p.suffix.lower() in _SUFFIXES):
        post = root / post_dir / pre.name
        mask = _find_mask(root / mask_dir, pre) if require_masks or (root / mask_dir).is_dir() else None
        if not post.is_file():
            raise DataError(f"{pre}: no partner {post}")
        check_sizes(pre, [post, mask])
        records.append(PairRecord(pre.stem, root, pre, post, damage_target=mask))
    return records


def _find_mask(folder: Path, image: Path) -> Path:
    for suffix in (image.suffix, ".png", ".tif"):
        if (path := folder / f"{image.stem}{suffix}").is_file():
            return path
    raise DataError(f"{image}: no change mask {folder / image.name}")


def _csv_pairs(path: Path, require_masks: bool = True) -> list[PairRecord]:
    """Rows ``pre,post,mask`` of a CSV (the ``mask`` column optional without ``require_masks``); every path
    relative to the CSV and inside its folder."""
    folder = path.parent.resolve()
    columns = ("pre", "post", "mask") if require_masks else ("pre", "post")
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not set(columns) <= set(reader.fieldnames):
                raise DataError(f"{path}: expected a CSV header {','.join(columns)}, got {reader.fieldnames}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the pairs CSV ({exc})") from None
    records = []
    for line, row in enumerate(rows, start=2):
        pre, post = (file_inside(folder, row[k], path, line) for k in ("pre", "post"))
        mask = file_inside(folder, row["mask"], path, line) if row.get("mask") or require_masks else None
        check_sizes(pre, [post, mask])
        records.append(PairRecord(Path(row["post"]).stem, folder, pre, post, damage_target=mask))
    return records


def file_inside(folder: Path, relative: str | None, csv_path: Path, line: int) -> Path:
    """``folder / relative`` resolved; a one-line DataError naming the CSV line when it leaves ``folder`` or is
    missing."""
    target = (folder / (relative or "")).resolve()
    if not relative or not target.is_relative_to(folder):
        raise DataError(f"{csv_path}:{line}: image path {relative!r} must be a file inside {folder}")
    if not target.is_file():
        raise DataError(f"{csv_path}:{line}: image {target} does not exist")
    return target


def _oscd_pairs(root: Path, cache_dir: Path, split: str, bands: Sequence[str]) -> list[PairRecord]:
    images = root / _OSCD_IMAGES
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
