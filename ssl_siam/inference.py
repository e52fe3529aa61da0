"""Map damage with a finetuned checkpoint: read a pre/post pair, predict by sliding window, write outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ssl_siam.data.xbd import find_pairs
from ssl_siam.finetuning import FinetuneTask
from ssl_siam.outputs import to_display_rgb, write_outputs
from ssl_siam.predict import RasterPair, decode, output_stem, sliding_window_rows


def predict_pair(task: FinetuneTask, pre_path: Path, post_path: Path, out_dir: Path, *, bands: list[int] | None,
                 post_bands: list[int] | None, window: int, overlap: float, tta: bool, batch_size: int,
                 device: torch.device, amp_dtype: torch.dtype | None = None) -> list[Path]:
    """Predict one pair and write the xView2 PNGs, the overlay, and for GeoTIFFs the GeoTIFF + GeoJSON.

    The pair is read, normalised, predicted (under autocast with ``amp_dtype`` when given) and decoded one row of
    windows at a time (windowed reads of GeoTIFFs), so only the uint8 / float32 output maps are held whole, never
    the scene's probabilities."""
    with RasterPair(pre_path, post_path, bands, post_bands) as pair:
        loc = np.empty((pair.height, pair.width), np.uint8)
        damage, confidence = np.empty_like(loc), np.empty(loc.shape, np.float32)

        def read(top: int, bottom: int) -> tuple[torch.Tensor, torch.Tensor]:
            pre, post = (torch.from_numpy(a)[None].to(device) for a in pair.rows(top, bottom))
            pre, post = task.normalize(pre, post)
            return pre[0], post[0]

        for top, probs in sliding_window_rows(task.model, read, pair.height, pair.width, window=window,
                                              overlap=overlap, batch_size=batch_size, tta=tta, device=device,
                                              amp_dtype=amp_dtype, out_device=device):
            rows = slice(top, top + probs.shape[1])
            loc[rows], damage[rows], confidence[rows] = decode(probs)
        display, profile = to_display_rgb(pair.display_bands()), pair.profile
    return write_outputs(out_dir, output_stem(post_path), loc, damage, confidence, display, profile)


def predict_split(task: FinetuneTask, split_dir: Path, out_dir: Path, **kwargs: object) -> list[Path]:
    """Every pair of an xBD split directory (labels are not needed)."""
    records, _ = find_pairs(split_dir, require_labels=False)
    written = []
    for record in records:
        written += predict_pair(task, record.pre_image, record.post_image, out_dir, **kwargs)
    return written
