"""``pairs-csv``: a CSV ``pre,post,mask`` (and optionally ``id``) of binary change pairs, masks 0 / 255 or 0 / 1.

Paths are ``/``-separated, relative to the CSV's folder and confined to it *lexically*: no absolute path, no
``..`` component. What such a path names is opened as the user linked it, so files and folders symlinked into the
CSV's folder are followed (as folder roots are everywhere else).

A pair's id (the stem of its predictions) is its ``id`` column when the CSV has one; else the post image's file
stem when every row's is unique (a CSV over LEVIR chips keeps their ids); else the post image's path without its
suffix, ``/`` written ``_`` (``site/3/im2.png`` → ``site_3_im2``).
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath
from typing import ClassVar

from ssl_siam.change.datasets.base import LAYOUTS, PairLayout, ReadOptions
from ssl_siam.core.errors import DataError
from ssl_siam.data.pairs import MaskPolicy, PairRecord, check_sizes


@LAYOUTS.register("pairs-csv")
class PairsCSVLayout(PairLayout):
    task = "binary"
    mask_map: ClassVar[dict[int, int] | None] = {255: 1}  # masks 0 / 255 (or 0 / 1)

    @staticmethod
    def detect(root: Path) -> bool:
        return root.is_file() and root.suffix.lower() == ".csv"

    def find(self, root: Path, options: ReadOptions) -> list[PairRecord]:
        return csv_pairs(root, options.masks)


def csv_pairs(path: Path, masks: MaskPolicy = "required") -> list[PairRecord]:
    """The pairs of a CSV (module docstring; the ``mask`` column optional unless ``masks="required"``, not read with
    ``"none"``)."""
    folder = path.parent.resolve()
    columns = ("pre", "post", "mask") if masks == "required" else ("pre", "post")
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            if not set(columns) <= set(header):
                raise DataError(f"{path}: expected a CSV header {','.join(columns)}[,id], got {reader.fieldnames}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the pairs CSV ({exc})") from None
    files = []
    for line, row in enumerate(rows, start=2):
        pre, post = (file_inside(folder, row[k], path, line) for k in ("pre", "post"))
        if masks == "required" and not row.get("mask"):
            raise DataError(f"{path}:{line}: no mask, expected one in every row for training (predict and score "
                            "take rows without)")
        mask = file_inside(folder, row["mask"], path, line) if masks != "none" and row.get("mask") else None
        check_sizes(pre, [post, mask])
        files.append((pre, post, mask))
    ids = pair_ids(path, rows, "id" in header)
    return [PairRecord(i, folder, pre, post, damage_target=mask) for i, (pre, post, mask) in zip(ids, files)]


def pair_ids(path: Path, rows: list[dict[str, str]], id_column: bool) -> list[str]:
    """The rows' ids (module docstring); a one-line DataError naming both lines when two rows share one."""
    if id_column:
        ids = [(row["id"] or "").strip() for row in rows]
    else:
        posts = [PurePosixPath(row["post"]) for row in rows]
        ids = [p.stem for p in posts]
        if len(set(ids)) < len(ids):
            ids = ["_".join(p.with_suffix("").parts) for p in posts]
    seen: dict[str, int] = {}
    for line, pair_id in enumerate(ids, start=2):
        if not pair_id or pair_id in (".", "..") or "/" in pair_id or "\\" in pair_id:
            raise DataError(f"{path}:{line}: pair id {pair_id!r} cannot name files; expected a name without / or \\")
        if pair_id in seen:
            raise DataError(f"{path}:{line}: pair id {pair_id!r} also on line {seen[pair_id]}; expected unique "
                            "ids (add an id column)")
        seen[pair_id] = line
    return ids


def file_inside(folder: Path, relative: str | None, csv_path: Path, line: int) -> Path:
    """``folder / relative`` when ``relative`` is a relative path without ``..`` (checked on the text, so links
    inside ``folder`` are followed); a one-line DataError naming the CSV line when not, or when it is missing."""
    if not relative:
        raise DataError(f"{csv_path}:{line}: empty path, expected a file inside {folder}")
    parts = PurePosixPath(relative)
    if parts.is_absolute() or ".." in parts.parts:
        raise DataError(f"{csv_path}:{line}: image path {relative!r} must be a file inside {folder}: relative, "
                        "without '..' (links inside it are followed)")
    target = folder / parts
    if not target.is_file():
        raise DataError(f"{csv_path}:{line}: image {target} does not exist")
    return target
