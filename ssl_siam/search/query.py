"""What a search looks for: examples (an index id, a lon/lat, a tile file) turned into embeddings, and the query
vector they give — the one example's embedding, or the weights of a logistic regression of positives against
negatives (or against a random background of the index) when there are several."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform

from ssl_siam.core.errors import DataError, UserError
from ssl_siam.data.tiles import TileDataset
from ssl_siam.eval.classifiers import fit_logistic
from ssl_siam.search.embed import embed_batch, index_encoder
from ssl_siam.search.index import IndexState

_LONLAT = re.compile(r"\s*([-+]?[\d.]+(?:e[-+]?\d+)?)\s*,\s*([-+]?[\d.]+(?:e[-+]?\d+)?)\s*", re.I)
BACKGROUND = 1000  # random index tiles standing in for negatives when none are given
CENTER_SAMPLE = 10_000  # index tiles whose mean / std standardise the classifier's inputs


@dataclass(frozen=True)
class Example:
    """One query example as given (``text``, ``option``) and what it is: an index ``tile`` id, or a ``file`` whose
    central window is embedded with the index's encoder (``pixels`` [C, T, T] raw, kept for the contact sheet)."""

    text: str
    option: str
    tile: int | None
    pixels: torch.Tensor | None = None


def parse_lonlat(text: str, option: str = "--lonlat") -> tuple[float, float]:
    """``LON,LAT`` in degrees → (lon, lat); UserError naming ``option`` otherwise."""
    match = _LONLAT.fullmatch(text)
    lon, lat = (float(match.group(1)), float(match.group(2))) if match else (math.nan, math.nan)
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise UserError(f"{option} {text}: expected LON,LAT in degrees (e.g. 12.49,41.89)")
    return lon, lat


def tile_at(table: pa.Table, lon: float, lat: float, option: str = "--lonlat") -> int:
    """The id of the indexed tile containing (lon, lat): candidates by their lon/lat bounds, kept when the point,
    taken into the tile's CRS, lies inside its CRS bounds; the one whose centre is nearest wins (overlapping
    strides), the lowest id on ties. UserError when no tile contains it."""
    col = {name: table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
           for name in ("lon_min", "lat_min", "lon_max", "lat_max", "left", "bottom", "right", "top")}
    with np.errstate(invalid="ignore"):
        near = (col["lon_min"] <= lon) & (lon <= col["lon_max"]) & (col["lat_min"] <= lat) & (lat <= col["lat_max"])
    best: tuple[float, int] | None = None
    crs = table.column("crs").to_pylist()
    for i in np.flatnonzero(near):
        (x,), (y,) = transform("EPSG:4326", crs[i], [lon], [lat])
        if col["left"][i] <= x <= col["right"][i] and col["bottom"][i] <= y <= col["top"][i]:
            size = max(col["right"][i] - col["left"][i], col["top"][i] - col["bottom"][i])
            distance = math.hypot(x - (col["left"][i] + col["right"][i]) / 2,
                                  y - (col["bottom"][i] + col["top"][i]) / 2) / size
            best = min(best or (distance, int(i)), (distance, int(i)))
    if best is None:
        georeferenced = np.isfinite(col["lon_min"])
        span = (f"the index spans lon {np.nanmin(col['lon_min']):.5f}..{np.nanmax(col['lon_max']):.5f}, lat "
                f"{np.nanmin(col['lat_min']):.5f}..{np.nanmax(col['lat_max']):.5f}" if georeferenced.any()
                else "no tile of the index is georeferenced")
        raise UserError(f"{option} {lon},{lat}: no indexed tile contains this point ({span})")
    return best[1]


def parse_example(text: str, option: str, table: pa.Table, kind: str | None = None) -> Example:
    """An example as written on the command line, of ``kind`` id | lonlat | file, or guessed (None): an integer
    is an index id, ``LON,LAT`` a point (the tile containing it), anything else a tile file (checked to exist;
    read by :func:`read_files`)."""
    kind = kind or ("id" if re.fullmatch(r"\s*\d+\s*", text) else "lonlat" if _LONLAT.fullmatch(text) else "file")
    if kind == "id":
        tile = int(text) if re.fullmatch(r"\s*\d+\s*", text) else -1
        if not 0 <= tile < table.num_rows:
            raise UserError(f"{option} {text}: no such tile id, expected 0..{table.num_rows - 1}")
        return Example(text, option, tile)
    if kind == "lonlat":
        return Example(text, option, tile_at(table, *parse_lonlat(text, option), option))
    if not Path(text).is_file() and "{band}" not in text:
        raise UserError(f"{option} {text}: no such file; expected a tile image, an index id or LON,LAT")
    return Example(text, option, None)


