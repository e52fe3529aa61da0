"""``second``: SECOND semantic change (Yang et al., TGRS 2021), ``<split>/im1``, ``im2``, ``label1``, ``label2``;
each pair's two land-cover maps become one code mask (:mod:`ssl_siam.data.semantic`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from ssl_siam.change.datasets.base import LAYOUTS, PairLayout, ReadOptions
from ssl_siam.core.errors import DataError
from ssl_siam.core.files import atomic_path
from ssl_siam.data.pairs import PairRecord, check_sizes
from ssl_siam.data.semantic import FOLDERS, pair_code, read_landcover


@LAYOUTS.register("second")
class SecondLayout(PairLayout):
    task = "semantic"

    @staticmethod
    def detect(root: Path) -> bool:
        return all((root / folder).is_dir() for folder in FOLDERS)

    def find(self, root: Path, options: ReadOptions) -> list[PairRecord]:
        return second_pairs(root, options.cache_dir, options.require_masks)


def second_pairs(root: Path, cache_dir: Path, require_masks: bool = True) -> list[PairRecord]:
    """The pairs of a SECOND split (matched by file name), each with its code mask rasterised into ``cache_dir``
    (keyed by both label files' path, size and mtime: a changed label is rebuilt); without ``require_masks``
    (prediction) labels are not read."""
    for folder in FOLDERS[:2]:
        if not (root / folder).is_dir():
            raise DataError(f"{root / folder}: missing, expected the SECOND layout {'/ '.join(FOLDERS)}/")
    records = []
    for pre in sorted(p for p in (root / "im1").iterdir() if p.suffix.lower() in (".png", ".jpg", ".tif")):
        post = root / "im2" / pre.name
        if not post.is_file():
            raise DataError(f"{pre}: no partner {post}")
        code = _code_mask(root, pre, cache_dir) if require_masks else None
        check_sizes(pre, [post])
        records.append(PairRecord(pre.stem, root, pre, post, damage_target=code))
    return records


def _code_mask(root: Path, image: Path, cache_dir: Path) -> Path:
    labels = [root / folder / f"{image.stem}.png" for folder in FOLDERS[2:]]
    for path in labels:
        if not path.is_file():
            raise DataError(f"{path}: missing, expected the land-cover map of {image.name}")
    key = hashlib.sha1("".join(f"{p.resolve()}{p.stat().st_size}{p.stat().st_mtime_ns}" for p in labels).encode())
    out = cache_dir / "second" / key.hexdigest()[:12] / f"{image.stem}.png"
    if out.is_file():
        return out
    with Image.open(image) as im:
        shape = (im.height, im.width)
    code = pair_code(read_landcover(labels[0], shape), read_landcover(labels[1], shape), labels[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".png") as tmp:
        Image.fromarray(code).save(tmp)
    return out
