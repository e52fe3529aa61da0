"""One multi-band raster from one file per band (Sentinel-2 archives: B01…B12 at 10 / 20 / 60 m), as a GDAL VRT
that resamples every band onto one reference grid by georeferencing: a band's pixels land where its transform
puts them on the grid, so bands (or dates) of other resolutions or slightly other extents line up. Nothing is
copied; the VRT is rewritten only when a source file changes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from ssl_siam.core.errors import DataError
from ssl_siam.core.files import atomic_path
from ssl_siam.data.rasters import open_raster

_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
               "float32": "Float32", "float64": "Float64"}


@dataclass(frozen=True)
class Grid:
    """A raster's pixel grid: size, affine transform (pixel → CRS coordinates) and CRS (None: not georeferenced)."""

    width: int
    height: int
    transform: Any
    crs: Any
    dtype: str = "float32"

    @classmethod
    def of(cls, path: Path) -> Grid:
        with open_raster(path) as src:
            return cls(src.width, src.height, src.transform, src.crs, src.dtypes[0])

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and not self.transform.is_identity


def _placement(source: Grid, grid: Grid, path: Path) -> tuple[float, float, float, float]:
    """Where ``source`` lands on ``grid``, in grid pixels (x offset, y offset, width, height): by the transforms
    when both are georeferenced in one CRS (north-up), else stretched over the whole grid."""
    if not (source.georeferenced and grid.georeferenced):
        return 0.0, 0.0, float(grid.width), float(grid.height)
    if source.crs != grid.crs:
        raise DataError(f"{path}: CRS {source.crs} differs from {grid.crs} of the reference band; expected one CRS")
    s, g = source.transform, grid.transform
    if s.b or s.d or g.b or g.d:
        raise DataError(f"{path}: a rotated grid, expected north-up rasters")
    return (s.c - g.c) / g.a, (s.f - g.f) / g.e, source.width * s.a / g.a, source.height * s.e / g.e


def stack_bands(files: Mapping[str, Path], grid: Grid, folder: Path, name: str) -> Path:
    """``folder/<hash>/<name>.vrt``: band i = ``files``' i-th file (its name the band's description), bilinearly
    resampled onto ``grid``. The hash covers the sources (path, mtime) and the grid, so a changed source or grid
    makes a new VRT and a stale one is never read."""
    key = hashlib.sha1(("".join(f"{p.resolve()}{p.stat().st_mtime_ns}" for p in files.values())
                        + f"{grid.width}{grid.height}{tuple(grid.transform)}{grid.crs}").encode())
    vrt = folder / key.hexdigest()[:12] / f"{name}.vrt"
    if vrt.is_file():
        return vrt
    grids = {band: Grid.of(path) for band, path in files.items()}  # opened only when the VRT is written
    parts = [f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">']
    if grid.crs is not None:
        parts.append(f"<SRS>{escape(grid.crs.to_wkt())}</SRS>")
    parts.append(f"<GeoTransform>{', '.join(map(str, grid.transform.to_gdal()))}</GeoTransform>")
    for i, (band, path) in enumerate(files.items(), start=1):
        source = grids[band]
        x, y, w, h = _placement(source, grid, path)
        parts.append(f'<VRTRasterBand dataType="{_GDAL_TYPES.get(source.dtype, "Float32")}" band="{i}">'
                     f'<Description>{escape(band)}</Description><ComplexSource resampling="bilinear">'
                     f'<SourceFilename relativeToVRT="0">{escape(str(path.resolve()))}</SourceFilename>'
                     f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{source.width}" '
                     f'ySize="{source.height}"/><DstRect xOff="{x!r}" yOff="{y!r}" xSize="{w!r}" ySize="{h!r}"/>'
                     "</ComplexSource></VRTRasterBand>")
    parts.append("</VRTDataset>")
    vrt.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(vrt) as tmp:
        tmp.write_text("\n".join(parts))
    return vrt
