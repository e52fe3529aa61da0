"""The SiamFC tracker on a stand-in model whose embedding is the normalised image itself (stride 1) and whose
response is zero-mean normalised cross-correlation as a logit: following, several targets, damped scale, cosine
window, re-detection; and the tracking outputs (boxes CSV, lon / lat GeoJSON, overlay)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from torch import Tensor, nn

from ssl_siam.data.stats import BandStats
from ssl_siam.track.config import TrackConfig
from ssl_siam.track.frames import FrameSource, open_frames
from ssl_siam.track.outputs import track_features, write_boxes_csv, write_overlay, write_tracks_geojson
from ssl_siam.track.sequences import Sequence, write_sequence
from ssl_siam.track.tracker import Tracker, track_frames
from ssl_siam.track.validator import TrackingValidator

STATS = BandStats(low=[0.0] * 3, high=[255.0] * 3, mean=[0.3] * 3, std=[0.2] * 3)


class PixelSiam(nn.Module):
    """Embedding: the crop itself (stride 1); response: 10 · (NCC − 0.5), NCC of the exemplar with every window."""

    stride = 1

    def embed(self, x: Tensor, search: bool = False) -> Tensor:
        return x

    def response(self, z: Tensor, x: Tensor) -> Tensor:
        batch, bands, hx, wx = x.shape
        z = z.expand(batch, -1, -1, -1)
        hz, wz = z.shape[-2:]
        zc = z - z.mean(dim=(1, 2, 3), keepdim=True)
        zc = zc / zc.flatten(1).norm(dim=1).clamp_min(1e-6).view(batch, 1, 1, 1)
        corr = F.conv2d(x.reshape(1, batch * bands, hx, wx), zc, groups=batch).view(batch, 1, hx - hz + 1, -1)
        ones = torch.ones(1, bands, hz, wz)
        sums, squares = F.conv2d(x, ones), F.conv2d(x * x, ones)
        spread = (squares - sums**2 / (bands * hz * wz)).clamp_min(0).sqrt().clamp_min(1e-6)
        return 10 * (corr / spread - 0.5)


class ArrayFrames(FrameSource):
    """Frames held in memory."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.num_bands, self.size = frames, frames[0].shape[0], frames[0].shape[1:]

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, i: int) -> np.ndarray:
        return self.frames[i]


