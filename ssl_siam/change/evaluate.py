"""Held-out evaluation of a finetuned checkpoint: predict every pair and score it with the task's metric (the
xView2 metric against targets rasterised from the labels, binary change metrics against the change masks, SECOND's
metrics against both dates' land cover), as ``ssl-siam predict`` + ``targets`` + ``score`` do, in one call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ssl_siam.change.predict import predict_pair
from ssl_siam.change.run import load_finetuned
from ssl_siam.change.tasks.base import Score
from ssl_siam.data.pairs import PairRecord


def evaluate(ckpt: str | Path, records: Sequence[PairRecord], out_dir: str | Path, *, device: str = "auto",
             window: int = 512) -> Score:
    """Score ``ckpt`` on ``records``: predictions in ``out_dir/predictions``, targets in ``out_dir/targets``
    (damage: ``un-classified`` counted as no-damage, as the challenge scored; binary: masks binarised by the run's
    ``data.mask_threshold``), both named by pair id."""
    out_dir = Path(out_dir)
    task, cfg, runtime, change = load_finetuned(ckpt, device)
    pred, targ = out_dir / "predictions", out_dir / "targets"
    targ.mkdir(parents=True, exist_ok=True)
    for record in change.prepare_records(records, out_dir / "target_cache"):
        predict_pair(task, change, runtime, record.pre_image, record.post_image, pred, bands=cfg.data.bands,
                     post_bands=cfg.data.post_bands, window=window, overlap=0.25, tta=False, batch_size=4,
                     stem=record.id)
        change.write_target(record, record.id, targ, cfg.data.ignore_index)
    return change.score_dirs(pred, targ)
