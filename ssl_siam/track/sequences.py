"""OTB / SatSOT style annotated sequences (``<seq>/img/*`` + ``groundtruth_rect.txt``, x, y, w, h per frame, absent
frames marked): reading, validating and writing them; the frames themselves are ``track.frames``."""

from __future__ import annotations

import re
import warnings
from collections import abc
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from ssl_siam.core.errors import DataError
from ssl_siam.track.frames import FrameSource, Georef, natural_key, open_frames

BOXES_FILE = "groundtruth_rect.txt"
#: Per-frame absence flags beside the boxes (1 = absent), one value per frame separated by newlines or commas:
#: ours / SatSOT style, GOT-10k (``absence.label``) and LaSOT (``full_occlusion.txt``, ``out_of_view.txt``).
ABSENCE_FILES = ("absent.txt", "absence.label", "full_occlusion.txt", "out_of_view.txt")
LAYOUT = f"`<seq>/img/*.jpg|png|tif + <seq>/{BOXES_FILE}`"


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """``[N]`` bool: boxes x, y, w, h that are finite with positive width and height (others mark absence)."""
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


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
