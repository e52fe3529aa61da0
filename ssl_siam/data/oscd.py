"""The Onera Satellite Change Detection dataset's published folders (Daudt et al. 2018), as every reader needs
them: its city lists and one GeoTIFF per Sentinel-2 band per city and date (``imgs_1`` the older, ``imgs_2``).
Read as pairs by the ``oscd`` change layout, and as unlabeled 13-band scenes (both dates of every city) when an
OSCD root is given to pretraining or ``ssl-siam stats``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ssl_siam.core.errors import DataError
from ssl_siam.data.band_stack import Grid, stack_bands

IMAGES = "Onera Satellite Change Detection dataset - Images"
SPLITS = ("train", "test")
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def is_oscd_root(root: Path) -> bool:
    return (Path(root) / IMAGES).is_dir()


def cities(root: Path, split: str) -> list[str]:
    """The cities of ``split`` (``train``, ``test`` or ``all``) from the official one-line lists, in their order."""
    names: list[str] = []
    for part in SPLITS if split == "all" else (split,):
        listing = root / IMAGES / f"{part}.txt"
        if not listing.is_file():
            raise DataError(f"{listing}: missing, expected the OSCD city list of the {part} split")
        names += [c.strip() for c in listing.read_text().replace("\n", ",").split(",") if c.strip()]
    return list(dict.fromkeys(names))


def band_files(folder: Path, bands: Sequence[str]) -> dict[str, Path]:
    """``{band: file}`` of one date folder (``*_<band>.tif``, e.g. ``…_B8A.tif``), in ``bands``' order."""
    if not folder.is_dir():
        raise DataError(f"{folder}: missing, expected one GeoTIFF per band ({', '.join(bands)})")
    files = {}
    for band in bands:
        found = sorted(folder.glob(f"*{band}.tif"))
        if len(found) != 1:
            raise DataError(f"{folder}: {len(found)} files *{band}.tif, expected one per band ({', '.join(bands)})")
        files[band] = found[0]
    return files


def city_dates(root: Path, city: str, bands: Sequence[str], folder: Path) -> tuple[Path, Path]:
    """Both dates of ``city`` (:func:`folder_dates` of its ``imgs_1`` and ``imgs_2``)."""
    return folder_dates(root / IMAGES / city / "imgs_1", root / IMAGES / city / "imgs_2", bands, folder, city)


def folder_dates(pre: Path, post: Path, bands: Sequence[str], folder: Path, name: str) -> tuple[Path, Path]:
    """Two date folders of per-band GeoTIFFs (OSCD's ``imgs_1`` / ``imgs_2``) as ``len(bands)``-band VRTs in
    ``folder`` on ``pre``'s B02 grid — the older 10 m image is the reference, as OSCD's README says — every band of
    either date resampled (bilinear) to where its transform puts it (``<name>_pre_disaster.vrt``,
    ``<name>_post_disaster.vrt``: names that give predictions their ``<name>`` stem)."""
    dates = [band_files(date, bands) for date in (pre, post)]
    grid = Grid.of(band_files(pre, ["B02"])["B02"])
    return (stack_bands(dates[0], grid, folder, f"{name}_pre_disaster"),
            stack_bands(dates[1], grid, folder, f"{name}_post_disaster"))


def date_folder_name(pre: Path) -> str:
    """The name outputs of a date-folder pair carry: the city (``<city>/imgs_1`` → ``<city>``), else the folder's."""
    return pre.parent.name if pre.name == "imgs_1" else pre.name


def date_scenes(root: Path, bands: Sequence[str] | None = None) -> list[tuple[Path, ...]]:
    """Every date of every city (train and test lists) as a tuple of band files, ``bands`` (default all 13) in
    order; ``pair/`` previews and the labels are never among them."""
    return [tuple(band_files(root / IMAGES / city / f"imgs_{k}", bands or BANDS).values())
            for city in cities(root, "all") for k in (1, 2)]
