"""Synthetic tracking sequences: small cars and ships moving over a drifting, slowly re-lit background, as in
satellite video (Jilin-1, SatSOT): targets of 8-20 px, similar distractors, clouds and bridges that hide the target.

Coordinates are pixel edges: pixel column j spans [j, j + 1), so a box ``x, y, w, h`` covers ``[x, x + w)``. Objects
are rendered in frame coordinates with 1 px anti-aliased edges, after the background was warped by the camera drift,
so a box is exact at every frame; occluders are fixed to the ground and drift with it. Backgrounds are procedural
(fields, trees, roads: :func:`ssl_siam.tools.synthetic.landscape`) or crops of real imagery, and with real imagery
half the targets are cut from another image, so that a tracker trained here has seen real texture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from rasterio.windows import Window

from ssl_siam.core.errors import DataError
from ssl_siam.data.rasters import open_raster
from ssl_siam.data.sources import walk_files
from ssl_siam.tools.synthetic import landscape, reflectance_display
from ssl_siam.track.frames import IMAGE_SUFFIXES
from ssl_siam.track.objects import CAR_COLOURS, SHIP_COLOURS, Look, coverage, paint
from ssl_siam.track.sequences import write_sequence

PAD = 16  # background margin the camera may drift into, pixels


def fold(path: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions reflected into ``[lo, hi]`` (a bounce off the frame edges) and the sign of their velocity."""
    span = hi - lo
    r = np.mod(path - lo, 2 * span)
    return lo + np.where(r < span, r, 2 * span - r), np.where(r < span, 1.0, -1.0)


def motion(rng: np.random.Generator, num_frames: int, size: int, reach: float, speed: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """``[T, 2]`` centres and ``[T]`` headings: a nearly constant velocity with small turns (a random walk of the
    heading), bouncing off the frame so that the object's box (half-diagonal ``reach``) stays inside."""
    if size - 2 * reach <= 0:
        raise ValueError(f"objects of half-diagonal {reach:.1f} px do not fit in frames of {size} px")
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.03, num_frames))
    step = speed * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    raw = rng.uniform(reach, size - reach, 2) + np.concatenate([np.zeros((1, 2)), np.cumsum(step[:-1], axis=0)])
    centre, sign = fold(raw, reach, size - reach)
    return centre, np.arctan2(sign[:, 1] * np.sin(heading), sign[:, 0] * np.cos(heading))


def _image_files(background: Path) -> list[Path]:
    files = [background] if background.is_file() else walk_files(background) if background.is_dir() else []
    files = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{background}: no background images: expected an image / GeoTIFF file or a folder of them "
                        f"({' '.join(IMAGE_SUFFIXES)})")
    return files


