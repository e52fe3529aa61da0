"""Binary change prediction outputs: the change mask and probability (PNG; GeoTIFF with the input's CRS and
transform for georeferenced input), change polygons as GeoJSON with area and mean probability, an overlay PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from rasterio.features import shapes

from ssl_siam.change.outputs import write_georeferenced

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


def change_features(mask: np.ndarray, probability: np.ndarray, transform: Any) -> list[dict[str, Any]]:
    """One GeoJSON Feature per 4-connected changed region: polygon in ``transform``'s coordinates, ``area``
    (in the CRS's units²), ``area_px`` and the region's ``mean_probability``."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count)
    mean = np.bincount(flat, weights=probability.ravel().astype(np.float64), minlength=count) / np.maximum(area, 1)
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    return [{"type": "Feature", "id": int(k), "geometry": geometry,
             "properties": {"area": float(area[int(k)] * pixel_area), "area_px": int(area[int(k)]),
                            "mean_probability": float(mean[int(k)])}}
            for geometry, k in shapes(labels, mask=labels > 0, connectivity=4, transform=transform)]


def write_change_outputs(out_dir: str | Path, stem: str, mask: np.ndarray, probability: np.ndarray,
                         pre_rgb: np.ndarray, profile: dict[str, Any] | None,
                         nodata: np.ndarray | None = None) -> list[Path]:
    """``<stem>_change_mask.png`` (uint8 0 / 1, input size), ``<stem>_change_probability.png`` (uint8, p·255),
    ``<stem>_overlay.png``; with a ``profile`` also ``<stem>_change.tif`` (band 1 the mask, band 2 p·255; nodata
    255 where ``nodata``) and ``<stem>_changes.geojson``. Returns the written paths."""
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
    tif, geojson = out_dir / f"{stem}_change.tif", out_dir / f"{stem}_changes.geojson"
    write_georeferenced(tif, geojson, np.stack([mask, scaled]), profile, nodata,
                        change_features(mask, probability, profile["transform"]),
                        descriptions=("change_mask", "change_probability_x255"))
    return [*paths, tif, geojson]
