"""Prediction outputs: xView2 PNG maps, a colour overlay with legend, and for georeferenced input a damage
GeoTIFF and a GeoJSON of building polygons."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.features import shapes

from ssl_siam.change.metrics.xview2 import DAMAGE_NAMES

NODATA = 255  # the damage GeoTIFF's nodata value

# RGB per damage class 1..4: no-damage green, minor yellow, major orange, destroyed red
DAMAGE_COLOURS = ((0, 200, 0), (255, 230, 0), (255, 130, 0), (230, 0, 0))
_ALPHA = 0.45  # weight of the class colour over building pixels
_STRETCH_PIXELS = 2**20  # pixels per band sampled for the display percentiles
_CHUNK_ROWS = 1024  # rows per block of the float computations of the overlay


def to_display_rgb(
    img: np.ndarray, rgb_bands: Sequence[int] = (0, 1, 2), percentiles: tuple[float, float] = (2.0, 98.0)
) -> np.ndarray:
    """[C, H, W] image of any dtype -> [H, W, 3] uint8 for display; ``rgb_bands`` are 0-based, a single band
    is shown in grey. uint8 is kept as is; other dtypes get a per-band percentile stretch (NaN shown black)."""
    if img.ndim != 3:
        raise ValueError(f"expected an image [C, H, W], got shape {img.shape}")
    if img.shape[0] == 1:
        rgb_bands = (0, 0, 0)
    if len(rgb_bands) != 3 or any(not 0 <= b < img.shape[0] for b in rgb_bands):
        raise ValueError(f"rgb_bands must be 3 indices in 0..{img.shape[0] - 1}, got {tuple(rgb_bands)}")
    bands = img[list(rgb_bands)]
    if bands.dtype == np.uint8:
        return np.ascontiguousarray(bands.transpose(1, 2, 0))
    step = max(1, math.isqrt(bands[0].size // _STRETCH_PIXELS))
    sample = bands[:, ::step, ::step].astype(np.float32)
    low, high = np.nanpercentile(sample, percentiles, axis=(1, 2))[..., None, None]  # [3, 1, 1] each
    scale = 255 / np.maximum(high - low, np.finfo(np.float32).tiny)
    rgb = np.empty((*bands.shape[1:], 3), np.uint8)
    for top in range(0, bands.shape[1], _CHUNK_ROWS):  # row blocks: float temporaries stay small on a scene
        rows = slice(top, top + _CHUNK_ROWS)
        scaled = np.nan_to_num(np.clip((bands[:, rows].astype(np.float32) - low) * scale, 0.0, 255.0))
        rgb[rows] = scaled.round().astype(np.uint8).transpose(1, 2, 0)
    return rgb


def overlay_image(pre_rgb: np.ndarray, damage: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8: pre image with each damage class (1..4) blended in its colour, outlined in the pure
    colour (outlines lie on the building pixels), and a colour legend in the top-left corner."""
    if pre_rgb.dtype != np.uint8 or pre_rgb.shape != (*damage.shape, 3):
        raise ValueError(f"expected pre_rgb uint8 {(*damage.shape, 3)}, got {pre_rgb.dtype} {pre_rgb.shape}")
    _check_classes(damage, "damage", 4)
    palette = np.array([(0, 0, 0), *DAMAGE_COLOURS], dtype=np.float32)  # [5, 3]
    out = np.empty_like(pre_rgb)
    for top in range(0, damage.shape[0], _CHUNK_ROWS):  # row blocks: float temporaries stay small on a scene
        rows = slice(top, top + _CHUNK_ROWS)
        alpha = np.where(damage[rows] > 0, _ALPHA, 0.0)[..., None].astype(np.float32)
        out[rows] = ((1 - alpha) * pre_rgb[rows] + alpha * palette[damage[rows]]).round().astype(np.uint8)
    for cls, colour in enumerate(DAMAGE_COLOURS, start=1):
        region = np.ascontiguousarray(damage == cls, dtype=np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, thickness=1)
    _draw_legend(out)
    return out


