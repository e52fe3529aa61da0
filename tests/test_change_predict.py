"""Sliding-window inference, decoding, pair reading and prediction outputs, with tiny stand-in models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from torch import nn

from ssl_siam.change import outputs
from ssl_siam.change.outputs import DAMAGE_COLOURS, output_stem, overlay_image, to_display_rgb, write_outputs
from ssl_siam.change.predict import predict_pair
from ssl_siam.change.sliding import sliding_window, sliding_window_rows
from ssl_siam.change.tasks import change_task
from ssl_siam.change.tasks.damage import decode
from ssl_siam.change.training import FinetuneTask
from ssl_siam.core.errors import DataError
from ssl_siam.data.rasters import RasterPair
from ssl_siam.data.stats import BandStats
from ssl_siam.train.runtime import Runtime

TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 3500000.0)  # UTM 36N, 0.5 m pixels


class PixelModel(nn.Module):
    """Logits are a 1×1 conv of the concatenated pair: per-pixel, so flip-equivariant and window-independent."""

    output_stride = 32  # what predict reads of a model: windows of small images shrink to multiples of it

    def __init__(self, channels: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, 5, kernel_size=1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> dict[str, torch.Tensor]:
        self.sizes.append(tuple(pre.shape[-2:]))
        return {"logits": 3 * self.conv(torch.cat([pre, post], dim=1))}


class BorderCorruptModel(PixelModel):
    """PixelModel whose predictions are wrong in a 4-px margin of every window, like a CNN near its padding."""

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = super().forward(pre, post)["logits"].clone()
        margin = torch.ones(logits.shape[-2:], dtype=torch.bool)
        margin[4:-4, 4:-4] = False
        logits[:, 4, margin] += 20.0
        return {"logits": logits}


class PositionModel(nn.Module):
    """Logits depend on the pixel position only (not flip-equivariant)."""

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> dict[str, torch.Tensor]:
        height, width = pre.shape[-2:]
        y = torch.linspace(0, 1, height)[:, None].expand(height, width)
        x = torch.linspace(0, 1, width)[None, :].expand(height, width)
        logits = torch.stack([x, 2 * y, x * y, 3 * x - y, torch.zeros_like(x)])
        return {"logits": logits.expand(pre.shape[0], -1, -1, -1)}


def read_pair(pre: Path, post: Path, bands: list[int] | None = None, post_bands: list[int] | None = None):
    """Whole pre and post images and the pre profile, read through :class:`RasterPair` (checked as it checks)."""
    with RasterPair(pre, post, bands, post_bands) as pair:
        return (*pair.rows(0, pair.height), pair.profile)


def _pair(height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, height, width, generator=g), torch.randn(3, height, width, generator=g)


def _whole(model: nn.Module, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pre[None], post[None])["logits"][0].softmax(dim=0)


@pytest.mark.parametrize(
    ("height", "width", "window", "overlap", "batch_size"),
    [(100, 75, 32, 0.3, 3), (96, 128, 64, 0.5, 4), (70, 70, 64, 0.0, 1)],
)
def test_sliding_window_equals_whole_image(height: int, width: int, window: int, overlap: float, batch_size: int):
    model = PixelModel()
    pre, post = _pair(height, width)
    probs = sliding_window(model, pre, post, multiple=32, window=window, overlap=overlap, batch_size=batch_size)
    assert probs.shape == (5, height, width) and probs.dtype == torch.float32
    assert torch.isfinite(probs).all()  # every pixel covered by some window
    torch.testing.assert_close(probs, _whole(model, pre, post), rtol=0, atol=1e-5)
    assert set(model.sizes[:-1]) == {(window, window)}


def test_rows_stream_the_same_probabilities():
    model = PixelModel()
    pre, post = _pair(300, 90, seed=3)
    reads = []

    def read(top: int, bottom: int) -> tuple[torch.Tensor, torch.Tensor]:
        reads.append((top, bottom))
        return pre[:, top:bottom], post[:, top:bottom]

    blocks = list(sliding_window_rows(model, read, 300, 90, multiple=32, window=64, overlap=0.25, batch_size=2))
    tops = [top for top, _ in blocks]
    assert tops[0] == 0 and all(t + b.shape[1] == n for (t, b), n in zip(blocks, [*tops[1:], 300]))  # contiguous
    assert all(bottom - top == 64 for top, bottom in reads)  # one row of windows read at a time
    assert max(b.shape[1] for _, b in blocks) <= 64  # rows are handed over as soon as no window can add to them
    whole = sliding_window(model, pre, post, multiple=32, window=64, overlap=0.25, batch_size=2)
    torch.testing.assert_close(torch.cat([b for _, b in blocks], dim=1), whole, rtol=0, atol=0)
    torch.testing.assert_close(whole, _whole(model, pre, post), rtol=0, atol=1e-5)


def test_blending_down_weights_window_borders():
    model = BorderCorruptModel()
    pre, post = _pair(160, 160)
    probs = sliding_window(model, pre, post, multiple=32, window=64, overlap=0.5)
    error = (probs - _whole(PixelModel(), pre, post)).abs()
    assert error[:, :4].amax() > 0.5  # the image's own border is seen only through window margins
    assert error[:, 4:-4, 4:-4].amax() < 0.01  # inside, window centres outweigh the corrupted margins


def test_tta_of_flip_equivariant_model_is_exact():
    model = PixelModel()
    pre, post = _pair(90, 110)
    probs = sliding_window(model, pre, post, multiple=32, window=64, overlap=0.25, tta=True)
    torch.testing.assert_close(probs, _whole(model, pre, post), rtol=0, atol=1e-5)


def test_tta_averages_unflipped_outputs():
    pre, post = _pair(64, 64)
    probs = sliding_window(PositionModel(), pre, post, multiple=32, window=64, tta=True)
    # the average over the four flips of a position-only model is symmetric under both flips
    torch.testing.assert_close(probs, probs.flip(-1), rtol=0, atol=1e-6)
    torch.testing.assert_close(probs, probs.flip(-2), rtol=0, atol=1e-6)
    assert not torch.allclose(sliding_window(PositionModel(), pre, post, multiple=32, window=64), probs, atol=1e-3)


@pytest.mark.parametrize(("height", "width", "expected"), [(40, 50, 32), (96, 200, 96), (70, 600, 64)])
def test_small_image_shrinks_window(height: int, width: int, expected: int):
    model = PixelModel()
    pre, post = _pair(height, width)
    probs = sliding_window(model, pre, post, multiple=32, window=512)
    assert set(model.sizes) == {(expected, expected)}
    torch.testing.assert_close(probs, _whole(model, pre, post), rtol=0, atol=1e-5)


def test_image_below_minimum_window_raises():
    pre, post = _pair(20, 64)
    with pytest.raises(DataError, match="image is 20×64, smaller than the minimum window 32"):
        sliding_window(PixelModel(), pre, post, multiple=32)


def test_eval_mode_and_amp():
    model = PixelModel().train()
    pre, post = _pair(64, 64)
    probs = sliding_window(model, pre, post, multiple=32, window=32, amp_dtype=torch.bfloat16)
    assert model.training  # restored after inference
    torch.testing.assert_close(probs, _whole(model, pre, post), rtol=0, atol=0.05)


def test_decode_hand_made_probabilities():
    probs = torch.tensor(
        [  # [5, 1, 4]: background wins; no-damage; destroyed beats major; minor beats background's runner-up
            [[0.6], [0.1], [0.2], [0.3]],
            [[0.1], [0.5], [0.1], [0.1]],
            [[0.1], [0.2], [0.1], [0.4]],
            [[0.1], [0.1], [0.25], [0.1]],
            [[0.1], [0.1], [0.35], [0.1]],
        ]
    ).permute(0, 2, 1)
    loc, damage, confidence = decode(probs)
    assert loc.dtype == damage.dtype == np.uint8 and confidence.dtype == np.float32
    np.testing.assert_array_equal(loc, [[0, 1, 1, 1]])
    np.testing.assert_array_equal(damage, [[0, 1, 4, 2]])
    np.testing.assert_allclose(confidence, [[0.6, 0.5, 0.35, 0.4]])


def _maps(height: int = 64, width: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two buildings: a destroyed one (with a few major-damage pixels) and a no-damage one."""
    damage = np.zeros((height, width), np.uint8)
    damage[10:20, 10:25] = 4
    damage[10:12, 10:14] = 3
    damage[40:50, 50:70] = 1
    confidence = np.where(damage == 4, 0.9, np.where(damage == 3, 0.5, 0.7)).astype(np.float32)
    return (damage > 0).astype(np.uint8), damage, confidence


