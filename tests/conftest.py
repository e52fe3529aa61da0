"""Shared fixtures: seeded tiny data generators and tiny-model configs (resnet18, small crops, few steps)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
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


OSCD_RESOLUTION = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
                   "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20}
OSCD_PIXEL = 9.4e-5  # degrees: OSCD's 10 m bands in EPSG:4326


def oscd_value(lon: np.ndarray, lat: np.ndarray, band: int, date: int) -> np.ndarray:
    """The fake OSCD's reflectance: smooth in lon / lat, so a warped band can be checked against it."""
    return 1000 + 3e5 * (lon - 2.0) + 3e5 * (lat - 48.99) + 40 * band + 500 * date


def write_oscd(root: Path, train: list[str], test: list[str], size: int = 48, shrink: tuple[str, ...] = (),
               png_only: tuple[str, ...] = ()) -> Path:
    """A copy of OSCD's exact published layout at ``size``² (10 m): EPSG:4326 GeoTIFFs, one per band at 10 / 20 /
    60 m and per date; ``shrink`` cities' ``imgs_2`` 3 px smaller with coarser pixels over the same extent (as
    abudhabi, hongkong, saclay_e/w); pair previews and dates; one-line city lists; labels for ``train`` cities only:
    ``<city>-cm.tif`` (1 = no change, 2 = change, no CRS) and ``cm.png`` (RGBA 0 / 255; anti-aliased RGB and no tif
    for ``png_only`` cities). The change is the rectangle [5:20, 10:30]."""
    images = root / "Onera Satellite Change Detection dataset - Images"
    images.mkdir(parents=True, exist_ok=True)
    (images / "train.txt").write_text(",".join(train))
    (images / "test.txt").write_text(",".join(test))
    rng = np.random.default_rng(0)
    for i, city in enumerate(train + test):
        west, north = 2.0 + 0.01 * i, 49.0
        for date in (1, 2):
            side10 = size - 3 if date == 2 and city in shrink else size
            for b, (band, metres) in enumerate(OSCD_RESOLUTION.items()):
                side = max(round(side10 * 10 / metres), 1)
                pixel = OSCD_PIXEL * size / side
                centres = (np.arange(side) + 0.5) * pixel
                values = oscd_value(west + centres[None, :], north - centres[:, None], b, date)
                folder = images / city / f"imgs_{date}"
                folder.mkdir(parents=True, exist_ok=True)
                name = f"S2A_OPER_MSI_L1C_TL_SGS__2016{date:02d}01T105402_A00{i}_T31UDQ_{band}.tif"
                with rasterio.open(folder / name, "w", driver="GTiff", width=side, height=side, count=1,
                                   dtype="uint16", crs="EPSG:4326", compress="deflate",
                                   transform=rasterio.Affine(pixel, 0, west, 0, -pixel, north)) as dst:
                    dst.write(values.round().astype(np.uint16)[None])
        (images / city / "pair").mkdir(exist_ok=True)
        for k in (1, 2):
            preview = rng.integers(0, 255, (size, size, 3), np.uint8)
            Image.fromarray(preview).save(images / city / "pair" / f"img{k}.png")
        (images / city / "dates.txt").write_text("date_1: 20160101\ndate_2: 20180101\n")
    for city in train:
        change = np.zeros((size, size), np.uint8)
        change[5:20, 10:30] = 1
        folder = root / "Onera Satellite Change Detection dataset - Train Labels" / city / "cm"
        folder.mkdir(parents=True, exist_ok=True)
        if city in png_only:  # anti-aliased grey edges around the change, as aguasclaras' cm.png
            grey = change * 255
            grey[4, 10:30], grey[20, 10:30] = 90, 170
            Image.fromarray(np.stack([grey] * 3, -1)).save(folder / "cm.png")
            continue
        with rasterio.open(folder / f"{city}-cm.tif", "w", driver="GTiff", width=size, height=size, count=1,
                           dtype="uint8") as dst:
            dst.write((change + 1)[None])
        rgba = np.concatenate([np.stack([change * 255] * 3, -1), np.full((size, size, 1), 255, np.uint8)], -1)
        Image.fromarray(rgba).save(folder / "cm.png")
    return root


def killed_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object]) -> None:
    """``run()`` with the Trainer killed (KeyboardInterrupt) right after it writes its first checkpoint, as a
    preempted job is; the Trainer is restored afterwards, so running again resumes."""
    from ssl_siam.train.loop import Trainer

    original = Trainer.save_checkpoint

    def save_then_die(self: Trainer, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(Trainer, "save_checkpoint", original)
