"""Held-out evaluation of a finetuned checkpoint: predict every pair and score it with the task's metric — the
xView2 metric against targets rasterised from the labels, binary change metrics against the change masks, SECOND's
metrics against both dates' land cover — as ``ssl-siam predict`` + ``targets`` + ``score`` do, in one call."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ssl_siam.damage.binary import BinaryScore, read_binary_mask, score_binary_dirs
from ssl_siam.damage.outputs import output_stem
from ssl_siam.damage.predict import predict_pair
from ssl_siam.damage.run import load_finetuned
from ssl_siam.damage.semantic import SemanticScore, score_semantic_dirs
from ssl_siam.damage.xview2 import XView2Score, score_dirs
from ssl_siam.data.semantic import split_code
from ssl_siam.data.xbd.pairs import PairRecord
from ssl_siam.data.xbd.targets import ensure_targets


def evaluate(ckpt: str | Path, records: Sequence[PairRecord], out_dir: str | Path, *, device: str = "auto",
             window: int = 512) -> XView2Score | BinaryScore | SemanticScore:
    """Score ``ckpt`` on ``records``: predictions in ``out_dir/predictions``, targets in ``out_dir/targets``
    (damage: ``un-classified`` counted as no-damage, as the challenge scored)."""
    out_dir = Path(out_dir)
    task, cfg, runtime = load_finetuned(ckpt, device)
    pred, targ = out_dir / "predictions", out_dir / "targets"
    targ.mkdir(parents=True, exist_ok=True)
    if cfg.task == "damage":
        records = ensure_targets(records, out_dir / "target_cache", unclassified="no-damage")
    for record in records:
        predict_pair(task, runtime, record.pre_image, record.post_image, pred, bands=cfg.data.bands,
                     post_bands=cfg.data.post_bands, window=window, overlap=0.25, tta=False, batch_size=4)
        stem = output_stem(record.post_image)
        if cfg.task == "binary":
            Image.fromarray(read_binary_mask(record.damage_target)).save(targ / f"{stem}.png")
            continue
        if cfg.task == "semantic":
            with Image.open(record.damage_target) as code:
                labels = split_code(np.asarray(code), cfg.data.ignore_index)
            for folder, label in zip(("label1", "label2"), labels):
                (targ / folder).mkdir(exist_ok=True)
                Image.fromarray(label.astype(np.uint8)).save(targ / folder / f"{stem}.png")
            continue
        for kind, path in (("damage", record.damage_target), ("localization", record.loc_target)):
            if path is not None:
                shutil.copyfile(path, targ / f"{record.id}_{kind}_target{path.suffix}")
    if cfg.task == "semantic":
        return score_semantic_dirs(pred, targ)
    return score_dirs(pred, targ) if cfg.task == "damage" else score_binary_dirs(pred, targ)
