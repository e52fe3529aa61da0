"""xBD label JSON: parse building polygons and rasterise localization / damage target masks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from PIL import Image
from shapely.geometry.base import BaseGeometry

from ssl_siam.core.errors import DataError

DAMAGE_CLASSES = {"no-damage": 1, "minor-damage": 2, "major-damage": 3, "destroyed": 4}
UNCLASSIFIED = "un-classified"
_VALID_SUBTYPES = (*DAMAGE_CLASSES, UNCLASSIFIED)
_LABEL_NAME = re.compile(r"^(?P<id>.+)_(?P<phase>pre|post)_disaster\.json$")


@dataclass(frozen=True)
class LabelPolygon:
    """One building: polygon in pixel coords (x = column, y = row), damage subtype (None on pre images)."""

    geometry: BaseGeometry
    subtype: str | None
    uid: str | None


@dataclass(frozen=True)
class LabelFile:
    """A parsed xBD label JSON."""

    path: Path
    width: int
    height: int
    polygons: list[LabelPolygon]


MAX_SIDE = 100_000  # pixels: a label claiming a larger image is refused before any mask is allocated


def load_label(path: str | Path) -> LabelFile:
    """Parse ``features.xy`` polygons and ``metadata.width/height`` of an xBD label JSON."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: expected an xBD label JSON file ({exc})") from exc
    try:
        features = data["features"]["xy"]
        width, height = int(data["metadata"]["width"]), int(data["metadata"]["height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: expected 'features.xy' and 'metadata.width/height' keys ({exc!r})") from exc
    if not isinstance(features, list):
        raise DataError(f"{path}: expected 'features.xy' to be a list of features")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise DataError(f"{path}: metadata gives a {width}×{height} image, expected sides in 1..{MAX_SIDE}")
    return LabelFile(path, width, height, [_parse_feature(path, i, f) for i, f in enumerate(features)])


def _parse_feature(path: Path, index: int, feature: object) -> LabelPolygon:
    where = f"{path}: features.xy[{index}]"
    if not isinstance(feature, dict) or not isinstance(feature.get("wkt"), str):
        raise DataError(f"{where}: expected an object with a 'wkt' string")
    try:
        geometry = shapely.from_wkt(feature["wkt"])
    except shapely.errors.ShapelyError as exc:
        raise DataError(f"{where}: invalid WKT ({exc})") from exc
    if geometry.geom_type not in ("Polygon", "MultiPolygon"):
        raise DataError(f"{where}: expected a POLYGON or MULTIPOLYGON, got {geometry.geom_type}")
    if not np.isfinite(shapely.get_coordinates(geometry)).all():
        raise DataError(f"{where}: polygon with non-finite coordinates (nan / inf), expected pixel coordinates")
    props = feature.get("properties")
    props = props if isinstance(props, dict) else {}
    subtype = props.get("subtype")
    if subtype is not None and subtype not in _VALID_SUBTYPES:
        raise DataError(f"{where}: unknown subtype {subtype!r}, expected one of {', '.join(_VALID_SUBTYPES)}")
    return LabelPolygon(geometry, subtype, props.get("uid"))


def _edges(geometry: BaseGeometry) -> np.ndarray:
    """All ring edges of a (multi)polygon as an [E, 4] array of x0, y0, x1, y1."""
    polygons = geometry.geoms if geometry.geom_type == "MultiPolygon" else [geometry]
    rings = [np.asarray(ring.coords)[:, :2] for p in polygons for ring in (p.exterior, *p.interiors)]
    return np.concatenate([np.hstack([r[:-1], r[1:]]) for r in rings])


def _fill(out: np.ndarray, geometry: BaseGeometry, value: int) -> None:
    """Set ``out`` to ``value`` on pixels whose centre lies inside ``geometry`` (even-odd scanline fill)."""
    height, width = out.shape
    min_x, min_y, max_x, max_y = geometry.bounds
    # Pixel centre k + 0.5 lies strictly between the bounds.
    r0, r1 = max(int(np.floor(min_y - 0.5)) + 1, 0), min(int(np.ceil(max_y - 0.5)), height)
    c0, c1 = max(int(np.floor(min_x - 0.5)) + 1, 0), min(int(np.ceil(max_x - 0.5)), width)
    if r0 >= r1 or c0 >= c1:
        return
    x0, y0, x1, y1 = _edges(geometry).T
    centre_y = np.arange(r0, r1)[:, None] + 0.5
    crosses = (y0 <= centre_y) != (y1 <= centre_y)  # half-open in y: each vertex is counted once
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.where(crosses, x0 + (centre_y - y0) * ((x1 - x0) / (y1 - y0)), np.inf)
    xs.sort(axis=1)
    pairs = xs.shape[1] // 2 * 2
    left, right = xs[:, 0:pairs:2], xs[:, 1:pairs:2]
    # Columns c with left < c + 0.5 < right, relative to c0.
    span = c1 - c0
    start = np.clip(np.floor(left - 0.5) + 1 - c0, 0, span)
    stop = np.clip(np.ceil(right - 0.5) - c0, 0, span)
    ok = np.isfinite(right) & (start < stop)
    rows = np.nonzero(ok)[0] * (span + 1)
    size = (r1 - r0) * (span + 1)
    diff = np.bincount(rows + start[ok].astype(np.intp), minlength=size)
    diff -= np.bincount(rows + stop[ok].astype(np.intp), minlength=size)
    inside = diff.reshape(r1 - r0, span + 1).cumsum(axis=1)[:, :span] > 0
    out[r0:r1, c0:c1][inside] = value


def rasterize(
    polygons_with_values: Iterable[tuple[BaseGeometry, int]], height: int, width: int
) -> np.ndarray:
    """Burn polygons into a uint8 [height, width] mask; later polygons overwrite earlier ones.

    Pixel (r, c) is covered iff its centre (c + 0.5, r + 0.5) lies inside the polygon (interior rings are
    holes, self-intersections follow the even-odd rule); a centre exactly on an edge follows a half-open rule.
    """
    out = np.zeros((height, width), np.uint8)
    for geometry, value in polygons_with_values:
        if not geometry.is_empty:
            _fill(out, geometry, value)
    return out


def localization_mask(pre_label: LabelFile) -> np.ndarray:
    """uint8 [H, W]: 1 on buildings, 0 elsewhere."""
    return rasterize(((p.geometry, 1) for p in pre_label.polygons), pre_label.height, pre_label.width)


def damage_mask(
    post_label: LabelFile, unclassified: str = "no-damage", ignore_index: int = 255
) -> np.ndarray:
    """uint8 [H, W]: 0 background, 1-4 damage class; un-classified buildings become 1 or ``ignore_index``."""
    if unclassified not in ("no-damage", "ignore"):
        raise ValueError(f"unclassified must be 'no-damage' or 'ignore', got {unclassified!r}")
    values = {**DAMAGE_CLASSES, UNCLASSIFIED: 1 if unclassified == "no-damage" else ignore_index}
    burns = []
    for i, p in enumerate(post_label.polygons):
        if p.subtype is None:
            raise DataError(
                f"{post_label.path}: features.xy[{i}] has no subtype, expected a post-disaster label"
            )
        burns.append((p.geometry, values[p.subtype]))
    return rasterize(burns, post_label.height, post_label.width)


def write_targets(split_dir: str | Path, out_dir: str | Path, unclassified: str = "no-damage") -> int:
    """Write ``<id>_localization_target.png`` and ``<id>_damage_target.png`` per pair; return the count."""
    labels_dir = Path(split_dir) / "labels"
    if not labels_dir.is_dir():
        raise DataError(f"{labels_dir}: expected an xBD labels folder")
    phases: dict[str, set[str]] = {}
    for path in labels_dir.glob("*_disaster.json"):
        match = _LABEL_NAME.match(path.name)
        if match:
            phases.setdefault(match["id"], set()).add(match["phase"])
    if not phases:
        raise DataError(f"{labels_dir}: expected <id>_pre_disaster.json / <id>_post_disaster.json files")
    for image_id, found in sorted(phases.items()):
        if len(found) < 2:
            missing = labels_dir / f"{image_id}_{'post' if 'pre' in found else 'pre'}_disaster.json"
            raise DataError(f"{missing}: missing, expected a partner for every pre/post label file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for image_id in sorted(phases):
        pre = load_label(labels_dir / f"{image_id}_pre_disaster.json")
        post = load_label(labels_dir / f"{image_id}_post_disaster.json")
        Image.fromarray(localization_mask(pre)).save(out / f"{image_id}_localization_target.png")
        Image.fromarray(damage_mask(post, unclassified)).save(out / f"{image_id}_damage_target.png")
    return len(phases)
