"""Where tiles come from: folders (recursive), files, glob patterns and ``{band}`` patterns that stack one file per
band (Sentinel-2 style) into one scene, and OSCD roots (both dates of every city, 13 bands or ``band_names``)."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ssl_siam.core.errors import DataError
from ssl_siam.data.oscd import date_scenes, is_oscd_root
from ssl_siam.data.rasters import RASTER_SUFFIXES

_BAND = "{band}"
_GLOB_TOKEN = re.compile(r"\{band\}|\*\*/?|\*|\?|\[!?\]?[^\]]*\]")


def walk_files(root: Path) -> list[Path]:
    """Every file below ``root``, following symlinked folders, in sorted order per folder; a link back to a folder
    already visited (a loop) is not entered twice. One ``scandir`` per folder (no ``stat`` per regular file)."""
    seen: set[str] = set()
    files: list[Path] = []

    def visit(folder: str) -> None:
        real = os.path.realpath(folder)
        if real in seen:
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"{folder}: cannot list this folder ({exc.strerror})") from None
        subfolders = []
        for entry in entries:
            try:
                if entry.is_file():
                    files.append(Path(entry.path))
                elif entry.is_dir():
                    subfolders.append(entry.path)
            except OSError:
                continue  # a broken link
        for sub in subfolders:
            visit(sub)

    visit(str(root))
    return files


def resolve_sources(
    sources: str | Path | Sequence[str | Path], band_names: Sequence[str] | None
) -> list[tuple[Path, ...]]:
    """Scenes (one path, or one path per band name) from folders, files, glob patterns and {band} patterns."""
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not sources:
        raise DataError("no tile sources given: expected a folder, file or glob pattern")
    texts = [str(s) for s in sources]
    if band_names and not any(_BAND in t or is_oscd_root(Path(t)) for t in texts):
        raise DataError(f"{texts[0]}: band_names given but no source contains {_BAND} (or is an OSCD root)")
    scenes: list[tuple[Path, ...]] = []
    for text in texts:
        path = Path(text)
        if _BAND in text:
            if not band_names:
                raise DataError(f"{text}: contains {_BAND}, expected band_names to be given")
            scenes += _band_stacks(text, band_names)
        elif path.is_dir() and is_oscd_root(path):  # both dates of every city, one file per band
            scenes += date_scenes(path, band_names)
        elif path.is_dir():
            found = sorted((p for p in walk_files(path) if p.suffix.lower() in RASTER_SUFFIXES), key=lambda p: p.parts)
            if not found:
                raise DataError(f"{path}: folder contains no raster files ({' '.join(RASTER_SUFFIXES)})")
            scenes += [(p,) for p in found]
        elif path.is_file():
            scenes.append((path,))
        elif any(c in text for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not found:
                raise DataError(f"{text}: no files match this pattern")
            scenes += [(p,) for p in found]
        else:
            raise DataError(f"{text}: no such file or folder")
    return list(dict.fromkeys(scenes))


def _band_stacks(pattern: str, band_names: Sequence[str]) -> list[tuple[Path, ...]]:
    """Group files matching ``pattern`` (``{band}`` = one of ``band_names``) into one stack per scene."""
    regex = _stack_regex(pattern, band_names)
    stacks: dict[str, dict[str, Path]] = {}
    for name in glob.glob(pattern.replace(_BAND, "*"), recursive=True):
        match = regex.fullmatch(name)
        if not match or not os.path.isfile(name) or len(set(match.groupdict().values())) != 1:
            continue
        key = name
        for group in sorted(match.groupdict(), key=match.start, reverse=True):
            key = key[: match.start(group)] + _BAND + key[match.end(group) :]
        stacks.setdefault(key, {})[match.group("band0")] = Path(name)
    if not stacks:
        raise DataError(f"{pattern}: no files match with {_BAND} in {', '.join(band_names)}")
    for key, found in sorted(stacks.items()):
        for band in band_names:
            if band not in found:
                raise DataError(
                    f"{key.replace(_BAND, band)}: missing, expected one file per band "
                    f"({', '.join(band_names)}) for {key}"
                )
    return [tuple(stacks[key][band] for band in band_names) for key in sorted(stacks)]


def _stack_regex(pattern: str, band_names: Sequence[str]) -> re.Pattern[str]:
    """Regex for paths matching glob ``pattern``; the i-th ``{band}`` is captured as group ``band<i>``."""
    names = "|".join(re.escape(b) for b in sorted(band_names, key=len, reverse=True))
    parts, pos, count = [], 0, 0
    for token in _GLOB_TOKEN.finditer(pattern):
        parts.append(re.escape(pattern[pos : token.start()]))
        text = token.group()
        if text == _BAND:
            parts.append(f"(?P<band{count}>{names})")
            count += 1
        elif text.startswith("**"):
            parts.append("(?:.*/)?" if text.endswith("/") else ".*")
        elif text in ("*", "?"):
            parts.append("[^/]*" if text == "*" else "[^/]")
        else:
            parts.append("[^" + text[2:] if text.startswith("[!") else text)
        pos = token.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("".join(parts))
