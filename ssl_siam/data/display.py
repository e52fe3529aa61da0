"""Which bands of an image to show as red, green and blue: by name where the bands have names (B04 / B03 / B02,
red / green / blue: a ``{band}`` stack, an OSCD city's band files, a VRT's band descriptions), else bands 4, 3, 2
of 13 (Sentinel-2 order), else the first three, and the first band in grey for one or two bands."""

from __future__ import annotations

from collections.abc import Sequence

_COLOURS = ({"b04", "b4", "red", "r"}, {"b03", "b3", "green", "g"}, {"b02", "b2", "blue", "b"})


def rgb_bands(count: int, names: Sequence[str] | None) -> tuple[int, int, int]:
    """0-based display bands of ``count`` bands with these ``names`` (None: unknown); see the module doc."""
    if names:
        found = [next((i for i, n in enumerate(names) if n and n.lower() in colour), None) for colour in _COLOURS]
        if None not in found:
            return found[0], found[1], found[2]  # type: ignore[return-value]
    if count == 13:
        return 3, 2, 1
    return (0, 1, 2) if count >= 3 else (0, 0, 0)
