"""The map panels of a contact sheet: the scenes holding a search's georeferenced hits, each as a downsampled RGB
quicklook with every hit's window outlined and numbered by its rank (example tiles of the index outlined in their
own colour, + or −), the axes ticked in lon/lat along the bottom and left edges.

Scenes are drawn in the order of their best hit, at most ``count`` of them; the outlines are the tile table's
windows (row, col, size in the scene's pixels) scaled to the quicklook, so they lie where ``embed`` read the tiles.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.patches import Rectangle
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import xy
from rasterio.warp import transform

from ssl_siam.change.outputs import to_display_rgb
from ssl_siam.data.tiles import TileDataset

if TYPE_CHECKING:  # sheet.py draws these panels
    from ssl_siam.search.sheet import TileReader

MAP_SCENES = 2  # scenes drawn beside the thumbnails by default
MAX_SIDE = 512  # quicklook pixels along the scene's longer side, at most
_COLOURS = {"hit": "yellow", "+": "cyan", "−": "magenta"}
_TICKS = 4


@dataclass(frozen=True)
class Outline:
    """A window to outline: ``label`` (a rank, or + / − for an example) and its place in the scene's pixels."""

    label: str
    kind: str  # hit | + | −
    row: int
    col: int
    size: int


@dataclass(frozen=True)
class ScenePanel:
    """One scene drawn as a map: its quicklook ``rgb`` [h, w, 3] uint8, ``scale`` = scene pixels per quicklook
    pixel (rows, cols), the scene's affine ``transform`` and ``crs``, and the windows to outline."""

    title: str
    rgb: np.ndarray
    scale: tuple[float, float]
    transform: Any
    crs: str
    outlines: list[Outline]

    def box(self, outline: Outline) -> tuple[float, float, float, float]:
        """(x, y, width, height) of a window in the quicklook's pixel coordinates as ``imshow`` draws them
        (pixel centres at integers, so a pixel's top-left corner at -0.5)."""
        rows, cols = self.scale
        return outline.col / cols - 0.5, outline.row / rows - 0.5, outline.size / cols, outline.size / rows


def quicklook(tiles: TileDataset, rgb: tuple[int, int, int], max_side: int
              ) -> tuple[np.ndarray, tuple[float, float], Any, str | None]:
    """(display RGB [h, w, 3] uint8, scene pixels per quicklook pixel (rows, cols), transform, CRS text) of the one
    scene of ``tiles``: its ``rgb`` bands (0-based) read averaged down to at most ``max_side`` pixels a side."""
    scene = tiles.files[0]
    factor = max(1, math.ceil(max(scene.height, scene.width) / max_side))
    shape = (math.ceil(scene.height / factor), math.ceil(scene.width / factor))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        bands = [tiles.handle(scene.bands[b].path).read(scene.bands[b].index, out_shape=shape,
                                                         resampling=Resampling.average) for b in rgb]
        src = tiles.handle(scene.paths[0])
    crs = src.crs.to_string() if src.crs else None
    return to_display_rgb(np.stack(bands)), (scene.height / shape[0], scene.width / shape[1]), src.transform, crs


def map_panels(hits: list[dict[str, Any]], examples: list[tuple[str, dict[str, Any]]], reader: TileReader,
               rgb: tuple[int, int, int], count: int = MAP_SCENES) -> list[ScenePanel]:
    """Panels of the first ``count`` georeferenced scenes holding hits (tile-table rows with ``rank``), in the
    order of their best hit, with those hits and the ``examples`` ((+ or −, tile-table row) of index tiles) that
    lie in them outlined; a scene the ``reader`` cannot open is left out."""
    scenes = list(dict.fromkeys(h["scene"] for h in hits if h["crs"] is not None))
    panels = []
    for scene in scenes:
        if len(panels) == count:
            break
        tiles = reader.dataset(scene)
        if tiles is None:
            continue
        image, scale, affine, crs = quicklook(tiles, rgb, MAX_SIDE)
        if crs is None:
            continue
        outlines = [Outline(str(h["rank"]), "hit", h["row"], h["col"], h["size"]) for h in hits
                    if h["scene"] == scene]
        outlines += [Outline(sign, sign, r["row"], r["col"], r["size"]) for sign, r in examples if r["scene"] == scene]
        hit_count = sum(o.kind == "hit" for o in outlines)
        title = f"{scene_label(scene)} ({crs}): {hit_count} hit{'s' * (hit_count != 1)}"
        panels.append(ScenePanel(title, image, scale, affine, crs, outlines))
    return panels


def draw_map(ax: Any, panel: ScenePanel) -> None:
    """The quicklook, its outlines (hits yellow with their rank, examples cyan + / magenta −), lon/lat ticks."""
    ax.imshow(panel.rgb, interpolation="nearest")
    for outline in sorted(panel.outlines, key=lambda o: o.kind == "hit"):  # hits on top of the examples
        x, y, width, height = panel.box(outline)
        colour, hit = _COLOURS[outline.kind], outline.kind == "hit"
        ax.add_patch(Rectangle((x, y), width, height, fill=False, edgecolor=colour, linewidth=1.0 if hit else 2.0))
        ax.text(x + (width if hit else 0.0), y, outline.label, color=colour, fontsize=7, ha="right" if hit else "left",
                va="top" if hit else "bottom", bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "linewidth": 0})
    h, w = panel.rgb.shape[:2]
    rows, cols = panel.scale
    xs, ys = np.linspace(-0.5, w - 0.5, _TICKS), np.linspace(-0.5, h - 0.5, _TICKS)
    bottom = xy(panel.transform, np.full(_TICKS, h * rows), (xs + 0.5) * cols, offset="ul")
    left = xy(panel.transform, (ys + 0.5) * rows, np.zeros(_TICKS), offset="ul")
    lons = transform(panel.crs, "EPSG:4326", *bottom)[0]
    lats = transform(panel.crs, "EPSG:4326", *left)[1]
    ax.set_xticks(xs, [f"{v:.3f}°" for v in lons], fontsize=6)
    ax.set_yticks(ys, [f"{v:.3f}°" for v in lats], fontsize=6)
    ax.set_xlabel("longitude (bottom edge)", fontsize=6)
    ax.set_ylabel("latitude (left edge)", fontsize=6)
    ax.set_title(panel.title, fontsize=7)


def scene_label(scene: str) -> str:
    """A short name for a scene key: folder / file, or for a band stack its files' two folders (city/imgs_1)."""
    first = Path(scene.split(";")[0])
    return f"{first.parent.parent.name}/{first.parent.name}" if ";" in scene else f"{first.parent.name}/{first.name}"
