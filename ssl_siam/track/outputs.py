"""Tracking outputs: the boxes CSV, GeoJSON tracks in lon / lat when the frames are georeferenced, and an overlay
GIF or MP4 with each target's box and trail."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from rasterio.warp import transform as warp_transform

from ssl_siam.core.files import atomic_path
from ssl_siam.data.display import rgb_bands
from ssl_siam.track.frames import FrameSource, Georef
from ssl_siam.track.sequences import format_box

# RGB colours of targets 0, 1, ... (cycled): distinct on grey, green and blue backgrounds
TARGET_COLOURS = ((255, 40, 40), (40, 220, 255), (255, 220, 0), (255, 60, 255), (60, 255, 60), (255, 140, 0))
DISPLAY_SIDE = 480  # the overlay's longer side in pixels: large frames shrink, tiny ones grow so boxes stay visible
GIF_FRAMES = 300  # a GIF holds every frame in memory: longer tracks keep every n-th frame (an MP4 keeps all)


def write_boxes_csv(path: str | Path, boxes: np.ndarray, scores: np.ndarray, first_frame: int = 0) -> Path:
    """``boxes`` [T, K, 4] (x, y, w, h) and ``scores`` [T, K] as CSV, one row per frame (``frame`` counted from
    ``first_frame``): ``frame,x,y,w,h,score`` for one target, ``frame,target,x,y,w,h,score`` (rows by frame, then
    target 0..K-1 in ``--init`` order) for several. Written whole or not at all."""
    num_frames, num_targets = scores.shape
    header = "frame,x,y,w,h,score" if num_targets == 1 else "frame,target,x,y,w,h,score"
    lines = [header]
    for t in range(num_frames):
        for k in range(num_targets):
            target = "" if num_targets == 1 else f"{k},"
            lines.append(f"{first_frame + t},{target}{format_box(boxes[t, k])},{scores[t, k]:.4f}")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)


def track_features(boxes: np.ndarray, scores: np.ndarray, georefs: Sequence[Georef],
                   first_frame: int = 0) -> list[dict[str, Any]]:
    """GeoJSON Features in lon / lat (WGS 84, as RFC 7946 wants) of ``boxes`` [T, K, 4] on frames with ``georefs``
    [T]: per target a LineString through its box centres (``{"target": k}``), then per frame and target a Point
    (``{"target", "frame", "score"}``, frames counted from ``first_frame``). Each frame's centres go through its own
    transform, so frames of a moving footprint stay where they are on the ground."""
    centres = boxes[..., :2] + boxes[..., 2:] / 2  # [T, K, 2] pixel x, y
    coefficients = np.array([g[0][:6] for g in georefs])  # [T, 6] a, b, c, d, e, f of each frame's Affine
    a, b, c, d, e, f = (coefficients[:, i, None] for i in range(6))
    x, y = centres[..., 0], centres[..., 1]
    east, north = a * x + b * y + c, d * x + e * y + f  # [T, K] in each frame's CRS
    lon, lat = np.empty_like(east), np.empty_like(north)
    wkts = [g[1].to_wkt() for g in georefs]
    for wkt in set(wkts):
        rows = np.array([w == wkt for w in wkts])
        xs, ys = warp_transform(wkt, "EPSG:4326", east[rows].ravel().tolist(), north[rows].ravel().tolist())
        lon[rows], lat[rows] = np.reshape(xs, east[rows].shape), np.reshape(ys, north[rows].shape)
    num_frames, num_targets = scores.shape
    features = [{"type": "Feature", "geometry": {"type": "LineString",
                                                  "coordinates": np.stack([lon[:, k], lat[:, k]], 1).tolist()},
                 "properties": {"target": k}} for k in range(num_targets)]
    features += [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon[t, k], lat[t, k]]},
                  "properties": {"target": k, "frame": first_frame + t, "score": round(float(scores[t, k]), 4)}}
                 for t in range(num_frames) for k in range(num_targets)]
    return features


def write_tracks_geojson(path: str | Path, boxes: np.ndarray, scores: np.ndarray, georefs: Sequence[Georef],
                         first_frame: int = 0) -> Path:
    """:func:`track_features` as a FeatureCollection, written whole or not at all."""
    features = track_features(boxes, scores, georefs, first_frame)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}) + "\n")
    return Path(path)


def _display_stretch(frame: np.ndarray, bands: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (low, high) [3, 1, 1] from the first frame's 2nd / 98th percentiles, kept for the whole sequence so
    that illumination changes stay visible instead of being stretched away."""
    low, high = np.nanpercentile(frame[list(bands)], (2, 98), axis=(1, 2))
    return low[:, None, None], np.maximum(high, low + 1e-6)[:, None, None]


def _overlay_frames(frames: FrameSource, boxes: np.ndarray, indices: np.ndarray, first_frame: int
                    ) -> Iterator[np.ndarray]:
    """[h, w, 3] uint8 track frames ``indices`` (frame ``first_frame + t``) with every target's box and its trail
    of past centres."""
    bands = rgb_bands(frames.num_bands, None)
    height, width = frames.size
    scale = DISPLAY_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    low, high = _display_stretch(frames.read(first_frame + int(indices[0])), bands)
    trails = np.round((boxes[..., :2] + boxes[..., 2:] / 2) * scale).astype(np.int32)  # [T, K, 2]
    for t in indices:
        raw = frames.read(first_frame + int(t))[list(bands)]
        rgb = np.clip((raw - low) / (high - low) * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        rgb = np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1
                                              else cv2.INTER_NEAREST))
        for k in range(boxes.shape[1]):
            colour = TARGET_COLOURS[k % len(TARGET_COLOURS)]
            cv2.polylines(rgb, [trails[: t + 1, k]], isClosed=False, color=colour, thickness=1, lineType=cv2.LINE_AA)
            x, y, w, h = boxes[t, k] * scale
            cv2.rectangle(rgb, (round(x), round(y)), (round(x + w), round(y + h)), colour, thickness=1)
        yield rgb


def write_overlay(path: str | Path, frames: FrameSource, boxes: np.ndarray, first_frame: int = 0,
                  fps: float = 10.0) -> Path:
    """The frames from ``first_frame`` with ``boxes`` [T, K, 4] drawn, as an animated GIF (at most
    :data:`GIF_FRAMES` frames) or, for a ``.mp4`` path, an MP4 (every frame, OpenCV's mp4v codec); the longer side
    is :data:`DISPLAY_SIDE` px. Written whole or not at all."""
    path = Path(path)
    num_frames = len(boxes)
    mp4 = path.suffix.lower() == ".mp4"
    step = 1 if mp4 else -(-num_frames // GIF_FRAMES)
    local = np.arange(0, num_frames, step)
    drawn = _overlay_frames(frames, boxes, local, first_frame)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if mp4:
            first = next(drawn)
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, first.shape[1::-1])
            if not writer.isOpened():
                raise OSError(f"{path}: OpenCV cannot write an MP4 here (no mp4v encoder)")
            for rgb in itertools.chain([first], drawn):
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            writer.release()
        else:
            images = [Image.fromarray(rgb) for rgb in drawn]
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                           duration=round(1000 * step / fps))
    return path

