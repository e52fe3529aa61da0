"""Pair datasets for metric learning. Items are dicts of raw (not normalised) tensors:

* location data (``geotiff-dates``, ``pixel-series``, ``object-series``): ``{"a", "b", "group"}`` — two
  observations of one place (two dates, or the same date twice: augmentation makes them differ; two samplings
  of an object's pixels); ``group`` identifies the place, so any
  two items of a batch from different groups form a negative pair and mining can search the whole batch. With
  ``negatives=True`` also ``{"n", "group_n"}``: an observation of another place (the triplet variant's third input).
* labelled pairs (``xbd-pairs``, ``similarity-csv``): ``{"a", "b", "label"}`` with label 1 = same / unchanged,
  0 = different / changed.

Images are ``[C, S, S]``, time series ``[C, T, 1]`` (bands first; the trailing 1 lets band statistics apply).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch

from ssl_siam.change.datasets.pairs_csv import file_inside
from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.core.registry import Registry
from ssl_siam.data.cache import DecodedCache, decoded
from ssl_siam.data.rasters import load_image, open_raster
from ssl_siam.data.xbd.buildings import BuildingCrops
from ssl_siam.data.xbd.pairs import find_pairs

METRIC_DATASETS: Registry[type[PairDataset]] = Registry("data.dataset")


class PairDataset(torch.utils.data.Dataset):
    """``labelled``: items carry ``label`` (else ``group``); ``num_bands``; ``stats_sources``: raster files whose
    band statistics normalise the inputs; ``series``: inputs are time series (recurrent encoder)."""

    labelled: bool
    series: bool = False
    num_bands: int
    stats_sources: list[Path]

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


@METRIC_DATASETS.register("xbd-pairs")
class XBDBuildingPairs(PairDataset):
    """Pre and post crops of every damage-labelled building of the given xBD splits (all of them: a split with a
    single image works); label 1 = unchanged (no-damage), 0 = changed (minor, major or destroyed)."""

    labelled = True

    def __init__(self, roots: Sequence[str], crop_size: int, cache: DecodedCache | None = None, **_: object) -> None:
        if not roots:
            raise DataError("data.root is empty: expected xBD split directories")
        records = find_pairs([Path(r) for r in roots])[0]
        self.crops = BuildingCrops(records if cache is None else decoded(cache, records), crop_size)
        self.num_bands = self.crops.num_bands
        self.stats_sources = [r.pre_image for r in self.crops.records]
        self.stats_bands = None

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index %= len(self.crops)
        pre, post = self.crops[index]
        return {"a": pre, "b": post, "label": torch.tensor(float(self.crops.buildings[index].label == 0))}


@METRIC_DATASETS.register("similarity-csv")
class SimilarityCSV(PairDataset):
    """A CSV with header ``path_a,path_b,label`` (label 1 = same, 0 = different); image paths are relative to the
    CSV's folder and must stay inside it. Images are resized and centre-cropped to ``crop_size``. (Formerly
    ``pairs-csv``, read as this name by the config; the change layout of that name holds pre,post,mask rows.)"""

    labelled = True

    def __init__(self, roots: Sequence[str], crop_size: int, cache: DecodedCache | None = None, **_: object) -> None:
        if len(roots) != 1:
            raise DataError(f"data.root {list(roots)}: expected exactly one similarity CSV file (path_a,path_b,label)")
        path = Path(roots[0])
        root = path.parent.resolve()
        self.crop_size, self.pairs = crop_size, []
        try:
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                if not reader.fieldnames or not {"path_a", "path_b", "label"} <= set(reader.fieldnames):
                    raise DataError(f"{path}: expected a CSV header path_a,path_b,label, got {reader.fieldnames}")
                for line, row in enumerate(reader, start=2):
                    self.pairs.append((file_inside(root, row["path_a"], path, line),
                                       file_inside(root, row["path_b"], path, line), self._label(row, path, line)))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{path}: cannot read the similarity CSV ({exc})") from None
        if not self.pairs:
            raise DataError(f"{path}: no pairs (expected rows path_a,path_b,label)")
        if cache is not None:
            files = [p for pair in self.pairs for p in pair[:2]]
            entries = dict(zip(files, cache.paths(files)))
            self.pairs = [(entries[a], entries[b], label) for a, b, label in self.pairs]
        with open_raster(self.pairs[0][0]) as src:
            self.num_bands = src.count
        self.stats_sources = sorted({p for pair in self.pairs for p in pair[:2]})
        self.stats_bands = None

    @staticmethod
    def _label(row: dict[str, str], csv_path: Path, line: int) -> float:
        if row["label"] not in ("0", "1"):
            raise DataError(f"{csv_path}:{line}: label {row['label']!r}, expected 1 (same) or 0 (different)")
        return float(row["label"])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path_a, path_b, label = self.pairs[index % len(self.pairs)]
        return {"a": load_image(path_a, self.crop_size, self.num_bands, self.pairs[0][0]),
                "b": load_image(path_b, self.crop_size, self.num_bands, self.pairs[0][0]),
                "label": torch.tensor(label)}


def open_pair_dataset(kind: str, roots: Sequence[str], *, crop_size: int, bands: Sequence[int] | None = None,
                      samples_per_epoch: int = 2048, seed: int = 0, negatives: bool = False,
                      neighbour_px: int = 1, objects: str | None = None,
                      cache: DecodedCache | None = None) -> PairDataset:
    """The registered dataset ``kind`` (ConfigError naming ``data.dataset`` for an unknown one); ``cache``: read
    PNG / JPEG through a decoded cache."""
    cls = METRIC_DATASETS.get(kind)
    if negatives and cls.labelled:
        raise ConfigError(f"data.dataset={kind} gives labelled pairs; the triplet variant needs location data "
                        f"({', '.join(k for k in METRIC_DATASETS.names() if not METRIC_DATASETS.get(k).labelled)})")
    return cls([str(r) for r in roots], crop_size=crop_size, bands=bands, samples_per_epoch=samples_per_epoch,
               seed=seed, negatives=negatives, neighbour_px=neighbour_px, objects=objects, cache=cache)

