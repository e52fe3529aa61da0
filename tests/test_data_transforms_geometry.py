"""Batched device-side joint geometry (data.geometric_on_device): the dihedral group exactly, one geometry for pre,
post and mask, borders, the post-only misregistration shift, and a finetune that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ssl_siam.cli import main
from ssl_siam.data.sampling import seeded_generator
from ssl_siam.data.transforms.geometry import pair_geometry
from ssl_siam.tools.synthetic import make_xbd_split


def d4(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 dihedral images of x [..., H, W]."""
    turns = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return turns + [t.flip(-1) for t in turns]


def test_without_affine_it_is_the_dihedral_group_exactly_and_jointly() -> None:
    torch.manual_seed(0)
    pre = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    post = torch.randint(0, 256, (64, 2, 32, 32), dtype=torch.uint8)
    mask = torch.randint(0, 5, (64, 32, 32))
    a, b, m = pair_geometry(pre, post, mask, seeded_generator(torch.device("cpu"), 1), affine_p=0.0)
    seen = set()
    for i in range(64):
        k = next(j for j, v in enumerate(d4(pre[i].float())) if torch.equal(v, a[i]))
        assert torch.equal(d4(post[i].float())[k], b[i]) and torch.equal(d4(mask[i])[k], m[i])
        seen.add(k)
    assert seen == set(range(8))  # all eight elements drawn


def test_affine_borders_and_the_post_shift() -> None:
    image = torch.full((32, 1, 24, 24), 100, dtype=torch.uint8)
    mask = torch.ones(32, 24, 24, dtype=torch.long)
    a, b, m = pair_geometry(image, image, mask, seeded_generator(torch.device("cpu"), 2), affine_p=1.0,
                            misregistration_px=3, ignore_index=255)
    assert set(m.unique().tolist()) <= {1, 255} and (m == 255).any()  # mask: labels kept, border ignored
    assert a.min() >= 0 and a.max() <= 100 + 1e-3 and (a == 0).any()  # images: border 0
    pre = torch.arange(16 * 16, dtype=torch.float32).reshape(1, 1, 16, 16).repeat(16, 1, 1, 1)
    a, b, _ = pair_geometry(pre, pre, torch.zeros(16, 16, 16, dtype=torch.long),
                            seeded_generator(torch.device("cpu"), 3), affine_p=0.0, misregistration_px=2)
    shifts = set()
    for i in range(16):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.allclose(b[i, :, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)],
                                   a[i, :, max(-dy, 0):16 - max(dy, 0), max(-dx, 0):16 - max(dx, 0)], atol=1e-3)]
        assert len(found) == 1  # post = pre moved by one integer offset within ±2 (bilinear: float-exact)
        shifts.add(found[0])
    assert len(shifts) > 1


def test_geometry_under_bf16_autocast_is_the_float32_geometry() -> None:
    """The training step runs under autocast (bf16 on CUDA, on CPU with train.cpu_bf16): the maps and the warps
    stay float32 (a bf16 map used to fail on ``float @ bf16`` and would round the rotation)."""
    gen = torch.Generator().manual_seed(0)
    pre, post = torch.rand(8, 3, 32, 32, generator=gen), torch.rand(8, 2, 32, 32, generator=gen)
    mask = torch.randint(0, 2, (8, 32, 32), generator=gen)
    args = dict(affine_p=1.0, misregistration_px=2)
    plain = pair_geometry(pre, post, mask, seeded_generator(torch.device("cpu"), 4), **args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = pair_geometry(pre, post, mask, seeded_generator(torch.device("cpu"), 4), **args)
    assert [t.dtype for t in mixed] == [torch.float32, torch.float32, torch.long]
    assert all(torch.equal(a, b) for a, b in zip(plain, mixed))


def test_finetune_with_geometry_on_the_device(tmp_path: Path) -> None:
    make_xbd_split(tmp_path / "split", 4, size=96, seed=0)
    run = tmp_path / "run"
    assert main(["finetune", f"data.root={tmp_path / 'split'}", "data.geometric_on_device=true",
                 "data.photometric_on_device=true", "data.misregistration_px=2", "model.backbone=resnet18",
                 "data.crop_size=64", "train.batch_size=2", "train.max_steps=3", "train.device=cpu",
                 "data.num_workers=0", "train.progress=false", "data.stats_samples=4", "data.val_fraction=0",
                 "model.decoder_channels=[16,16,8,8,8]", f"run_dir={run}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["bad_steps"] == 0
