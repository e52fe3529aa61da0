"""Photometric jitter of finetuning batches: each operation's law, probabilities, determinism, and one result
whether the workers or the training device apply it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ssl_siam.change.training import FinetuneTask, JitterCollate
from ssl_siam.data.sampling import seeded_generator
from ssl_siam.data.stats import BandStats
from ssl_siam.data.transforms.photometric import Jitter, jitter_pair, photometric_jitter

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


def test_jitter_pair_is_independent_keeps_nodata_and_precision() -> None:
    """12-bit data in 6 uint16 bands: pre and post jittered differently, in float (no 8-bit quantisation, scaled by
    each image's maximum), reproducibly; pixels 0 in every band (nodata, padding) stay 0."""
    raw = torch.randint(800, 4000, (8, 6, 32, 32), generator=gen(1)).to(torch.uint16)
    raw[:, :, :4] = 0
    pre, post = jitter_pair(raw, raw, gen(3))
    assert pre.dtype == post.dtype == torch.float32 and pre.shape == raw.shape
    assert ((pre[:, :, :4] == 0) & (post[:, :, :4] == 0)).all()
    differ = (pre != post).flatten(1).any(1)
    assert differ.sum() >= 6  # each fires with p ≈ 0.9: nearly every sample differs between pre and post
    changed = (pre != raw.float()).flatten(1).any(1).nonzero()[0, 0]
    assert len(pre[changed].unique()) > 2000 and pre.max() <= 4000  # not 8-bit quantised, within the range
    again = jitter_pair(raw, raw, gen(3))
    assert torch.equal(again[0], pre) and torch.equal(again[1], post)


def test_worker_and_device_placements_jitter_a_batch_identically() -> None:
    """The default (jitter in the DataLoader workers, JitterCollate) and data.photometric_on_device=true (the task
    jitters on the device) give bit-identical normalised inputs on the CPU: one implementation, two placements."""
    stats = BandStats([0.0] * 3, [255.0] * 3, [0.4] * 3, [0.2] * 3)
    items = [{"pre": torch.randint(0, 256, (3, 16, 16), generator=gen(i), dtype=torch.uint8),
              "post": torch.randint(0, 256, (3, 16, 16), generator=gen(50 + i), dtype=torch.uint8),
              "mask": torch.zeros(16, 16, dtype=torch.int64), "index": 40 + i} for i in range(4)]
    worker = JitterCollate(seed=5)(items)
    seen = []

    def model(pre: torch.Tensor, post: torch.Tensor) -> dict:
        seen.append((pre, post))
        return {"logits": pre}

    on_device = FinetuneTask(model, lambda out, mask: (out["logits"].sum(), {}), stats, stats,  # type: ignore[arg-type]
                             jitter_seed=5)
    plain = FinetuneTask(model, lambda out, mask: (out["logits"].sum(), {}), stats, stats)  # type: ignore[arg-type]
    on_device.training_step(torch.utils.data.default_collate(items), 0, 0)
    plain.training_step(worker, 0, 0)
    (pre_d, post_d), (pre_w, post_w) = seen
    assert torch.equal(pre_d, pre_w) and torch.equal(post_d, post_w)
    expected = jitter_pair(torch.stack([i["pre"] for i in items]), torch.stack([i["post"] for i in items]),
                           seeded_generator(torch.device("cpu"), 5, 40))  # seeded by the batch's first index
    assert torch.equal(worker["pre"], expected[0]) and torch.equal(worker["post"], expected[1])


def test_finetune_task_normalizes_without_jitter_for_validation_and_prediction() -> None:
    stats = BandStats([0.0] * 3, [255.0] * 3, [0.0] * 3, [1.0] * 3)  # standardize = identity on unit values
    task = FinetuneTask(torch.nn.Identity(), torch.nn.Identity(), stats, stats, jitter_seed=0)  # type: ignore[arg-type]
    raw = torch.randint(60, 200, (4, 3, 16, 16), dtype=torch.uint8)
    pre, post = task.normalize(raw, raw)
    torch.testing.assert_close(pre, raw.float() / 255)
    torch.testing.assert_close(post, raw.float() / 255)
