"""Synthetic data in other layouts, from the renderer of :mod:`ssl_siam.tools.synthetic`: multi-band GeoTIFF
scenes (tiled and compressed like real archives, with nodata swaths: windowed reads, band statistics, multi-band
pretraining), LEVIR-CD-style binary and SECOND-style semantic change splits."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

from ssl_siam.data.semantic import landcover_rgb
from ssl_siam.data.xbd.labels import damage_mask, load_label
from ssl_siam.tools.synthetic import GSD, landscape, make_xbd_split, place_buildings, reflectance_display, render_scene

BAND_NAMES = ("red", "green", "blue", "nir")
GEOTIFF_NODATA = {"uint8": 0, "uint16": 0, "int16": 0, "float32": -9999.0}


def make_geotiff_scenes(out_dir: Path, num_scenes: int, size: int = 512, bands: int = 4,
                        dtype: str = "uint16", seed: int = 0, nodata_fraction: float = 0.1) -> list[Path]:
    """Writes out_dir/scene_<i:04d>.tif: tiled, deflate-compressed GeoTIFFs in EPSG:32636 at 0.5 m.

    Bands red, green, blue, nir (the first `bands`, 1..4). Values: reflectance × 10 000 for (u)int16, a
    display stretch for uint8, reflectance for float32; nodata 0 (-9999 for float32) on ~`nodata_fraction`.
    """
    if not 1 <= bands <= len(BAND_NAMES) or dtype not in GEOTIFF_NODATA or not 0 <= nodata_fraction < 1:
        raise ValueError(f"need bands in 1..4, dtype in {sorted(GEOTIFF_NODATA)}, nodata_fraction in [0, 1); "
                         f"got {bands}, {dtype!r}, {nodata_fraction}")
    out_dir, nodata, paths = Path(out_dir), GEOTIFF_NODATA[dtype], []
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(num_scenes):
        rng = np.random.default_rng([seed, 2, i])
        ground, road, dist, theta = landscape(rng, size)
        blds = place_buildings(rng, size, road, dist, theta, int(rng.uniform(0.2, 1.0) * size * size / 5000), False)
        img = render_scene(rng, ground, blds, (rng.uniform(120, 165), rng.uniform(45, 72)), False)
        img = img[..., :bands] * (1 + 0.01 * rng.standard_normal((size, size, bands)))
        if dtype != "float32":
            img = np.clip(np.rint(reflectance_display(img) if dtype == "uint8" else 1e4 * img), 1, np.iinfo(dtype).max)
        arr = img.astype(dtype)
        a = rng.uniform(0, 2 * np.pi)  # nodata: a swath border (half-plane) or a stripe at angle a
        d = np.add.outer(np.sin(a) * np.arange(size), np.cos(a) * np.arange(size))
        d = np.abs(d - np.quantile(d, rng.uniform(0.3, 0.7))) if rng.random() < 0.5 else d.max() - d
        arr[d < np.quantile(d, nodata_fraction)] = nodata
        east, north = float(rng.integers(300_000, 700_000)), float(rng.integers(3_300_000, 3_500_000))
        paths.append(out_dir / f"scene_{i:04d}.tif")
        with rasterio.open(paths[-1], "w", driver="GTiff", width=size, height=size, count=bands, dtype=dtype,
                           crs="EPSG:32636", transform=rasterio.Affine(GSD, 0, east, 0, -GSD, north),
                           nodata=nodata, tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                           predictor=3 if dtype == "float32" else 2) as dst:
            dst.write(np.moveaxis(arr, -1, 0))
            dst.descriptions = BAND_NAMES[:bands]
    return paths


def make_levir_split(out_dir: Path, num_pairs: int, size: int = 256, seed: int = 0,
                     disaster: str = "synthetic-storm") -> list[str]:
    """A LEVIR-CD-style binary change split: ``A/<id>.png`` (before), ``B/<id>.png`` (after), ``label/<id>.png``
    (255 where a building was destroyed or lost a major part, else 0), from the xBD-style pairs of the same seed."""
    out_dir = Path(out_dir)
    for sub in ("A", "B", "label"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ids = make_xbd_split(Path(tmp), num_pairs, size=size, seed=seed, disaster=disaster)
        for tile in ids:
            shutil.copyfile(Path(tmp) / "images" / f"{tile}_pre_disaster.png", out_dir / "A" / f"{tile}.png")
            shutil.copyfile(Path(tmp) / "images" / f"{tile}_post_disaster.png", out_dir / "B" / f"{tile}.png")
            damage = damage_mask(load_label(Path(tmp) / "labels" / f"{tile}_post_disaster.json"), "no-damage")
            Image.fromarray(np.where(damage >= 3, 255, 0).astype(np.uint8)).save(out_dir / "label" / f"{tile}.png")
    return ids


# land-cover classes 1..6 of SECOND (water, ground, low vegetation, tree, building, playground): mean RGB, texture σ
_COVER_LOOK = ((38, 72, 130, 4), (150, 138, 118, 10), (112, 150, 72, 8), (42, 88, 44, 22), (172, 92, 84, 14),
               (196, 64, 58, 6))


def make_second_split(out_dir: Path, num_pairs: int, size: int = 128, seed: int = 0) -> list[str]:
    """A SECOND-style semantic change split: ``im1`` / ``im2`` (before / after RGB), ``label1`` / ``label2`` (the
    land cover of each date, SECOND colours, white where nothing changed). Land cover is a Voronoi partition into
    the six classes, each rendered with its own colour and texture under a per-date illumination; 1–4 blobs per
    pair change to another class, so both the change and the classes on either side are learnable."""
    out_dir, ids = Path(out_dir), []
    for sub in ("im1", "im2", "label1", "label2"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    look = np.array(_COVER_LOOK, np.float32)
    for i in range(num_pairs):
        rng = np.random.default_rng([seed, 7, i])
        centres = rng.uniform(0, size, (int(rng.integers(6, 14)), 2))
        nearest = np.argmin((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2, axis=-1)
        before = rng.integers(1, 7, len(centres))[nearest]
        after = before.copy()
        for _ in range(int(rng.integers(1, 5))):
            cy, cx, ry, rx = *rng.uniform(0, size, 2), *rng.uniform(size / 12, size / 5, 2)
            blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            after[blob] = (before[blob] + rng.integers(1, 6)) % 6 + 1  # another class than before
        changed = before != after
        tile = f"synthetic-second_{i:08d}"
        for folder, cover in (("im1", before), ("im2", after)):
            gain = rng.uniform(0.85, 1.15, 3)  # the date's illumination / sensor
            noise = rng.standard_normal((size, size, 3)) * look[cover - 1, 3:4]
            image = np.clip((look[cover - 1, :3] + noise) * gain, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(out_dir / folder / f"{tile}.png")
        for folder, cover in (("label1", before), ("label2", after)):
            Image.fromarray(landcover_rgb(np.where(changed, cover, 0))).save(out_dir / folder / f"{tile}.png")
        ids.append(tile)
    return ids
