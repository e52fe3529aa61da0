"""A scene's bands: which bands of which files a tile stack reads, their common dtype and how each band's nodata
pixels are recognised, derived from the files' headers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rasterio.enums import ColorInterp, MaskFlags

from ssl_siam.core.errors import DataError
from ssl_siam.data.headers import FileHeader

_DTYPES = ("uint8", "uint16", "int16", "float32")  # torch.from_numpy keeps them
_NO_MASK_DRIVERS = (
    "PNG",
    "JPEG",
)  # their alpha / transparency mask is not nodata unless the alpha band is selected

@dataclass(frozen=True)
class BandRef:
    """One output band: band ``index`` (1-based) of ``path`` and how its nodata pixels are recognised."""

    path: Path
    index: int
    nodata: float | None  # pixels equal to this value are nodata (NaN matches NaN)
    masked: bool  # nodata from the file's mask (alpha band / internal mask) where the mask is 0


@dataclass(frozen=True)
class Scene:
    """One scene: a raster file, or a stack of same-size files whose bands are concatenated in order."""

    paths: tuple[Path, ...]
    height: int
    width: int
    bands: tuple[BandRef, ...]  # selected bands, in output order


BandSlot = tuple[int, int, "float | None", bool]  # a BandRef with its file's position in the stack for its path
SceneLayout = tuple[tuple[BandSlot, ...], str]  # the selected bands and their dtype


def scene_layout(
    paths: tuple[Path, ...], bands: Sequence[int] | None, nodata: float | None, infos: tuple[FileHeader, ...]
) -> SceneLayout:
    """The selected bands of a stack of files with headers ``infos`` (as :class:`BandRef` fields with the file's
    position for its path) and their common dtype; DataError naming ``paths`` on size / band / dtype problems."""
    first = infos[0]
    for path, info in zip(paths, infos):
        if (info.height, info.width) != (first.height, first.width):
            raise DataError(
                f"{path}: size {info.width}x{info.height}, expected "
                f"{first.width}x{first.height} like {paths[0]} of the same band stack"
            )
    available = [(f, i) for f, info in enumerate(infos) for i in range(1, len(info.dtypes) + 1)]
    if bands is None:
        chosen = available
    else:
        for band in bands:
            if not 1 <= band <= len(available):
                raise DataError(
                    f"{paths[0]}: band {band} out of range, expected 1..{len(available)} "
                    f"(the scene has {len(available)} bands)"
                )
        chosen = [available[band - 1] for band in bands]
    if not chosen:
        raise DataError(f"{paths[0]}: no bands selected, expected at least one")
    dtypes = {infos[f].dtypes[i - 1] for f, i in chosen}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _DTYPES:
        raise DataError(
            f"{paths[0]}: band dtype {'/'.join(sorted(dtypes))}, expected one of {', '.join(_DTYPES)}"
        )
    alpha_files = {f for f, i in chosen if infos[f].colorinterp[i - 1] == ColorInterp.alpha}
    slots = tuple((f, i, *_band_rule(i, infos[f], nodata, f in alpha_files)) for f, i in chosen)
    return slots, dtypes.pop()


def _band_rule(index: int, info: FileHeader, nodata: float | None, alpha_selected: bool) -> tuple[float | None, bool]:
    """Nodata rule of one band (:class:`BandRef`'s ``nodata``, ``masked``): the ``nodata`` argument, else the file's
    nodata value, else its mask."""
    if nodata is not None:
        return float(nodata), False
    if info.nodatavals[index - 1] is not None:
        return float(info.nodatavals[index - 1]), False
    if info.colorinterp[index - 1] == ColorInterp.alpha:
        return 0.0, False  # a selected alpha band: transparent pixels are nodata
    flags = info.mask_flags[index - 1]
    has_mask = MaskFlags.per_dataset in flags or MaskFlags.alpha in flags
    return None, has_mask and (info.driver not in _NO_MASK_DRIVERS or alpha_selected)
