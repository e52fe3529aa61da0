"""Per-band normalization statistics (robust raw-value range to unit scale, then mean / std scaling), computed
from tiles, and the one resolver that decides which statistics a run uses."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.data.tiles import TileDataset

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


def normalise(frames: torch.Tensor, stats: BandStats) -> torch.Tensor:
    """Raw ``[..., C, H, W]`` values → a model's input: scaled to [0, 1] by the robust range, then standardised."""
    return stats.standardize(stats.to_unit(frames))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def compute_stats(
    dataset: TileDataset,
    num_samples: int = 256,
    percentiles: tuple[float, float] = (1.0, 99.0),
    seed: int = 0,
) -> BandStats:
    """Statistics of ``num_samples`` windows of ``dataset`` (deterministic in ``seed``), nodata excluded; every
    date of a temporal tile ``[D, C, h, w]`` counts.

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
        dates = tile.numpy().reshape(-1, *tile.shape[-3:])  # [D, C, h, w]: several dates of a temporal tile
        pixels = np.concatenate(dates[:, :, valid.numpy()], axis=1)  # [C, N valid]
        keep = rng.choice(pixels.shape[1], size=min(per_window, pixels.shape[1]), replace=False)
        chunks.append(pixels[:, np.sort(keep)].astype(np.float64))
    values = np.concatenate(chunks, axis=1)  # [C, N]
    if values.shape[1] == 0:
        raise DataError(
            f"{dataset.files[0].paths[0]}: all {len(indices)} sampled windows are nodata, "
            "expected some valid pixels"
        )
    return stats_of_values(values, percentiles)


def stats_of_values(values: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> BandStats:
    """Statistics of sampled pixel values ``[C, N]``: the ``percentiles`` range per band, then mean and std of the
    values scaled to [0, 1] within it (std at least 1e-6)."""
    low, high = np.percentile(values, percentiles, axis=1)
    unit = np.clip((values - low[:, None]) / np.maximum(high - low, np.finfo(np.float32).tiny)[:, None], 0, 1)
    return BandStats(
        low=low.tolist(),
        high=high.tolist(),
        mean=unit.mean(axis=1).tolist(),
        std=np.maximum(unit.std(axis=1), _MIN_STD).tolist(),
    )


def given_stats(path: str | None, values: dict[str, list[float]] | None = None) -> tuple[BandStats, str] | None:
    """Statistics a config gives — the values themselves (``data.normalization``, which win) or a stats JSON file
    (``data.stats``) — with the name of their source; None when it gives none."""
    if values is not None:
        try:
            return BandStats(**values), "data.normalization"
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.normalization: expected lists low, high, mean, std per band ({exc})") from None
    if path:
        return BandStats.load(path), path
    return None


def resolve_stats(saved: Path, num_bands: int, compute: Callable[[], BandStats], *,
                  given: tuple[BandStats, str] | None = None, encoder: BandStats | None = None,
                  save: bool = True) -> BandStats:
    """The normalization of a run, by one precedence:

    1. ``given`` in the config (``data.stats`` / ``data.normalization``, see :func:`given_stats`);
    2. the run's own ``saved`` file (a resumed run keeps the statistics it started with);
    3. ``encoder``: the statistics of the pretrained encoder the model starts from (its inputs must look alike);
    4. ``compute()``: computed from the training data.

    The result must have ``num_bands`` bands (DataError naming its source otherwise) and, with ``save``, is
    written to ``saved``.
    """
    if given is not None:
        stats, source = given
    elif saved.is_file():
        stats, source = BandStats.load(saved), str(saved)
    elif encoder is not None:
        stats, source = encoder, "the encoder's normalization"
    else:
        stats, source = compute(), "the computed statistics"
    if stats.num_bands != num_bands:
        raise DataError(f"{source}: stats for {stats.num_bands} bands, the data has {num_bands}")
    if save:
        stats.save(saved)
    return stats
