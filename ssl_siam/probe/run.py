"""``ssl-siam probe``: linear-probe and kNN accuracy of frozen encoders, written as JSON, markdown and PNGs."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.eval.classifiers import knn_predict, linear_probe
from ssl_siam.eval.datasets import ProbeDataset, Roots, combine_views, open_dataset
from ssl_siam.eval.features import encoder_features, encoder_names, parse_encoder_spec
from ssl_siam.eval.scores import accuracy, confusion_matrix, macro_f1, per_class_f1
from ssl_siam.probe.plots import plot_comparison, plot_confusion
from ssl_siam.train.runtime import resolve_device

METHODS = ("linear", "knn")


@dataclass
class ProbeRow:
    """One encoder × dataset × method result on the test split. ``per_class_f1`` omits classes neither present
    nor predicted in the test split (macro F1 averages the others); ``confusion`` rows are true classes."""

    encoder: str
    dataset: str
    method: str
    top1: float
    macro_f1: float
    n_train: int
    n_test: int
    per_class_f1: dict[str, float]
    confusion: list[list[int]]
    classes: list[str]


def evaluate(
    encoder: str, dataset: str, method: str, classes: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray,
    n_train: int,
) -> ProbeRow:
    """The metrics of one prediction of the test split."""
    num = len(classes)
    f1 = per_class_f1(y_true, y_pred, num)
    return ProbeRow(
        encoder, dataset, method, accuracy(y_true, y_pred), macro_f1(y_true, y_pred, num), n_train, len(y_true),
        {name: float(v) for name, v in zip(classes, f1) if np.isfinite(v)},
        confusion_matrix(y_true, y_pred, num).tolist(), list(classes),
    )


def run_probe(
    encoders: Sequence[str],
    data: Roots,
    dataset: str,
    out: str | Path,
    *,
    val_data: Roots | None = None,
    device: str | torch.device = "cpu",
    k: int = 20,
    temperature: float = 0.07,
    crop_size: int = 64,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> list[ProbeRow]:
    """Probe every encoder on ``dataset`` (``folder`` | ``xbd-crops``) with a linear classifier and kNN.

    ``device``: ``auto`` | ``cpu`` | ``cuda[:N]`` or a device. Features are extracted once per encoder and
    dataset and cached in ``cache_dir`` (default ``out/cache``).
    Writes ``out/probe.json`` (the rows), ``out/probe.md`` (table), ``out/confusion_<encoder>_<dataset>_<method>.png``
    and ``out/probe_comparison.png``.
    """
    if not encoders:
        raise ConfigError("--encoder: expected at least one encoder")
    if k < 1 or batch_size < 1:
        raise ConfigError(f"--k and --batch-size must be positive, got {k} and {batch_size}")
    device = resolve_device(device, "--device") if isinstance(device, str) else device
    specs = [parse_encoder_spec(str(spec)) for spec in encoders]
    names = encoder_names(specs)
    probe_data = open_dataset(dataset, data, val_data, crop_size, seed)
    test = probe_data.is_test
    if test.all() or not test.any():
        raise DataError(f"{data}: {int(test.sum())} test and {int((~test).sum())} training samples, expected both")
    present = sorted({probe_data.classes[i] for i in probe_data.labels[~test]})
    if len(present) < 2:
        raise DataError(f"{data}: every training sample is of class {present[0]!r}; a probe needs at least two "
                        "classes")
    out = Path(out)
    rows = []
    for spec, name in zip(specs, names):
        features = encoder_features(spec, probe_data, cache_dir or out / "cache", device, batch_size, seed)
        rows += _probe_features(name, probe_data, combine_views(features), device, k, temperature, seed)
    write_outputs(rows, out)
    return rows


def _probe_features(
    name: str, data: ProbeDataset, features: torch.Tensor, device: torch.device, k: int, temperature: float, seed: int
) -> list[ProbeRow]:
    train, test = torch.from_numpy(~data.is_test), torch.from_numpy(data.is_test)
    y_train, y_test = data.labels[~data.is_test], data.labels[data.is_test]
    num = len(data.classes)
    predictions = {
        "linear": linear_probe(features[train], y_train, features[test], num, seed=seed, device=device)[0],
        "knn": knn_predict(features[train].to(device), y_train, features[test], num, k, temperature),
    }
    return [evaluate(name, data.kind, m, data.classes, y_test, predictions[m], len(y_train)) for m in METHODS]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def probe_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The markdown table of probe rows (``ProbeRow`` fields)."""
    lines = ["| encoder | dataset | method | top-1 | macro F1 | n train | n test |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['encoder']} | {r['dataset']} | {r['method']} | {r['top1']:.3f} | {r['macro_f1']:.3f} "
              f"| {r['n_train']} | {r['n_test']} |" for r in rows]
    return lines


def write_outputs(rows: Sequence[ProbeRow], out: str | Path) -> Path:
    """``probe.json``, ``probe.md``, one confusion PNG per row and the comparison bar chart; returns probe.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = [asdict(row) for row in rows]
    (out / "probe.json").write_text(json.dumps(records, indent=2) + "\n")
    figures = []
    for row in rows:
        path = out / f"confusion_{_slug(f'{row.encoder}_{row.dataset}_{row.method}')}.png"
        title = f"{row.encoder} · {row.dataset} · {row.method}\ntop-1 {row.top1:.3f}, macro F1 {row.macro_f1:.3f}"
        figures.append(plot_confusion(np.array(row.confusion), row.classes, title, path).name)
    plot_comparison(records, out / "probe_comparison.png")
    lines = ["# Frozen-feature probes", "", *probe_table(records), "", "![comparison](probe_comparison.png)", ""]
    lines += [f"![{name}]({name})" for name in figures]
    (out / "probe.md").write_text("\n".join(lines) + "\n")
    return out / "probe.md"
