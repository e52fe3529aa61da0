"""Device-side photometric jitter of finetuning batches: each operation's law, probabilities, determinism."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ssl_siam.data.photometric import Jitter, photometric_jitter
from ssl_siam.data.stats import BandStats
from ssl_siam.finetuning import FinetuneTask

OFF = Jitter(p_brightness_contrast=0.0, p_gamma=0.0, p_noise=0.0, p_blur=0.0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mid_grey(batch: int, bands: int = 3, size: int = 16) -> torch.Tensor:
    """Values in [0.3, 0.7]: no operation clips them."""
    return 0.3 + 0.4 * torch.rand(batch, bands, size, size, generator=gen(99))


def test_deterministic_in_range_and_keeps_masked_pixels() -> None:
    x = torch.rand(6, 5, 24, 24, generator=gen(1))
    keep = torch.zeros(6, 24, 24, dtype=torch.bool)
    keep[:, :4] = True
    out = photometric_jitter(x, gen(0), keep=keep)
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(photometric_jitter(x, gen(0), keep=keep), out, rtol=0, atol=0)
    assert not torch.equal(photometric_jitter(x, gen(1), keep=keep), out)
    torch.testing.assert_close(out[:, :, :4], x[:, :, :4], rtol=0, atol=0)
    assert torch.equal(photometric_jitter(x, gen(0), OFF), x)


def test_brightness_contrast_is_a_per_sample_affine_map() -> None:
    x = mid_grey(8)
    out = photometric_jitter(x, gen(2), dataclasses.replace(OFF, p_brightness_contrast=1.0))
    alphas = []
    for xi, yi in zip(x.flatten(1), out.flatten(1)):
        design = torch.stack([xi, torch.ones_like(xi)], 1).double()
        alpha, beta = torch.linalg.lstsq(design, yi.double()[:, None]).solution[:, 0].tolist()
        torch.testing.assert_close(yi.double(), design @ torch.tensor([alpha, beta], dtype=torch.float64))
        assert 0.85 <= alpha <= 1.15 and -0.15 <= beta <= 0.15
        alphas.append(alpha)
    assert len({round(a, 6) for a in alphas}) == 8  # each sample draws its own parameters


def test_gamma_noise_and_blur_laws() -> None:
    x = mid_grey(8)
    out = photometric_jitter(x, gen(3), dataclasses.replace(OFF, p_gamma=1.0))
    gamma = out.log() / x.log()  # x ** γ: one exponent per sample
    assert (gamma.flatten(1).std(1) < 1e-4).all() and 0.85 <= gamma.min() and gamma.max() <= 1.15
    out = photometric_jitter(x, gen(4), dataclasses.replace(OFF, p_noise=1.0))
    std = (out - x).flatten(1).std(1)
    assert 0.004 <= std.min() and std.max() <= 0.033 and std.std() > 1e-3
    flat = torch.full((2, 3, 16, 16), 0.4)
    flat[:, :, ::2] = 0.6  # horizontal stripes: blur pulls every row towards 0.5
    out = photometric_jitter(flat, gen(5), dataclasses.replace(OFF, p_blur=1.0))
    assert ((out - 0.5).abs() < (flat - 0.5).abs()).all()
    torch.testing.assert_close(out.mean(), flat.mean(), rtol=0, atol=1e-3)


@pytest.mark.parametrize("field", ["p_brightness_contrast", "p_gamma", "p_noise", "p_blur"])
def test_each_operation_fires_with_its_probability(field: str) -> None:
    x = mid_grey(3000, bands=1, size=6)
    p = getattr(Jitter(), field)
    out = photometric_jitter(x, gen(6), dataclasses.replace(OFF, **{field: p}))
    fired = (out != x).flatten(1).any(1).float().mean().item()
    assert fired == pytest.approx(p, abs=0.03)


def test_finetune_task_jitters_pre_and_post_independently_and_reproducibly() -> None:
    stats = BandStats([0.0] * 3, [255.0] * 3, [0.0] * 3, [1.0] * 3)  # standardize = identity on unit values
    task = FinetuneTask(torch.nn.Identity(), torch.nn.Identity(), stats, stats, jitter_seed=0)  # type: ignore[arg-type]
    raw = torch.randint(60, 200, (4, 3, 16, 16), dtype=torch.uint8)
    raw[:, :, 0] = 0  # a nodata row: kept at 0
    pre, post = task.normalize(raw, raw, gen(7))
    assert not torch.equal(pre, post) and (pre[:, :, 0] == 0).all() and (post[:, :, 0] == 0).all()
    again = task.normalize(raw, raw, gen(7))
    assert torch.equal(again[0], pre) and torch.equal(again[1], post)
    plain = task.normalize(raw, raw)  # validation and prediction: no jitter
    torch.testing.assert_close(plain[0], raw.float() / 255)
