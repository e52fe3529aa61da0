"""``ssl-siam track``: a trained SiamFC follows one or several boxes through new frames (an image folder, a
multi-band stack or a video) and writes the boxes, GeoJSON tracks and an overlay."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssl_siam.core.errors import DataError
from ssl_siam.core.files import atomic_path
from ssl_siam.track.frames import STACK_SUFFIXES, FrameSource, open_frames
from ssl_siam.track.outputs import write_boxes_csv, write_overlay, write_tracks_geojson
from ssl_siam.track.run import load_trained_tracker
from ssl_siam.track.tracker import track_frames, tracker_for
from ssl_siam.train.runtime import resolve_device


def check_init_boxes(boxes: np.ndarray, frames: FrameSource, what: str = "--init") -> None:
    """A one-line DataError for a box without a positive size or whose centre lies outside the frame (its exemplar
    would be mostly padding)."""
    height, width = frames.size
    for x, y, w, h in boxes:
        box = f"{x:g},{y:g},{w:g},{h:g}"
        if not (w > 0 and h > 0):
            raise DataError(f"{what} {box}: width and height must be positive")
        if not (0 <= x + w / 2 < width and 0 <= y + h / 2 < height):
            raise DataError(f"{what} {box}: the box centre lies outside the {width}x{height} px frame")


def model_frames(path: str | Path, bands: Sequence[int] | None, model_bands: int, bands_per_frame: int | None,
                 default_bands: Sequence[int] | None) -> FrameSource:
    """The frames at ``path`` with the bands the model takes: ``bands`` (1-based) or the run's ``data.bands``; a
    stack file holds ``bands_per_frame`` bands a frame, by default as many as the model takes."""
    path = Path(path)
    chosen = bands if bands is not None else default_bands
    per_frame = (bands_per_frame or model_bands) if path.is_file() and path.suffix.lower() in STACK_SUFFIXES else None
    frames = open_frames(path, None if chosen is None else [b - 1 for b in chosen], per_frame)
    if frames.num_bands != model_bands:
        raise DataError(f"{path}: frames of {frames.num_bands} bands, but the model takes {model_bands}: pick them "
                        f"with --bands (1-based)")
    return frames


def track_files(ckpt: str | Path, frames_path: str | Path, init_boxes: Sequence[Sequence[float]], out: str | Path, *,
                device: str = "auto", bands: Sequence[int] | None = None, bands_per_frame: int | None = None,
                gif: bool = True, video: bool = False, redetect: float | None = None) -> dict[str, Any]:
    """Track ``init_boxes`` (x, y, w, h on the first frame) through ``frames_path`` with the checkpoint's SiamFC.

    Writes ``out/boxes.csv`` (:func:`write_boxes_csv`), ``out/track.json`` (frames, targets, frames/s of the tracker
    on this device with frame reading excluded, crop sizes), ``out/tracks.geojson`` when the frames are
    georeferenced, ``out/overlay.gif`` (unless not ``gif``) and ``out/overlay.mp4`` (with ``video``). Returns
    track.json's content."""
    torch_device = resolve_device(device, "--device")
    trained = load_trained_tracker(ckpt, torch_device)
    frames = model_frames(frames_path, bands, trained.stats.num_bands, bands_per_frame, trained.cfg.data.bands)
    boxes = np.asarray(init_boxes, dtype=np.float64).reshape(-1, 4)
    check_init_boxes(boxes, frames)
    tracker = tracker_for(trained.model, trained.cfg.model, trained.stats, torch_device, redetect_threshold=redetect)
    track = track_frames(tracker, frames, boxes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_boxes_csv(out / "boxes.csv", track.boxes, track.scores)]
    georefs = [frames.georef(i) for i in range(len(frames))]
    if all(g is not None for g in georefs):
        written.append(write_tracks_geojson(out / "tracks.geojson", track.boxes, track.scores, georefs))
    if gif:
        written.append(write_overlay(out / "overlay.gif", frames, track.boxes))
    if video:
        written.append(write_overlay(out / "overlay.mp4", frames, track.boxes))
    m = trained.cfg.model
    report = {"frames": len(frames), "targets": len(boxes), "fps": round(track.fps, 2), "device": str(torch_device),
              "exemplar_size": m.exemplar_size, "search_size": m.search_size, "stride": trained.model.stride,
              "redetect_threshold": redetect, "ckpt": str(ckpt), "frames_path": str(frames_path),
              "outputs": [p.name for p in written] + ["track.json"]}
    with atomic_path(out / "track.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report
