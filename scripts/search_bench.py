"""Scale of the search index (docs/search.md): build time, index memory and single-query latency (p50 / p99) of
the exact (IndexFlatIP) and the approximate (IVF) index of ``ssl-siam search``, with the IVF's recall@k against
exact, at N synthetic embeddings.

    python scripts/search_bench.py OUT.json [--sizes 10000 100000 1000000] [--dim 512] [--queries 200] [--k 10]
        [--nprobe 8 16 32] [--nlist N] [--clusters 1000] [--spread 0.5] [--threads T] [--seed 0]

Embeddings: unit vectors around ``--clusters`` random unit centres (centre + ``--spread`` · Gaussian noise of unit
expected norm, renormalised; ``--clusters 0``: uniform on the sphere, the worst case of any approximate index,
unlike clustered SSL embeddings), rounded to float16 as the index stores them; queries are further draws of the
same mixture, not in the index. Both indexes are built with the functions ``ssl-siam search`` uses
(``ssl_siam.search.knn``); latencies are of one query at a time (``index.search`` on [1, D]) after 5 warm-up
queries, on ``--threads`` FAISS threads (default: FAISS's, one per core). Memory is the serialised size of the
FAISS index. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def mixture(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float) -> np.ndarray:
    """[n, D] float16 unit vectors: a random centre each, plus spread · N(0, I/D), renormalised (no centres:
    uniform on the sphere)."""
    out = np.empty((n, centres.shape[1]), np.float16)
    for start in range(0, n, 1 << 16):
        m = min(1 << 16, n - start)
        x = centres[rng.integers(len(centres), size=m)] if len(centres) else np.zeros((m, centres.shape[1]), np.float32)
        x = x + (spread if len(centres) else 1.0) * rng.standard_normal(x.shape, dtype=np.float32) / np.sqrt(x.shape[1])
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latencies(index: object, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids [Q, k], per-query seconds [Q]) of single-query searches."""
    for q in queries[:5]:
        index.search(q[None], k)
    ids, seconds = [], []
    for q in queries:
        start = time.perf_counter()
        ids.append(index.search(q[None], k)[1][0])
        seconds.append(time.perf_counter() - start)
    return np.array(ids), np.array(seconds)


def measure(n: int, args: argparse.Namespace) -> list[dict[str, object]]:
    import faiss

    from ssl_siam.search.knn import SearchParams, exact_index, ivf_index

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = mixture(rng, centres, n, args.spread)
    queries = mixture(rng, centres, args.queries, args.spread).astype(np.float32)
    rows = []
    start = time.perf_counter()
    exact = exact_index(vectors)
    build = time.perf_counter() - start
    truth, seconds = latencies(exact, queries, args.k)
    rows.append({"n": n, "index": "exact IndexFlatIP", "build_s": build,
                 "memory_mb": faiss.serialize_index(exact).nbytes / 2**20, "p50_ms": 1e3 * np.percentile(seconds, 50),
                 "p99_ms": 1e3 * np.percentile(seconds, 99), "recall": 1.0})
    del exact
    nlist = SearchParams(nlist=args.nlist).cells(n)
    start = time.perf_counter()
    ivf = ivf_index(vectors, nlist, args.seed)
    build = time.perf_counter() - start
    memory = faiss.serialize_index(ivf).nbytes / 2**20
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        ids, seconds = latencies(ivf, queries, args.k)
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ids, truth)])
        rows.append({"n": n, "index": f"IVF nlist {nlist} nprobe {nprobe}", "build_s": build, "memory_mb": memory,
                     "p50_ms": 1e3 * np.percentile(seconds, 50), "p99_ms": 1e3 * np.percentile(seconds, 99),
                     "recall": float(recall)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="JSON file of the rows")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--nlist", type=int, help="IVF cells (default: ssl-siam search's)")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--threads", type=int, help="FAISS threads (default: FAISS's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    rows = []
    print(f"| N | index | build s | memory MB | p50 ms | p99 ms | recall@{args.k} |\n|---|---|---|---|---|---|---|")
    for n in args.sizes:
        for row in measure(n, args):
            rows.append(row)
            print(f"| {n:,} | {row['index']} | {row['build_s']:.2f} | {row['memory_mb']:.0f} | {row['p50_ms']:.2f} "
                  f"| {row['p99_ms']:.2f} | {row['recall']:.3f} |", flush=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
