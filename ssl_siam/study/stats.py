"""Aggregates of repeated runs: mean, sample std and a two-sided 95 % Student-t confidence interval, and the same
for paired differences (one difference per seed, so seed-to-seed variation common to both arms cancels)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy.stats import t as student_t


def summarize(values: Sequence[float]) -> dict[str, float | int | list[float] | None]:
    """``n``, ``mean``, ``std`` (ddof 1) and ``ci95`` = mean ± t(0.975, n − 1) · std / √n; std and CI are None
    for a single value (one seed is an anecdote)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    mean = math.fsum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(student_t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


def paired_difference(a: dict[int, float], b: dict[int, float]) -> dict[str, float | int | list[float] | None]:
    """Summary of ``a[s] − b[s]`` over the seeds ``s`` both have."""
    return summarize([a[s] - b[s] for s in sorted(a.keys() & b.keys())])
