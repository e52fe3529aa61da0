"""SiamFC inference (Bertinetto et al. 2016, "Fully-Convolutional Siamese Networks for Object Tracking"): the
exemplar is embedded once, every frame searches around each target's last position at three scales, and the peak
of the upsampled, cosine-windowed response moves the box.

Geometry. A box is ``x, y, w, h`` in pixels, ``x, y`` its top-left corner, pixel ``i`` covering ``[i, i + 1)`` (so
its centre is ``x + w / 2``). The exemplar crop of a ``w × h`` target is a square of side
``s_z = sqrt((w + p)(h + p))`` with context ``p = context · (w + h)``, resized to ``exemplar_size``; the search crop
has side ``s_x = s_z · search_size / exemplar_size`` resized to ``search_size``, so both see the target at the same
scale (a 12-px car with context 0.5 fills 12/24 of the exemplar: tiny targets are enlarged, not lost in a stride).
Response cell ``(i, j)`` of ``hr × wr`` cells is a shift of ``((j − (wr − 1)/2), (i − (hr − 1)/2)) · stride`` search
pixels from the crop centre, exact when ``search_size − exemplar_size`` is a multiple of the model's stride. Crops
are cut as training cuts them (``track.pairs.crop_windows``: bilinear, the frame's band means outside the frame)
from the raw frame on the CPU and normalised on the device: only crops travel, never a whole frame.

All targets and scales of a frame are cropped by one ``grid_sample`` and go through one ``embed`` and one
``response`` call: tracking K targets costs one batched forward, not K.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_siam.data.stats import BandStats, normalise
from ssl_siam.track.config import TrackModelConfig
from ssl_siam.track.pairs import context_side, crop_windows

SIZE_RANGE = (0.2, 5.0)  # a box stays within these factors of its initial size (SiamFC's clamp against drift)


class SiameseEmbedder(Protocol):
    """The model contract the tracker needs (``ssl_siam.track.model.SiamFC`` honours it)."""

    stride: int

    def embed(self, x: Tensor, search: bool = False) -> Tensor:
        """[B, C, H, W] normalised crops -> [B, D, h, w] features (``search``: the search branch's encoder)."""
        ...

    def response(self, z: Tensor, x: Tensor) -> Tensor:
        """z [B | 1, D, hz, wz], x [B, D, hx, wx] -> [B, 1, hx − hz + 1, wx − wz + 1] logits."""
        ...


class FrameReader(Protocol):
    """What :func:`track_frames` reads (``ssl_siam.track.frames.FrameSource``)."""

    def __len__(self) -> int: ...

    def read(self, i: int) -> np.ndarray: ...


class Track(NamedTuple):
    """What :func:`track_frames` returns."""

    boxes: np.ndarray  # [T, K, 4] x, y, w, h per frame and target
    scores: np.ndarray  # [T, K] sigmoid of the response peak (1 on the first frame)
    fps: float  # frames per second of init + update, frame reading excluded


class Tracker:
    """SiamFC tracking of K targets at once: :meth:`init` on the first frame, then :meth:`update` per frame.

    Defaults are SiamFC's: ``scale_step`` 1.0375, ``scale_penalty`` 0.9745, ``scale_lr`` 0.59, ``window_influence``
    0.176, ``upsample`` 16 (each response cell becomes 16 bicubic sub-cells: a stride-4 map, 9 cells for the
    recipe's 32 / 64 px crops, resolves a quarter of a search pixel in 129² sub-cells). A scale other than the
    middle one wins only if its peak logit beats the middle one's after ``scale_penalty`` (multiplied in as SiamFC
    does, or divided into a negative peak so that it always lowers); the box size then moves ``scale_lr`` of the way
    to that scale, at most ``1 + scale_lr · (scale_step − 1)`` a frame. Scores are the sigmoid of the response at
    the peak: SiamFC's logistic loss trains the response as a logit, so a score reads as the chance that the target
    is there. With ``redetect_threshold`` set, a target whose score falls below it is searched once more over a
    window ``redetect_factor`` times wider (same pixel scale, no cosine window) and moved there if that peak scores
    higher.
    """

    def __init__(self, model: SiameseEmbedder, stats: BandStats, exemplar_size: int, search_size: int,
                 context: float, *, scales: int = 3, scale_step: float = 1.0375, scale_penalty: float = 0.9745,
                 scale_lr: float = 0.59, window_influence: float = 0.176, upsample: int = 16,
                 redetect_threshold: float | None = None, redetect_factor: float = 3.0,
                 device: torch.device | str = "cpu") -> None:
        if not 0 < exemplar_size <= search_size:
            raise ValueError(f"need 0 < exemplar_size <= search_size, got {exemplar_size}, {search_size}")
        if scales < 1 or scales % 2 == 0:
            raise ValueError(f"scales must be odd and positive (the middle one is no change), got {scales}")
        if upsample < 1 or redetect_factor <= 1:
            raise ValueError(f"need upsample >= 1 and redetect_factor > 1, got {upsample}, {redetect_factor}")
        self.model, self.stats, self.device = model, stats, torch.device(device)
        self.exemplar_size, self.search_size, self.context = exemplar_size, search_size, context
        exponents = np.arange(scales) - (scales - 1) / 2
        self.scale_factors = scale_step ** exponents  # [S], the middle one 1
        self.scale_penalties = torch.tensor(np.where(exponents == 0, 1.0, scale_penalty), device=self.device)
        self.scale_lr, self.window_influence, self.upsample = scale_lr, window_influence, upsample
        self.redetect_threshold = redetect_threshold
        # the wider window keeps the search's pixel scale: its side grows by whole strides
        stride = model.stride
        self.redetect_size = search_size + stride * round(search_size * (redetect_factor - 1) / stride)
        self.centres, self.sizes, self.initial_sizes = np.empty((0, 2)), np.empty((0, 2)), np.empty((0, 2))
        self.z = torch.empty(0)

    @torch.inference_mode()
    def init(self, frame: np.ndarray, boxes: np.ndarray) -> None:
        """Start tracking ``boxes`` [K, 4] (x, y, w, h, positive sizes) on ``frame`` [C, H, W] raw values."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not np.isfinite(boxes).all() or (boxes[:, 2:] <= 0).any():
            raise ValueError(f"boxes need finite values and positive w, h, got {boxes.tolist()}")
        self.sizes = boxes[:, 2:].copy()
        self.initial_sizes = self.sizes.copy()
        self.centres = boxes[:, :2] + self.sizes / 2
        self.z = self.model.embed(self._crops(self._frame(frame), self.centres, self._exemplar_side(),
                                              self.exemplar_size))

    @torch.inference_mode()
    def update(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track on the next ``frame`` [C, H, W]: (boxes [K, 4] x, y, w, h; scores [K] in (0, 1))."""
        image = self._frame(frame)
        num, scales = len(self.centres), len(self.scale_factors)
        sides = self._exemplar_side()[:, None] * (self.search_size / self.exemplar_size) * self.scale_factors
        crops = self._crops(image, self.centres.repeat(scales, 0), sides.ravel(), self.search_size)
        x = self.model.embed(crops, search=True)
        logits = self._upsampled(self.model.response(self.z.repeat_interleave(scales, 0), x))  # [K·S, m, m]
        logits = logits.view(num, scales, *logits.shape[1:])
        peaks = logits.amax(dim=(2, 3))  # [K, S]
        penalised = torch.where(peaks > 0, peaks * self.scale_penalties, peaks / self.scale_penalties)
        best = penalised.argmax(dim=1)  # [K]
        chosen = logits[torch.arange(num), best]  # [K, m, m]
        spread = chosen - chosen.amin(dim=(1, 2), keepdim=True)
        spread = spread / spread.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        shifts, scores = self._peaks(chosen, (1 - self.window_influence) * spread
                                     + self.window_influence * self._window(chosen.shape[-2:]))
        best = best.cpu().numpy()
        self.centres = self.centres + shifts * sides[np.arange(num), best, None] / self.search_size
        self.sizes = self.sizes * (1 - self.scale_lr + self.scale_lr * self.scale_factors[best, None])
        if self.redetect_threshold is not None and (scores < self.redetect_threshold).any():
            self._redetect(image, scores)
        height, width = frame.shape[-2:]
        self.centres = np.clip(self.centres, 0, [width, height])
        self.sizes = np.clip(self.sizes, SIZE_RANGE[0] * self.initial_sizes, SIZE_RANGE[1] * self.initial_sizes)
        return np.concatenate([self.centres - self.sizes / 2, self.sizes], axis=1), scores

    def _redetect(self, image: Tensor, scores: np.ndarray) -> None:
        """Search the low-scoring targets over the wider window; move those whose peak there scores higher.
        ``scores`` is updated in place."""
        lost = np.flatnonzero(scores < self.redetect_threshold)
        sides = self._exemplar_side()[lost] * self.redetect_size / self.exemplar_size
        x = self.model.embed(self._crops(image, self.centres[lost], sides, self.redetect_size), search=True)
        logits = self._upsampled(self.model.response(self.z[torch.from_numpy(lost).to(self.device)], x))
        shifts, found = self._peaks(logits, logits)
        better = found > scores[lost]
        moved = lost[better]
        self.centres[moved] += shifts[better] * (sides[better] / self.redetect_size)[:, None]
        scores[moved] = found[better]

    def _peaks(self, logits: Tensor, ranking: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Per map, where ``ranking`` [N, m, m] peaks: (shift from the crop centre in crop pixels [N, 2] as x, y;
        sigmoid of ``logits`` [N, m, m] there [N])."""
        rows, cols = ranking.shape[-2:]
        flat = ranking.flatten(1).argmax(dim=1)
        where = torch.stack([flat % cols, flat // cols], dim=1).cpu().numpy()  # [N, 2] x, y
        centre = (np.array([cols, rows]) - 1) / 2
        shifts = (where - centre) / self.upsample * self.model.stride
        scores = torch.sigmoid(logits.flatten(1).gather(1, flat[:, None])[:, 0]).cpu().numpy()
        return shifts, scores.astype(np.float64)

    def _upsampled(self, response: Tensor) -> Tensor:
        """[N, 1, hr, wr] -> [N, (hr − 1)·u + 1, (wr − 1)·u + 1] bicubic with the corners kept, so sub-cell ``k``
        is exactly cell ``k / u``."""
        if self.upsample == 1:
            return response[:, 0]
        size = [(n - 1) * self.upsample + 1 for n in response.shape[-2:]]
        return F.interpolate(response.float(), size=size, mode="bicubic", align_corners=True)[:, 0]

    def _window(self, shape: torch.Size) -> Tensor:
        """Hann window [m, m] of unit sum: the cosine penalty on displacement."""
        window = np.outer(np.hanning(shape[0]), np.hanning(shape[1]))
        return torch.tensor(window / window.sum(), dtype=torch.float32, device=self.device)

    def _exemplar_side(self) -> np.ndarray:
        """[K] side of the exemplar crop in frame pixels: sqrt((w + p)(h + p)), p = context · (w + h)."""
        return np.asarray(context_side(self.sizes[:, 0], self.sizes[:, 1], self.context))

    @staticmethod
    def _frame(frame: np.ndarray) -> Tensor:
        """[C, H, W] raw values as a float32 tensor on the CPU, where crops are cut: only crops go to the device."""
        return torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))

    def _crops(self, frame: Tensor, centres: np.ndarray, sides: np.ndarray, size: int) -> Tensor:
        """[N, C, size, size] normalised on the device: squares of ``sides`` [N] frame px around ``centres`` [N, 2]
        (x, y), cut as training cuts them (:func:`crop_windows`: bilinear, the frame's band means outside it)."""
        crops = crop_windows(frame, torch.from_numpy(centres).float(), torch.from_numpy(sides).float(), size,
                             frame.mean(dim=(1, 2)))
        return normalise(crops.to(self.device), self.stats)


def tracker_for(model: SiameseEmbedder, geometry: TrackModelConfig, stats: BandStats, device: torch.device | str,
                **options: float | int | None) -> Tracker:
    """A :class:`Tracker` cropping as the model was trained (``geometry``: a run's ``cfg.model``); ``options`` are the
    tracker's keyword options."""
    return Tracker(model, stats, geometry.exemplar_size, geometry.search_size, geometry.context, device=device,
                   **options)


def track_frames(tracker: Tracker, frames: FrameReader, init_boxes: np.ndarray, start: int = 0) -> Track:
    """Track ``init_boxes`` [K, 4] given on frame ``start`` through the last frame: boxes [T, K, 4] and scores
    [T, K] for frames ``start..``, the first the init boxes with score 1; fps times the tracker only (not reading)."""
    init_boxes = np.asarray(init_boxes, dtype=np.float64).reshape(-1, 4)
    count = len(frames) - start
    boxes, scores = np.empty((count, len(init_boxes), 4)), np.ones((count, len(init_boxes)))
    boxes[0] = init_boxes
    seconds = 0.0
    for t in range(count):
        frame = frames.read(start + t)
        began = time.perf_counter()
        if t == 0:
            tracker.init(frame, init_boxes)
        else:
            boxes[t], scores[t] = tracker.update(frame)
        seconds += time.perf_counter() - began
    return Track(boxes, scores, count / seconds if seconds > 0 else math.inf)
