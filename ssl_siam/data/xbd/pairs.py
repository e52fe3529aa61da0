"""xBD pre/post pairs: discovery across split folders, checked from the image headers.

A split folder holds ``images/<id>_{pre,post}_disaster.(png|tif)`` and ``labels/<id>_{pre,post}_disaster.json``
(rasterised by :mod:`ssl_siam.data.xbd.targets`) or ``targets/<id>_{damage,localization}_target.(png|tif)``,
which win.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ssl_siam.core.errors import DataError
from ssl_siam.data.pairs import MaskPolicy, PairRecord, check_sizes

_IMAGE = re.compile(r"^(?P<id>.+)_(?P<phase>pre|post)_disaster\.(?:png|tiff?|jpe?g)$", re.IGNORECASE)
_TARGET_SUFFIXES = (".png", ".tif", ".tiff")


def find_pairs(
    roots: str | Path | Sequence[str | Path], skip_bad: bool = False, labels: MaskPolicy = "required"
) -> tuple[list[PairRecord], list[str]]:
    """Pairs of every split folder in ``roots`` (in order, ids sorted) and the one-line reasons of skipped pairs.

    A pair is bad (DataError, or skipped with ``skip_bad``) when its partner image is missing, a file is unreadable,
    pre, post and targets differ in size (read from the headers), or (with ``labels="required"``) it has neither
    both label JSONs nor a damage target; with ``labels="none"`` labels and targets are not looked for (records
    without them). Missing or empty split folders always raise.
    """
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    if not roots:
        raise DataError("no xBD split folders given: expected folders holding images/ and labels/ or targets/")
    records, skipped, seen = [], [], {}
    for root in map(Path, roots):
        for image_id, phases in _scan_images(root).items():
            try:
                if image_id in seen:
                    first = next(iter(phases.values()))[0]
                    raise DataError(f"{first}: id {image_id} also in {seen[image_id]}, expected unique ids")
                records.append(_make_record(root, image_id, phases, labels))
                seen[image_id] = root
            except DataError as exc:
                if not skip_bad:
                    raise
                skipped.append(str(exc).replace("\n", " "))
    if not records:
        raise DataError(f"{roots[0]}: no usable pre/post pairs ({len(skipped)} skipped, first: {skipped[0]})")
    return records, skipped


def _scan_images(root: Path) -> dict[str, dict[str, list[Path]]]:
    images = root / "images"
    if not images.is_dir():
        raise DataError(f"{images}: missing, expected an xBD split folder with an images/ folder")
    found: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(images.iterdir()):
        match = _IMAGE.match(path.name)
        if match and path.is_file():
            found.setdefault(match["id"], {}).setdefault(match["phase"].lower(), []).append(path)
    if not found:
        raise DataError(f"{images}: no <id>_pre_disaster / <id>_post_disaster .png or .tif images")
    return found


def _make_record(root: Path, image_id: str, phases: dict[str, list[Path]], labels: MaskPolicy) -> PairRecord:
    for phase, other in (("pre", "post"), ("post", "pre")):
        if phase not in phases:
            expected = root / "images" / f"{image_id}_{phase}_disaster.png"
            raise DataError(f"{phases[other][0]}: no {phase}-disaster partner, expected {expected} (or .tif)")
        if len(phases[phase]) > 1:
            raise DataError(f"{phases[phase][0]}: several {phase}-disaster images for {image_id}, expected one")
    pre, post = phases["pre"][0], phases["post"][0]
    if labels == "none":
        check_sizes(pre, [post])
        return PairRecord(image_id, root, pre, post)
    jsons = [root / "labels" / f"{image_id}_{phase}_disaster.json" for phase in ("pre", "post")]
    damage, loc = (_find_target(root, f"{image_id}_{kind}_target") for kind in ("damage", "localization"))
    if labels == "required" and damage is None and not all(label.is_file() for label in jsons):
        missing = next(label for label in jsons if not label.is_file())
        raise DataError(f"{post}: no labels and no targets, expected {missing} or targets/{image_id}_damage_target.png")
    check_sizes(pre, [post, damage, loc])
    return PairRecord(image_id, root, pre, post, *(p if p.is_file() else None for p in jsons), damage, loc)


def _find_target(root: Path, stem: str) -> Path | None:
    return next((p for s in _TARGET_SUFFIXES if (p := root / "targets" / f"{stem}{s}").is_file()), None)