def read_crop(path: Path, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random ``[height, width, 3]`` crop on 0..255 of an image of any size, band count and type: the first three
    bands (one band repeated), other than 8-bit stretched from their 2-98 % range; a smaller image is upsampled.
    A window read, so a large GeoTIFF is not decoded whole."""
    with open_raster(path) as src:
        scale = max(1.0, height / src.height, width / src.width)
        n_h, n_w = min(src.height, math.ceil(height / scale)), min(src.width, math.ceil(width / scale))
        y0, x0 = rng.integers(0, src.height - n_h + 1), rng.integers(0, src.width - n_w + 1)
        bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
        data = src.read(bands, window=Window(x0, y0, n_w, n_h)).astype(np.float32).transpose(1, 2, 0)
        eight_bit = src.dtypes[0] == "uint8"
    if not eight_bit:
        lo, hi = np.percentile(data, [2, 98], axis=(0, 1))
        data = 255 * np.clip((data - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    if data.shape[:2] != (height, width):
        data = cv2.resize(data, (width, height), interpolation=cv2.INTER_CUBIC)
    return data


def procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``[size, size, 3]`` on 0..255: fields, crop rows, trees and roads."""
    return reflectance_display(landscape(rng, size)[0][..., :3]).astype(np.float32)


def _occluder(rng: np.random.Generator, canvas: int, centre: np.ndarray, heading: float, half: float) -> np.ndarray:
    """An occluder fixed to the ground over ``centre`` (canvas coordinates) that hides a target crossing it for
    ``2 half`` px of its path: a soft cloud or a bridge across the path, as ``[S, S, 4]`` opacity-premultiplied
    colour and opacity."""
    ys, xs = np.mgrid[0:canvas, 0:canvas].astype(np.float32) + 0.5
    dx, dy = xs - centre[0], ys - centre[1]
    if rng.random() < 0.5:  # a cloud: opaque core, a soft edge; opacity 0.5 at radius `half`
        alpha = np.clip((1 - np.hypot(dx, dy) / (1.25 * half)) * 2.5, 0, 1)
        colour = rng.uniform(215, 240) + rng.normal(0, 6, (canvas, canvas, 1))
    else:  # a bridge: a hard-edged deck across the direction of travel
        alpha = coverage(np.abs(dx * math.cos(heading) + dy * math.sin(heading)) - half)
        colour = rng.uniform(120, 170) + rng.normal(0, 4, (canvas, canvas, 1))
    return np.dstack([np.repeat(colour, 3, axis=2) * alpha[..., None], alpha]).astype(np.float32)


@dataclass
class _Scene:
    """Everything that moves: the ground and the occluder (fixed to it), the camera offset per frame, the objects'
    looks and paths, and the per-band illumination drift."""

    ground: np.ndarray  # [S, S, 3]
    occluder: np.ndarray | None  # [S, S, 4]: opacity-premultiplied colour and opacity
    camera: np.ndarray  # [T, 2] offset of the frame in the canvas, pixels
    objects: list[tuple[Look, np.ndarray, np.ndarray]]  # look, centres [T, 2], headings [T]; the target last
    gain: np.ndarray  # [T, 3]
    offset: np.ndarray  # [T, 3]
    noise: float


def _camera_view(layer: np.ndarray, cam: np.ndarray, size: int) -> np.ndarray:
    """The ``size``² part of a canvas layer the camera sees: frame pixel p shows canvas point p + cam (sub-pixel)."""
    warp = np.float32([[1, 0, cam[0]], [0, 1, cam[1]]])
    return cv2.warpAffine(layer, warp, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def render_scene(scene: _Scene, rng: np.random.Generator, size: int) -> list[np.ndarray]:
    """The frames ``[3, H, W]`` uint8: warped background, objects, occluder, illumination, sensor noise."""
    frames = []
    for t, cam in enumerate(scene.camera):
        img = _camera_view(scene.ground, cam, size)
        for look, centres, headings in scene.objects:
            paint(img, look, centres[t], headings[t])
        if scene.occluder is not None:
            over = _camera_view(scene.occluder, cam, size)
            img = img * (1 - over[..., 3:]) + over[..., :3]
        img = img * scene.gain[t] + scene.offset[t] + rng.normal(0, scene.noise, img.shape).astype(np.float32)
        frames.append(np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(2, 0, 1))
    return frames


def _target_look(rng: np.random.Generator, object_size: tuple[int, int], sources: list[Path] | None,
                 background: np.ndarray) -> Look:
    length = rng.uniform(*object_size)
    if sources is not None and rng.random() < 0.5:
        width = length * rng.uniform(0.45, 0.7)
        patch = read_crop(sources[rng.integers(len(sources))], rng, max(3, round(width)), max(3, round(length)))
        # shifted to a brightness far from the ground's, so that the real texture stays visible
        level = 60.0 if background.mean() > 128 else 200.0
        patch = np.clip(patch - patch.mean((0, 1)) + level, 0, 255).astype(np.float32)
        return Look("patch", length, width, patch.mean((0, 1)), patch)
    if rng.random() < 0.5:
        return Look("car", length, length * rng.uniform(0.4, 0.55), CAR_COLOURS[rng.integers(len(CAR_COLOURS))])
    return Look("ship", length, length * rng.uniform(0.25, 0.4), SHIP_COLOURS[rng.integers(len(SHIP_COLOURS))])


def _camera(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """``[T, 2]`` canvas offset: a slow sub-pixel drift with jitter, inside the PAD margin."""
    drift = rng.uniform(-0.3, 0.3, 2) * np.arange(num_frames)[:, None]
    jitter = np.cumsum(rng.normal(0, 0.08, (num_frames, 2)), axis=0)
    return np.clip(PAD + drift + jitter, 0, 2 * PAD)


def _sequence(rng: np.random.Generator, num_frames: int, size: int, object_size: tuple[int, int],
              max_speed: float, sources: list[Path] | None, occlusion_p: float) -> tuple[list[np.ndarray], np.ndarray]:
    """One sequence's frames and boxes (NaN rows where the occluder hides the target's centre)."""
    canvas_size = size + 2 * PAD
    ground = (read_crop(sources[rng.integers(len(sources))], rng, canvas_size, canvas_size) if sources
              else procedural_background(rng, canvas_size))
    look = _target_look(rng, object_size, sources, ground)
    reach = math.hypot(look.length, look.width) / 2 + 1
    speed = rng.uniform(0.4, 1.0) * max_speed
    centres, headings = motion(rng, num_frames, size, reach, speed)
    objects = []
    for _ in range(rng.integers(1, 4)):  # distractors: the same look, resized and re-lit, moving their own way
        other = replace(look, length=look.length * rng.uniform(0.8, 1.2), width=look.width * rng.uniform(0.8, 1.2),
                        colour=look.colour * rng.uniform(0.8, 1.2),
                        patch=None if look.patch is None else look.patch * rng.uniform(0.8, 1.2))
        moving = rng.uniform(0, 1) * max_speed if rng.random() < 0.7 else 0.0  # some are parked
        objects.append((other, *motion(rng, num_frames, size, math.hypot(other.length, other.width) / 2 + 1, moving)))
    objects.append((look, centres, headings))
    camera = _camera(rng, num_frames)
    occluder, hidden = None, np.zeros(num_frames, bool)
    if num_frames >= 3 and rng.random() < occlusion_p:
        t_mid = rng.integers(num_frames // 3, 2 * num_frames // 3 + 1)
        # about 2 to T/5 frames hidden, never so narrow that most of the target shows around it
        half = max(speed * rng.integers(2, max(num_frames // 5, 2) + 1) / 2, 0.35 * look.length)
        occluder = _occluder(rng, canvas_size, centres[t_mid] + camera[t_mid], headings[t_mid], half)
        on_canvas = np.clip(np.floor(centres + camera).astype(int), 0, canvas_size - 1)
        hidden = occluder[on_canvas[:, 1], on_canvas[:, 0], 3] >= 0.5
        if hidden[0] or hidden.sum() > num_frames // 3:  # the first frame initialises a tracker: never hidden;
            occluder, hidden = None, np.zeros_like(hidden)  # nor most of a sequence (a target bouncing under it)
    t = np.linspace(0, 1, num_frames)[:, None]
    scene = _Scene(ground, occluder, camera, objects, gain=1 + rng.uniform(-0.15, 0.15, 3) * t,
                   offset=rng.uniform(-10, 10, 3) * t, noise=rng.uniform(1, 3.5))
    boxes = look.box(centres, headings)
    boxes[hidden] = np.nan
    return render_scene(scene, rng, size), boxes


def generate_sequences(out: str | Path, num_sequences: int, *, num_frames: int = 40, size: int = 128,
                       object_size: tuple[int, int] = (8, 20), max_speed: float = 2.5,
                       background: str | Path | None = None, occlusion_p: float = 0.3, seed: int = 0) -> list[Path]:
    """Writes ``out/seq_0000 ...`` (see :func:`write_sequence`): per sequence one target (car, ship, or a patch of
    real imagery when ``background`` is given) with 1-3 similar distractors, over a procedural background or a
    random crop of an image in ``background`` (a file or a folder, searched recursively), drifting by sub-pixel
    camera motion and re-lit per band; with probability ``occlusion_p`` a cloud or bridge hides the target for some
    frames (their boxes NaN, absent), unless it would hide the first frame or more than a third of them (then the
    sequence stays clear: short sequences are occluded less often). Deterministic in ``seed``. Returns the
    sequence folders."""
    sources = _image_files(Path(background)) if background is not None else None
    paths = []
    for i in range(num_sequences):
        rng = np.random.default_rng([seed, i])
        frames, boxes = _sequence(rng, num_frames, size, object_size, max_speed, sources, occlusion_p)
        paths.append(write_sequence(Path(out), f"seq_{i:04d}", frames, boxes))
    return paths


def constant_velocity_sequence(out: str | Path, *, num_frames: int = 30, size: int = 96,
                               box: tuple[float, float, float, float] = (20, 30, 12, 12),
                               velocity: tuple[float, float] = (1.5, 0.75), seed: int = 0) -> Path:
    """Writes ``out/constant_velocity``: one white car filling ``box`` (x, y, w, h), moving by exactly ``velocity``
    px per frame over a static procedural background, with no noise, occlusion or distractors: the easiest case a
    tracker must follow."""
    x, y, w, h = box
    boxes = np.array([x, y, w, h]) + np.arange(num_frames)[:, None] * np.array([*velocity, 0, 0])
    if (boxes[:, :2] < 0).any() or (boxes[:, :2] + boxes[:, 2:] > size).any():
        raise ValueError(f"the box {box} moving by {velocity} per frame leaves the {size} px frame")
    look = Look("car", w, h, CAR_COLOURS[0], shadow=False)
    background = procedural_background(np.random.default_rng(seed), size)
    frames = []
    for b in boxes:
        img = background.copy()
        paint(img, look, b[:2] + b[2:] / 2, 0.0)
        frames.append(np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(2, 0, 1))
    return write_sequence(Path(out), "constant_velocity", frames, boxes)
