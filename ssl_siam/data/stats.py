"""Per-band normalization statistics: robust raw-value range to unit scale, then mean / std scaling."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ssl_siam.data.tiles import TileDataset
from ssl_siam.errors import DataError

_FIELDS = ("low", "high", "mean", "std")
_PIXEL_BUDGET = 2**18  # sampled pixel values kept per band for the percentiles and moments
_MIN_STD = 1e-6


@dataclass
class BandStats:
    """Per band: ``low`` / ``high`` robust range of raw values, ``mean`` / ``std`` of unit-scaled values."""

    low: list[float]
    high: list[float]
    mean: list[float]
    std: list[float]

    def __post_init__(self) -> None:
        lengths = {len(getattr(self, name)) for name in _FIELDS}
        if len(lengths) != 1 or not self.low:
            raise ValueError(f"BandStats fields must be non-empty lists of one length, got lengths {lengths}")

    @property
    def num_bands(self) -> int:
        return len(self.low)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """[..., C, H, W] any int / float dtype -> float32 clamp((x - low) / (high - low), 0, 1)."""
        low, high = self._per_band(x, self.low), self._per_band(x, self.high)
        scale = (high - low).clamp_min(torch.finfo(torch.float32).tiny)
        return ((x.to(torch.float32) - low) / scale).clamp_(0.0, 1.0)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """[..., C, H, W] unit-scaled -> (x - mean) / std per band (float32 unless x is another float)."""
        x = x if x.is_floating_point() else x.to(torch.float32)
        return (x - self._per_band(x, self.mean, x.dtype)) / self._per_band(x, self.std, x.dtype)

    def _per_band(
        self, x: torch.Tensor, values: list[float], dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``values`` as a [C, 1, 1] tensor on x's device, checking x has C bands at dim -3."""
        if x.dim() < 3 or x.shape[-3] != self.num_bands:
            raise ValueError(f"expected a [..., {self.num_bands}, H, W] tensor, got shape {tuple(x.shape)}")
        return torch.tensor(values, dtype=dtype, device=x.device).view(-1, 1, 1)

    def save(self, path: str | Path) -> None:
        """Write as JSON {"low": [...], "high": [...], "mean": [...], "std": [...]}."""
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> BandStats:
        """Read a JSON written by ``save``; DataError if missing, not JSON or not the expected fields."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: expected a band statistics JSON file ({exc})") from exc
        expected = f"a JSON object with equal-length lists of finite numbers {', '.join(_FIELDS)} (std > 0)"
        if not isinstance(data, dict) or set(data) != set(_FIELDS):
            raise DataError(f"{path}: expected {expected}")
        values = {name: data[name] for name in _FIELDS}
        if not all(isinstance(v, list) and all(_is_number(f) for f in v) for v in values.values()):
            raise DataError(f"{path}: expected {expected}")
        if any(s <= 0 for s in values["std"]):
            raise DataError(f"{path}: expected {expected}")
        try:
            return cls(**{name: [float(f) for f in v] for name, v in values.items()})
        except ValueError as exc:
            raise DataError(f"{path}: expected {expected} ({exc})") from exc


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def compute_stats(
    dataset: TileDataset,
    num_samples: int = 256,
    percentiles: tuple[float, float] = (1.0, 99.0),
    seed: int = 0,
) -> BandStats:
    """Statistics of ``num_samples`` windows of ``dataset`` (deterministic in ``seed``), nodata excluded.

    Memory stays bounded: each window contributes a random subset of its valid pixels (about 2**18 values per
    band in all); percentiles, mean and std are computed on that subsample.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    rng = np.random.default_rng(seed)
    if dataset.sampling == "grid" and num_samples >= len(dataset):
        indices = np.arange(len(dataset))
    elif dataset.sampling == "grid":
        indices = rng.choice(len(dataset), size=num_samples, replace=False)
    else:
        indices = rng.integers(0, 2**62, size=num_samples)
    per_window = max(1, _PIXEL_BUDGET // len(indices))
    chunks = []
    for index in indices:
        tile, valid = dataset.read_tile(int(index))
        pixels = tile.numpy()[:, valid.numpy()]  # [C, N valid]
        keep = rng.choice(pixels.shape[1], size=min(per_window, pixels.shape[1]), replace=False)
        chunks.append(pixels[:, np.sort(keep)].astype(np.float64))
    values = np.concatenate(chunks, axis=1)  # [C, N]
    if values.shape[1] == 0:
        raise DataError(
            f"{dataset.files[0].paths[0]}: all {len(indices)} sampled windows are nodata, "
            "expected some valid pixels"
        )
    low, high = np.percentile(values, percentiles, axis=1)
    unit = np.clip((values - low[:, None]) / np.maximum(high - low, np.finfo(np.float32).tiny)[:, None], 0, 1)
    return BandStats(
        low=low.tolist(),
        high=high.tolist(),
        mean=unit.mean(axis=1).tolist(),
        std=np.maximum(unit.std(axis=1), _MIN_STD).tolist(),
    )
