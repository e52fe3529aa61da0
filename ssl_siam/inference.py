"""Map damage with a finetuned checkpoint: read a pre/post pair, predict by sliding window, write outputs."""

from __future__ import annotations

from pathlib import Path

import torch

from ssl_siam.data.xbd import find_pairs
from ssl_siam.finetuning import FinetuneTask
from ssl_siam.outputs import to_display_rgb, write_outputs
from ssl_siam.predict import decode, output_stem, read_pair, sliding_window


def predict_pair(task: FinetuneTask, pre_path: Path, post_path: Path, out_dir: Path, *, bands: list[int] | None,
                 post_bands: list[int] | None, window: int, overlap: float, tta: bool, batch_size: int,
                 device: torch.device) -> list[Path]:
    """Predict one pair and write the xView2 PNGs, the overlay, and for GeoTIFFs the GeoTIFF + GeoJSON."""
    pre, post, profile = read_pair(pre_path, post_path, bands=bands, post_bands=post_bands)
    pre_t, post_t = task.normalize(torch.from_numpy(pre)[None].to(device), torch.from_numpy(post)[None].to(device))
    probs = sliding_window(task.model, pre_t[0], post_t[0], window=window, overlap=overlap, batch_size=batch_size,
                           tta=tta, device=device)
    loc, damage, confidence = decode(probs)
    return write_outputs(out_dir, output_stem(post_path), loc, damage, confidence, to_display_rgb(pre), profile)


def predict_split(task: FinetuneTask, split_dir: Path, out_dir: Path, **kwargs: object) -> list[Path]:
    """Every pair of an xBD split directory (labels are not needed)."""
    records, _ = find_pairs(split_dir, require_labels=False)
    written = []
    for record in records:
        written += predict_pair(task, record.pre_image, record.post_image, out_dir, **kwargs)
    return written
