"""``xbd``: xBD split folders (``images/``, ``labels/`` or ``targets/``; :mod:`ssl_siam.data.xbd.pairs`), the
damage task's layout; masks are rasterised from the label JSONs by the training."""

from __future__ import annotations

import logging
from pathlib import Path

from ssl_siam.change.datasets.base import LAYOUTS, PairLayout, ReadOptions
from ssl_siam.data.pairs import PairRecord
from ssl_siam.data.xbd.pairs import find_pairs

log = logging.getLogger(__name__)


@LAYOUTS.register("xbd")
class XBDLayout(PairLayout):
    task = "damage"

    @staticmethod
    def detect(root: Path) -> bool:
        return (root / "images").is_dir()

    def find(self, root: Path, options: ReadOptions) -> list[PairRecord]:
        records, skipped = find_pairs([root], skip_bad=options.skip_bad, labels=options.masks)
        for reason in skipped:
            log.warning("skipped: %s", reason)
        return records
