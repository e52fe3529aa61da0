"""The tracking validator of ``ssl-siam track-train``: one-pass evaluation of the model being trained on held-out
sequences, so that ``best.pt`` follows the success AUC (the measure the tracker is judged by) rather than the loss."""

from __future__ import annotations

from collections.abc import Sequence as Sequences

import numpy as np
import torch

from ssl_siam.data.stats import BandStats
from ssl_siam.track.config import TrackConfig
from ssl_siam.track.metrics import score_sequence, summarise
from ssl_siam.track.model import SiamFC
from ssl_siam.track.sequences import Sequence
from ssl_siam.track.tracker import Track, track_frames, tracker_for


def track_sequence(model: SiamFC, cfg: TrackConfig, stats: BandStats, sequence: Sequence, device: torch.device,
                   **options: float | int | None) -> tuple[int, Track]:
    """Track ``sequence``'s target from its first present box to the last frame: (that first frame, the track)."""
    present = np.flatnonzero(sequence.present)
    if not len(present):
        raise ValueError(f"{sequence.name}: the target is absent on every frame: nothing to start from")
    start = int(present[0])
    tracker = tracker_for(model, cfg.model, stats, device, **options)
    return start, track_frames(tracker, sequence.frames, sequence.boxes[start], start=start)


class TrackingValidator:
    """Success AUC, precision (at 20 px) and normalised precision over held-out ``sequences``; the model is put in
    eval mode (BatchNorm statistics frozen: the response adjustment is a fixed affine map) and put back after.
    Runs on rank 0 (its metrics are broadcast)."""

    best_metric = "success_auc"
    sharded = False

    def __init__(self, model: SiamFC, cfg: TrackConfig, stats: BandStats, sequences: Sequences[Sequence],
                 device: torch.device) -> None:
        self.model, self.cfg, self.stats, self.sequences, self.device = model, cfg, stats, sequences, device
        self.info = {"sequences": [s.name for s in sequences]}

    def __call__(self) -> dict[str, float]:
        training = self.model.training
        self.model.eval()
        try:
            scores = []
            for sequence in self.sequences:
                start, track = track_sequence(self.model, self.cfg, self.stats, sequence, self.device)
                scores.append(score_sequence(sequence.name, track.boxes[:, 0], sequence.boxes[start:]))
        finally:
            self.model.train(training)
        summary = summarise(scores)
        return {key: summary[key] for key in ("success_auc", "precision", "norm_precision")}
