"""What a finetuning task reads: its layout (xBD, a binary or a semantic change benchmark), its pairs split into
training and validation, and the crop dataset with the task's classes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ssl_siam.core.errors import ConfigError
from ssl_siam.damage.config import FinetuneConfig
from ssl_siam.data.cache import DecodedCache, decoded
from ssl_siam.data.change import CHANGE_FORMATS, CHANGE_MASK_MAP, SEMANTIC_FORMATS, detect_format, find_change_pairs
from ssl_siam.data.semantic import NUM_CODES
from ssl_siam.data.xbd.dataset import XBDPairDataset
from ssl_siam.data.xbd.pairs import PairRecord, find_pairs
from ssl_siam.data.xbd.targets import ensure_targets

log = logging.getLogger(__name__)
TASK_CLASSES = {"damage": 5, "binary": 2, "semantic": 2}  # damage: background, no / minor / major damage, destroyed
TASK_FORMATS = {"damage": ("xbd",), "binary": CHANGE_FORMATS, "semantic": SEMANTIC_FORMATS}


def num_classes(cfg: FinetuneConfig) -> int:
    """Classes of the change head: ``model.num_classes``, or the task's; binary and semantic change have 2."""
    n = cfg.model.num_classes or TASK_CLASSES[cfg.task]
    if cfg.task != "damage" and n != 2:
        raise ConfigError(f"model.num_classes={n}: task={cfg.task} has 2 change classes (no change, change)")
    return n


def resolve_format(cfg: FinetuneConfig) -> str:
    """``data.format``, detected from the first ``data.root`` when ``auto``; checked against the task."""
    if not cfg.data.root:
        raise ConfigError("data.root is required: one or more split directories (or an OSCD root, a pairs CSV)")
    fmt = detect_format(Path(cfg.data.root[0])) if cfg.data.format == "auto" else cfg.data.format
    if fmt not in TASK_FORMATS[cfg.task]:
        want = " | ".join(TASK_FORMATS[cfg.task])
        raise ConfigError(f"data.format={fmt} does not fit task={cfg.task}: it needs {want} data")
    return fmt


def find_records(cfg: FinetuneConfig, fmt: str, roots: list[str], cache_dir: Path,
                 test: bool = False) -> list[PairRecord]:
    """The pairs of ``roots`` in layout ``fmt`` (``test``: OSCD's test cities)."""
    if fmt != "xbd":
        return find_change_pairs(roots, fmt, cache_dir, test=test, bands=cfg.data.oscd_bands)
    records, skipped = find_pairs(roots, skip_bad=cfg.data.skip_bad)
    for reason in skipped:
        log.warning("skipped: %s", reason)
    return records


def split_records(cfg: FinetuneConfig, fmt: str, cache_dir: Path) -> tuple[list[PairRecord], list[PairRecord]]:
    """Training and validation pairs (explicit ``data.val_root`` or a seeded ``val_fraction`` of the ids; only
    ``data.train_ids`` of ``data.root`` when given), with xBD target masks rasterised into ``cache_dir``."""
    records = find_records(cfg, fmt, cfg.data.root, cache_dir)
    if cfg.data.train_ids is not None:
        by_id = {r.id: r for r in records}
        if missing := [i for i in cfg.data.train_ids if i not in by_id]:
            raise ConfigError(f"data.train_ids: {missing[0]} is not a pair of data.root {cfg.data.root}")
        records = [by_id[i] for i in sorted(set(cfg.data.train_ids))]
    if cfg.data.val_root:
        val = find_records(cfg, fmt, cfg.data.val_root, cache_dir, test=True)
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
    if cfg.data.cache_dir:  # read PNG / JPEG images and masks from their decoded, windowed copies
        cache = DecodedCache(Path(cfg.data.cache_dir))
        records, val = (decoded(cache, r, max(1, cfg.data.num_workers)) for r in (records, val))
    return records, val



def pair_dataset(cfg: FinetuneConfig, fmt: str, records: list[PairRecord], train: bool) -> XBDPairDataset:
    """Random training crops (``train``) or whole evaluation images of ``records``, with the task's classes."""
    d = cfg.data
    classes = NUM_CODES if cfg.task == "semantic" else num_classes(cfg)  # semantic: label1 · 7 + label2 codes
    common = dict(bands=d.bands, post_bands=d.post_bands, ignore_index=d.ignore_index, seed=cfg.train.seed,
                  num_classes=classes, mask_map=CHANGE_MASK_MAP if fmt in CHANGE_FORMATS else None)
    if not train:
        return XBDPairDataset(records, None, train=False, **common)
    device = d.geometric_on_device  # then the task applies the geometry to whole batches
    return XBDPairDataset(records, d.crop_size, train=True, building_bias=d.building_bias, augment=not device,
                          misregistration_px=0 if device else d.misregistration_px, **common)