def _write_tif(path: Path, data: np.ndarray, crs: str = "EPSG:32636", transform=TRANSFORM) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
        dtype=data.dtype, crs=crs, transform=transform,
    ) as dst:  # fmt: skip
        dst.write(data)
    return path


def test_write_outputs_png(tmp_path: Path):
    loc, damage, confidence = _maps()
    pre_rgb = np.full((*loc.shape, 3), 128, np.uint8)
    paths = write_outputs(tmp_path / "out", "x_00001", loc, damage, confidence, pre_rgb, None)
    assert [p.name for p in paths] == [
        "x_00001_localization_prediction.png", "x_00001_damage_prediction.png", "x_00001_overlay.png"
    ]  # fmt: skip
    for path, expected in zip(paths, (loc, damage)):
        with Image.open(path) as img:
            assert img.mode == "L"
            np.testing.assert_array_equal(np.asarray(img), expected)
    with Image.open(paths[2]) as img:
        assert img.mode == "RGB" and img.size == (80, 64)


def test_geotiff_round_trip(tmp_path: Path):
    rng = np.random.default_rng(0)
    pre = _write_tif(tmp_path / "x_pre_disaster.tif", rng.integers(0, 2000, (3, 64, 80), dtype=np.uint16))
    post = _write_tif(tmp_path / "x_post_disaster.tif", rng.integers(0, 2000, (3, 64, 80), dtype=np.uint16))
    pre_img, post_img, profile = read_pair(pre, post)
    assert pre_img.shape == post_img.shape == (3, 64, 80) and pre_img.dtype == np.uint16
    selected = read_pair(pre, post, bands=[3, 1], post_bands=[2])
    np.testing.assert_array_equal(selected[0], pre_img[[2, 0]])
    np.testing.assert_array_equal(selected[1], post_img[[1]])
    loc, damage, confidence = _maps()
    paths = write_outputs(tmp_path, output_stem(post), loc, damage, confidence, to_display_rgb(pre_img), profile)
    assert [p.name for p in paths[3:]] == ["x_damage.tif", "x_buildings.geojson"]
    with rasterio.open(paths[3]) as src:
        assert src.crs == CRS.from_epsg(32636) and src.transform == TRANSFORM
        assert src.dtypes == ("uint8",) and src.compression.name == "lzw"
        np.testing.assert_array_equal(src.read(1), damage)
        bounds = shapely.box(*src.bounds)
    collection = json.loads(paths[4].read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32636"
    features = sorted(collection["features"], key=lambda f: f["properties"]["damage_class"])
    assert [f["properties"]["damage"] for f in features] == ["no-damage", "destroyed"]
    no_damage, destroyed = (f["properties"] for f in features)
    assert no_damage == {"damage": "no-damage", "damage_class": 1, "confidence": pytest.approx(0.7), "area_px": 200}
    assert destroyed["area_px"] == 150 and destroyed["damage_class"] == 4
    assert destroyed["confidence"] == pytest.approx((142 * 0.9 + 8 * 0.5) / 150)
    for feature, (row, col) in zip(features, [(40, 50), (10, 10)]):
        polygon = shapely.geometry.shape(feature["geometry"])
        assert polygon.within(bounds)
        assert polygon.area == pytest.approx(feature["properties"]["area_px"] * 0.25)  # 0.5 m pixels
        assert polygon.bounds[0] == 500000.0 + col * 0.5 and polygon.bounds[3] == 3500000.0 - row * 0.5


def test_predict_pair_reads_geotiffs_window_by_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(1)
    pre = _write_tif(tmp_path / "s_pre_disaster.tif", rng.integers(0, 3000, (3, 200, 150), dtype=np.uint16))
    post = _write_tif(tmp_path / "s_post_disaster.tif", rng.integers(0, 3000, (3, 200, 150), dtype=np.uint16))
    stats = BandStats([0.0] * 3, [3000.0] * 3, [0.5] * 3, [0.3] * 3)
    task = FinetuneTask(PixelModel(), nn.Identity(), stats, stats)
    windows = []
    read = RasterPair._read
    monkeypatch.setattr(RasterPair, "_read", lambda self, which, rows: windows.append(rows) or read(self, which, rows))
    paths = predict_pair(task, change_task("damage"), Runtime.create("cpu"), pre, post, tmp_path / "out", bands=None,
                         post_bands=None,
                         window=64, overlap=0.25, tta=False, batch_size=4)
    assert windows and all(rows is not None and rows[1] - rows[0] == 64 for rows in windows)  # never whole
    pre_img, post_img, _ = read_pair(pre, post)  # the whole-image computation, for comparison
    pre_t, post_t = task.normalize(torch.from_numpy(pre_img)[None], torch.from_numpy(post_img)[None])
    loc, damage, _ = decode(sliding_window(task.model, pre_t[0], post_t[0], multiple=32, window=64, overlap=0.25))
    assert 0 < loc.mean() < 1
    with rasterio.open(tmp_path / "out" / "s_damage.tif") as src:
        assert src.crs == CRS.from_epsg(32636) and src.transform == TRANSFORM
        np.testing.assert_array_equal(src.read(1), damage)
    np.testing.assert_array_equal(np.asarray(Image.open(paths[0])), loc)


def test_two_band_pair_is_shown_in_grey(tmp_path: Path):
    data = np.random.default_rng(2).integers(0, 255, (2, 64, 64), dtype=np.uint8)
    with RasterPair(_write_tif(tmp_path / "a.tif", data), _write_tif(tmp_path / "b.tif", data)) as pair:
        np.testing.assert_array_equal(pair.display_bands(), data[:1])
        np.testing.assert_array_equal(pair.rows(10, 20)[1], data[:, 10:20])


def test_a_named_stack_is_shown_by_band_name(tmp_path: Path):
    """An OSCD-like 13-band stack shows B04 / B03 / B02 by its band descriptions, in any band order."""
    names = ["B08", "B02", "B03", "B04", *[f"X{i}" for i in range(9)]]
    data = np.random.default_rng(3).integers(0, 4000, (13, 32, 32), dtype=np.uint16)
    for path in (tmp_path / "a.tif", tmp_path / "b.tif"):
        with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=13, dtype="uint16") as dst:
            dst.write(data)
            for i, name in enumerate(names, 1):
                dst.set_band_description(i, name)
    with RasterPair(tmp_path / "a.tif", tmp_path / "b.tif") as pair:
        np.testing.assert_array_equal(pair.display_bands(), data[[3, 2, 1]])
    with RasterPair(_write_tif(tmp_path / "c.tif", data), _write_tif(tmp_path / "d.tif", data)) as pair:
        np.testing.assert_array_equal(pair.display_bands(), data[[3, 2, 1]])  # unnamed 13 bands: Sentinel-2 order


