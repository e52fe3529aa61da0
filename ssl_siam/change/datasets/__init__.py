"""Change datasets, one file per published layout; importing this package registers them in ``LAYOUTS``."""

from ssl_siam.change.datasets import folders, oscd, pairs_csv, second, xbd  # noqa: F401
from ssl_siam.change.datasets.base import (
    LAYOUTS,
    OSCD_BANDS,
    PairLayout,
    ReadOptions,
    data_format,
    detect_format,
    find_change_pairs,
)

__all__ = ["LAYOUTS", "OSCD_BANDS", "PairLayout", "ReadOptions", "data_format", "detect_format",
           "find_change_pairs"]
