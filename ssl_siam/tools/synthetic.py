"""Synthetic overhead imagery for demos and tests: xBD-style pre/post damage pairs and multi-band GeoTIFFs.

Rendered in reflectance (red, green, blue, nir): fields, trees, roads, buildings (rectangles, L-shapes,
courtyards) with roofs and sun shadows; post images add building damage, floods/mud and a new illumination.
Every disaster has a look of its own (:class:`Style`, drawn from its name: sensor colour balance, haze, the mix of
ground covers), so a model trained on one disaster meets a domain shift on another, as on xBD.
"""

import itertools
import json
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import shapely
from PIL import Image

DAMAGE = ("no-damage", "minor-damage", "major-damage", "destroyed", "un-classified")
DAMAGE_P = (0.58, 0.14, 0.12, 0.11, 0.05)
# Reflectance (red, green, blue, nir). Ground: grass, crop, bare soil, dry grass.
GROUND = np.array([[.07, .10, .05, .40], [.06, .11, .045, .46], [.21, .17, .12, .27], [.15, .14, .09, .30]])
GROUND_P = (0.4, 0.2, 0.15, 0.25)
TREES, ASPHALT = np.array([.035, .06, .03, .33]), np.array([.10, .10, .095, .12])
CURB, TARP = np.array([.20, .20, .19, .23]), np.array([.05, .12, .32, .15])
CLOUD, HAZE = np.array([.55, .55, .56, .55]), np.array([.28, .30, .34, .30])
ROOFS = np.array([[.11, .11, .11, .13], [.18, .18, .18, .20], [.20, .13, .09, .22], [.30, .14, .09, .33],
                  [.34, .34, .33, .36], [.16, .19, .22, .20], [.10, .16, .13, .18]])
RUBBLE = np.array([[.20, .15, .10, .24], [.22, .21, .20, .25], [.07, .06, .05, .09], [.28, .24, .18, .30]])
FLOOD = np.array([[.16, .13, .08, .10], [.05, .07, .08, .02]])  # muddy and dark water
DISASTER_TYPES = {"storm": "wind", "hurricane": "wind", "tornado": "wind", "flood": "flooding",
                  **{k: k for k in ("fire", "earthquake", "tsunami", "volcano")}}
PAD = 10  # pixels around a footprint that its shadow, debris and cloud may reach
GSD = 0.5  # metres per pixel
SQUARE = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]) / 2  # closed ring of the unit square


@dataclass(frozen=True)
class Style:
    """A disaster's look: per-band sensor gain, haze strength and ground-cover probabilities."""

    gain: np.ndarray  # [4] multiplies the reflectance of every image of the disaster
    haze: float  # maximum haze fraction
    ground_p: np.ndarray  # probabilities of GROUND covers

    @classmethod
    def of(cls, disaster: str) -> "Style":
        if disaster == "synthetic-storm":  # the default disaster keeps the original look
            return cls(np.ones(4), 0.1, np.array(GROUND_P))
        rng = np.random.default_rng(zlib.crc32(disaster.encode()))
        return cls(rng.uniform(0.8, 1.2, 4), float(rng.uniform(0.05, 0.3)), rng.dirichlet(np.array(GROUND_P) * 8))


@dataclass
class _Building:
    rings: list[np.ndarray]  # closed rings (x, y) in pixels, exterior first
    sl: tuple[slice, slice]  # footprint bounding box grown by PAD, clipped to the image
    mask: np.ndarray  # footprint inside sl: pixel centres inside the polygon
    paint: np.ndarray  # intact roof reflectance inside sl, (h, w, 4)
    local: tuple[np.ndarray, np.ndarray]  # building-aligned coordinates of the pixel centres of sl
    height: float  # pixels
    uid: str
    damage: str  # shown in post images


