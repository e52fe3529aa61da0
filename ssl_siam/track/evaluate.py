"""``ssl-siam track-eval``: OTB one-pass evaluation of a trained SiamFC on annotated sequences — each target
tracked from its first annotated box to the last frame, scored by ``track/metrics.py``, plotted by
``track/plots.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssl_siam.core.errors import DataError
from ssl_siam.core.files import atomic_path
from ssl_siam.track.metrics import score_sequence, summarise
from ssl_siam.track.outputs import write_boxes_csv
from ssl_siam.track.plots import plot_curves
from ssl_siam.track.predict import check_init_boxes
from ssl_siam.track.run import load_trained_tracker
from ssl_siam.track.sequences import read_sequences
from ssl_siam.track.validator import track_sequence
from ssl_siam.train.runtime import resolve_device


def evaluate_tracker(ckpt: str | Path, data: str | Path, out: str | Path, *, precision_px: float = 20.0,
                     device: str = "auto", redetect: float | None = None) -> dict[str, Any]:
    """Track every sequence of ``data`` and write ``out/track_eval.json`` (overall ``success_auc``, ``precision`` at
    ``precision_px``, ``norm_precision``, their curves, ``per_sequence`` values, ``fps``: frames tracked per second
    of tracker time on this device, frame reading excluded), ``out/success_precision.png`` and
    ``out/boxes/<sequence>.csv``. Every sequence is checked (bands, a first box inside its frame) before any is
    tracked. Returns the JSON's content."""
    torch_device = resolve_device(device, "--device")
    trained = load_trained_tracker(ckpt, torch_device)
    cfg = trained.cfg
    sequences = read_sequences(data, None if cfg.data.bands is None else [b - 1 for b in cfg.data.bands])
    for sequence in sequences:
        if sequence.frames.num_bands != trained.stats.num_bands:
            raise DataError(f"{sequence.name}: frames of {sequence.frames.num_bands} bands, but the model takes "
                            f"{trained.stats.num_bands}")
        if sequence.present.sum() < 2:
            raise DataError(f"{sequence.name}: {int(sequence.present.sum())} box(es) in its groundtruth: expected the "
                            "target present on at least two frames (the first starts the tracker, later ones are "
                            "scored)")
        check_init_boxes(sequence.boxes[sequence.present][:1], sequence.frames, f"{sequence.name}: first box")
    out = Path(out)
    (out / "boxes").mkdir(parents=True, exist_ok=True)
    scores, frames, seconds = [], 0, 0.0
    for sequence in sequences:
        start, track = track_sequence(trained.model, cfg, trained.stats, sequence, torch_device,
                                      redetect_threshold=redetect)
        write_boxes_csv(out / "boxes" / f"{sequence.name}.csv", track.boxes, track.scores, first_frame=start)
        scores.append(score_sequence(sequence.name, track.boxes[:, 0], sequence.boxes[start:], precision_px))
        frames += len(track.boxes)
        seconds += len(track.boxes) / track.fps
    result = {**summarise(scores, precision_px), "fps": round(frames / seconds, 2), "device": str(torch_device),
              "exemplar_size": cfg.model.exemplar_size, "search_size": cfg.model.search_size,
              "redetect_threshold": redetect, "ckpt": str(ckpt), "data": str(data)}
    with atomic_path(out / "track_eval.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    label = Path(ckpt).resolve().parent.parent.name or "SiamFC"  # the run directory's name
    plot_curves({label: result}, out / "success_precision.png", precision_px)
    return result