def _draw_legend(image: np.ndarray) -> None:
    """Class names beside colour swatches, white on a darkened box; text height grows with the image."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.45, max(image.shape[:2]) / 1600)
    thickness = max(1, round(1.5 * scale))
    sizes = [cv2.getTextSize(name, font, scale, thickness) for name in DAMAGE_NAMES]
    text_w = max(w for (w, _), _ in sizes)
    line = max(h + base for (_, h), base in sizes)
    pad = max(3, line // 3)
    row = line + pad
    box = image[: pad + row * len(DAMAGE_NAMES), : 3 * pad + line + text_w]  # a view, clipped to the image
    box[:] = (box * 0.3).astype(np.uint8)
    for i, (name, colour) in enumerate(zip(DAMAGE_NAMES, DAMAGE_COLOURS)):
        top = pad + i * row
        cv2.rectangle(image, (pad, top), (pad + line - 1, top + line - 1), colour, thickness=-1)
        baseline = top + line - sizes[i][1]
        cv2.putText(image, name, (2 * pad + line, baseline), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def write_outputs(
    out_dir: str | Path,
    stem: str,
    loc: np.ndarray,
    damage: np.ndarray,
    confidence: np.ndarray,
    pre_rgb: np.ndarray,
    profile: dict[str, Any] | None,
    nodata: np.ndarray | None = None,
) -> list[Path]:
    """Write ``<stem>_localization_prediction.png`` (0/1), ``<stem>_damage_prediction.png`` (0..4), both uint8
    single-channel as xView2 expects, and ``<stem>_overlay.png``; with a ``profile`` ({"crs", "transform"} of a
    GeoTIFF input) also ``<stem>_damage.tif`` (uint8, LZW, same grid) and ``<stem>_buildings.geojson``.

    loc, damage, confidence: [H, W], damage 1..4 exactly where loc is 1 (as ``predict.decode`` returns);
    ``nodata`` [H, W] bool marks pixels without data, written as 255 (the GeoTIFF's nodata value) in the GeoTIFF.
    Returns the written paths.
    """
    _check_classes(loc, "loc", 1)
    _check_classes(damage, "damage", 4)
    if damage.shape != loc.shape or confidence.shape != loc.shape:
        raise ValueError(f"loc, damage, confidence shapes differ: {loc.shape}, {damage.shape}, {confidence.shape}")
    if np.any((loc > 0) != (damage > 0)):
        raise ValueError("damage must be 1..4 exactly where loc is 1")
    loc, damage = loc.astype(np.uint8), damage.astype(np.uint8)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}_{name}.png" for name in ("localization_prediction", "damage_prediction", "overlay")]
    Image.fromarray(loc).save(paths[0])
    Image.fromarray(damage).save(paths[1])
    Image.fromarray(overlay_image(pre_rgb, damage)).save(paths[2])
    if profile is None:
        return paths
    tif, geojson = out_dir / f"{stem}_damage.tif", out_dir / f"{stem}_buildings.geojson"
    colours = {0: (0, 0, 0, 0), **{i + 1: (*c, 255) for i, c in enumerate(DAMAGE_COLOURS)}}
    write_georeferenced(tif, geojson, damage[None], profile, nodata,
                        building_features(loc, damage, confidence, profile["transform"]), colormap=colours)
    return [*paths, tif, geojson]


def write_georeferenced(tif: Path, geojson: Path, bands: np.ndarray, profile: dict[str, Any],
                        nodata: np.ndarray | None, features: list[dict[str, Any]], *,
                        descriptions: Sequence[str] | None = None, colormap: dict | None = None) -> None:
    """``bands`` [C, H, W] uint8 as an LZW GeoTIFF on ``profile``'s grid (:data:`NODATA` where ``nodata``; band 1
    coloured by ``colormap``) and ``features`` as a GeoJSON FeatureCollection in its CRS."""
    write_tif(tif, bands, profile, nodata, descriptions=descriptions, colormap=colormap)
    crs = {"type": "name", "properties": {"name": crs_name(profile["crs"])}}
    collection = {"type": "FeatureCollection", "crs": crs, "features": features}
    geojson.write_text(json.dumps(collection) + "\n")


def write_tif(tif: Path, bands: np.ndarray, profile: dict[str, Any], nodata: np.ndarray | None, *,
              descriptions: Sequence[str] | None = None, colormap: dict | None = None) -> None:
    """``bands`` [C, H, W] uint8 as an LZW GeoTIFF on ``profile``'s grid, :data:`NODATA` where ``nodata``."""
    bands = bands.astype(np.uint8)  # a copy: nodata is written into it
    if nodata is not None:
        bands[:, nodata] = NODATA
    with rasterio.open(tif, "w", driver="GTiff", count=len(bands), dtype="uint8", compress="lzw", nodata=NODATA,
                       height=bands.shape[1], width=bands.shape[2], crs=profile["crs"],
                       transform=profile["transform"]) as dst:
        dst.write(bands)
        if descriptions:
            dst.descriptions = tuple(descriptions)
        if colormap:
            dst.write_colormap(1, colormap)


def building_features(
    loc: np.ndarray, damage: np.ndarray, confidence: np.ndarray, transform: Any
) -> list[dict[str, Any]]:
    """One GeoJSON Feature per 4-connected component of ``loc``, polygon in ``transform``'s coordinates.

    Properties: ``damage`` (class name by majority vote of the component's damage pixels, ties to the more
    severe class), ``damage_class`` (1..4), ``confidence`` (mean over the component), ``area_px``.
    """
    count, labels = cv2.connectedComponents(loc.astype(np.uint8), connectivity=4)  # labels int32, 0 = background
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count)
    votes = np.bincount(flat * 5 + damage.ravel(), minlength=count * 5).reshape(count, 5)
    classes = 4 - np.argmax(votes[:, :0:-1], axis=1)  # columns 4, 3, 2, 1: the first maximum is the most severe
    mean_conf = np.bincount(flat, weights=confidence.ravel().astype(np.float64), minlength=count) / np.maximum(area, 1)
    features = []
    for geometry, value in shapes(labels, mask=labels > 0, connectivity=4, transform=transform):
        k = int(value)
        properties = {
            "damage": DAMAGE_NAMES[classes[k] - 1],
            "damage_class": int(classes[k]),
            "confidence": float(mean_conf[k]),
            "area_px": int(area[k]),
        }
        features.append({"type": "Feature", "id": k, "geometry": geometry, "properties": properties})
    return features


def crs_name(crs: CRS) -> str:
    """OGC URN of an EPSG CRS, else its WKT (GeoJSON 2008 "name" CRS member)."""
    epsg = crs.to_epsg()
    return f"urn:ogc:def:crs:EPSG::{epsg}" if epsg is not None else crs.to_wkt()


def _check_classes(array: np.ndarray, name: str, top: int) -> None:
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"expected {name} as an integer array [H, W], got {array.dtype} {array.shape}")
    if array.size and (array.min() < 0 or array.max() > top):
        raise ValueError(f"expected {name} values in 0..{top}, got {array.min()}..{array.max()}")


def output_stem(post_path: str | Path) -> str:
    """File name stem shared by a pair's outputs: ``a/b/x_00001_post_disaster.png`` -> ``x_00001``."""
    return Path(post_path).stem.removesuffix("_post_disaster")
