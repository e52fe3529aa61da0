"""``ssl-siam search``: the tiles of an index most like one example, or most like some and least like others.

One positive and no negative: its embedding is the query, hits are ranked by cosine similarity (``score``, in
[-1, 1]). Otherwise a logistic regression of the positives against the negatives (or, without negatives, against
a seeded random background of the index) gives a linear scorer ``w · x + b``; the index is ranked by ``w · x``
in the same nearest-neighbour index, and ``score`` is the probability sigmoid(w · x + b).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ssl_siam.core.errors import DataError, UserError
from ssl_siam.data.display import rgb_bands
from ssl_siam.search.index import IndexState, load_index
from ssl_siam.search.knn import CACHE_DIR, SearchParams, neighbour_index, search
from ssl_siam.search.outputs import hit_rows, write_hits
from ssl_siam.search.query import (
    BACKGROUND,
    Example,
    background,
    classifier_query,
    example_vectors,
    parse_example,
    read_files,
)
from ssl_siam.search.scene_map import MAP_SCENES, map_panels
from ssl_siam.search.sheet import Thumb, TileReader, write_contact_sheet

SHEET = "contact_sheet.png"
SHEET_HITS = 48  # hits drawn on the contact sheet (all k go to the GeoJSON and CSV)


@dataclass(frozen=True)
class SearchResult:
    """The hits (tile-table rows with ``rank`` and ``score``, best first), how they were scored and found."""

    hits: list[dict[str, Any]]
    mode: str  # similarity | classifier
    positives: int
    negatives: int  # given, or the background size
    index_kind: str


def run_search(
    index: str | Path, out: str | Path, positives: Sequence[tuple[str, str, str | None]],
    negatives: Sequence[tuple[str, str, str | None]] = (), *, k: int = 10, params: SearchParams | None = None,
    c: float = 1.0, background_size: int = BACKGROUND, device: str = "cpu", seed: int = 0,
    map_scenes: int = MAP_SCENES,
) -> SearchResult:
    """Search ``index`` for the ``k`` tiles most like ``positives`` (and unlike ``negatives``), each given as
    (option, text, kind: id | lonlat | file | None to guess). Writes ``out/hits.geojson``, ``out/hits.csv`` and
    ``out/contact_sheet.png`` (with map panels of up to ``map_scenes`` scenes holding georeferenced hits)."""
    params, out = params or SearchParams(), Path(out)
    if not positives:
        raise UserError("no query: expected --query FILE, --lonlat LON,LAT, --id N or --positive")
    if k < 1:
        raise UserError(f"--k {k}: expected a positive number of hits")
    state, embeddings, table = load_index(index)
    if state.tiles == 0:
        raise DataError(f"{index}: the index holds no tiles")
    examples = read_files([parse_example(text, option, table, kind) for option, text, kind in positives], state)
    counter = read_files([parse_example(text, option, table, kind) for option, text, kind in negatives], state)
    vectors = example_vectors([*examples, *counter], state, embeddings, device)  # one encoder for all files
    pos, neg = vectors[:len(examples)], vectors[len(examples):]
    knn = neighbour_index(embeddings, params, Path(index) / CACHE_DIR)
    if len(pos) == 1 and not counter:
        mode, neg_count = "similarity", 0
        scores, ids = search(knn, pos, k)
        scores, ids = scores[0], ids[0]
    else:
        mode = "classifier"
        if not counter:
            neg = embeddings[background(len(embeddings), {e.tile for e in examples if e.tile is not None},
                                        background_size, seed)].astype(np.float32)
        neg_count = len(neg)
        w, b = classifier_query(pos, neg, embeddings, c, seed)
        raw, found = search(knn, w[None], k)
        scores, ids = 1.0 / (1.0 + np.exp(-(raw[0].astype(np.float64) + b))), found[0]
    keep = ids >= 0
    hits = hit_rows(table, ids[keep], scores[keep])
    write_hits(out, hits)
    _sheet(out / SHEET, state, table, examples, counter, hits, f"{mode}: {len(pos)} positive(s), " + (
        f"{len(counter)} negative(s)" if counter else f"background of {neg_count}" if neg_count else "no negatives"),
        map_scenes)
    kind = "exact (IndexFlatIP)" if knn.ntotal < params.exact_below else \
        f"IVF (IndexIVFFlat, nlist {knn.nlist}, nprobe {knn.nprobe})"
    return SearchResult(hits, mode, len(pos), neg_count, kind)


def _sheet(path: Path, state: IndexState, table: pa.Table, positives: list[Example], negatives: list[Example],
           hits: list[dict[str, Any]], title: str, map_scenes: int) -> None:
    """The contact sheet: the examples (+ / −), then the hits with rank, id and score; maps of the scenes of the
    first ``SHEET_HITS`` hits."""
    reader = TileReader(state)

    def pixels(ex: Example) -> torch.Tensor | None:
        if ex.pixels is not None:
            return ex.pixels
        row = table.slice(ex.tile, 1).to_pylist()[0]
        return reader.read(row["scene"], row["row"], row["col"])

    queries = [Thumb(f"{sign} {e.text if e.tile is not None else Path(e.text).name}", pixels(e))
               for sign, group in (("+", positives), ("−", negatives)) for e in group]
    thumbs = [Thumb(f"#{h['rank']} id {h['id']} · {h['score']:.3f}", reader.read(h["scene"], h["row"], h["col"]))
              for h in hits[:SHEET_HITS]]
    names = reader.names(hits[0]["scene"]) if hits else None
    rgb = rgb_bands(int(state.encoder["in_chans"]), names)
    tiles = [(sign, table.slice(e.tile, 1).to_pylist()[0]) for sign, group in (("+", positives), ("−", negatives))
             for e in group if e.tile is not None]
    maps = map_panels(hits[:SHEET_HITS], tiles, reader, rgb, map_scenes) if map_scenes else []
    write_contact_sheet(path, queries, thumbs, rgb, title, maps)
