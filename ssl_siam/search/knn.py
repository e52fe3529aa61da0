"""Nearest-neighbour search over an index's unit embeddings with FAISS (Johnson et al. 2019).

Below ``exact_below`` vectors the search is exact: ``IndexFlatIP``, inner product = cosine similarity of the unit
embeddings, the same ids and scores as brute-force numpy. From there on it is approximate: an inverted file of
``nlist`` spherical k-means cells (``IndexIVFFlat``, inner product; default ``nlist`` = 4·√N, trained on up to
64 vectors per cell), of which ``nprobe`` are visited per query. The trained index is cached in
``INDEX/faiss/`` and rebuilt when the index has grown or ``nlist`` changed.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_siam.core.errors import UserError
from ssl_siam.core.files import atomic_path

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs its SIMD probing at INFO
import faiss  # noqa: E402

EXACT_BELOW = 100_000  # vectors: IndexFlatIP below this, IVF at and above
NPROBE = 32  # IVF cells visited per query
TRAIN_PER_CELL = 64  # k-means training vectors per IVF cell (FAISS warns below 39; 256 is its cap)
CACHE_DIR = "faiss"


@dataclass(frozen=True)
class SearchParams:
    """How the index is searched: exact below ``exact_below`` vectors, else IVF with ``nlist`` cells (None: 4·√N)
    and ``nprobe`` of them visited per query."""

    exact_below: int = EXACT_BELOW
    nlist: int | None = None
    nprobe: int = NPROBE

    def __post_init__(self) -> None:
        if self.exact_below < 0 or self.nprobe < 1 or (self.nlist is not None and self.nlist < 1):
            raise UserError(f"--exact-below {self.exact_below} / --nlist {self.nlist} / --nprobe {self.nprobe}: "
                            "expected a count >= 0 and positive cells")

    def cells(self, n: int) -> int:
        """IVF cells for ``n`` vectors: ``nlist`` or 4·√N, at most N."""
        return min(self.nlist or max(1, round(4 * math.sqrt(n))), n)


def exact_index(vectors: np.ndarray) -> faiss.Index:
    """``IndexFlatIP`` over ``vectors`` [N, D] (cast to float32)."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def ivf_index(vectors: np.ndarray, nlist: int, seed: int = 0) -> faiss.IndexIVFFlat:
    """``IndexIVFFlat`` (inner product) over ``vectors`` [N, D]: spherical k-means of ``nlist`` cells on a seeded
    sample of ``TRAIN_PER_CELL`` · nlist vectors, then every vector added to its cell."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical, index.cp.seed = True, seed
    index.cp.max_points_per_centroid = TRAIN_PER_CELL
    rng = np.random.default_rng(seed)
    sample = vectors if len(vectors) <= TRAIN_PER_CELL * nlist else \
        vectors[np.sort(rng.choice(len(vectors), TRAIN_PER_CELL * nlist, replace=False))]
    index.train(sample)
    for start in range(0, len(vectors), 1 << 16):  # blocks: the float32 copy is the only full-size temporary
        index.add(vectors[start:start + (1 << 16)])
    return index


def neighbour_index(vectors: np.ndarray, params: SearchParams, cache: Path | None = None) -> faiss.Index:
    """The index to search ``vectors`` with: exact below ``params.exact_below``, else IVF, read from ``cache``
    (a folder) when it holds one built for these N vectors and cells, else built and written there."""
    n = len(vectors)
    if n < params.exact_below:
        return exact_index(vectors)
    nlist = params.cells(n)
    meta = {"kind": "IndexIVFFlat", "metric": "inner_product", "vectors": n, "nlist": nlist,
            "faiss": faiss.__version__}
    if cache is not None and (cache / "ivf.json").is_file() and (cache / "ivf.faiss").is_file():
        if json.loads((cache / "ivf.json").read_text()) == meta:
            index = faiss.read_index(str(cache / "ivf.faiss"))
            if index.ntotal == n:
                index.nprobe = params.nprobe
                return index
    index = ivf_index(vectors, nlist)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "ivf.json").unlink(missing_ok=True)
        with atomic_path(cache / "ivf.faiss") as tmp:
            faiss.write_index(index, str(tmp))
        (cache / "ivf.json").write_text(json.dumps(meta, indent=1))  # written last: it validates the file
    index.nprobe = params.nprobe
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k] float32 inner products, ids [Q, k] int64) of the ``k`` best vectors per query, best first
    (at most N; an IVF search visiting too few cells pads with id -1, which is dropped by the caller)."""
    k = min(k, index.ntotal)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

