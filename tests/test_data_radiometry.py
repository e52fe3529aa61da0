"""Relative radiometric normalisation (``data.radiometric=match``): moments by hand, the dtype rules, and the same
correction in training crops, validation and prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image
from torch import nn

from ssl_siam.change.predict import predict_pair
from ssl_siam.change.tasks import change_task
from ssl_siam.change.training import FinetuneTask
from ssl_siam.core.errors import DataError
from ssl_siam.data.pair_crops import PairCropDataset
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.radiometry import BandAffine, match_moments
from ssl_siam.data.stats import BandStats
from ssl_siam.train.runtime import Runtime


def test_moments_are_matched_by_hand() -> None:
    rng = np.random.default_rng(0)
    pre = rng.integers(100, 3000, (3, 20, 30)).astype(np.float64)
    post = 2.0 * pre + 10.0
    post[:, 0, :5] = 60000.0  # nodata: left out of the moments
    invalid = np.zeros((20, 30), bool)
    invalid[0, :5] = True
    affine = match_moments(pre, post, invalid)
    np.testing.assert_allclose(affine.gain, [0.5] * 3)
    np.testing.assert_allclose(affine.offset, [-5.0] * 3, atol=1e-9)
    np.testing.assert_allclose(affine.apply(post)[:, ~invalid], pre[:, ~invalid])
    # a second check on moments of small arrays, by hand: pre (1, 3) mean 2, std sqrt(2/3); post mean 5, std 2 sqrt(2/3)
    one = match_moments(np.array([[[1.0, 2.0, 3.0]]]), np.array([[[3.0, 5.0, 7.0]]]))
    assert (one.gain[0], one.offset[0]) == pytest.approx((0.5, 2.0 - 0.5 * 5.0))


def test_flat_bands_and_empty_pairs_are_left_alone() -> None:
    pre = np.stack([np.full((4, 4), 7.0), np.arange(16.0).reshape(4, 4)])
    post = np.stack([np.arange(16.0).reshape(4, 4), np.full((4, 4), 3.0)])
    affine = match_moments(pre, post)  # band 1: pre flat; band 2: post flat
    np.testing.assert_array_equal(affine.gain, [1.0, 1.0])
    np.testing.assert_array_equal(affine.offset, [0.0, 0.0])
    none = match_moments(pre, post, np.ones((4, 4), bool))
    np.testing.assert_array_equal(none.gain, [1.0, 1.0])
    with pytest.raises(ValueError, match="one shape"):
        match_moments(pre, post[:1])


def test_apply_keeps_the_dtype_rounds_clips_and_keeps_nodata() -> None:
    x = np.array([[[0, 100, 250]]], np.uint8)
    affine = BandAffine(np.array([1.1]), np.array([10.0]))
    np.testing.assert_array_equal(affine.apply(x), [[[10, 120, 255]]])  # 0→10, 100→120, 250→285 clipped
    keep = np.array([[True, False, False]])
    np.testing.assert_array_equal(affine.apply(x, keep), [[[0, 120, 255]]])
    assert affine.apply(x).dtype == np.uint8
    shifted = BandAffine(np.array([1.0]), np.array([-0.6])).apply(np.array([[[0.5]]], np.float32))
    assert shifted.dtype == np.float32 and shifted[0, 0, 0] == pytest.approx(-0.1)  # floats are not rounded


TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4500000.0)


def _tif(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=data.dtype, crs="EPSG:32631", transform=TRANSFORM, nodata=nodata) as dst:
        dst.write(data)
    return path


def _pair(tmp_path: Path, post_bands: int = 3) -> tuple[PairRecord, np.ndarray, np.ndarray]:
    """A uint16 pair whose later date is the earlier one with gain 1.5 and offset 200 (a hazier, brighter date),
    nodata (0) in one corner of the later date, and an all-zero change mask."""
    rng = np.random.default_rng(1)
    pre = rng.integers(300, 2500, (3, 40, 48)).astype(np.uint16)
    post = (1.5 * pre[:post_bands] + 200).astype(np.uint16)
    post[:, :4, :4] = 0
    mask = np.zeros((1, 40, 48), np.uint8)
    record = PairRecord("city", tmp_path, _tif(tmp_path / "pre.tif", pre, 0), _tif(tmp_path / "post.tif", post, 0),
                        damage_target=_tif(tmp_path / "cm.tif", mask))
    return record, pre, post


def test_crops_of_a_matched_pair_lose_the_date_radiometry(tmp_path: Path) -> None:
    record, pre, post = _pair(tmp_path)
    common = dict(num_classes=2, mask_map={255: 1})
    plain = PairCropDataset([record], None, train=False, **common)[0]
    np.testing.assert_array_equal(plain["post"].numpy(), post)  # none: the file's values
    item = PairCropDataset([record], None, train=False, radiometric="match", **common)[0]
    assert item["post"].dtype == plain["post"].dtype
    matched, inner = item["post"].numpy().astype(int), (slice(None), slice(4, None), slice(4, None))
    assert np.abs(matched[inner] - pre[inner].astype(int)).max() <= 2  # back on the earlier date's scale
    assert (matched[:, :4, :4] == 0).all()  # nodata untouched
    train = PairCropDataset([record], 16, train=True, radiometric="match", augment=False, **common)
    crop = train[3]
    assert crop["post"].shape == (3, 16, 16)
    pre_crop, post_crop = crop["pre"].numpy().astype(int), crop["post"].numpy().astype(int)
    assert np.abs(post_crop - pre_crop)[post_crop > 0].max() <= 2


def test_matching_needs_as_many_post_bands_as_pre_bands(tmp_path: Path) -> None:
    record, _, _ = _pair(tmp_path, post_bands=2)
    with pytest.raises(DataError, match=r"post.tif: data.radiometric=match .* expected as many \(2 post, 3 pre\)"):
        PairCropDataset([record], None, train=False, radiometric="match", num_classes=2)


class PairPixelModel(nn.Module):
    """Change logit = Σ_bands (post − pre) − 0.1 per pixel (standardised), no-change logit 0: any radiometric
    difference between the dates reads as change."""

    output_stride = 32

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 2, kernel_size=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.conv.weight.data[1, :3], self.conv.weight.data[1, 3:], self.conv.bias.data[1] = -1.0, 1.0, -0.1

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.conv(torch.cat([pre, post], dim=1))}


@pytest.mark.parametrize("radiometric", ["none", "match"])
def test_predict_applies_the_runs_correction(tmp_path: Path, radiometric: str) -> None:
    """The same scene on a hazier date: without the correction the difference model maps change everywhere; with
    the run's data.radiometric=match, predict corrects the post image as training did and maps none."""
    record, _, _ = _pair(tmp_path)
    stats = BandStats([0.0] * 3, [4000.0] * 3, [0.3] * 3, [0.2] * 3)
    task = FinetuneTask(PairPixelModel(), nn.Identity(), stats, stats, radiometric=radiometric).eval()
    out = tmp_path / radiometric
    predict_pair(task, change_task("binary"), Runtime.create("cpu"), record.pre_image, record.post_image, out,
                 bands=None, post_bands=None, window=64, overlap=0.25, tta=False, batch_size=2, stem="city")
    changed = np.asarray(Image.open(out / "city_change_mask.png"))[4:, 4:]
    assert changed.mean() == (0.0 if radiometric == "match" else 1.0)


def test_predict_refuses_matching_dates_of_different_band_counts(tmp_path: Path) -> None:
    """A model trained with matching cannot match a 2-band post image to a 3-band pre image: one line naming the
    post image, both counts and what to do, before anything is written."""
    record, _, _ = _pair(tmp_path, post_bands=2)
    pre_stats = BandStats([0.0] * 3, [4000.0] * 3, [0.3] * 3, [0.2] * 3)
    post_stats = BandStats([0.0] * 2, [4000.0] * 2, [0.3] * 2, [0.2] * 2)
    task = FinetuneTask(PairPixelModel(), nn.Identity(), pre_stats, post_stats, radiometric="match").eval()
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"post.tif: data.radiometric=match .* \(2 post, 3 pre\); .*--post-bands"):
        predict_pair(task, change_task("binary"), Runtime.create("cpu"), record.pre_image, record.post_image, out,
                     bands=None, post_bands=None, window=64, overlap=0.25, tta=False, batch_size=2, stem="city")
    assert not out.exists()