def car(size: int) -> np.ndarray:
    """[3, size, size] a bright target with a dark stripe: a pattern that NCC matches in one place only."""
    obj = np.full((3, size, size), 200.0, np.float32)
    obj[0, size // 4: size // 2, 2: size - 3] = 30
    obj[2, size // 2:, size // 2:] = 90
    return obj


def scene(size: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 60, (3, size, size)).astype(np.float32)


def paste(frame: np.ndarray, obj: np.ndarray, x: int, y: int) -> np.ndarray:
    out = frame.copy()
    out[:, y: y + obj.shape[1], x: x + obj.shape[2]] = obj
    return out


def moving(starts: list[tuple[int, int]], velocities: list[tuple[float, float]], frames: int = 30,
           side: int = 12) -> tuple[ArrayFrames, np.ndarray]:
    """Targets of ``side`` px moving at constant velocity over a noise scene: (frames, boxes [T, K, 4])."""
    start, velocity = np.array(starts, float), np.array(velocities, float)
    corners = np.round(start + np.arange(frames)[:, None, None] * velocity)  # [T, K, 2]
    images = []
    for t in range(frames):
        image = scene()
        for x, y in corners[t].astype(int):
            image = paste(image, car(side), x, y)
        images.append(image)
    return ArrayFrames(images), np.concatenate([corners, np.full_like(corners, side)], axis=2)


def tracker(**kwargs: float) -> Tracker:
    return Tracker(PixelSiam(), STATS, exemplar_size=31, search_size=63, context=0.5, **kwargs)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    low, high = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=-1)
    return inter / (np.prod(a[..., 2:], -1) + np.prod(b[..., 2:], -1) - inter)


def test_follows_a_target_at_constant_velocity() -> None:
    frames, truth = moving([(20, 30)], [(1.5, 0.75)])
    track = track_frames(tracker(), frames, truth[0])
    assert track.boxes.shape == (30, 1, 4) and track.scores.shape == (30, 1)
    overlap = iou(track.boxes, truth)[:, 0]
    success_auc = np.mean([(overlap > t).mean() for t in np.linspace(0, 1, 21)])  # OTB's success AUC
    centre_error = np.linalg.norm((track.boxes - truth)[..., :2], axis=-1)
    assert success_auc > 0.9, success_auc  # a perfect track scores 20/21 = 0.95 (IoU > 1 never holds)
    assert centre_error.max() < 1.0, centre_error.max()
    assert track.scores[0, 0] == 1 and (track.scores[1:] > 0.9).all() and track.fps > 0


def test_several_targets_at_once_match_each_alone() -> None:
    frames, truth = moving([(10, 10), (60, 55), (15, 70)], [(1.5, 0.75), (-1.0, 0.5), (1.0, -1.25)], frames=15)
    together = track_frames(tracker(), frames, truth[0])
    for k in range(3):
        alone = track_frames(tracker(), frames, truth[0, k: k + 1])
        np.testing.assert_allclose(together.boxes[:, k], alone.boxes[:, 0], atol=1e-6)
        np.testing.assert_allclose(together.scores[:, k], alone.scores[:, 0], atol=1e-5)
    assert (np.linalg.norm((together.boxes - truth)[..., :2], axis=-1) < 1.5).all()


def blob(sigma: float, size: int = 96) -> np.ndarray:
    """[3, size, size] a Gaussian blob of width ``sigma`` px centred on a flat scene: only its scale changes."""
    r2 = np.sum((np.indices((size, size)) - (size - 1) / 2) ** 2, axis=0)
    return np.repeat(50 + 150 * np.exp(-r2 / (2 * sigma**2))[None], 3, axis=0).astype(np.float32)


def test_the_scale_update_is_damped() -> None:
    """A target growing 10 % a frame: the box grows, but by at most 1 + scale_lr · (scale_step − 1) a frame."""
    images = [blob(3 * 1.1**t) for t in range(10)]
    track = track_frames(tracker(), ArrayFrames(images), np.array([41.5, 41.5, 12, 12]))
    ratio = track.boxes[1:, 0, 2] / track.boxes[:-1, 0, 2]
    assert (ratio <= 1 + 0.59 * 0.0375 + 1e-9).all() and (ratio >= 1 - 0.59 * (1 - 1 / 1.0375) - 1e-9).all()
    assert track.boxes[-1, 0, 2] > 12 * 1.1, track.boxes[:, 0, 2]  # it did follow the growth


class TwoPeaks(PixelSiam):
    """A response with two equal peaks, 2 cells right and 5 cells left + 3 cells up of the centre."""

    def response(self, z: Tensor, x: Tensor) -> Tensor:
        cells = x.shape[-1] - z.shape[-1] + 1
        centre = cells // 2
        out = torch.zeros(len(x), 1, cells, cells)
        out[..., centre, centre + 2] = out[..., centre - 3, centre - 5] = 5.0
        return out


def test_the_cosine_window_prefers_the_nearer_of_two_equal_peaks() -> None:
    """Without the window the tie goes to the first peak in raster order: the farther one."""
    pixels_per_cell = 24 / 31  # exemplar side sqrt((12 + 12)²) = 24 px shown on 31 crop px, stride 1
    boxes = {}
    for influence in (0.176, 0.0):
        model = Tracker(TwoPeaks(), STATS, 31, 63, 0.5, scales=1, window_influence=influence)
        boxes[influence] = track_frames(model, ArrayFrames([scene()] * 2), np.array([40, 40, 12, 12])).boxes[1, 0]
    np.testing.assert_allclose(boxes[0.176][:2], [40 + 2 * pixels_per_cell, 40], atol=0.1 * pixels_per_cell)
    np.testing.assert_allclose(boxes[0.0][:2], np.array([40, 40]) + np.array([-5, -3]) * pixels_per_cell)


def test_redetection_recovers_a_target_that_jumped_out_of_the_search_window() -> None:
    """A 30 px jump: the normal search (±12 px of reach here) loses it; a 3× wider search finds it."""
    frames = ArrayFrames([paste(scene(), car(12), x, 40) for x in (20, 50, 51)])
    init = np.array([20, 40, 12, 12])
    lost = track_frames(tracker(), frames, init)
    found = track_frames(tracker(redetect_threshold=0.5, redetect_factor=3.0), frames, init)
    assert abs(lost.boxes[1, 0, 0] - 50) > 10 and lost.scores[1, 0] < 0.5
    np.testing.assert_allclose(found.boxes[1:, 0, :2], [[50, 40], [51, 40]], atol=0.5)
    assert (found.scores[1:, 0] > 0.9).all()


def test_the_validator_tracks_from_the_first_present_box_and_restores_train_mode() -> None:
    frames, truth = moving([(20, 30)], [(1.5, 0.75)], frames=12)
    boxes = truth[:, 0].copy()
    boxes[:3] = np.nan  # the target appears on frame 3: tracking starts there
    cfg = TrackConfig()
    cfg.model.exemplar_size, cfg.model.search_size = 31, 63
    model = PixelSiam().train()
    validator = TrackingValidator(model, cfg, STATS, [Sequence("late", frames, boxes)], torch.device("cpu"))
    result = validator()
    assert set(result) == {"success_auc", "precision", "norm_precision"} and result["precision"] == 1.0
    assert result["success_auc"] > 0.9 and model.training  # 9 frames scored, all IoU ≈ 1
    assert validator.best_metric == "success_auc" and not validator.sharded
    assert validator.info == {"sequences": ["late"]}


class BranchLog(PixelSiam):
    """Records which branch each ``embed`` call asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[bool, int]] = []

    def embed(self, x: Tensor, search: bool = False) -> Tensor:
        self.calls.append((search, len(x)))
        return x


def test_one_embed_per_frame_for_all_targets_and_scales_on_the_right_branch() -> None:
    """The exemplar goes through the exemplar branch once; each frame's 2 targets × 3 scales through the search
    branch (the pseudo-Siamese variant's own encoder) in one call."""
    frames, truth = moving([(10, 10), (60, 55)], [(1.5, 0.75), (-1.0, 0.5)], frames=3)
    model = BranchLog()
    track_frames(Tracker(model, STATS, 31, 63, 0.5), frames, truth[0])
    assert model.calls == [(False, 2), (True, 6), (True, 6)]


def test_bad_boxes_and_geometry_are_refused() -> None:
    with pytest.raises(ValueError, match="positive w, h"):
        tracker().init(scene(), np.array([1, 1, 0, 5]))
    with pytest.raises(ValueError, match="odd"):
        tracker(scales=2)


def test_boxes_csv_one_row_per_frame_and_a_target_column_for_several(tmp_path: Path) -> None:
    boxes = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4) + 0.25
    scores = np.full((2, 3), 0.5)
    one = write_boxes_csv(tmp_path / "one.csv", boxes[:, :1], scores[:, :1], first_frame=5)
    rows = list(csv.DictReader(one.open()))
    assert list(rows[0]) == ["frame", "x", "y", "w", "h", "score"] and len(rows) == 2
    assert rows[1] == {"frame": "6", "x": "12.25", "y": "13.25", "w": "14.25", "h": "15.25", "score": "0.5000"}
    several = list(csv.DictReader(write_boxes_csv(tmp_path / "three.csv", boxes, scores).open()))
    assert list(several[0]) == ["frame", "target", "x", "y", "w", "h", "score"]
    assert [(r["frame"], r["target"]) for r in several] == [(str(t), str(k)) for t in range(2) for k in range(3)]
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_geojson_tracks_in_lon_lat_from_georeferenced_frames(tmp_path: Path) -> None:
    """UTM 31N, 10 m pixels, pixel (10, 10) at easting 500000, northing 0: the central meridian (3° E) on the
    equator. Frames written as GeoTIFFs and read back through the frame folder's georeferencing."""
    georef = (Affine(10, 0, 499_900, 0, -10, 100), CRS.from_epsg(32631))
    frames = [np.zeros((1, 20, 20), np.float32)] * 2
    boxes = np.array([[5.0, 5.0, 10, 10], [15.0, 5.0, 10, 10]])  # centres (10, 10) then (20, 10)
    seq = write_sequence(tmp_path, "s", frames, boxes, georef=georef)
    source = open_frames(seq / "img")
    georefs = [source.georef(i) for i in range(len(source))]
    path = write_tracks_geojson(tmp_path / "tracks.geojson", boxes[:, None], np.array([[1.0], [0.8]]), georefs)
    features = json.loads(path.read_text())["features"]
    line, points = features[0], features[1:]
    assert line["geometry"]["type"] == "LineString" and line["properties"] == {"target": 0}
    np.testing.assert_allclose(line["geometry"]["coordinates"][0], [3.0, 0.0], atol=1e-9)
    lon, lat = line["geometry"]["coordinates"][1]
    assert lon == pytest.approx(3 + 100 / 111_320, abs=2e-6) and lat == pytest.approx(0, abs=1e-9)  # 100 m east
    assert [p["properties"] for p in points] == [{"target": 0, "frame": 0, "score": 1.0},
                                                  {"target": 0, "frame": 1, "score": 0.8}]
    assert points[1]["geometry"]["coordinates"] == line["geometry"]["coordinates"][1]
    moved = [(Affine(10, 0, 499_800, 0, -10, 100), georef[1])] * 2  # a frame footprint shifted 100 m west
    np.testing.assert_allclose(track_features(boxes[:1, None], np.ones((1, 1)), moved[:1])[0]["geometry"]
                               ["coordinates"][0], [3 - 100 / 111_320, 0], atol=2e-6)


def test_overlay_gif_draws_the_boxes(tmp_path: Path) -> None:
    frames, truth = moving([(20, 30)], [(1.5, 0.75)], frames=5)
    path = write_overlay(tmp_path / "overlay.gif", frames, truth)
    gif = Image.open(path)
    assert gif.n_frames == 5 and max(gif.size) == 480
    gif.seek(4)
    rgb = np.asarray(gif.convert("RGB")).astype(int)
    x, y = (truth[4, 0, :2] * 5).astype(int)  # 96 px frames shown at 480 px
    assert tuple(rgb[y, x + 20]) == pytest.approx((255, 40, 40), abs=40)  # the top edge of the box, in red