def test_read_pair_errors(tmp_path: Path):
    data = np.zeros((3, 64, 80), np.uint8)
    pre = _write_tif(tmp_path / "pre.tif", data)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match=r"pre\.tif and .*small\.png: sizes 64×80 and 64×64 differ"):
        read_pair(pre, tmp_path / "small.png")
    with pytest.raises(DataError, match="CRS .* differ"):
        read_pair(pre, _write_tif(tmp_path / "utm37.tif", data, crs="EPSG:32637"))
    shifted = Affine(0.5, 0.0, 500010.0, 0.0, -0.5, 3500000.0)
    with pytest.raises(DataError, match=r"transforms differ \(footprints 20\.00 px apart\)"):
        read_pair(pre, _write_tif(tmp_path / "shifted.tif", data, transform=shifted))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png: cannot open as a raster image"):
        read_pair(tmp_path / "broken.png", pre)
    with pytest.raises(DataError, match="bands"):
        read_pair(pre, pre, bands=[4])
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "a.png")
    assert read_pair(tmp_path / "a.png", pre)[2] is None  # profile comes from the pre image only


def test_overlay_changes_buildings_only():
    rng = np.random.default_rng(0)
    pre_rgb = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    damage = np.zeros((256, 256), np.uint8)
    for cls, (row, col) in enumerate([(150, 150), (150, 200), (200, 150), (200, 200)], start=1):
        damage[row : row + 30, col : col + 30] = cls
    legend = (overlay_image(pre_rgb, np.zeros_like(damage)) != pre_rgb).any(axis=-1)
    overlay = overlay_image(pre_rgb, damage)
    assert overlay.shape == (256, 256, 3) and overlay.dtype == np.uint8
    changed = (overlay != pre_rgb).any(axis=-1)
    assert legend.any() and not legend[128:, :].any() and not legend[:, 128:].any()  # legend in the top-left
    assert not (changed & ~legend & (damage == 0)).any()
    assert changed[damage > 0].all()
    for cls, colour in enumerate(DAMAGE_COLOURS, start=1):
        outline = np.argwhere(damage == cls)[0]  # top-left pixel of the building is on its outline
        assert tuple(overlay[tuple(outline)]) == colour