def _noise(rng: np.random.Generator, shape: tuple[int, int], cell: float, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in [0, 1] with features about `cell` pixels wide."""
    out = np.zeros(shape)
    for k in range(octaves):
        c = max(cell / 2**k, 1.0)
        grid = rng.random((int(shape[0] / c) + 3, int(shape[1] / c) + 3))
        up = cv2.resize(grid, None, fx=c, fy=c, interpolation=cv2.INTER_CUBIC)
        oy, ox = rng.integers(0, int(c) + 1, 2)
        out += up[oy:oy + shape[0], ox:ox + shape[1]] / 2**k
    return np.clip(out / (2 - 2 ** (1 - octaves)), 0, 1)


def _shift(m: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`m` moved by (dy, dx) pixels, zero-filled."""
    out, (h, w) = np.zeros_like(m), m.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = m[max(-dy, 0):h - dy, max(-dx, 0):w - dx]
    return out


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation with a (2r+1)² square."""
    return cv2.dilate(m.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)


def _fill(rings: list[np.ndarray], size: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """Even-odd rasterisation of a polygon at pixel centres inside its PAD-grown bounding box."""
    lo = np.clip(np.floor(rings[0].min(0)).astype(int) - PAD, 0, size)
    hi = np.clip(np.ceil(rings[0].max(0)).astype(int) + PAD, 0, size)
    ys, xs = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]] + 0.5
    inside = np.zeros(ys.shape, bool)
    for ring in rings:
        for (ax, ay), (bx, by) in itertools.pairwise(ring):
            if ay != by:
                inside ^= ((ay > ys) != (by > ys)) & (xs < ax + (ys - ay) * (bx - ax) / (by - ay))
    return (slice(lo[1], hi[1]), slice(lo[0], hi[0])), inside


def _footprint(rng: np.random.Generator, kind: str) -> list[np.ndarray]:
    """Closed rings of a building centred at the origin: "rect", "L" or "court" (courtyard: a hole)."""
    if kind == "court":
        w, h, t = rng.uniform(34, 50), rng.uniform(34, 46), rng.uniform(7, 11)
        return [SQUARE * (w, h), SQUARE[::-1] * (w - 2 * t, h - 2 * t)]
    w, h = rng.uniform(14, 34), rng.uniform(12, 24)
    if kind == "rect":
        return [SQUARE * (w, h)]
    w, h = w + 8, h + 10
    a, b = rng.uniform(0.4, 0.6) * w - w / 2, rng.uniform(0.4, 0.6) * h - h / 2
    return [np.array([(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, b), (a, b), (a, h / 2), (-w / 2, h / 2),
                      (-w / 2, -h / 2)])]


def landscape(rng: np.random.Generator, size: int, ground_p: tuple[float, ...] | np.ndarray = GROUND_P
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ground reflectance (H, W, 4): parcels, crop rows, trees, roads; road mask, road distance, angle."""
    shape = (size, size)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    n = max(4, size * size // 5000)
    seeds = rng.uniform(-0.1, 1.1, (n, 2)) * size
    wx = xx + (_noise(rng, shape, size / 3, 2) - 0.5) * size * 0.2
    label = ((wx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2).argmin(-1)
    kind = rng.choice(len(GROUND), n, p=ground_p)[label]
    phi, period = rng.uniform(0, np.pi, n)[label], rng.uniform(3, 6, n)[label]
    rows = np.where(kind == 1, 0.12 * np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period), 0)
    texture = 1 + 0.35 * (_noise(rng, shape, 8) - 0.5) + rows + 0.04 * rng.standard_normal(shape)
    refl = GROUND[kind] * (rng.uniform(0.85, 1.15, n)[label] * texture)[..., None]
    crowns = _noise(rng, shape, 5, 2) + 0.8 * _noise(rng, shape, size / 4, 1)
    trees = crowns > np.quantile(crowns, 1 - rng.uniform(0.05, 0.2))
    shade = 0.6 + 0.8 * _noise(rng, shape, 2, 2)
    refl[trees] = TREES * shade[trees, None]
    refl[_shift(trees, -2, -2) & ~trees] *= 0.6
    theta, dist = rng.uniform(0, np.pi / 2), np.full(shape, np.inf)
    for coord in (xx * np.cos(theta) + yy * np.sin(theta), yy * np.cos(theta) - xx * np.sin(theta)):
        spacing, keep = rng.uniform(80, 150), rng.random(64) < 0.65
        off = coord - rng.uniform(0, spacing)
        k = np.rint(off / spacing).astype(int)
        dist = np.minimum(dist, np.where(keep[k % 64], np.abs(off - k * spacing), np.inf))
    half = rng.uniform(2.5, 4.0)
    refl[dist < half + 1] = CURB * shade[dist < half + 1, None] ** 0.2
    refl[dist < half] = ASPHALT * texture[dist < half, None] ** 0.3
    return refl, dist < half + 1, dist, theta


def place_buildings(rng: np.random.Generator, size: int, road: np.ndarray, road_dist: np.ndarray, theta: float,
           count: int, courtyard: bool) -> list[_Building]:
    """Up to `count` buildings off the roads, 3 px apart, aligned to the road grid, mostly near a road."""
    occupied, out = road.copy(), []
    for _ in range(count * 40):
        if len(out) == count:
            break
        kind = "court" if courtyard and not out else rng.choice(["rect", "L", "court"], p=[0.62, 0.3, 0.08])
        ang = theta + rng.choice([0, np.pi / 2]) + rng.normal(0, 0.04)
        cos, sin, centre = np.cos(ang), np.sin(ang), rng.uniform(0, size, 2)
        rings = [np.round(r @ np.array([[cos, sin], [-sin, cos]]) + centre, 3) for r in _footprint(rng, kind)]
        far = road_dist[int(centre[1]), int(centre[0])] > 40 and rng.random() < 0.8
        if far or rings[0].min() < 1 or rings[0].max() > size - 1:
            continue
        sl, mask = _fill(rings, size)
        if (occupied[sl] & _dilate(mask, 3)).any():
            continue
        occupied[sl] |= mask
        ys, xs = np.mgrid[sl] + 0.5 - centre[::-1, None, None]
        lu, lv = xs * cos + ys * sin, ys * cos - xs * sin
        ridge = lv if np.ptp(lu[mask]) >= np.ptp(lv[mask]) else lu
        gable = np.where(ridge > 0, 1.12, 0.86) if kind == "rect" and rng.random() < 0.7 else 1.0
        shade = gable * (1 + 0.05 * rng.standard_normal(mask.shape)) * np.where(_dilate(~mask, 1), 0.8, 1.0)
        roof = ROOFS[rng.integers(len(ROOFS))] * rng.uniform(0.9, 1.1) * shade[..., None]
        uid, damage = str(uuid.UUID(bytes=rng.bytes(16), version=4)), str(rng.choice(DAMAGE, p=DAMAGE_P))
        out.append(_Building(rings, sl, mask, roof, (lu, lv), rng.uniform(4, 10), uid, damage))
    return out


def _damage(rng: np.random.Generator, view: np.ndarray, b: _Building, others: np.ndarray) -> None:
    """Paints the visible damage of `b` into `view` (its bounding box), sparing other roofs (`others`)."""
    m, (lu, lv), free = b.mask, b.local, ~others
    palette = np.vstack([RUBBLE, b.paint[m].mean(0) * 0.8])  # wood, concrete, gaps, dust, roof pieces
    chunks = palette[rng.integers(len(palette), size=(m.shape[0] // 2 + 1, m.shape[1] // 2 + 1))]
    chunks *= rng.uniform(0.7, 1.3, (*chunks.shape[:2], 1))
    rubble = chunks.repeat(2, 0).repeat(2, 1)[: m.shape[0], : m.shape[1]]
    if b.damage == "minor-damage":  # a few tarps or debris patches on the roof
        ys, xs = np.nonzero(m)
        for _ in range(rng.integers(2, 5)):
            i, s = rng.integers(len(ys)), rng.uniform(2, 4.5, 2)
            patch = m & (np.abs(lu - lu[ys[i], xs[i]]) < s[0]) & (np.abs(lv - lv[ys[i], xs[i]]) < s[1])
            view[patch] = TARP * rng.uniform(0.8, 1.2) if rng.random() < 0.5 else rubble[patch]
    elif b.damage in ("major-damage", "destroyed"):  # part of / all the roof gone, debris around
        major, a = b.damage == "major-damage", rng.uniform(0, 2 * np.pi)
        proj = lu * np.cos(a) + lv * np.sin(a)
        hit = m & (proj > np.quantile(proj[m], rng.uniform(0.3, 0.6))) if major else m
        if not major:  # the rubble spills out of the footprint
            hit |= free & _dilate(m, 2) & (rng.random(m.shape) < 0.5)
        hit |= free & ~m & _dilate(m, 4 if major else 6) & (rng.random(m.shape) < 0.12)
        view[hit] = rubble[hit]
    elif b.damage == "un-classified":  # obscured by a small cloud
        alpha = (free | m) * rng.uniform(0.4, 0.7) * np.exp(-8 * (lu**2 + lv**2) / np.ptp(lu[m]) ** 2)
        view[:] = view * (1 - alpha[..., None]) + alpha[..., None] * CLOUD


def render_scene(rng: np.random.Generator, ground: np.ndarray, blds: list[_Building], sun: tuple[float, float],
            post: bool, style: Style | None = None) -> np.ndarray:
    """Ground (+ floods if `post`), shadows (sun azimuth, elevation in °), roofs (+ damage), gain and haze."""
    img, roofs = ground.copy(), np.zeros(ground.shape[:2], bool)
    if post and rng.random() < 0.6:  # flood water or mud patches: change that is not building damage
        n = _noise(rng, img.shape[:2], img.shape[0] / 5, 2)
        alpha = np.clip((n - np.quantile(n, 1 - rng.uniform(0.05, 0.2))) / 0.03, 0, 1) * rng.uniform(0.6, 0.9)
        img = img * (1 - alpha[..., None]) + alpha[..., None] * FLOOD[rng.integers(len(FLOOD))]
    shadow, (az, el) = roofs.copy(), np.radians(sun)
    for b in blds:
        scale = {"destroyed": 0.0, "major-damage": 0.5}.get(b.damage, 1.0) if post else 1.0
        for t in np.linspace(0, b.height * scale / np.tan(el), 8):  # shadows point away from the sun
            shadow[b.sl] |= _shift(b.mask, round(t * np.cos(az)), round(-t * np.sin(az)))
        roofs[b.sl] |= b.mask
    img[shadow & ~roofs] *= 0.45
    for b in blds:
        img[b.sl][b.mask] = b.paint[b.mask]
    for b in blds if post else ():
        _damage(rng, img[b.sl], b, roofs[b.sl] & ~b.mask)
    gain = rng.uniform(0.9, 1.1) * rng.uniform(0.97, 1.03, img.shape[-1])
    alpha = rng.uniform(0, 0.1 if style is None else style.haze) * _noise(rng, img.shape[:2], img.shape[0] / 2, 2)
    if style is not None:
        gain = gain * style.gain[: img.shape[-1]]
    return img * gain * (1 - alpha[..., None]) + alpha[..., None] * HAZE


def reflectance_display(refl: np.ndarray) -> np.ndarray:
    """Reflectance to a display stretch on 0..255."""
    return 255 * np.clip(refl * 2.8, 0, 1) ** 0.75


def _label(blds: list[_Building], post: bool, to_lnglat: np.ndarray, metadata: dict) -> dict:
    """xBD label: features.lng_lat / features.xy (the same polygons in WGS84 and pixels) and metadata."""
    feats: dict[str, list] = {"lng_lat": [], "xy": []}
    for b in blds:
        props = {"feature_type": "building", **({"subtype": b.damage} if post else {}), "uid": b.uid}
        lnglat = [np.c_[r, np.ones(len(r))] @ to_lnglat.T for r in b.rings]
        feats["lng_lat"].append({"properties": props, "wkt": shapely.Polygon(lnglat[0], lnglat[1:]).wkt})
        feats["xy"].append({"properties": props, "wkt": shapely.Polygon(b.rings[0], b.rings[1:]).wkt})
    return {"features": feats, "metadata": metadata}


def make_xbd_split(out_dir: Path, num_pairs: int, size: int = 256, seed: int = 0,
                   disaster: str = "synthetic-storm", buildings: tuple[int, int] = (6, 14)) -> list[str]:
    """Writes out_dir/images/<disaster>_<id:08d>_{pre,post}_disaster.png (RGB uint8) and labels/<same>.json.

    Returns the tile ids "<disaster>_<id:08d>". Deterministic for a seed; pair 0 always has a courtyard (a
    polygon with an interior ring). `buildings` bounds the count per pair (fewer if they don't fit).
    """
    out_dir = Path(out_dir)
    for sub in ("images", "labels"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    split = np.random.default_rng([seed, 0])
    lon0, lat0, day0 = split.uniform(-97, -80), split.uniform(26, 38), np.datetime64("2015-01-01")
    day0 += split.integers(0, 3000)
    kind = next((v for k, v in DISASTER_TYPES.items() if k in disaster.lower()), "wind")
    style = Style.of(disaster)
    dlat, dlon = GSD / 111_320, GSD / 111_320 / np.cos(np.radians(lat0))
    ids = [f"{disaster}_{i:08d}" for i in range(num_pairs)]
    for i, tile in enumerate(ids):
        rng = np.random.default_rng([seed, 1, i])
        ground, road, dist, theta = landscape(rng, size, style.ground_p)
        blds = place_buildings(rng, size, road, dist, theta, int(rng.integers(buildings[0], buildings[1] + 1)), i == 0)
        west, north = lon0 + i % 16 * size * dlon, lat0 - i // 16 * size * dlat
        to_lnglat = np.array([[dlon, 0, west], [0, -dlat, north]])
        for phase, days in (("pre", -int(rng.integers(60, 900))), ("post", int(rng.integers(1, 20)))):
            sun, post, name = (rng.uniform(120, 165), rng.uniform(45, 72)), phase == "post", f"{tile}_{phase}"
            img, name = render_scene(rng, ground, blds, sun, post, style), name + "_disaster"
            rgb = np.clip(np.rint(reflectance_display(img[..., :3]) + rng.normal(0, 1.5, (size, size, 3))), 0, 255)
            Image.fromarray(rgb.astype(np.uint8)).save(out_dir / "images" / f"{name}.png", compress_level=1)
            meta = {"sensor": "SYNTHETIC", "provider_asset_type": "SYNTHETIC", "gsd": 4 * GSD,
                    "capture_date": f"{day0 + days}T{rng.integers(15, 19)}:{rng.integers(10, 60)}:00.000Z",
                    "off_nadir_angle": rng.uniform(5, 30), "pan_resolution": GSD, "sun_azimuth": sun[0],
                    "sun_elevation": sun[1], "target_azimuth": rng.uniform(0, 360), "disaster": disaster,
                    "disaster_type": kind, "catalog_id": rng.bytes(8).hex().upper(), "original_width": size,
                    "original_height": size, "width": size, "height": size, "id": rng.bytes(16).hex(),
                    "img_name": f"{name}.png"}
            (out_dir / "labels" / f"{name}.json").write_text(json.dumps(_label(blds, post, to_lnglat, meta)))
    return ids

