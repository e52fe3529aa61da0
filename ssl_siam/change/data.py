"""What a finetuning reads: its layout (checked against the task), its pairs split into training and
validation (the crop datasets are the task's: ``ChangeTask.dataset``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ssl_siam.change.config import FinetuneConfig
from ssl_siam.change.datasets import LAYOUTS, detect_format, find_change_pairs
from ssl_siam.change.tasks import ChangeTask
from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.data.cache import DecodedCache, decoded
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.xbd.targets import ensure_targets

log = logging.getLogger(__name__)


def resolve_format(cfg: FinetuneConfig, task: ChangeTask) -> str:
    """``data.format``, detected from the first ``data.root`` when ``auto``; checked against ``task`` (the run's,
    resolved once where the run or study is built) and, when set, against that root (a pairs CSV given to the
    ``levir`` recipe is a one-line error naming ``pairs-csv``)."""
    if not cfg.data.root:
        raise ConfigError("data.root is required: one or more split directories (or an OSCD root, a pairs CSV)")
    root = Path(cfg.data.root[0])
    fmt = detect_format(root) if cfg.data.format == "auto" else cfg.data.format
    if not LAYOUTS.get(fmt).detect(root) and (found := _detected(root)) not in (None, fmt):
        raise ConfigError(f"data.root {root} is laid out as {found}, not data.format={fmt}; set "
                          f"data.format={found} (or auto)")
    if fmt not in task.layouts():
        raise ConfigError(f"data.format={fmt} does not fit task={task.name}: it needs {' | '.join(task.layouts())} "
                          "data")
    return fmt


def _detected(root: Path) -> str | None:
    """The layout ``root`` is detected as, None when it cannot be told."""
    try:
        return detect_format(root)
    except DataError:
        return None


def find_records(cfg: FinetuneConfig, fmt: str, roots: list[str], cache_dir: Path,
                 test: bool = False) -> list[PairRecord]:
    """The pairs of ``roots`` in layout ``fmt`` (``test``: OSCD's test cities)."""
    return find_change_pairs(roots, fmt, cache_dir, test=test, bands=cfg.data.oscd_bands, skip_bad=cfg.data.skip_bad)


def unlabeled_records(cfg: FinetuneConfig, fmt: str, cache_dir: Path) -> list[PairRecord]:
    """``data.synthetic_change``: every pair of ``data.root`` (all of a layout's splits: OSCD's 24 cities), or
    ``data.train_ids`` of them, masks neither needed nor used; no validation pairs (there are no labels to score)."""
    d = cfg.data
    records = find_change_pairs(d.root, fmt, cache_dir, bands=d.oscd_bands, masks="none", skip_bad=d.skip_bad,
                                every_split=True)
    by_id = {r.id: r for r in records}
    _check_ids(by_id, "data.train_ids", d.train_ids, d.root)
    if d.train_ids is not None:
        records = [by_id[i] for i in sorted(set(d.train_ids))]
    log.info("data.synthetic_change: %d unlabeled pairs train, labels not used, no validation", len(records))
    return _from_cache(cfg, records)


def _check_ids(by_id: dict[str, PairRecord], key: str, ids: list[str] | None, root: list[str]) -> None:
    """A ConfigError naming ``key`` and its first id that is not a pair of ``root``."""
    if missing := [i for i in ids or () if i not in by_id]:
        raise ConfigError(f"{key}: {missing[0]} is not a pair of data.root {root} (its pairs: "
                          f"{', '.join(sorted(by_id)[:20])})")


def _from_cache(cfg: FinetuneConfig, records: list[PairRecord]) -> list[PairRecord]:
    """``records`` read from their decoded copies in ``data.cache_dir`` (PNG / JPEG; unchanged without one)."""
    if not cfg.data.cache_dir:
        return records
    return decoded(DecodedCache(Path(cfg.data.cache_dir)), records, max(1, cfg.data.num_workers))


def split_records(cfg: FinetuneConfig, fmt: str, cache_dir: Path) -> tuple[list[PairRecord], list[PairRecord]]:
    """Training and validation pairs — validation: ``data.val_ids`` of ``data.root``, else ``data.val_root``, else a
    seeded ``val_fraction`` of the ids; training: ``data.train_ids`` when given, else the rest — with xBD target
    masks rasterised into ``cache_dir``."""
    d = cfg.data
    records = find_records(cfg, fmt, d.root, cache_dir)
    by_id = {r.id: r for r in records}
    for key, ids in (("data.train_ids", d.train_ids), ("data.val_ids", d.val_ids)):
        _check_ids(by_id, key, ids, d.root)
    if d.val_ids is not None and d.val_root:
        raise ConfigError("data.val_ids and data.val_root both set: validate on pairs of data.root (val_ids) or on "
                          "data.val_root, not both (set one to null / [])")
    if both := sorted(set(d.train_ids or ()) & set(d.val_ids or ())):
        raise ConfigError(f"data.train_ids and data.val_ids share {both[0]}: a pair trains or validates, not both")
    if d.train_ids is not None:
        records = [by_id[i] for i in sorted(set(d.train_ids))]
    if d.val_ids is not None:
        val = [by_id[i] for i in d.val_ids]
        records = [r for r in records if r.id not in set(d.val_ids)]
    elif d.val_root:
        val = find_records(cfg, fmt, d.val_root, cache_dir, test=True)
    else:
        order = np.random.default_rng(cfg.train.seed).permutation(len(records))
        n_val = min(max(round(cfg.data.val_fraction * len(records)), 1), len(records) - 1)
        if cfg.data.val_fraction <= 0 or n_val == 0:
            n_val = 0
            log.warning("no validation pairs (data.val_fraction=%s of %d pairs): validation is skipped",
                        cfg.data.val_fraction, len(records))
        val = [records[i] for i in sorted(order[:n_val])]
        records = [records[i] for i in sorted(order[n_val:])]
    if not records:
        raise ConfigError(f"data.root {cfg.data.root}: no training pairs left after holding out validation pairs")
    kwargs = dict(unclassified="ignore", ignore_index=cfg.data.ignore_index, workers=max(1, cfg.data.num_workers))
    records, val = ensure_targets(records, cache_dir, **kwargs), ensure_targets(val, cache_dir, **kwargs)
    return _from_cache(cfg, records), _from_cache(cfg, val)  # images and masks from their decoded, windowed copies

