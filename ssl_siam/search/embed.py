"""``ssl-siam embed``: every grid tile of an archive through a frozen encoder, into a chunked, resumable index.

Scenes come from :func:`ssl_siam.data.sources.resolve_sources` and are read by
:class:`ssl_siam.data.tiles.TileDataset` (any band count and dtype, nodata rules, PNG / JPEG); windows lie on a grid
of ``stride`` (the last row / column shifted back inside the scene, as the dataset's own grid does). Tiles are
normalised with the encoder's band statistics (an export's ``encoder.json``; otherwise statistics of the archive,
computed once and stored in the index so that appends use the same), embedded in batches on the device under the
run's precision, L2-normalised and stored as float16, ``chunk_size`` windows per part. Under torchrun / srun the
parts are dealt out in rounds (rank r embeds the r-th part of each round) and the index is the one a single process
writes.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from ssl_siam.core.config import read_yaml
from ssl_siam.core.errors import DataError
from ssl_siam.data.sources import resolve_sources
from ssl_siam.data.stats import BandStats, compute_stats
from ssl_siam.data.tiles import TileDataset
from ssl_siam.eval.features import EncoderSpec, build_encoder, parse_encoder_spec
from ssl_siam.search.index import (
    INDEX_FILE,
    WINDOW_SCHEMA,
    IndexState,
    check_compatible,
    file_sha256,
    read_state,
    upgrade_parts,
    write_part,
    write_state,
)
from ssl_siam.train.distributed import barrier, init_distributed, sum_across
from ssl_siam.train.runtime import Runtime

CHUNK_SIZE = 16384  # windows per part: bounds the embeddings held in memory
_SEED = 0  # random:<name> weights and archive statistics


@dataclass(frozen=True)
class EmbedResult:
    """The index after the run, what this run added (and upgraded), and where it ran."""

    state: IndexState
    new_scenes: int
    new_tiles: int
    new_skipped: int
    device: str
    is_main: bool = True  # rank 0 (reports) of a torchrun / srun run
    upgraded_parts: int = 0  # table parts of an older index rewritten as GeoParquet before appending


def grid_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window starts along one axis: 0, stride, 2·stride, ... and the last one shifted back to ``length - tile`` so
    the edge is covered (a scene shorter than a tile has one window, padded)."""
    last = max(length - tile, 0)
    starts = list(range(0, last + 1, stride))
    return starts if starts[-1] == last else [*starts, last]


def scene_key(paths: Sequence[Path]) -> str:
    """A scene's name in the index: its absolute file path (a band stack: its files joined by ';')."""
    return ";".join(str(Path(p).resolve()) for p in paths)


def encoder_identity(spec: EncoderSpec, in_chans: int) -> dict[str, Any]:
    """What identifies an encoder's embeddings: backbone, bands, weights hash (the spec text is for messages)."""
    meta = spec.meta
    return {"spec": spec.spec, "kind": "export" if spec.exported else spec.spec.partition(":")[0],
            "backbone": meta.backbone if meta else spec.arch, "in_chans": in_chans,
            "objective": meta.objective if meta else None, "step": meta.step if meta else None,
            "weights_sha256": file_sha256(spec.weights) if spec.weights else None,
            "seed": None if spec.weights else _SEED}


def run_precision(spec: EncoderSpec) -> str:
    """``train.precision`` of the run an exported encoder comes from (its ``config.yaml``), else fp32."""
    config = spec.weights.parent / "config.yaml" if spec.exported and spec.weights else None
    if config is None or not config.is_file():
        return "fp32"
    data = read_yaml(config)  # a broken config.yaml is a one-line ConfigError naming it
    precision = (data.get("train") or {}).get("precision", "fp32")
    return precision if precision in ("bf16", "fp16", "fp32") else "fp32"


class WindowDataset(torch.utils.data.Dataset):
    """Items ``(tile [C, T, T] native dtype, nodata fraction)`` of listed (scene, row, col) windows of a
    :class:`TileDataset` (read in the DataLoader workers through its own reader)."""

    def __init__(self, tiles: TileDataset, windows: Sequence[tuple[int, int, int]]) -> None:
        self.tiles, self.windows = tiles, list(windows)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, float]:
        tile, valid = self.tiles.read_window(*self.windows[index])
        return tile, 1.0 - float(valid.float().mean())


