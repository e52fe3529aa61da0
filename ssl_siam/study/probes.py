"""Frozen-feature probes at a study's budgets: for every cell (seed, budget, encoder) a linear classifier and a
weighted kNN on the encoder's frozen features of the building crops of exactly the cell's labelled pairs, scored on
the buildings of the test pairs (damage class, top-1 and macro F1); aggregated and paired like the finetuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_siam.change.tasks import ChangeTask
from ssl_siam.core.errors import ConfigError
from ssl_siam.eval.classifiers import knn_predict, linear_probe
from ssl_siam.eval.datasets import XBDCropDataset, combine_views
from ssl_siam.eval.features import encoder_features
from ssl_siam.eval.scores import accuracy, macro_f1
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.design import Cell, Split
from ssl_siam.study.summary import aggregate
from ssl_siam.train.runtime import resolve_device

PROBE_METRICS = {"linear": "linear probe top-1 (buildings)", "knn": "kNN top-1 (buildings)"}


def probe_cells(cfg: StudyConfig, task: ChangeTask, split: Split, cells: list[Cell],
                study_dir: Path) -> list[dict[str, Any]]:
    """One result per cell and method (``method``, ``score`` = top-1, ``macro_f1``, ``n_train``, ``n_test``
    buildings, and the cell's fields). Features are extracted once per encoder (and seed, for random weights) and
    cached under ``study_dir/probes/``."""
    if not task.building_labels:
        raise ConfigError(f"probes=true: the building-damage probes need xBD data, finetune.task is "
                          f"{cfg.finetune.task}")
    device = resolve_device(cfg.finetune.train.device, "finetune.train.device")
    data = XBDCropDataset.from_records(split.pool, split.test, cfg.probe_crop_size)
    pair_of = np.array([data.records[b.record].id for b in data.crops.buildings])
    test = torch.from_numpy(data.is_test)
    results, features = [], {}
    for cell in cells:
        seed = cell.seed if cell.encoder.random else 0  # random weights differ by seed; exported ones do not
        if (cell.encoder.spec, seed) not in features:
            raw = encoder_features(cell.encoder.parsed, data, study_dir / "probes", device,
                                   batch_size=64, seed=seed)
            features[cell.encoder.spec, seed] = combine_views(raw)
        x = features[cell.encoder.spec, seed]
        train = torch.from_numpy(np.isin(pair_of, cell.ids) & ~data.is_test)
        y_train, y_test = data.labels[train.numpy()], data.labels[data.is_test]
        num = len(data.classes)
        predictions = {
            "linear": linear_probe(x[train], y_train, x[test], num, seed=cell.seed, device=device)[0],
            "knn": knn_predict(x[train].to(device), y_train, x[test], num, cfg.probe_k),
        }
        for method, predicted in predictions.items():
            results.append({"index": cell.index, "encoder": cell.encoder.spec, "encoder_name": cell.encoder.name,
                            "random": cell.encoder.random, "budget": cell.budget, "n_labels": cell.n_labels,
                            "seed": cell.seed, "method": method, "score": accuracy(y_test, predicted),
                            "macro_f1": macro_f1(y_test, predicted, num), "n_train": int(train.sum()),
                            "n_test": int(test.sum())})
    return results


def aggregate_probes(results: list[dict[str, Any]], design: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method, :func:`~ssl_siam.study.summary.aggregate` of its results (top-1, macro F1 beside it)."""
    return {method: aggregate([r for r in results if r["method"] == method], design, ("macro_f1",), metric)
            for method, metric in PROBE_METRICS.items()}
