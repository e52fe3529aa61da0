"""Map change with a finetuned model: read a pre/post pair, predict by sliding window, decode to the task's maps,
write the outputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ssl_siam.change.datasets import find_change_pairs
from ssl_siam.change.outputs import output_stem, to_display_rgb
from ssl_siam.change.sliding import sliding_window_rows
from ssl_siam.change.tasks import ChangeTask
from ssl_siam.change.training import FinetuneTask
from ssl_siam.core.errors import DataError
from ssl_siam.data.oscd import date_folder_name, folder_dates
from ssl_siam.data.radiometry import check_matchable, match_moments
from ssl_siam.data.rasters import RasterPair
from ssl_siam.train.runtime import Runtime


def predict_pair(task: FinetuneTask, change: ChangeTask, runtime: Runtime, pre_path: Path, post_path: Path,
                 out_dir: Path, *, bands: list[int] | None, post_bands: list[int] | None, window: int,
                 overlap: float, tta: bool, batch_size: int, stem: str | None = None) -> list[Path]:
    """Predict one pair and write the outputs of the model's task ``change`` (:meth:`ChangeTask.decode` /
    ``write_outputs``): the xView2 PNGs (damage) or the change mask and probability (binary; semantic change also
    ``<stem>_label1.png`` / ``_label2.png``, each date's land cover where change is predicted, colour-coded as
    SECOND), the overlay, and for GeoTIFFs the GeoTIFF + GeoJSON; their names start with ``stem`` (default: the
    post image's, :func:`output_stem`; a split's pairs pass their id).

    With the run's ``data.radiometric=match`` the post image is first corrected by the pair's scene moments
    (:func:`match_moments` on the pair's overviews), as the training crops were.
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
        affine = None
        if task.radiometric == "match":
            check_matchable(post_path, *pair.num_bands, "the model was trained so; choose the bands with --post-bands")
            affine = match_moments(*pair.overviews())
        shape = (pair.height, pair.width)
        maps: dict[str, np.ndarray] = {}
        nodata = np.zeros(shape, bool)

        def read(top: int, bottom: int) -> tuple[torch.Tensor, torch.Tensor]:
            pre_raw, post_raw = pair.rows(top, bottom)
            invalid = pair.nodata(pre_raw, post_raw)
            nodata[top:bottom] = invalid
            if affine is not None:
                post_raw = affine.apply(post_raw)
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
            for name, values in change.decode(probs).items():
                if name not in maps:
                    maps[name] = np.empty(shape, values.dtype)
                maps[name][rows] = values
        for array in maps.values():
            array[nodata] = 0
        display, profile = to_display_rgb(pair.display_bands()), pair.profile
    return change.write_outputs(out_dir, stem or output_stem(post_path), maps, display, profile,
                                nodata if nodata.any() else None)


def date_folders(pre: Path, post: Path, band_names: Sequence[str], out_dir: Path) -> tuple[Path, Path, str | None]:
    """``(pre, post, stem)`` to predict: image files as given (stem from the post file), or two folders of per-band
    GeoTIFFs (OSCD's ``<city>/imgs_1`` and ``imgs_2``) stacked in ``band_names`` order on the pre folder's B02 grid
    under ``out_dir/.stacks``, named by the city."""
    if not (pre.is_dir() or post.is_dir()):
        return pre, post, None
    name = date_folder_name(pre)
    return (*folder_dates(pre, post, band_names, out_dir / ".stacks", name), name)


def predict_split(task: FinetuneTask, change: ChangeTask, runtime: Runtime, split_dir: Path, out_dir: Path,
                  fmt: str = "xbd", ids: Sequence[str] | None = None, **kwargs: object) -> list[Path]:
    """Every pair of a split directory in layout ``fmt`` (labels are not needed), or only those named in ``ids``
    (e.g. OSCD cities), outputs named by pair id; ``kwargs`` as :func:`predict_pair`."""
    records = find_change_pairs([split_dir], fmt, out_dir / ".stacks", masks="none", every_split=True)
    if ids:
        by_id = {r.id: r for r in records}
        if missing := [i for i in ids if i not in by_id]:
            raise DataError(f"--ids: {missing[0]} is not a pair of {split_dir} (its pairs: "
                            f"{', '.join(sorted(by_id)[:30])})")
        records = [by_id[i] for i in dict.fromkeys(ids)]
    written = []
    for record in records:
        written += predict_pair(task, change, runtime, record.pre_image, record.post_image, out_dir,
                                stem=record.id, **kwargs)  # type: ignore[arg-type]
    return written
