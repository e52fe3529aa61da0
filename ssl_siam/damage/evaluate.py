"""Held-out evaluation of a finetuned checkpoint: predict every pair, score it with the xView2 metric against
targets rasterised from its labels (as ``ssl-siam predict`` + ``targets`` + ``score`` do, in one call)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from ssl_siam.damage.predict import predict_pair
from ssl_siam.damage.run import load_finetuned
from ssl_siam.damage.xview2 import XView2Score, score_dirs
from ssl_siam.data.xbd.pairs import PairRecord
from ssl_siam.data.xbd.targets import ensure_targets


def evaluate(ckpt: str | Path, records: Sequence[PairRecord], out_dir: str | Path, *, device: str = "auto",
             window: int = 512) -> XView2Score:
    """Score ``ckpt`` on ``records``: predictions in ``out_dir/predictions``, scoring targets (``un-classified``
    counted as no-damage, as the challenge scored) in ``out_dir/targets``."""
    out_dir = Path(out_dir)
    task, cfg, runtime = load_finetuned(ckpt, device)
    pred, targ = out_dir / "predictions", out_dir / "targets"
    targ.mkdir(parents=True, exist_ok=True)
    for record in ensure_targets(records, out_dir / "target_cache", unclassified="no-damage"):
        predict_pair(task, runtime, record.pre_image, record.post_image, pred, bands=cfg.data.bands,
                     post_bands=cfg.data.post_bands, window=window, overlap=0.25, tta=False, batch_size=4)
        for kind, path in (("damage", record.damage_target), ("localization", record.loc_target)):
            if path is not None:
                shutil.copyfile(path, targ / f"{record.id}_{kind}_target{path.suffix}")
    return score_dirs(pred, targ)
