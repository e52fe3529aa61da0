"""The synthetic sequence generator: deterministic, boxes inside the frame and on the object, occlusions marked
absent, a constant-velocity sequence exact to the pixel, real imagery as background."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import SHARED_DATA

import ssl_siam.track.synthetic as synthetic
from ssl_siam.core.errors import DataError
from ssl_siam.track.sequences import Sequence, read_sequences

SIZE, FRAMES = 64, 12


def generate(out: Path, n: int = 3, **kw: object) -> list[Sequence]:
    synthetic.generate_sequences(out, n, num_frames=FRAMES, size=SIZE, **kw)
    return read_sequences(out)


def all_frames(seq: Sequence) -> np.ndarray:
    return np.stack([seq.frames.read(i) for i in range(len(seq.frames))])


def test_deterministic_in_the_seed(tmp_path: Path) -> None:
    a, b, c = (generate(tmp_path / name, seed=seed) for name, seed in (("a", 1), ("b", 1), ("c", 2)))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(all_frames(x), all_frames(y))
        np.testing.assert_array_equal(x.boxes, y.boxes)
    assert not np.array_equal(all_frames(a[0]), all_frames(c[0]))
    assert [s.name for s in a] == ["seq_0000", "seq_0001", "seq_0002"]
    assert a[0].frames.size == (SIZE, SIZE) and a[0].frames.num_bands == 3 and len(a[0].frames) == FRAMES


def test_boxes_inside_the_frame_and_occlusions_absent(tmp_path: Path) -> None:
    synthetic.generate_sequences(tmp_path, 6, num_frames=24, size=SIZE, occlusion_p=1.0, object_size=(6, 14))
    seqs = read_sequences(tmp_path)
    for seq in seqs:
        boxes = seq.boxes[seq.present]
        assert seq.present[0], "the first frame initialises the tracker"
        assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:] <= SIZE).all()
        assert (boxes[:, 2:] >= 6 * 0.25 - 1e-6).all() and (boxes[:, 2:] <= 14 * 1.2).all()
        assert (~seq.present).sum() <= 24 // 3
    assert sum((~s.present).sum() for s in seqs) > 0, "occlusion_p=1 hid the target in no sequence"
    assert all(s.present.all() for s in generate(tmp_path / "clear", n=3, occlusion_p=0.0))


def test_the_object_is_at_its_box(tmp_path: Path) -> None:
    """The same scenes rendered without objects (painting is the only thing turned off; the random draws are the
    same) differ from the real ones strongly inside every box."""
    seqs = generate(tmp_path / "with", n=4, occlusion_p=0.0)
    with mock.patch.object(synthetic, "paint", lambda *args, **kwargs: None):
        empty = generate(tmp_path / "without", n=4, occlusion_p=0.0)
    for seq, ground in zip(seqs, empty):
        diff = np.abs(all_frames(seq) - all_frames(ground)).mean(axis=1)  # [T, H, W]
        for t, (x, y, w, h) in enumerate(seq.boxes):
            inside = diff[t, int(np.ceil(y)):int(y + h), int(np.ceil(x)):int(x + w)]
            assert inside.mean() > 15, f"{seq.name} frame {t}: the box shows background only"
        assert diff.mean() < 15  # the objects are small: most of the frame is background


def test_constant_velocity_sequence(tmp_path: Path) -> None:
    path = synthetic.constant_velocity_sequence(tmp_path, num_frames=10, size=64, box=(5, 10, 8, 6),
                                                velocity=(2.0, 1.25))
    (seq,) = read_sequences(path)
    expected = np.array([5, 10, 8, 6]) + np.arange(10)[:, None] * [2.0, 1.25, 0, 0]
    np.testing.assert_allclose(seq.boxes, expected, atol=1e-6)
    assert seq.present.all()
    frames = all_frames(seq)
    for t, (x, y, w, h) in enumerate(expected.astype(int)):
        assert frames[t, :, y:y + h, x:x + w].mean() > 150  # a white car fills its box
        if t >= 4:  # moved past its first box: there the first frame shows background
            assert np.abs(frames[t] - frames[0])[:, y:y + h, x:x + w].mean() > 20
    still = np.abs(frames[-1] - frames[0]).mean(axis=0) == 0  # a static background: only the car changes
    assert still.mean() > 0.9
    with pytest.raises(ValueError, match="leaves the 64 px frame"):
        synthetic.constant_velocity_sequence(tmp_path / "out", num_frames=40, size=64, velocity=(2.0, 0))


def write_backgrounds(root: Path) -> Path:
    """Two class folders of tiny RGB JPEGs, smaller than the frames (so they are upsampled)."""
    rng = np.random.default_rng(0)
    for cls in ("field", "harbour"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            img = cv2.resize(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8), (40, 40))
            cv2.imwrite(str(root / cls / f"{i}.jpg"), img)
    return root


def test_real_image_backgrounds(tmp_path: Path) -> None:
    root = write_backgrounds(tmp_path / "backgrounds")
    seqs = generate(tmp_path / "seqs", n=4, background=root, seed=3)
    again = generate(tmp_path / "again", n=4, background=root, seed=3)
    np.testing.assert_array_equal(all_frames(seqs[1]), all_frames(again[1]))
    assert all(s.frames.size == (SIZE, SIZE) and s.present[0] for s in seqs)

    tif = tmp_path / "scene.tif"  # a 4-band uint16 GeoTIFF: first three bands, stretched to 8 bits
    data = np.random.default_rng(1).integers(300, 3000, (4, 96, 96)).astype(np.uint16)
    with rasterio.open(tif, "w", driver="GTiff", width=96, height=96, count=4, dtype="uint16",
                       transform=Affine(0.5, 0, 500_000, 0, -0.5, 4_000_000), crs="EPSG:32636") as dst:
        dst.write(data)
    (seq,) = generate(tmp_path / "tif", n=1, background=tif)
    assert all_frames(seq).std() > 20
    with pytest.raises(DataError, match="no background images"):
        generate(tmp_path / "none", n=1, background=tmp_path / "seqs" / "seq_0000" / "groundtruth_rect.txt")


@pytest.mark.skipif(not (SHARED_DATA / "rsscn7").is_dir(), reason="../shared/data/rsscn7 is absent (a fresh clone)")
def test_rsscn7_backgrounds(tmp_path: Path) -> None:
    seqs = generate(tmp_path, n=2, background=SHARED_DATA / "rsscn7")
    for seq in seqs:
        boxes = seq.boxes[seq.present]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:] <= SIZE).all()
        assert all_frames(seq).std() > 10