def read_files(examples: list[Example], state: IndexState) -> list[Example]:
    """The file examples with their pixels: each file's central tile-sized window (its nodata rules; a smaller
    image padded, as embed pads), read with the index's bands. Returns the examples in the same order."""
    tiling, out = state.tiling, []
    for ex in examples:
        if ex.tile is not None:
            out.append(ex)
            continue
        size = int(tiling["tile"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            tiles = TileDataset(ex.text, size, bands=tiling["bands"],
                                band_names=tiling["band_names"] if "{band}" in ex.text else None, sampling="grid",
                                workers=0)
            if len(tiles.files) != 1 or tiles.num_bands != int(state.encoder["in_chans"]):
                raise DataError(f"{ex.option} {ex.text}: expected one image of {state.encoder['in_chans']} bands "
                                f"(the index's), got {len(tiles.files)} image(s) of {tiles.num_bands}")
            scene = tiles.files[0]
            pixels, _ = tiles.read_window(0, max((scene.height - size) // 2, 0), max((scene.width - size) // 2, 0))
        out.append(Example(ex.text, ex.option, None, pixels))
    return out


def example_vectors(examples: list[Example], state: IndexState, embeddings: np.ndarray, device: str = "cpu"
                    ) -> np.ndarray:
    """[n, D] float32 embeddings of the examples: index rows, or files through the index's own encoder."""
    files = [ex.pixels for ex in examples if ex.tile is None]
    if files:
        model, stats, runtime = index_encoder(state, device)
        embedded = iter(embed_batch(model, stats, torch.stack(files), runtime))
    return np.stack([embeddings[ex.tile] if ex.tile is not None else next(embedded) for ex in examples]
                    ).astype(np.float32)


def classifier_query(positives: np.ndarray, negatives: np.ndarray, embeddings: np.ndarray, c: float = 1.0,
                     seed: int = 0) -> tuple[np.ndarray, float]:
    """A linear scorer ``w · x + b`` (the log-odds of "positive") of logistic regression (L2, ``c`` as
    scikit-learn's C; :func:`ssl_siam.eval.classifiers.fit_logistic`) of ``positives`` [p, D] against
    ``negatives`` [n, D], on embeddings standardised by the mean / std of a seeded sample of the index, folded back
    into embedding space so the whole index is scored by one inner-product search. Returns (w [D], b)."""
    rng = np.random.default_rng(seed)
    sample = embeddings[np.sort(rng.choice(len(embeddings), min(CENTER_SAMPLE, len(embeddings)), replace=False))]
    sample = torch.from_numpy(sample.astype(np.float64))
    mean, std = sample.mean(0), sample.std(0, unbiased=False)
    std = std.clamp_min(1e-6 * float(std.max()) + 1e-12)
    x = torch.from_numpy(np.concatenate([positives, negatives]).astype(np.float64))
    y = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))]).long()
    weight, bias = fit_logistic((x - mean) / std, y, 2, c)  # [2, D], [2]
    w = (weight[1] - weight[0]) / std
    return w.float().numpy(), float(bias[1] - bias[0] - w @ mean)


def background(n: int, exclude: set[int], count: int = BACKGROUND, seed: int = 0) -> np.ndarray:
    """Up to ``count`` seeded random index ids, none of ``exclude`` (the positives): the negatives of a search
    given positives only."""
    pool = np.setdiff1d(np.arange(n), np.fromiter(exclude, np.int64, len(exclude)))
    if len(pool) == 0:
        raise UserError("every tile of the index is a positive: nothing left to rank against; give --negative")
    return np.sort(np.random.default_rng(seed).choice(pool, min(count, len(pool)), replace=False))
