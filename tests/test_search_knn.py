"""FAISS search of ``ssl-siam search``: the exact index equals brute force, the IVF index is cached in the index
folder and rebuilt when the index grows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssl_siam.core.errors import UserError
from ssl_siam.search import knn
from ssl_siam.search.knn import SearchParams, exact_index, neighbour_index, search


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(rng: np.random.Generator, n: int, d: int, clusters: int = 20) -> np.ndarray:
    centres = _unit(rng, clusters, d)
    x = centres[rng.integers(clusters, size=n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_equals_brute_force_numpy() -> None:
    rng = np.random.default_rng(0)
    vectors, queries = _unit(rng, 3000, 64), _unit(rng, 25, 64)
    scores, ids = search(exact_index(vectors), queries, 10)
    brute = queries @ vectors.T  # [Q, N]
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), rtol=0, atol=1e-6)
    assert search(exact_index(vectors[:5]), queries, 10)[1].shape == (25, 5)  # k is capped at N


def test_small_indexes_are_exact_large_ones_ivf_cached_and_rebuilt_when_grown(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch
                                                                                ) -> None:
    rng = np.random.default_rng(1)
    vectors = _clustered(rng, 2400, 32)
    params = SearchParams(exact_below=1000, nlist=16, nprobe=16)
    assert neighbour_index(vectors[:999], params, tmp_path).ntotal == 999 and not (tmp_path / "ivf.json").exists()
    ivf = neighbour_index(vectors[:2000], params, tmp_path)
    assert (ivf.nlist, ivf.nprobe, ivf.ntotal) == (16, 16, 2000) and (tmp_path / "ivf.faiss").is_file()
    queries = vectors[:20]
    # every cell visited: the IVF ranks as the exact index does
    np.testing.assert_array_equal(search(ivf, queries, 5)[1], search(exact_index(vectors[:2000]), queries, 5)[1])

    def no_build(*args: object) -> None:
        raise AssertionError("the cached IVF index should have been read")

    monkeypatch.setattr(knn, "ivf_index", no_build)
    cached = neighbour_index(vectors[:2000], SearchParams(exact_below=1000, nlist=16, nprobe=4), tmp_path)
    assert (cached.ntotal, cached.nprobe) == (2000, 4)  # read back; nprobe is a search-time setting
    monkeypatch.undo()
    grown = neighbour_index(vectors, params, tmp_path)  # the index grew: rebuilt and cached anew
    assert grown.ntotal == 2400
    assert '"vectors": 2400' in (tmp_path / "ivf.json").read_text()


def test_default_cells_and_bad_parameters() -> None:
    assert SearchParams().cells(1_000_000) == 4000 and SearchParams(nlist=64).cells(10) == 10
    with pytest.raises(UserError, match="nprobe"):
        SearchParams(nprobe=0)
