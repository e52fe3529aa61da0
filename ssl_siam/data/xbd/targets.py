"""xView2 target masks rasterised once from the label JSONs and cached as PNGs, never stale."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ssl_siam.core.errors import DataError
from ssl_siam.core.files import atomic_path
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.xbd.labels import damage_mask, load_label, localization_mask

_PARALLEL_FROM = 16  # fewer pairs are rasterised in this process


class MaskCache:
    """xView2-style target PNGs rasterised once from the label JSONs, rewritten only when missing or older.

    Kept per split directory (``<cache>/<split name>-<hash of its path>/``) so equal ids never collide.

    ``<id>_damage_target.png`` (post JSON: 0 background, 1-4 damage, un-classified → ``ignore_index`` or 1) and
    ``<id>_localization_target.png`` (pre JSON: 0/1); ``settings.txt`` keeps a cache from other settings' use.
    """

    def __init__(self, cache_dir: str | Path, unclassified: str = "ignore", ignore_index: int = 255) -> None:
        if unclassified not in ("ignore", "no-damage"):
            raise ValueError(f"unclassified must be 'ignore' or 'no-damage', got {unclassified!r}")
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"ignore_index must fit a uint8 PNG (0..255), got {ignore_index}")
        self.dir, self.unclassified, self.ignore_index = Path(cache_dir), unclassified, ignore_index
        self.dir.mkdir(parents=True, exist_ok=True)
        settings, text = self.dir / "settings.txt", f"unclassified={unclassified} ignore_index={ignore_index}\n"
        if not settings.exists():
            _atomic_write(settings, text)
        elif settings.read_text() != text:
            raise DataError(f"{settings}: cache made with {settings.read_text().strip()}, expected {text.strip()}")

    def ensure(self, record: PairRecord) -> PairRecord:
        """``record`` with ``damage_target`` / ``loc_target`` set; records that already have targets pass."""
        if record.damage_target is not None:
            return record
        if record.pre_label is None or record.post_label is None:
            raise DataError(f"{record.post_image}: no label JSONs to rasterise, expected pre and post labels")
        # one sub-folder per split directory: ids repeat across datasets (and across synthetic splits)
        split = Path(record.split_dir).resolve()
        folder = self.dir / f"{split.name}-{hashlib.sha1(str(split).encode()).hexdigest()[:8]}"
        folder.mkdir(exist_ok=True)
        damage = folder / f"{record.id}_damage_target.png"
        loc = folder / f"{record.id}_localization_target.png"
        if _stale(damage, record.post_label):
            _atomic_write(damage, damage_mask(load_label(record.post_label), self.unclassified, self.ignore_index))
        if _stale(loc, record.pre_label):
            _atomic_write(loc, localization_mask(load_label(record.pre_label)))
        return replace(record, damage_target=damage, loc_target=loc)


def ensure_targets(
    records: Sequence[PairRecord], cache_dir: str | Path, unclassified: str = "ignore", ignore_index: int = 255,
    workers: int = 1,
) -> list[PairRecord]:
    """Records with target paths, rasterising JSON-labelled pairs into ``cache_dir`` where needed, by ``workers``
    processes when many need it (an interrupted run resumes: finished masks are kept, each written atomically)."""
    cache = MaskCache(cache_dir, unclassified, ignore_index)
    todo = [r for r in records if r.damage_target is None]
    if workers <= 1 or len(todo) < _PARALLEL_FROM:
        return [cache.ensure(record) for record in records]
    with ProcessPoolExecutor(workers) as pool:
        done = dict(zip(map(id, todo), tqdm(pool.map(cache.ensure, todo, chunksize=8), total=len(todo),
                                            desc="rasterising masks", unit="pair")))
    return [done.get(id(r), r) for r in records]


def _stale(target: Path, source: Path) -> bool:
    return not target.exists() or target.stat().st_mtime_ns < source.stat().st_mtime_ns


def _atomic_write(path: Path, data: np.ndarray | str) -> None:
    """Write a PNG (array) or text to a temporary file, then rename: concurrent workers never see half a file."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            Image.fromarray(data).save(tmp, format="PNG")
