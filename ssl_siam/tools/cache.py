"""``ssl-siam cache``: fill (or check) a decoded cache for the sources a training will read — tile folders, globs
and files of ``ssl-siam pretrain``, or pair datasets (xBD splits, whose label JSONs are rasterised into masks
first, and the change-detection layouts) of ``ssl-siam finetune`` — so the training's ``data.cache_dir`` finds
every entry built."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ssl_siam.change.datasets import detect_format, find_change_pairs
from ssl_siam.core.errors import DataError
from ssl_siam.data.cache import DecodedCache, check_cache
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.sources import resolve_sources
from ssl_siam.data.xbd.pairs import find_pairs
from ssl_siam.data.xbd.targets import ensure_targets

_PAIR_FIELDS = ("pre_image", "post_image", "damage_target", "loc_target")


@dataclass
class CacheReport:
    """What a cache run found and did."""

    sources: int = 0  # files that the cache decodes
    built: int = 0  # entries written by this run
    seconds: float = 0.0
    bytes: int = 0  # disk used by the entries of these sources
    pairs: int = 0  # pairs among the sources (pair datasets)
    problems: list[str] = field(default_factory=list)  # --check

    def summary(self) -> str:
        if self.pairs and not self.sources:  # e.g. OSCD: GeoTIFF bands, stacked as VRTs, labels as GeoTIFFs
            return (f"{self.pairs} pairs, nothing to decode: their GeoTIFF / VRT sources are read window by window "
                    "(band stacks and label masks are prepared in the cache folder)")
        size = f"{self.bytes / 2**20:.1f} MiB"
        per = f", {self.bytes / self.pairs / 2**20:.2f} MiB per pair" if self.pairs else (
            f", {self.bytes / max(self.sources, 1) / 2**20:.2f} MiB per file")
        return (f"{self.sources} files ({self.built} decoded now, {self.seconds:.1f} s), {size} on disk{per}")


def _is_pair_dataset(root: Path) -> bool:
    try:
        detect_format(root)
    except DataError:
        return False
    return True


def pair_sources(root: Path, out: Path, ignore_index: int = 255, workers: int = 1) -> list[PairRecord]:
    """The pairs of a pair dataset with their target masks (xBD: rasterised into ``out`` where missing or older
    than their label, as ``ssl-siam finetune data.cache_dir=OUT`` does)."""
    fmt = detect_format(root)
    if fmt != "xbd":
        return find_change_pairs([root], fmt, out)
    records, _ = find_pairs(root)
    return ensure_targets(records, out, unclassified="ignore", ignore_index=ignore_index, workers=workers)


def cache_sources(sources: Sequence[str], out: Path, workers: int = 1, check: bool = False) -> CacheReport:
    """Decode every PNG / JPEG of ``sources`` into ``out`` (``check``: verify the entries instead of building
    them; xBD masks are rasterised either way)."""
    cache, report = DecodedCache(Path(out)), CacheReport()
    files: list[Path] = []
    for source in sources:
        root = Path(source)
        if root.is_dir() and _is_pair_dataset(root):
            records = pair_sources(root, Path(out), workers=workers)
            files += [getattr(r, f) for r in records for f in _PAIR_FIELDS if getattr(r, f) is not None]
            report.pairs += len(records)
        else:
            files += [p for paths in resolve_sources(source, None) for p in paths]
    entries = cache.entries(files, workers)
    report.sources = len(entries)
    start = time.perf_counter()
    if check:
        report.problems = check_cache(cache, list(entries), workers)
    else:
        report.built = sum(not e.is_file() for e in entries.values())
        cache.paths(list(entries), workers=workers, progress=True)
    report.seconds = time.perf_counter() - start
    report.bytes = sum(e.stat().st_size for e in set(entries.values()) if e.is_file())
    return report
