"""Frames of one sequence with random access: an image folder (natural order), a frame-major multi-band stack or a
video, each frame ``[C, H, W]`` with its georeferencing when it has one."""

from __future__ import annotations

import re
from collections import abc
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from affine import Affine
from rasterio.crs import CRS

from ssl_siam.core.errors import DataError
from ssl_siam.data.rasters import open_raster

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
STACK_SUFFIXES = (".tif", ".tiff", ".vrt")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")

Georef = tuple[Affine, CRS]


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders digit runs by value (``frame2`` < ``frame10``), as frame numbers are meant."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


class FrameSource:
    """Random access to the frames of one sequence, all of one size ``(height, width)`` and band count."""

    num_bands: int
    size: tuple[int, int]

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, i: int) -> np.ndarray:
        """Frame ``i`` as ``[C, H, W]`` float32 raw values (0..255 for 8-bit images, a GeoTIFF's as stored)."""
        raise NotImplementedError

    def frame_name(self, i: int) -> str:
        return f"frame_{i:04d}"

    def georef(self, i: int) -> Georef | None:
        """The rasterio transform and CRS of frame ``i`` when it is georeferenced (for GeoJSON tracks)."""
        return None

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range: the sequence has {len(self)} frames")


def _band_list(path: Path, available: int, bands: abc.Sequence[int] | None) -> list[int]:
    """0-based band indices to keep, checked against what the source has."""
    chosen = list(range(available)) if bands is None else [int(b) for b in bands]
    bad = [b for b in chosen if not 0 <= b < available]
    if bad or not chosen:
        raise DataError(f"{path}: band indices {chosen} invalid: expected 0-based indices below {available}")
    return chosen


def _georef_of(src: Any) -> Georef | None:
    return (src.transform, src.crs) if src.crs is not None else None


class FolderFrames(FrameSource):
    """A folder of images, one frame per file; every header is checked at opening, so that a frame of another size
    or band count fails before tracking starts rather than in its middle."""

    def __init__(self, files: list[Path], bands: abc.Sequence[int] | None):
        self.files = files
        headers = []
        for f in files:
            with open_raster(f) as src:
                headers.append((src.count, (src.height, src.width), _georef_of(src)))
        count, self.size = headers[0][0], headers[0][1]
        for f, (c, size, _) in zip(files, headers):
            if (c, size) != (count, self.size):
                raise DataError(f"{f}: {c} bands of {size[0]}x{size[1]} px, expected {count} bands of "
                                f"{self.size[0]}x{self.size[1]} px like {files[0].name}")
        self._georefs = [g for _, _, g in headers]
        self._indexes = [b + 1 for b in _band_list(files[0], count, bands)]
        self.num_bands = len(self._indexes)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> np.ndarray:
        self._check_index(i)
        with open_raster(self.files[i]) as src:
            return src.read(self._indexes).astype(np.float32)

    def frame_name(self, i: int) -> str:
        return self.files[i].stem

    def georef(self, i: int) -> Georef | None:
        return self._georefs[i]


class StackFrames(FrameSource):
    """One multi-band raster holding T frames of C bands each, frame-major (bands ``t*C .. t*C+C-1`` are frame t),
    as dense revisit stacks are exported."""

    def __init__(self, path: Path, bands: abc.Sequence[int] | None, bands_per_frame: int):
        with open_raster(path) as src:
            count, self.size, self._georef = src.count, (src.height, src.width), _georef_of(src)
        if bands_per_frame < 1 or count % bands_per_frame:
            raise DataError(f"{path}: {count} bands is not a multiple of bands_per_frame={bands_per_frame}")
        self.path, self._per_frame, self._len = path, bands_per_frame, count // bands_per_frame
        self._bands = _band_list(path, bands_per_frame, bands)
        self.num_bands = len(self._bands)

    def __len__(self) -> int:
        return self._len

    def read(self, i: int) -> np.ndarray:
        self._check_index(i)
        with open_raster(self.path) as src:
            return src.read([i * self._per_frame + b + 1 for b in self._bands]).astype(np.float32)

    def georef(self, i: int) -> Georef | None:
        return self._georef


class VideoFrames(FrameSource):
    """A video file decoded with OpenCV, frames in RGB order. The frame count is found by decoding once (container
    headers often lie); reads in order are O(1), a jump backwards re-opens the file and decodes forward, which is
    exact for every codec (seeking by frame number is not)."""

    def __init__(self, path: Path, bands: abc.Sequence[int] | None):
        self.path = path
        cap = self._open()
        ok, first = cap.read()
        if not ok:
            raise DataError(f"{path}: no frame could be decoded from this video")
        count = 1
        while cap.grab():
            count += 1
        cap.release()
        self._len, self.size = count, first.shape[:2]
        self._bands = _band_list(path, 3, bands)
        self.num_bands = len(self._bands)
        self._cap: cv2.VideoCapture | None = None
        self._next = 0  # the frame the open capture decodes next

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise DataError(f"{self.path}: cannot open as a video (OpenCV has no decoder for it)")
        return cap

    def __len__(self) -> int:
        return self._len

    def read(self, i: int) -> np.ndarray:
        self._check_index(i)
        if self._cap is None or i < self._next:
            self._cap, self._next = self._open(), 0
        for _ in range(i - self._next):
            self._cap.grab()
        ok, bgr = self._cap.read()
        self._next = i + 1
        if not ok:
            raise DataError(f"{self.path}: frame {i} could not be decoded")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
        return rgb[self._bands].astype(np.float32)

    def __getstate__(self) -> dict:
        """Picklable for data-loader workers: the open capture stays behind."""
        return {**self.__dict__, "_cap": None, "_next": 0}


def open_frames(path: str | Path, bands: abc.Sequence[int] | None = None,
                bands_per_frame: int | None = None) -> FrameSource:
    """Frames from a folder of images (natural order, other files ignored), a multi-band stack file
    (``bands_per_frame`` bands per frame, default 1) or a video file; ``bands`` are 0-based indices to keep."""
    path = Path(path)
    if path.is_dir():
        if bands_per_frame is not None:
            raise DataError(f"{path}: bands_per_frame applies to a multi-band stack file, not a folder of images")
        files = sorted((f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda f: natural_key(f.name))
        if not files:
            raise DataError(f"{path}: no frames found: expected images ({' '.join(IMAGE_SUFFIXES)}) in this folder")
        return FolderFrames(files, bands)
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder: expected a folder of images, a stack or a video")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        if bands_per_frame is not None:
            raise DataError(f"{path}: bands_per_frame applies to a multi-band stack file, not a video")
        return VideoFrames(path, bands)
    if suffix in STACK_SUFFIXES:
        return StackFrames(path, bands, bands_per_frame or 1)
    raise DataError(f"{path}: unknown frame source: expected a folder of images, a stack "
                    f"({' '.join(STACK_SUFFIXES)}) or a video ({' '.join(VIDEO_SUFFIXES)})")