def test_display_and_overlay_by_row_blocks_equal_whole(monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(4)
    img16, damage = rng.integers(0, 4000, (3, 50, 40), dtype=np.uint16), rng.integers(0, 5, (50, 40), dtype=np.uint8)
    whole_rgb = to_display_rgb(img16)
    whole_overlay = overlay_image(whole_rgb, damage)
    monkeypatch.setattr(outputs, "_CHUNK_ROWS", 7)
    np.testing.assert_array_equal(to_display_rgb(img16), whole_rgb)
    np.testing.assert_array_equal(overlay_image(whole_rgb, damage), whole_overlay)


def test_display_rgb_and_stem():
    rng = np.random.default_rng(0)
    img16 = rng.integers(0, 4000, (4, 32, 48), dtype=np.uint16)
    rgb = to_display_rgb(img16, rgb_bands=(2, 1, 0))
    assert rgb.shape == (32, 48, 3) and rgb.dtype == np.uint8 and rgb.min() == 0 and rgb.max() == 255
    img8 = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(to_display_rgb(img8), img8.transpose(1, 2, 0))
    assert to_display_rgb(img16[:1]).shape == (32, 48, 3)
    assert output_stem("a/b/guatemala-volcano_00000000_post_disaster.png") == "guatemala-volcano_00000000"
    assert output_stem("scene.tif") == "scene"


def test_predict_shrinks_windows_to_the_encoders_output_stride(tmp_path: Path):
    """A ResNet cut after stage 4 has output stride 16: a 48-px-high image is predicted with 48² windows (a
    multiple of 16), where a hard-coded stride of 32 would have shrunk them to 32²."""
    from ssl_siam.change.models.siamese import build_change_net

    model = build_change_net("resnet18", 3, decoder_channels=(16, 16, 8, 8), timm_kwargs={"out_indices": (0, 1, 2, 3)})
    assert model.output_stride == 16 and build_change_net("resnet18", 3).output_stride == 32
    sizes = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(tuple(args[0].shape[-2:])))
    stats = BandStats([0.0] * 3, [255.0] * 3, [0.5] * 3, [0.25] * 3)
    rng = np.random.default_rng(0)
    for phase in ("pre", "post"):
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(tmp_path / f"s_{phase}_disaster.png")
    paths = predict_pair(FinetuneTask(model, nn.Identity(), stats, stats).eval(), change_task("damage"),
                         Runtime.create("cpu"),
                         tmp_path / "s_pre_disaster.png", tmp_path / "s_post_disaster.png", tmp_path / "out",
                         bands=None, post_bands=None, window=512, overlap=0.25, tta=False, batch_size=4)
    assert set(sizes) == {(48, 48)}
    assert np.asarray(Image.open(paths[0])).shape == (48, 80)
