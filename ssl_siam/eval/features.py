"""Frozen encoders for probing: ``--encoder`` specs, band normalization, batched extraction and a disk cache.

Specs: a run directory or ``encoder.safetensors`` (an ``ssl-siam`` export; normalization from its metadata),
``random:<timm name>`` (seeded random weights) or ``timm:<timm name>=<local weight file>``. The last two, and an
export without normalization, are normalised with band statistics computed from the probe images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.core.files import atomic_path
from ssl_siam.data.stats import BandStats, stats_of_values
from ssl_siam.encoders import EncoderMeta, create_encoder, load_encoder
from ssl_siam.eval.datasets import ProbeDataset

_SPEC_HELP = "expected a run dir or encoder.safetensors, random:<timm name> or timm:<timm name>=<weight file>"
_STATS_SAMPLES = 64  # probe items read for data-derived band statistics
_STATS_PIXELS = 2**18  # pixel values kept per band for them


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed ``--encoder`` value: ``name`` for the result rows, ``arch`` (timm name) for random / timm specs,
    ``weights`` for export / timm specs, ``identity`` (the spec with its files' paths, sizes and mtimes) and, for an
    export, its ``meta`` (read once, here)."""

    spec: str
    name: str
    arch: str | None
    weights: Path | None
    identity: str
    meta: EncoderMeta | None = field(default=None, compare=False, repr=False)

    @property
    def exported(self) -> bool:
        return self.arch is None


def parse_encoder_spec(spec: str, option: str = "--encoder") -> EncoderSpec:
    """Check an encoder value without loading weights (ConfigError / DataError naming ``option`` and it)."""
    if Path(spec).exists():
        meta = EncoderMeta.read(spec)
        weights = meta.weights
        assert weights is not None
        folder = Path(spec) if Path(spec).is_dir() else Path(spec).parent
        return EncoderSpec(spec, folder.resolve().name, None, weights,
                           _file_identity(weights) + _file_identity(weights.with_suffix(".json")), meta)
    kind, _, rest = spec.partition(":")
    arch, _, weight_file = rest.partition("=") if kind == "timm" else (rest, "", "")
    if kind not in ("random", "timm") or not arch or (kind == "timm") != bool(weight_file):
        raise ConfigError(f"{option} {spec}: no such file, and not a spec; {_SPEC_HELP}")
    if not timm.is_model(arch):
        raise ConfigError(f"{option} {spec}: unknown timm model {arch!r} (see timm.list_models())")
    if kind == "random":
        return EncoderSpec(spec, spec, arch, None, spec)
    weights = Path(weight_file)
    if not weights.is_file():
        raise DataError(f"{option} {spec}: weight file {weights} does not exist (only local files are used)")
    return EncoderSpec(spec, spec, arch, weights, spec + _file_identity(weights))


def encoder_names(specs: Sequence[EncoderSpec]) -> list[str]:
    """Result-row names: run-dir names for exports (the given string where two share one); a spec given twice is
    a ConfigError."""
    given = [s.spec for s in specs]
    if repeated := next((s for s in given if given.count(s) > 1), None):
        raise ConfigError(f"--encoder {repeated}: given twice")
    names = [s.name for s in specs]
    return [s.name if names.count(s.name) == 1 else s.spec for s in specs]


def _file_identity(path: Path) -> str:
    stat = path.stat()
    return f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def build_encoder(spec: EncoderSpec, in_chans: int, seed: int) -> tuple[nn.Module, BandStats | None]:
    """The timm model (pooled features ``[B, D]``) and its band statistics (None: compute from the data)."""
    if spec.exported:
        meta = spec.meta or EncoderMeta.read(spec.weights)
        if meta.in_chans != in_chans:
            raise DataError(f"{spec.weights}: encoder takes {meta.in_chans} bands, the probe data has {in_chans}")
        return load_encoder(meta), meta.normalization
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_encoder(spec.arch, in_chans, pretrained=spec.weights), None


def data_stats(dataset: ProbeDataset, seed: int, percentiles: tuple[float, float] = (1.0, 99.0)) -> BandStats:
    """Band statistics as :func:`ssl_siam.data.stats.compute_stats` computes them (robust percentile range, then
    mean / std of unit-scaled values), from up to 64 seeded probe items instead of tiles."""
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(len(dataset), size=min(_STATS_SAMPLES, len(dataset)), replace=False))
    per_item = max(1, _STATS_PIXELS // len(indices))
    chunks = []
    for index in indices:
        pixels = dataset[int(index)].transpose(0, 1).reshape(dataset.num_bands, -1).double().numpy()  # [C, P]
        keep = rng.choice(pixels.shape[1], size=min(per_item, pixels.shape[1]), replace=False)
        chunks.append(pixels[:, keep])
    return stats_of_values(np.concatenate(chunks, axis=1), percentiles)


@torch.no_grad()
def extract_features(
    model: nn.Module, stats: BandStats, dataset: ProbeDataset, device: torch.device, batch_size: int
) -> torch.Tensor:
    """[N, V, D] float32 features (CPU) of every item, in eval mode, ``batch_size`` items per forward."""
    model = model.to(device).eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    features = []
    for batch in loader:  # [B, V, C, S, S] raw values
        x = stats.standardize(stats.to_unit(batch.to(device).flatten(0, 1)))
        features.append(model(x).flatten(1).float().cpu().unflatten(0, batch.shape[:2]))
    return torch.cat(features)


def cache_key(spec: EncoderSpec, dataset: ProbeDataset, seed: int) -> str:
    """Hash of the encoder identity (+ seed for random weights / data statistics), the data and sample ids."""
    ids = hashlib.sha256("\n".join(dataset.ids).encode()).hexdigest()
    return hashlib.sha256(json.dumps([spec.identity, seed, dataset.source, ids]).encode()).hexdigest()[:24]


def encoder_features(
    spec: EncoderSpec, dataset: ProbeDataset, cache_dir: str | Path, device: torch.device, batch_size: int,
    seed: int,
) -> torch.Tensor:
    """[N, V, D] features of ``dataset``, read from ``cache_dir/<key>.pt`` or extracted once and saved there."""
    path = Path(cache_dir) / f"{cache_key(spec, dataset, seed)}.pt"
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached["ids"] == dataset.ids:
            return cached["features"]
    model, stats = build_encoder(spec, dataset.num_bands, seed)
    features = extract_features(model, stats or data_stats(dataset, seed), dataset, device, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"spec": spec.spec, "ids": dataset.ids, "features": features}, tmp)
    return features