def _stream(tiles: TileDataset, todo: list[tuple[int, int]], stride: int
            ) -> Iterator[tuple[int, int, int, int, bool]]:
    """(scene, window number, row, col, last window of the scene) for scenes ``todo`` = [(scene, windows done)]."""
    size = tiles.tile_size
    for i, skip in todo:
        scene = tiles.files[i]
        rows, cols = grid_starts(scene.height, size, stride), grid_starts(scene.width, size, stride)
        windows = [(r, c) for r in rows for c in cols]
        for k in range(skip, len(windows)):
            yield i, k, *windows[k], k == len(windows) - 1


def _footprints(tiles: TileDataset, scene: int) -> tuple[str | None, Any]:
    """(CRS text or None, the scene's affine transform) of a georeferenced scene."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = tiles.handle(tiles.files[scene].bands[0].path)
        return (src.crs.to_string() if src.crs else None), src.transform


def _rows(tiles: TileDataset, keys: list[str], items: list[tuple[int, int, int, int, bool]], fractions: np.ndarray,
          first_id: int) -> dict[str, list[Any]]:
    """The table rows (columns of WINDOW_SCHEMA) of the kept windows ``items``."""
    rows: dict[str, list[Any]] = {name: [] for name in WINDOW_SCHEMA.names}
    georef: dict[int, tuple[str | None, Any]] = {}
    size = tiles.tile_size
    for n, ((i, _, row, col, _), fraction) in enumerate(zip(items, fractions)):
        crs, transform = georef.setdefault(i, _footprints(tiles, i))
        box = window_bounds(Window(col, row, size, size), transform) if crs else (None,) * 4
        lonlat = transform_bounds(crs, "EPSG:4326", *box) if crs else (None,) * 4
        values = (first_id + n, keys[i], row, col, size, crs, *box, *lonlat, float(fraction))
        for name, value in zip(WINDOW_SCHEMA.names, values):
            rows[name].append(value)
    return rows


def embed_archive(
    encoder: str, data: Sequence[str | Path], out: str | Path, *, tile: int = 64, stride: int | None = None,
    batch_size: int = 64, device: str = "auto", workers: int = 2, max_nodata: float = 0.5,
    bands: Sequence[int] | None = None, band_names: Sequence[str] | None = None, chunk_size: int = CHUNK_SIZE,
) -> EmbedResult:
    """Embed every grid tile of the scenes in ``data`` not yet in the index ``out`` (created if missing); resumes
    a killed run at the scene window after the last committed part. Returns the index state and what was added."""
    out, stride = Path(out), stride or tile
    if not 0.0 <= max_nodata <= 1.0:
        raise DataError(f"--max-nodata {max_nodata}: expected a fraction in [0, 1]")
    spec = parse_encoder_spec(encoder)
    runtime = Runtime.create(device, run_precision(spec))
    world, dev = init_distributed(runtime.device)  # torchrun / srun: one process per device, parts shared out
    runtime = dataclasses.replace(runtime, device=dev, world=world)
    stored = read_state(out)
    barrier(world)  # every rank has read the index before rank 0 may create it
    keys = [scene_key(paths) for paths in resolve_sources(data, band_names)]
    tiles = TileDataset(data, tile, bands=bands, band_names=band_names, sampling="grid",
                        max_nodata_fraction=max_nodata, workers=workers)
    if spec.meta and spec.meta.in_chans != tiles.num_bands:
        raise DataError(f"--encoder {encoder}: takes {spec.meta.in_chans} bands, the archive has {tiles.num_bands}"
                        + (f" (it was trained on bands {spec.meta.bands}: pass --bands)" if spec.meta.bands else ""))
    identity = encoder_identity(spec, tiles.num_bands)
    tiling = {"tile": tile, "stride": stride, "bands": list(bands) if bands else None,
              "band_names": list(band_names) if band_names else None, "max_nodata": max_nodata}
    if stored is not None:
        check_compatible(stored, identity, tiling, out)
    model, own_stats = build_encoder(spec, tiles.num_bands, _SEED)
    model = model.to(runtime.device).eval()
    upgraded = 0
    if stored is None and world.is_main:
        stats = own_stats or compute_stats(tiles, num_samples=256, seed=_SEED)
        write_state(out, IndexState(identity, tiling, dataclasses.asdict(stats), int(model.num_features)))
    elif stored is not None and world.is_main:
        upgraded = upgrade_parts(out, stored.parts)  # one schema in every part once the index grows
    barrier(world)
    state = read_state(out)
    assert state is not None
    stats = BandStats(**state.normalization)
    done, partial = set(state.done), state.partial
    todo = [(i, partial[1] if partial and partial[0] == key else 0) for i, key in enumerate(keys) if key not in done]
    before = (len(state.done), state.tiles, state.skipped_nodata)
    stream = _stream(tiles, todo, stride)
    # a round: the next world.size parts of the stream, part r embedded by rank r; ids follow the kept counts
    while chunks := [c for c in (list(islice(stream, chunk_size)) for _ in range(world.size)) if c]:
        mine = chunks[world.rank] if world.rank < len(chunks) else []
        kept_counts = torch.zeros(world.size, dtype=torch.int64)
        if mine:
            embeddings, fractions = _embed(model, stats, tiles, mine, runtime, batch_size, workers, max_nodata)
            kept = fractions <= max_nodata
            kept_counts[world.rank] = int(kept.sum())
        kept_counts = sum_across(kept_counts.to(dev), world).cpu()
        if mine:
            rows = _rows(tiles, keys, [it for it, k in zip(mine, kept) if k], fractions[kept],
                         state.tiles + int(kept_counts[:world.rank].sum()))
            write_part(out, state.parts + world.rank, embeddings, rows)
        barrier(world)
        state.parts += len(chunks)
        state.tiles += int(kept_counts.sum())
        state.skipped_nodata += sum(len(c) for c in chunks) - int(kept_counts.sum())
        state.done += [keys[i] for c in chunks for i, _, _, _, last in c if last]
        i, k, _, _, last = chunks[-1][-1]
        state.partial = None if last else (keys[i], k + 1)
        if world.is_main:
            write_state(out, state)
        barrier(world)
    return EmbedResult(state, len(state.done) - before[0], state.tiles - before[1], state.skipped_nodata - before[2],
                       runtime.describe() + (f" × {world.size} processes" if world.size > 1 else ""), world.is_main,
                       upgraded)


@torch.no_grad()
def _embed(model: torch.nn.Module, stats: BandStats, tiles: TileDataset, items: list[tuple[int, int, int, int, bool]],
           runtime: Runtime, batch_size: int, workers: int, max_nodata: float) -> tuple[np.ndarray, np.ndarray]:
    """(float16 unit embeddings [K, D] of the kept windows, nodata fractions [N] of all ``items``)."""
    windows = [(i, row, col) for i, _, row, col, _ in items]
    loader = torch.utils.data.DataLoader(WindowDataset(tiles, windows), batch_size=batch_size, shuffle=False,
                                         num_workers=min(workers, math.ceil(len(windows) / batch_size)),
                                         pin_memory=runtime.pin_memory)
    embeddings, fractions = [], []
    for batch, fraction in loader:  # [B, C, T, T] raw values, [B]
        fractions.append(fraction.double().numpy())
        keep = fraction <= max_nodata
        if keep.any():
            embeddings.append(embed_batch(model, stats, batch[keep], runtime))
    dim = int(model.num_features)
    return (np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float16)), np.concatenate(fractions)


@torch.no_grad()
def embed_batch(model: torch.nn.Module, stats: BandStats, batch: torch.Tensor, runtime: Runtime) -> np.ndarray:
    """Raw tiles ``[B, C, T, T]`` → float16 unit embeddings ``[B, D]``: the band statistics, the run's precision,
    the pooled features L2-normalised (what the index stores; queries go through the same function)."""
    x = stats.standardize(stats.to_unit(batch.to(runtime.device, non_blocking=True)))
    with runtime.autocast():
        features = model(x).flatten(1)  # [B, D]
    return F.normalize(features.float(), dim=1).half().cpu().numpy()


def index_encoder(state: IndexState, device: str = "cpu") -> tuple[torch.nn.Module, BandStats, Runtime]:
    """The frozen encoder of an index (``index.json`` ``encoder.spec``), its normalization and runtime; DataError
    when the spec no longer gives the encoder the index was built with (weights changed or moved)."""
    spec = parse_encoder_spec(state.encoder["spec"], option=f"{INDEX_FILE} encoder.spec")
    in_chans = int(state.encoder["in_chans"])
    if encoder_identity(spec, in_chans) != state.encoder:
        raise DataError(f"{INDEX_FILE} encoder.spec {spec.spec}: its weights changed since the index was built "
                        "(other sha256); re-embed the archive to query it with tile files")
    runtime = Runtime.create(device, run_precision(spec))
    model, _ = build_encoder(spec, in_chans, _SEED)
    return model.to(runtime.device).eval(), BandStats(**state.normalization), runtime
