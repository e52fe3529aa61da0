"""``pairs-csv``: a CSV ``pre,post,mask`` of binary change pairs, every path relative to the CSV and inside its
folder (masks 0 / 255 or 0 / 1)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

from ssl_siam.change.datasets.base import LAYOUTS, PairLayout, ReadOptions
from ssl_siam.core.errors import DataError
from ssl_siam.data.pairs import PairRecord, check_sizes


@LAYOUTS.register("pairs-csv")
class PairsCSVLayout(PairLayout):
    task = "binary"
    mask_map: ClassVar[dict[int, int] | None] = {255: 1}  # masks 0 / 255 (or 0 / 1)

    @staticmethod
    def detect(root: Path) -> bool:
        return root.is_file() and root.suffix.lower() == ".csv"

    def find(self, root: Path, options: ReadOptions) -> list[PairRecord]:
        return csv_pairs(root, options.require_masks)


def csv_pairs(path: Path, require_masks: bool = True) -> list[PairRecord]:
    """Rows ``pre,post,mask`` of a CSV (the ``mask`` column optional without ``require_masks``); every path
    relative to the CSV and inside its folder."""
    folder = path.parent.resolve()
    columns = ("pre", "post", "mask") if require_masks else ("pre", "post")
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not set(columns) <= set(reader.fieldnames):
                raise DataError(f"{path}: expected a CSV header {','.join(columns)}, got {reader.fieldnames}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the pairs CSV ({exc})") from None
    records = []
    for line, row in enumerate(rows, start=2):
        pre, post = (file_inside(folder, row[k], path, line) for k in ("pre", "post"))
        mask = file_inside(folder, row["mask"], path, line) if row.get("mask") or require_masks else None
        check_sizes(pre, [post, mask])
        records.append(PairRecord(Path(row["post"]).stem, folder, pre, post, damage_target=mask))
    return records


def file_inside(folder: Path, relative: str | None, csv_path: Path, line: int) -> Path:
    """``folder / relative`` resolved; a one-line DataError naming the CSV line when it leaves ``folder`` or is
    missing."""
    target = (folder / (relative or "")).resolve()
    if not relative or not target.is_relative_to(folder):
        raise DataError(f"{csv_path}:{line}: image path {relative!r} must be a file inside {folder}")
    if not target.is_file():
        raise DataError(f"{csv_path}:{line}: image {target} does not exist")
    return target
