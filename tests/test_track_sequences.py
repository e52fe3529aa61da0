"""Frames (image folders, multi-band stacks, videos) and OTB / SatSOT style sequences: boxes files in their
variants, absence flags, one-line errors, and the write / read round trip."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from ssl_siam.core.errors import DataError
from ssl_siam.track.frames import open_frames
from ssl_siam.track.sequences import read_boxes, read_sequence, read_sequences, write_sequence

BOXES = np.array([[10, 20, 8, 6], [11.5, 20.25, 8, 6], [13, 21, 7.75, 6.5]])
GEOREF = (Affine(0.5, 0, 500_000, 0, -0.5, 4_000_000), CRS.from_epsg(32636))


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("sep", [",", "\t", " ", ", "])
def test_read_boxes_separators(tmp_path: Path, sep: str) -> None:
    text = "".join(sep.join(f"{v:g}" for v in row) + "\n" for row in BOXES)
    np.testing.assert_array_equal(read_boxes(write_text(tmp_path / "gt.txt", text + "\n")), BOXES)


def test_absent_rows_and_flags(tmp_path: Path) -> None:
    text = "1,2,3,4\n0,0,0,0\nNaN,NaN,NaN,NaN\n5,6,0,4\n5,6,7,-1\n7,8,9,10\n"
    boxes = read_boxes(write_text(tmp_path / "a" / "groundtruth_rect.txt", text))
    assert np.isfinite(boxes).all(axis=1).tolist() == [True, False, False, False, False, True]
    np.testing.assert_array_equal(boxes[5], [7, 8, 9, 10])

    gt = write_text(tmp_path / "b" / "groundtruth_rect.txt", "1,2,3,4\n2,3,4,5\n3,4,5,6\n")
    write_text(tmp_path / "b" / "absent.txt", "0\n1\n0\n")  # ours / GOT-10k style: one flag a line
    assert np.isnan(read_boxes(gt)).any(axis=1).tolist() == [False, True, False]
    write_text(tmp_path / "b" / "full_occlusion.txt", "0,0,1")  # LaSOT style: one line, comma separated
    assert np.isnan(read_boxes(gt)).any(axis=1).tolist() == [False, True, True]
    write_text(tmp_path / "b" / "absent.txt", "0\n1\n")
    with pytest.raises(DataError, match=r"absent.txt: expected one 0/1 flag per frame .*3 .*got 2"):
        read_boxes(gt)


def test_bad_boxes_files_name_the_line(tmp_path: Path) -> None:
    gt = write_text(tmp_path / "gt.txt", "1,2,3,4\n1,2,3\n")
    with pytest.raises(DataError, match=r"gt.txt line 2: expected x,y,w,h .*got '1,2,3'"):
        read_boxes(gt)
    write_text(gt, "1,2,3,4\n\n1,2,3,four\n")
    with pytest.raises(DataError, match="gt.txt line 3: expected x,y,w,h"):
        read_boxes(gt)
    write_text(gt, "1,2,3,4\n1,2,3,4\n")
    with pytest.raises(DataError, match="2 boxes for 3 frames"):
        read_boxes(gt, num_frames=3)
    with pytest.raises(DataError, match="no boxes"):
        read_boxes(write_text(gt, "\n"))


def test_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (3, 12, 16), dtype=np.uint8) for _ in range(3)]
    boxes = np.array([[1.123456, 2.5, 3, 4], [np.nan] * 4, [1 / 3, 2 / 3, 10.000001, 5.75]])
    seq = read_sequence(write_sequence(tmp_path, "rgb", frames, boxes))
    assert seq.name == "rgb" and len(seq.frames) == 3 and seq.frames.size == (12, 16) and seq.frames.num_bands == 3
    np.testing.assert_allclose(seq.boxes, boxes, atol=1e-6)
    assert seq.present.tolist() == [True, False, True]
    for i, frame in enumerate(frames):
        read = seq.frames.read(i)
        assert read.dtype == np.float32
        np.testing.assert_array_equal(read, frame)
    assert seq.frames.georef(0) is None
    assert (tmp_path / "rgb" / "img" / "0001.png").is_file()

    gray = read_sequence(write_sequence(tmp_path, "gray", [f[:1] for f in frames], boxes))
    assert gray.frames.num_bands == 1
    np.testing.assert_array_equal(gray.frames.read(2), frames[2][:1])

    deep = [f.astype(np.uint16) * 100 for f in frames]  # not 8-bit: GeoTIFF frames, values kept, no georef
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seq = read_sequence(write_sequence(tmp_path, "deep", deep, boxes))
    assert (tmp_path / "deep" / "img" / "0003.tif").is_file() and seq.frames.georef(2) is None
    np.testing.assert_array_equal(seq.frames.read(2), deep[2])


def test_geotiff_frames_keep_values_and_georef(tmp_path: Path) -> None:
    frames = [np.full((4, 8, 10), 1000 * (i + 1), np.uint16) + np.arange(4, dtype=np.uint16)[:, None, None]
              for i in range(2)]
    seq_dir = write_sequence(tmp_path, "ms", frames, BOXES[:2], georef=GEOREF)
    assert (seq_dir / "img" / "0002.tif").is_file()
    frames_read = open_frames(seq_dir / "img", bands=[3, 0])
    assert frames_read.num_bands == 2
    np.testing.assert_array_equal(frames_read.read(1)[:, 0, 0], [2003, 2000])
    transform, crs = frames_read.georef(1)
    assert transform == GEOREF[0] and crs == GEOREF[1]
    with pytest.raises(DataError, match=r"band indices \[4\] invalid: expected 0-based indices below 4"):
        open_frames(seq_dir / "img", bands=[4])


def test_folder_natural_order_and_other_files_ignored(tmp_path: Path) -> None:
    for value, stem in enumerate(["frame1", "frame2", "frame10"]):
        cv2.imwrite(str(tmp_path / f"{stem}.png"), np.full((6, 5), value, np.uint8))
    write_text(tmp_path / "notes.txt", "not a frame")
    frames = open_frames(tmp_path)
    assert [frames.frame_name(i) for i in range(len(frames))] == ["frame1", "frame2", "frame10"]
    assert [frames.read(i)[0, 0, 0] for i in range(3)] == [0, 1, 2]
    assert frames.size == (6, 5) and frames.num_bands == 1


def test_frame_of_another_size_is_named(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "0001.png"), np.zeros((6, 5, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "0002.png"), np.zeros((6, 7, 3), np.uint8))
    with pytest.raises(DataError, match=r"0002.png: 3 bands of 6x7 px, expected 3 bands of 6x5 px"):
        open_frames(tmp_path)


def test_stack_of_frames(tmp_path: Path) -> None:
    path = tmp_path / "stack.tif"
    data = np.arange(1, 7, dtype=np.float32)[:, None, None] * np.ones((6, 4, 5), np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=5, height=4, count=6, dtype="float32",
                       transform=GEOREF[0], crs=GEOREF[1]) as dst:
        dst.write(data)
    frames = open_frames(path, bands_per_frame=2)  # 3 frames of 2 bands: (1, 2), (3, 4), (5, 6)
    assert len(frames) == 3 and frames.num_bands == 2 and frames.size == (4, 5)
    np.testing.assert_array_equal(frames.read(1)[:, 0, 0], [3, 4])
    np.testing.assert_array_equal(open_frames(path, bands=[1], bands_per_frame=2).read(2)[:, 0, 0], [6])
    assert frames.frame_name(2) == "frame_0002" and frames.georef(0)[1] == GEOREF[1]
    assert len(open_frames(path)) == 6
    with pytest.raises(DataError, match="6 bands is not a multiple of bands_per_frame=4"):
        open_frames(path, bands_per_frame=4)
    with pytest.raises(IndexError):
        frames.read(3)


def test_video_frames(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for i in range(5):
        writer.write(np.dstack([np.full((24, 32), 40 * i, np.uint8), np.zeros((24, 32, 2), np.uint8)]))  # BGR
    writer.release()
    frames = open_frames(path)
    assert len(frames) == 5 and frames.num_bands == 3 and frames.size == (24, 32)
    for i in (3, 1, 4):  # forward, backward (re-opened), forward
        frame = frames.read(i)
        assert frame.shape == (3, 24, 32)
        assert abs(frame[2].mean() - 40 * i) < 4 and frame[0].mean() < 4  # blue in BGR is the last band in RGB


def test_open_frames_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no frames found"):
        open_frames(tmp_path / "empty")
    with pytest.raises(DataError, match="unknown frame source"):
        open_frames(write_text(tmp_path / "frames.gif", "x"))
    with pytest.raises(DataError, match="no such file or folder"):
        open_frames(tmp_path / "missing")
    with pytest.raises(DataError, match="cannot open as a raster"):
        open_frames(write_text(tmp_path / "broken.tif", "not a tiff"))


def test_read_sequences_in_natural_order(tmp_path: Path) -> None:
    frames = [np.zeros((3, 8, 8), np.uint8)] * 3
    for name in ("seq10", "seq2"):
        write_sequence(tmp_path, name, frames, BOXES)
    (tmp_path / "plots").mkdir()
    assert [s.name for s in read_sequences(tmp_path)] == ["seq2", "seq10"]
    assert [s.name for s in read_sequences(tmp_path / "seq10")] == ["seq10"]
    with pytest.raises(DataError, match=r"plots: no sequence found: expected `<seq>/img/\*.jpg\|png\|tif"):
        read_sequences(tmp_path / "plots")
    (tmp_path / "seq2" / "groundtruth_rect.txt").unlink()
    with pytest.raises(DataError, match="groundtruth_rect.txt: missing"):
        read_sequences(tmp_path)
