"""Binary change prediction outputs: the change mask and probability (PNG; GeoTIFFs with the input's CRS and
transform for georeferenced input), change polygons as lon / lat GeoJSON with area in m² and mean probability, an
overlay PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely.geometry
from PIL import Image
from rasterio.crs import CRS
from rasterio.features import shapes
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_geom

from ssl_siam.change.outputs import write_tif

CHANGE_COLOUR = (255, 40, 40)
_ALPHA = 0.5


def change_overlay(pre_rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8: the pre image with changed pixels blended in red and outlined."""
    if pre_rgb.dtype != np.uint8 or pre_rgb.shape != (*mask.shape, 3):
        raise ValueError(f"expected pre_rgb uint8 {(*mask.shape, 3)}, got {pre_rgb.dtype} {pre_rgb.shape}")
    alpha = (mask > 0)[..., None] * np.float32(_ALPHA)
    out = ((1 - alpha) * pre_rgb + alpha * np.array(CHANGE_COLOUR, np.float32)).round().astype(np.uint8)
    contours, _ = cv2.findContours(np.ascontiguousarray(mask > 0, dtype=np.uint8), cv2.RETR_LIST,
                                   cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, CHANGE_COLOUR, thickness=1)
    return out


def utm_crs(crs: Any, transform: Any, height: int, width: int) -> CRS:
    """The WGS 84 UTM zone (EPSG 326xx north / 327xx south) of the scene's centre: where areas are measured."""
    xs, ys = warp_transform(crs, "EPSG:4326", [transform.c + transform.a * width / 2],
                            [transform.f + transform.e * height / 2])
    lon, lat = xs[0], ys[0]
    zone = min(int((lon + 180) // 6) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def change_features(mask: np.ndarray, probability: np.ndarray, transform: Any, crs: Any) -> list[dict[str, Any]]:
    """One GeoJSON Feature per 4-connected changed region: polygon in lon / lat (WGS 84, as RFC 7946 wants),
    ``area_m2`` (measured in the local UTM zone of the scene's centre), ``area_px`` and the region's
    ``mean_probability``."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count)
    mean = np.bincount(flat, weights=probability.ravel().astype(np.float64), minlength=count) / np.maximum(area, 1)
    utm = utm_crs(crs, transform, *mask.shape)
    features = []
    for geometry, k in shapes(labels, mask=labels > 0, connectivity=4, transform=transform):
        metres = shapely.geometry.shape(transform_geom(crs, utm, geometry)).area
        features.append({"type": "Feature", "id": int(k), "geometry": transform_geom(crs, "EPSG:4326", geometry),
                         "properties": {"area_m2": float(metres), "area_px": int(area[int(k)]),
                                        "mean_probability": float(mean[int(k)])}})
    return features


def write_change_outputs(out_dir: str | Path, stem: str, mask: np.ndarray, probability: np.ndarray,
                         pre_rgb: np.ndarray, profile: dict[str, Any] | None,
                         nodata: np.ndarray | None = None) -> list[Path]:
    """``<stem>_change_mask.png`` (uint8 0 / 1, input size), ``<stem>_change_probability.png`` (uint8, p·255),
    ``<stem>_overlay.png``; with a ``profile`` (georeferenced input) also ``<stem>_change_mask.tif`` (uint8 0 / 1)
    and ``<stem>_change_probability.tif`` (p·255) on the input's grid and CRS (nodata 255 where ``nodata``), and
    ``<stem>_changes.geojson`` (lon / lat polygons, :func:`change_features`). Returns the written paths."""
    if mask.shape != probability.shape:
        raise ValueError(f"mask {mask.shape} and probability {probability.shape} differ")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mask = (mask > 0).astype(np.uint8)
    scaled = np.clip(np.rint(probability * 255), 0, 254 if profile else 255).astype(np.uint8)
    paths = [out_dir / f"{stem}_{name}.png" for name in ("change_mask", "change_probability", "overlay")]
    Image.fromarray(mask).save(paths[0])
    Image.fromarray(scaled).save(paths[1])
    Image.fromarray(change_overlay(pre_rgb, mask)).save(paths[2])
    if profile is None:
        return paths
    tifs = [out_dir / f"{stem}_change_mask.tif", out_dir / f"{stem}_change_probability.tif"]
    write_tif(tifs[0], mask[None], profile, nodata, descriptions=("change_mask",))
    write_tif(tifs[1], scaled[None], profile, nodata, descriptions=("change_probability_x255",))
    geojson = out_dir / f"{stem}_changes.geojson"
    features = change_features(mask, probability, profile["transform"], profile["crs"])
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": features}) + "\n")
    return [*paths, *tifs, geojson]
