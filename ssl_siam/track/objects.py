"""The small objects of synthetic tracking sequences, drawn into a frame: a car (rotated rectangle, windscreen,
shadow), a ship (ellipse, bright wake) or a patch cut from real imagery, with 1 px anti-aliased edges so that the box
is exact at any sub-pixel position."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CAR_COLOURS = np.array([[235, 235, 230], [35, 35, 38], [170, 172, 175], [175, 40, 35], [40, 70, 150]], np.float32)
SHIP_COLOURS = np.array([[225, 225, 220], [140, 140, 145], [160, 60, 40]], np.float32)
SUN = np.array([1.5, 1.2])  # shadow offset (x, y) in pixels


@dataclass(frozen=True)
class Look:
    """An object's appearance: ``kind`` car (rectangle, windscreen, shadow), ship (ellipse, wake) or patch (real
    texture under an elliptical soft mask, with a shadow); ``length`` along the heading, ``width`` across it."""

    kind: str
    length: float
    width: float
    colour: np.ndarray  # [3] on 0..255
    patch: np.ndarray | None = None  # [h, w, 3] texture of a patch object
    shadow: bool = True

    @property
    def reach(self) -> float:
        """Furthest pixel from the centre that rendering touches (the ship's wake trails 1.5 lengths behind)."""
        return (2.0 if self.kind == "ship" else 0.5) * self.length + self.width / 2 + 3

    def box(self, centre: np.ndarray, heading: np.ndarray) -> np.ndarray:
        """``[T, 4]`` x, y, w, h: the axis-aligned box around the body (rectangle or ellipse; no shadow or wake)."""
        c, s = np.abs(np.cos(heading)), np.abs(np.sin(heading))
        a, b = self.length / 2, self.width / 2
        if self.kind == "car":
            hw, hh = a * c + b * s, a * s + b * c
        else:
            hw, hh = np.hypot(a * c, b * s), np.hypot(a * s, b * c)
        return np.stack([centre[:, 0] - hw, centre[:, 1] - hh, 2 * hw, 2 * hh], axis=1)


def coverage(distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a pixel from its signed distance to an edge (negative inside), 1 px ramp."""
    return np.clip(0.5 - distance, 0.0, 1.0)


def _window(shape: tuple[int, int], centre: np.ndarray, reach: float
            ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """The pixels within ``reach`` of ``centre`` (clipped to the image) and their pixel-centre offsets dx, dy."""
    x0, y0 = (max(math.floor(c - reach), 0) for c in centre)
    x1, y1 = min(math.ceil(centre[0] + reach), shape[1]), min(math.ceil(centre[1] + reach), shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    return (slice(y0, y1), slice(x0, x1)), xs - centre[0], ys - centre[1]


def _body(kind: str, u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Coverage of a body with half-length ``a`` and half-width ``b`` in its own axes: a car's rectangle, else an
    ellipse (its signed distance approximated by the radial one, scaled by the half-width)."""
    if kind == "car":
        return coverage(np.maximum(np.abs(u) - a, np.abs(v) - b))
    return coverage((np.hypot(u / a, v / b) - 1) * b)


def _blend(view: np.ndarray, alpha: np.ndarray, colour: np.ndarray | float) -> None:
    view += alpha[..., None] * (colour - view)


def paint(img: np.ndarray, look: Look, centre: np.ndarray, heading: float) -> None:
    """Draws one object into ``img`` ``[H, W, 3]`` (float, in place), centred at ``centre`` (x, y), facing
    ``heading`` (radians, image axes)."""
    win = _window(img.shape[:2], centre, look.reach)
    if win is None:
        return
    sl, dx, dy = win
    view = img[sl]
    cos, sin = math.cos(heading), math.sin(heading)
    u, v = dx * cos + dy * sin, dy * cos - dx * sin  # along and across the heading
    a, b = look.length / 2, look.width / 2
    if look.shadow and look.kind != "ship":  # the body's footprint moved away from the sun, darkening the ground
        su, sv = u - (SUN[0] * cos + SUN[1] * sin), v - (SUN[1] * cos - SUN[0] * sin)
        view *= 1 - 0.45 * _body(look.kind, su, sv, a, b)[..., None]
    if look.kind == "ship":
        behind = np.maximum(-u - a, 0)
        wake = 0.7 * np.exp(-((v / (0.3 * look.width + 0.15 * behind)) ** 2) - behind / (1.5 * look.length))
        _blend(view, np.where(u < -a + 1, wake, 0), 235.0)
    if look.kind == "patch":
        assert look.patch is not None
        ph, pw = look.patch.shape[:2]
        texture = cv2.remap(look.patch, ((u / look.length + 0.5) * pw - 0.5).astype(np.float32),
                            ((v / look.width + 0.5) * ph - 0.5).astype(np.float32), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
        soft = np.clip((1 - np.hypot(u / a, v / b)) / 0.35, 0, 1)  # an elliptical soft mask
        view += soft[..., None] * (texture - view)
        return
    _blend(view, _body(look.kind, u, v, a, b), look.colour)
    if look.kind == "car":  # the windscreen: a dark stripe across the front
        screen = coverage(np.maximum(np.abs(u - 0.2 * look.length) - 0.08 * look.length, np.abs(v) - (b - 0.8)))
        _blend(view, screen, 0.35 * look.colour)
