"""The contact sheet of a search: the query tiles, then the top hits, as labelled thumbnails in one PNG.

Tiles are read back from their scenes exactly as ``ssl-siam embed`` read them (the index's tile size and bands).
Display bands: :func:`ssl_siam.data.display.rgb_bands` of the index's ``{band}`` names or a band stack's file
names (an OSCD city: B04 / B03 / B02); each thumbnail is stretched between its 2nd and 98th percentiles (uint8
shown as is). A tile whose scene cannot be read any more is drawn as a grey
square marked "missing". Georeferenced hits add map panels of their scenes on the left (``scene_map.py``).
"""

from __future__ import annotations

import math
import os
import string
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

from ssl_siam.core.files import atomic_path

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from rasterio.errors import NotGeoreferencedWarning

from ssl_siam.change.outputs import to_display_rgb
from ssl_siam.core.errors import DataError
from ssl_siam.data.tiles import TileDataset
from ssl_siam.search.index import IndexState
from ssl_siam.search.scene_map import ScenePanel, draw_map

_COLUMNS = 6
_MAP_INCHES = 5.0  # width of the map column
_WORD = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Thumb:
    """One cell of the sheet: its caption and its raw tile [C, T, T] (None: unreadable)."""

    caption: str
    pixels: torch.Tensor | None


def stack_pattern(scene: str) -> tuple[str, list[str] | None]:
    """A scene key of the tile table → (what ``TileDataset`` opens, band names): a single file as is; a band
    stack (``a;b;c``) as a ``{band}`` pattern over the word in which its file paths differ (``x_B02.tif``,
    ``x_B03.tif`` → ``x_{band}.tif`` with names B02, B03)."""
    paths = scene.split(";")
    if len(paths) == 1:
        return paths[0], None
    prefix = os.path.commonprefix(paths)  # noqa: RUF071 -- character by character on purpose, then whole words
    prefix = prefix.rstrip(_WORD)
    suffix = os.path.commonprefix([p[len(prefix):][::-1] for p in paths])[::-1]  # noqa: RUF071
    suffix = suffix.lstrip(_WORD)
    return prefix + "{band}" + suffix, [p[len(prefix):len(p) - len(suffix)] for p in paths]


class TileReader:
    """Reads tiles of an index back from their scenes (one ``TileDataset`` per scene, opened once)."""

    def __init__(self, state: IndexState) -> None:
        self.tiling = state.tiling
        self._scenes: dict[str, TileDataset | None] = {}

    def names(self, scene: str) -> list[str] | None:
        """The scene's band names after the index's band selection, when known."""
        names = self.tiling["band_names"] or stack_pattern(scene)[1]
        bands = self.tiling["bands"]
        return [names[b - 1] for b in bands] if names and bands and max(bands) <= len(names) else names

    def dataset(self, scene: str) -> TileDataset | None:
        """The scene opened as a one-scene ``TileDataset`` with the index's tiling, or None when it cannot be."""
        if scene not in self._scenes:
            pattern, names = stack_pattern(scene)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    self._scenes[scene] = TileDataset(pattern, int(self.tiling["tile"]), bands=self.tiling["bands"],
                                                      band_names=names, sampling="grid", workers=0)
            except DataError:
                self._scenes[scene] = None
        return self._scenes[scene]

    def read(self, scene: str, row: int, col: int) -> torch.Tensor | None:
        """The raw tile [C, T, T] at (row, col) of ``scene``, or None when the scene cannot be read."""
        tiles = self.dataset(scene)
        if tiles is None:
            return None
        try:
            return tiles.read_window(0, row, col)[0]
        except DataError:
            return None


def write_contact_sheet(path: Path, queries: list[Thumb], hits: list[Thumb], rgb: tuple[int, int, int],
                        title: str, maps: Sequence[ScenePanel] = ()) -> None:
    """One PNG: a row of query thumbnails, then the hits ``_COLUMNS`` per row, each with its caption; ``maps``
    (scenes with their hits outlined, :mod:`ssl_siam.search.scene_map`) in a column on the left."""
    columns = min(_COLUMNS, max(len(queries), len(hits), 1))
    rows = math.ceil(len(queries) / columns) + math.ceil(len(hits) / columns)
    width, height = 2.0 * columns, 2.2 * rows + 0.4
    map_width = _MAP_INCHES if maps else 0.0
    fig = plt.figure(figsize=(width + map_width, max(height, _MAP_INCHES * len(maps))), layout="constrained")
    grid = fig
    if maps:
        left, grid = fig.subfigures(1, 2, width_ratios=[map_width, width])
        for ax, panel in zip(left.subplots(len(maps), 1, squeeze=False).flat, maps):
            draw_map(ax, panel)
    axes = grid.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    cells = [*queries, *[None] * (-len(queries) % columns), *hits]
    for ax, thumb in zip(axes.flat, cells):
        if thumb is not None:
            _draw(ax, thumb, rgb)
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _draw(ax: Any, thumb: Thumb, rgb: tuple[int, int, int]) -> None:
    if thumb.pixels is None:
        ax.imshow(np.full((8, 8, 3), 128, np.uint8))
        ax.text(4, 4, "missing", ha="center", va="center", fontsize=8)
    else:
        ax.imshow(to_display_rgb(thumb.pixels.numpy(), rgb), interpolation="nearest")
    ax.set_title(thumb.caption, fontsize=7)
