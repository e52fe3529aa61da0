"""Frames and annotated sequences: an image folder, a multi-band stack or a video as random-access frames
``[C, H, W]``, and OTB / SatSOT style sequences (``<seq>/img/*`` + ``groundtruth_rect.txt``, x, y, w, h per frame)."""

from __future__ import annotations

import re
import warnings
from collections import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from ssl_siam.core.errors import DataError
from ssl_siam.data.rasters import open_raster

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
STACK_SUFFIXES = (".tif", ".tiff", ".vrt")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
BOXES_FILE = "groundtruth_rect.txt"
#: Per-frame absence flags beside the boxes (1 = absent), one value per frame separated by newlines or commas:
#: ours / SatSOT style, GOT-10k (``absence.label``) and LaSOT (``full_occlusion.txt``, ``out_of_view.txt``).
ABSENCE_FILES = ("absent.txt", "absence.label", "full_occlusion.txt", "out_of_view.txt")
LAYOUT = f"`<seq>/img/*.jpg|png|tif + <seq>/{BOXES_FILE}`"

Georef = tuple[Affine, CRS]


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders digit runs by value (``frame2`` < ``frame10``), as frame numbers are meant."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """``[N]`` bool: boxes x, y, w, h that are finite with positive width and height (others mark absence)."""
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


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


@dataclass
class Sequence:
    """One annotated sequence: its frames and a box per frame (NaN rows where the target is absent)."""

    name: str
    frames: FrameSource
    boxes: np.ndarray  # [T, 4] float64 x, y, w, h: top-left corner and size in pixels

    @property
    def present(self) -> np.ndarray:
        """[T] bool: the frame has a box (finite, with positive width and height)."""
        return valid_boxes(self.boxes)


def _parse_box_line(path: Path, number: int, line: str) -> list[float]:
    fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
    try:
        if len(fields) != 4:
            raise ValueError
        return [float(f) for f in fields]
    except ValueError:
        raise DataError(f"{path} line {number}: expected x,y,w,h (4 numbers separated by commas, tabs or spaces), "
                        f"got {line.strip()!r}") from None


def _absence_flags(path: Path, rows: int) -> np.ndarray:
    """[rows] bool: frames an absence file beside ``path`` marks absent (any of :data:`ABSENCE_FILES`)."""
    absent = np.zeros(rows, bool)
    for flag_file in (path.with_name(n) for n in ABSENCE_FILES):
        if not flag_file.is_file():
            continue
        fields = [f for f in re.split(r"[,\s]+", flag_file.read_text()) if f]
        if len(fields) != rows or any(f not in ("0", "1") for f in fields):
            raise DataError(f"{flag_file}: expected one 0/1 flag per frame (1 = absent), {rows} in all like "
                            f"{path.name}; got {len(fields)} values")
        absent |= np.array(fields) == "1"
    return absent


def read_boxes(path: Path, num_frames: int | None = None) -> np.ndarray:
    """``[T, 4]`` float64 x, y, w, h from an OTB ``groundtruth_rect.txt`` (comma, tab or whitespace separated).
    Absent frames become NaN rows: a NaN row, ``0,0,0,0``, a non-positive width or height, or a 1 in an absence
    file beside it; ``num_frames`` checks the row count against the frames."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the boxes file ({exc.strerror})") from None
    rows = [_parse_box_line(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not rows:
        raise DataError(f"{path}: no boxes: expected one x,y,w,h line per frame")
    boxes = np.array(rows, np.float64)
    boxes[~valid_boxes(boxes) | _absence_flags(path, len(boxes))] = np.nan
    if num_frames is not None and len(boxes) != num_frames:
        raise DataError(f"{path}: {len(boxes)} boxes for {num_frames} frames: expected one x,y,w,h line per frame")
    return boxes


def _is_sequence_dir(folder: Path) -> bool:
    return (folder / "img").is_dir() or (folder / BOXES_FILE).is_file()


def read_sequence(seq_dir: Path, bands: abc.Sequence[int] | None = None) -> Sequence:
    """The sequence in ``seq_dir`` (``img/*`` + ``groundtruth_rect.txt``), named after the folder."""
    seq_dir = Path(seq_dir)
    for needed in (seq_dir / "img", seq_dir / BOXES_FILE):
        if not needed.exists():
            raise DataError(f"{needed}: missing: a sequence folder is laid out as {LAYOUT}")
    frames = open_frames(seq_dir / "img", bands)
    return Sequence(seq_dir.name, frames, read_boxes(seq_dir / BOXES_FILE, len(frames)))


def read_sequences(root: str | Path, bands: abc.Sequence[int] | None = None) -> list[Sequence]:
    """One sequence folder, or every sequence folder inside ``root`` in natural order of names (other folders are
    ignored)."""
    root = Path(root)
    if _is_sequence_dir(root):
        return [read_sequence(root, bands)]
    folders = sorted((d for d in root.iterdir() if d.is_dir() and _is_sequence_dir(d)),
                     key=lambda d: natural_key(d.name)) if root.is_dir() else []
    if not folders:
        raise DataError(f"{root}: no sequence found: expected {LAYOUT}, or a folder of such sequence folders")
    return [read_sequence(d, bands) for d in folders]


def _write_frame(path_stem: Path, frame: np.ndarray, georef: Georef | None) -> None:
    """One ``[C, H, W]`` frame: PNG when it is 8-bit with 1 or 3 bands and no georef, else GeoTIFF."""
    if frame.dtype == np.uint8 and frame.shape[0] in (1, 3) and georef is None:
        hwc = frame.transpose(1, 2, 0)
        if not cv2.imwrite(str(path_stem.with_suffix(".png")), hwc[..., ::-1] if len(frame) == 3 else hwc[..., 0]):
            raise OSError(f"{path_stem.with_suffix('.png')}: cannot write the frame")
        return
    geo = {"transform": georef[0], "crs": georef[1]} if georef is not None else {}
    with warnings.catch_warnings():  # no georef given: a plain pixel grid is what was asked for
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path_stem.with_suffix(".tif"), "w", driver="GTiff", width=frame.shape[2],
                           height=frame.shape[1], count=frame.shape[0], dtype=frame.dtype, **geo) as dst:
            dst.write(frame)


def format_box(box: np.ndarray) -> str:
    """``x,y,w,h`` to 1e-6 px without trailing zeros; an absent box is ``nan,nan,nan,nan``."""
    if not np.isfinite(box).all():
        return "nan,nan,nan,nan"
    return ",".join(f"{v:.6f}".rstrip("0").rstrip(".") for v in box)


def write_sequence(out_dir: Path, name: str, frames: abc.Sequence[np.ndarray], boxes: np.ndarray,
                   georef: Georef | None = None) -> Path:
    """Writes ``<out_dir>/<name>/img/0001.png ...`` (``.tif`` for other than 8-bit 1- or 3-band frames, or with
    ``georef``, the same for every frame) and ``groundtruth_rect.txt``; ``frames`` are ``[C, H, W]`` as
    :meth:`FrameSource.read` returns them. Returns the sequence folder."""
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape != (len(frames), 4):
        raise ValueError(f"boxes of shape {boxes.shape} for {len(frames)} frames: expected [T, 4]")
    seq_dir = Path(out_dir) / name
    (seq_dir / "img").mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        _write_frame(seq_dir / "img" / f"{i + 1:04d}", np.asarray(frame), georef)
    (seq_dir / BOXES_FILE).write_text("".join(format_box(b) + "\n" for b in boxes))
    return seq_dir
