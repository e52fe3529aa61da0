"""Shared fixtures: seeded tiny data generators and tiny-model configs (resnet18, small crops, few steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
SHARED_DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(2)


def texture(rng: np.random.Generator, size: int, bands: int) -> np.ndarray:
    """Smooth random texture ``[bands, size, size]`` in [0, 1] (blocks + noise), enough structure for SSL."""
    coarse = rng.random((bands, size // 8, size // 8))
    img = np.kron(coarse, np.ones((8, 8)))[:, :size, :size]
    return np.clip(0.7 * img + 0.3 * rng.random((bands, size, size)), 0, 1)


@pytest.fixture(scope="session")
def tile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 96² RGB PNG tiles."""
    root = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(0)
    for i in range(8):
        img = (texture(rng, 96, 3) * 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(img).save(root / f"tile_{i}.png")
    return root


def tiny_overrides(objective: str, root: Path | str, run_dir: Path | str, steps: int = 4) -> list[str]:
    """Dotted overrides turning a paper config into a seconds-long CPU run."""
    return [
        f"objective={objective}", f"data.root={root}", f"run_dir={run_dir}", "model.backbone=resnet18",
        "data.tile_size=64", "augment.global_size=32", "augment.local_size=16", "train.batch_size=4",
        f"train.max_steps={steps}", "train.device=cpu", "data.num_workers=0", "train.progress=false",
        "train.log_every=1", "train.collapse_every=1", "data.stats_samples=16",
        "simsiam.proj_hidden_dim=64", "simsiam.out_dim=64", "simsiam.pred_hidden_dim=16",
        "byol.proj_hidden_dim=64", "byol.out_dim=32", "byol.pred_hidden_dim=64",
        "dino.hidden_dim=64", "dino.bottleneck_dim=32", "dino.out_dim=128",
    ]


def write_scene_folder(root: Path, per_class: int, size: int = 32, seed: int = 0,
                       classes: tuple[str, ...] = ("field", "forest", "water")) -> Path:
    """``root/<class>/<i>.png``: RGB scenes whose class is planted in the colour (class c is bright in band c),
    with texture on top, so that any encoder separates them perfectly."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = 0.3 * texture(rng, size, 3)
            img[c % 3] += 0.7
            Image.fromarray((img * 255).astype(np.uint8).transpose(1, 2, 0)).save(root / name / f"{name}_{i:03d}.png")
    return root
