"""Binary change chips in three folders matched by file name: LEVIR-CD / LEVIR-CD+ / WHU-CD (``A``, ``B``,
``label``) and S2Looking (``Image1``, ``Image2``, ``label``; its ``label1`` / ``label2`` are ignored). Masks hold
0 / 255 (or 0 / 1)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ssl_siam.change.datasets.base import IMAGE_SUFFIXES, LAYOUTS, PairLayout, ReadOptions
from ssl_siam.core.errors import DataError
from ssl_siam.data.pairs import PairRecord, check_sizes


class FolderLayout(PairLayout):
    """Pre, post and mask folders of one split; sizes checked from the headers."""

    task = "binary"
    mask_map: ClassVar[dict[int, int] | None] = {255: 1}  # masks 0 / 255 (or 0 / 1)
    folders: ClassVar[tuple[str, str, str]]

    @classmethod
    def detect(cls, root: Path) -> bool:  # type: ignore[override]
        return all((root / folder).is_dir() for folder in cls.folders)

    def find(self, root: Path, options: ReadOptions) -> list[PairRecord]:
        pre_dir, post_dir, mask_dir = (root / folder for folder in self.folders)
        if not pre_dir.is_dir():
            raise DataError(f"{pre_dir}: missing, expected the {'/ '.join(self.folders)}/ layout")
        records = []
        for pre in sorted(p for p in pre_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            post = post_dir / pre.name
            mask = (_find_mask(mask_dir, pre) if options.require_masks or (options.read_masks and mask_dir.is_dir())
                    else None)
            if not post.is_file():
                raise DataError(f"{pre}: no partner {post}")
            check_sizes(pre, [post, mask])
            records.append(PairRecord(pre.stem, root, pre, post, damage_target=mask))
        return records


@LAYOUTS.register("levir")
class LevirLayout(FolderLayout):
    folders = ("A", "B", "label")


@LAYOUTS.register("s2looking")
class S2LookingLayout(FolderLayout):
    folders = ("Image1", "Image2", "label")


def _find_mask(folder: Path, image: Path) -> Path:
    for suffix in (image.suffix, ".png", ".tif"):
        if (path := folder / f"{image.stem}{suffix}").is_file():
            return path
    raise DataError(f"{image}: no change mask {folder / image.name}")
