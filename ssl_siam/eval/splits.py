"""Seeded train / test splits: stratified by class, or by image (and disaster) so no image is on both sides."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssl_siam.core.errors import DataError


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """[N] bool, True for the held-out ``fraction`` of each class (rounded; at least one sample of a class with
    two or more, never all of a class, so every class with two samples is on both sides)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    held = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng(seed)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(max(round(len(members) * fraction), 1), len(members) - 1)
        held[rng.choice(members, size=count, replace=False)] = True
    return held


def group_split(groups: Sequence[str], domains: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """[N] bool, True for the test samples: whole domains (disasters) when there are two or more, otherwise whole
    groups (images); about ``fraction`` of them, at least one and never all. A group is never split."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    groups, domains = np.asarray(groups, dtype=object), np.asarray(domains, dtype=object)
    units = domains if len(set(domains)) >= 2 else groups
    names = sorted(set(units))
    if len(names) < 2:
        raise DataError(f"only one image ({names[0] if names else 'none'}) to split by image: expected two or more "
                        "images, or a test split given with --val-data")
    count = min(max(round(len(names) * fraction), 1), len(names) - 1)
    test = np.random.default_rng(seed).permutation(len(names))[:count]
    return np.isin(units, [names[i] for i in test])
