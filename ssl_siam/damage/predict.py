"""Map damage with a finetuned model: read a pre/post pair, predict by sliding window, decode to xView2 maps,
write the outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssl_siam.core.errors import DataError
from ssl_siam.damage.change_outputs import write_change_outputs
from ssl_siam.damage.outputs import output_stem, to_display_rgb, write_outputs
from ssl_siam.damage.semantic import semantic_maps
from ssl_siam.damage.sliding import sliding_window_rows
from ssl_siam.damage.task import FinetuneTask
from ssl_siam.data.change import find_change_pairs
from ssl_siam.data.rasters import RasterPair
from ssl_siam.data.semantic import landcover_rgb
from ssl_siam.data.xbd.pairs import find_pairs
from ssl_siam.train.runtime import Runtime

NUM_CLASSES = 5  # background + the four xBD damage classes


def decode(probs: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities [5, H, W] -> (loc, damage, confidence) numpy [H, W] in the xView2 convention.

    loc uint8 is 1 where the argmax is not background; damage uint8 is the argmax over classes 1..4 there and 0
    elsewhere; confidence float32 is the probability of the class written in ``damage`` (background where 0).
    """
    if probs.dim() != 3 or probs.shape[0] != NUM_CLASSES:
        raise ValueError(f"expected probabilities [{NUM_CLASSES}, H, W], got {tuple(probs.shape)}")
    probs = probs.detach().float().cpu()
    loc = probs.argmax(dim=0) != 0
    damage = torch.where(loc, probs[1:].argmax(dim=0) + 1, 0)
    confidence = probs.gather(0, damage[None])[0]
    return loc.numpy().astype(np.uint8), damage.numpy().astype(np.uint8), confidence.numpy()


def predict_pair(task: FinetuneTask, runtime: Runtime, pre_path: Path, post_path: Path, out_dir: Path, *,
                 bands: list[int] | None, post_bands: list[int] | None, window: int, overlap: float, tta: bool,
                 batch_size: int) -> list[Path]:
    """Predict one pair and write the task's outputs: the xView2 PNGs (damage models) or the change mask and
    probability (change models; semantic change models also ``<stem>_label1.png`` / ``_label2.png``, each date's
    land cover where change is predicted, colour-coded as SECOND), the overlay, and for GeoTIFFs the GeoTIFF +
    GeoJSON.

    The pair is read, normalised, predicted (on the runtime's device, under its autocast) and decoded one row of
    windows at a time (windowed reads of GeoTIFFs), so only the uint8 / float32 output maps are held whole, never
    the scene's probabilities. Windows shrink for small images to multiples of the model's output stride.
    Nodata pixels (NaN, or the files' nodata value in every band, in the pre or the post image) enter the model as
    the band mean (0 after standardisation), so they do not spoil their neighbours, and are excluded from the maps:
    background in the PNGs, nodata (255) in the GeoTIFF, no polygon."""
    device = runtime.device
    with RasterPair(pre_path, post_path, bands, post_bands) as pair:
        expected = (task.pre_stats.num_bands, task.post_stats.num_bands)
        if pair.num_bands != expected:
            which = pre_path if pair.num_bands[0] != expected[0] else post_path
            have = pair.num_bands[0] if which == pre_path else pair.num_bands[1]
            raise DataError(f"{which}: {have} bands selected, the model takes {expected[which != pre_path]}; choose "
                            "them with --bands (1-based, e.g. --bands 1 2 3) and --post-bands for the post image")
        shape = (pair.height, pair.width)
        semantic = getattr(task.model, "semantic_head", None) is not None  # change + land cover per date
        maps: dict[str, np.ndarray] = {}
        nodata = np.zeros(shape, bool)

        def read(top: int, bottom: int) -> tuple[torch.Tensor, torch.Tensor]:
            pre_raw, post_raw = pair.rows(top, bottom)
            invalid = pair.nodata(pre_raw, post_raw)
            nodata[top:bottom] = invalid
            pre, post = (torch.from_numpy(np.nan_to_num(a) if a.dtype.kind == "f" else a)[None].to(device)
                         for a in (pre_raw, post_raw))
            pre, post = task.normalize(pre, post)
            hole = torch.from_numpy(invalid).to(device)
            return pre[0].masked_fill(hole, 0.0), post[0].masked_fill(hole, 0.0)

        for top, probs in sliding_window_rows(task.model, read, pair.height, pair.width,
                                              multiple=task.model.output_stride, window=window, overlap=overlap,
                                              batch_size=batch_size, tta=tta, device=device,
                                              amp_dtype=runtime.amp_dtype, out_device=device):
            rows = slice(top, top + probs.shape[1])
            change = semantic or probs.shape[0] == 2  # a change model: no change / change
            if not maps:
                kinds = (("mask", np.uint8), ("probability", np.float32)) if change else (
                    ("loc", np.uint8), ("damage", np.uint8), ("confidence", np.float32))
                kinds += (("label1", np.uint8), ("label2", np.uint8)) if semantic else ()
                maps = {name: np.empty(shape, dtype) for name, dtype in kinds}
            if "label1" in maps:
                maps["mask"][rows], maps["label1"][rows], maps["label2"][rows] = semantic_maps(probs)
                maps["probability"][rows] = probs[1].float().cpu().numpy()
            elif change:
                maps["mask"][rows] = probs.argmax(dim=0).cpu().numpy()
                maps["probability"][rows] = probs[1].float().cpu().numpy()
            else:
                maps["loc"][rows], maps["damage"][rows], maps["confidence"][rows] = decode(probs)
        for array in maps.values():
            array[nodata] = 0
        display, profile = to_display_rgb(pair.display_bands()), pair.profile
    stem, holes = output_stem(post_path), nodata if nodata.any() else None
    if "mask" in maps:
        paths = write_change_outputs(out_dir, stem, maps["mask"], maps["probability"], display, profile, holes)
        for name in ("label1", "label2") if "label1" in maps else ():  # SECOND's colour coding, 0 (white) unchanged
            paths.append(Path(out_dir) / f"{stem}_{name}.png")
            Image.fromarray(landcover_rgb(maps[name])).save(paths[-1])
        return paths
    return write_outputs(out_dir, stem, maps["loc"], maps["damage"], maps["confidence"], display, profile, holes)


def predict_split(task: FinetuneTask, runtime: Runtime, split_dir: Path, out_dir: Path, fmt: str = "xbd",
                  **kwargs: object) -> list[Path]:
    """Every pair of a split directory in layout ``fmt`` (xBD, or a change benchmark's; labels are not needed);
    ``kwargs`` as :func:`predict_pair`."""
    if fmt == "xbd":
        records, _ = find_pairs(split_dir, require_labels=False)
    else:
        records = find_change_pairs([split_dir], fmt, out_dir / ".stacks", require_masks=False)
    written = []
    for record in records:
        written += predict_pair(task, runtime, record.pre_image, record.post_image, out_dir, **kwargs)  # type: ignore[arg-type]
    return written
