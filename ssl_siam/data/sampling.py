"""Reproducible sampling: a resumable, shardable index sampler (batch ``k`` of epoch ``e`` is the same whatever
happened before) and generators seeded from integers (run seed, sample index, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler


class ResumableSampler(Sampler[int]):
    """Yields ``epoch * n + perm_e[i]`` so stateless datasets can seed per-sample randomness from the index.

    ``set_epoch(epoch, start_batch)`` positions the sampler; with ``num_replicas > 1`` each rank takes a
    disjoint stride of the permutation (as ``DistributedSampler``). Only whole batches are produced.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, num_replicas: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.num_replicas = rank, num_replicas
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.num_replicas // self.batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            perm = torch.arange(self.n)
        mine = perm[self.rank :: self.num_replicas][: self.batches_per_epoch * self.batch_size]
        offset = self.epoch * self.n
        for i in mine[self.start_batch * self.batch_size :].tolist():
            yield offset + i


class IndexedDataset(torch.utils.data.Dataset):
    """Wraps a dataset so samples come as ``(index, sample)``: the index seeds batch-level randomness."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, object]:
        return index, self.dataset[index]


def make_loader(dataset: torch.utils.data.Dataset, sampler: ResumableSampler, *, num_workers: int, pin_memory: bool,
                prefetch_factor: int, collate_fn: Callable | None = None) -> DataLoader:
    """The DataLoader both training pipelines use: whole batches from ``sampler``, persistent prefetching workers."""
    extra = dict(persistent_workers=True, prefetch_factor=prefetch_factor) if num_workers > 0 else {}
    return DataLoader(dataset, batch_size=sampler.batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_fn, drop_last=True, pin_memory=pin_memory, **extra)


def seeded_generator(device: torch.device, *seed_parts: int) -> torch.Generator:
    """A generator on ``device`` seeded from integers (e.g. run seed, step, micro-batch)."""
    seed = 0
    for part in seed_parts:
        seed = (seed * 1_000_003 + int(part)) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(seed)
