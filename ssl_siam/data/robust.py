"""Long runs that survive a few bad files: skip unreadable samples, count them, fail past a threshold."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from ssl_siam.core.errors import DataError

log = logging.getLogger(__name__)


class SkipBad(torch.utils.data.Dataset):
    """Wraps a stateless dataset: a sample whose read raises :class:`DataError` is logged (with the file name)
    and replaced by another one (a deterministic function of the index, so resume stays exact). More than
    ``max_bad_fraction`` bad reads (after ``min_reads``, counted per process) stop the run with a DataError."""

    def __init__(self, dataset: torch.utils.data.Dataset, max_bad_fraction: float = 0.01, min_reads: int = 100,
                 max_tries: int = 10) -> None:
        self.dataset, self.max_bad_fraction = dataset, max_bad_fraction
        self.min_reads, self.max_tries = min_reads, max_tries
        self.reads = self.bad = 0

    def __getattr__(self, name: str) -> object:  # num_bands, dtype, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> object:
        return self._retry(self.dataset.__getitem__, index)

    def read_tile(self, index: int) -> object:
        """The wrapped dataset's ``read_tile`` (tile + valid mask, used by ``compute_stats``), bad reads skipped."""
        return self._retry(self.dataset.read_tile, index)  # type: ignore[attr-defined]

    def _retry(self, read: Callable[[int], object], index: int) -> object:
        n = len(self)
        for attempt in range(self.max_tries):
            self.reads += 1
            try:
                return read(index + attempt * 7919 * n)  # a different sample on each retry
            except DataError as exc:
                self.bad += 1
                log.warning("skipped bad sample %d (%d of %d reads so far): %s", index, self.bad, self.reads, exc)
                if self.reads >= self.min_reads and self.bad > self.max_bad_fraction * self.reads:
                    raise DataError(f"{self.bad} of {self.reads} samples unreadable (> data.max_bad_fraction="
                                    f"{self.max_bad_fraction}); last: {exc}") from None
        raise DataError(f"sample {index}: {self.max_tries} replacement samples in a row were unreadable")
