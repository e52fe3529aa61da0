"""Scene-classification studies (``task=scene``): how well each encoder's frozen features classify a class folder
of scenes (RSSCN7, EuroSAT, ...) when only a few labels per class are known.

One fixed test split (seeded, stratified: :func:`~ssl_siam.data.class_folders.split_scenes`); per (seed, budget) the
labelled subset is, in every class, the first ``n`` images of a seeded permutation of that class's training
images: nested across budgets and the same for every encoder (paired). Per cell and method (``linear``: logistic
regression with a fixed penalty on features standardised with the whole training pool's statistics; ``knn``:
DINO's weighted kNN; ``finetune``: encoder + linear head, :mod:`ssl_siam.scenes`) the test top-1 and macro F1.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.data.class_folders import SceneSplit, split_scenes
from ssl_siam.data.sources import resolve_sources
from ssl_siam.eval.classifiers import knn_predict, logistic_regression
from ssl_siam.eval.datasets import FolderDataset
from ssl_siam.eval.features import encoder_features
from ssl_siam.eval.scores import accuracy, macro_f1
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.design import (
    STUDIES,
    CellSelection,
    EncoderChoice,
    budget_count,
    parse_encoders,
    read_score,
    save_design,
    scored_cells,
    selected_cells,
    settings_record,
    write_score,
)
from ssl_siam.study.stats import paired_difference
from ssl_siam.study.summary import METHOD_METRICS, aggregate
from ssl_siam.train.runtime import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneCell:
    index: int
    encoder: EncoderChoice
    budget: float | str
    n_labels: int  # labelled images per class (the mean over classes for budget "all" of unequal classes)
    seed: int
    indices: tuple[int, ...]  # into the split's files

    @property
    def folder(self) -> str:
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', self.encoder.name)}/n{self.n_labels}/seed{self.seed}"


def open_split(cfg: StudyConfig) -> SceneSplit:
    if len(cfg.data.root) != 1 or len(cfg.data.val_root) > 1:
        raise ConfigError(f"data.root: task=scene expects one class folder (and at most one data.val_root), got "
                          f"{cfg.data.root or 'none'}")
    val = cfg.data.val_root[0] if cfg.data.val_root else None
    return split_scenes(cfg.data.root[0], cfg.scene.test_fraction, cfg.scene.split_seed, val)


def label_subset(split: SceneSplit, budget: float | str, seed: int) -> np.ndarray:
    """Sorted indices of the labelled images: per class the first ``budget`` of the seed's permutation of its
    training images (a count, a fraction below 1, or ``all``); nested across budgets for a seed."""
    chosen = []
    for label in range(len(split.classes)):
        members = np.flatnonzero((split.labels == label) & ~split.is_test)
        if not len(members):
            raise ConfigError(f"data.root: class {split.classes[label]} has no training image")
        try:
            n = budget_count(budget, len(members))
        except ConfigError:
            raise ConfigError(f"budgets: {budget} labels per class, class {split.classes[label]} has "
                              f"{len(members)} training images") from None
        chosen.append(members[np.random.default_rng([seed, 7, label]).permutation(len(members))[:n]])
    return np.sort(np.concatenate(chosen))


def pretrained_on_test(encoder: EncoderChoice, split: SceneSplit) -> int | None:
    """How many of the split's test images ``encoder`` was pretrained on (unlabelled): its run's ``config.yaml``
    ``data.root`` resolved to files and compared with the test files (links resolved). None when unknown (not a
    run directory, or its data cannot be found any more); 0 for random and timm weights."""
    if encoder.encoder_weights is None:
        return 0 if encoder.random else None
    folder = Path(encoder.spec) if Path(encoder.spec).is_dir() else Path(encoder.spec).parent
    if not (folder / "config.yaml").is_file():
        return None
    data = (yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("data", {})
    try:
        sources = resolve_sources(data.get("root") or [], data.get("band_names"))
    except DataError:
        return None
    seen = {os.path.realpath(path) for scene in sources for path in scene}
    return sum(os.path.realpath(f) in seen for f, test in zip(split.files, split.is_test) if test)


def make_scene_cells(cfg: StudyConfig, split: SceneSplit) -> list[SceneCell]:
    """Every (seed, budget, encoder) in that order; ``--cell I`` runs the I-th."""
    encoders = parse_encoders(cfg)
    if whole := next((e for e in encoders if e.init_weights), None):
        raise ConfigError(f"encoders: {whole.spec}: model:RUN starts a change model; a scene study takes encoders "
                          "(give the run dir itself)")
    cells = []
    for seed in cfg.seeds:
        for budget in cfg.budgets:
            indices = label_subset(split, budget, seed)
            n = round(len(indices) / len(split.classes))
            for encoder in encoders:
                cells.append(SceneCell(len(cells), encoder, budget, n, seed, tuple(int(i) for i in indices)))
    return cells


def design_record(cfg: StudyConfig, split: SceneSplit, cells: list[SceneCell]) -> dict[str, Any]:
    ids = split.ids()
    return {"task": "scene", "split": split.record(), "methods": list(cfg.scene.methods),
            "image_size": cfg.scene.image_size,
            "settings": settings_record("scene", cfg.scene, ("device", "batch_size")),  # device, batch: how, not what
            "cells": [{"index": c.index, "encoder": c.encoder.spec, "budget": c.budget, "n_labels": c.n_labels,
                       "seed": c.seed, "ids": [ids[i] for i in c.indices], "dir": f"cells/{c.folder}"} for c in cells]}


class FeatureBank:
    """Frozen pooled features [N, D] of every image of the split, per encoder (and per seed for random weights,
    whose draw is part of what the seeds average over), extracted once and cached on disk."""

    def __init__(self, cfg: StudyConfig, dataset: FolderDataset, cache_dir: Path, device: torch.device) -> None:
        self.cfg, self.dataset, self.cache_dir, self.device = cfg, dataset, cache_dir, device
        self._features: dict[tuple[str, int], torch.Tensor] = {}

    def __call__(self, encoder: EncoderChoice, seed: int) -> torch.Tensor:
        key = (encoder.spec, seed if encoder.random else 0)
        if key not in self._features:
            features = encoder_features(encoder.parsed, self.dataset, self.cache_dir, self.device,
                                        self.cfg.scene.batch_size, key[1])
            self._features[key] = features[:, 0]
        return self._features[key]


def probe_cell(cfg: StudyConfig, cell: SceneCell, split: SceneSplit, features: torch.Tensor,
               device: torch.device) -> dict[str, tuple[np.ndarray, int]]:
    """Test predictions of the linear probe and the kNN for one cell: ``{method: (predicted [M], n_train)}``."""
    train = torch.from_numpy(np.isin(np.arange(len(split.files)), cell.indices))
    test = torch.from_numpy(split.is_test)
    pool = features[torch.from_numpy(~split.is_test)].double()
    y_train, num = split.labels[train.numpy()], len(split.classes)
    out = {}
    if "linear" in cfg.scene.methods:
        center = (pool.mean(0), pool.std(0, unbiased=False))  # unlabelled training pool, never the test images
        out["linear"] = (logistic_regression(features[train].to(device), y_train, features[test], num,
                                             c=cfg.scene.linear_c, center=center), len(y_train))
    if "knn" in cfg.scene.methods:
        out["knn"] = (knn_predict(features[train].to(device), y_train, features[test], num, cfg.scene.k,
                                  cfg.scene.temperature), len(y_train))
    return out


def run_scene_cell(cfg: StudyConfig, cell: SceneCell, split: SceneSplit, bank: FeatureBank, study_dir: Path,
                   device: torch.device) -> list[dict[str, Any]]:
    """One result per method of a cell (``score.json`` in its folder, read back once written)."""
    if (known := read_score(study_dir, cell)) is not None:
        return known
    cell_dir = study_dir / "cells" / cell.folder
    frozen = {"linear", "knn"} & set(cfg.scene.methods)
    predictions = probe_cell(cfg, cell, split, bank(cell.encoder, cell.seed), device) if frozen else {}
    if "finetune" in cfg.scene.methods:
        from ssl_siam.scenes.study import finetune_cell

        predictions["finetune"] = finetune_cell(cfg, cell, split, cell_dir / "finetune")
    y_test, num = split.labels[split.is_test], len(split.classes)
    results = [{"index": cell.index, "encoder": cell.encoder.spec, "encoder_name": cell.encoder.name,
                "random": cell.encoder.random, "budget": cell.budget, "n_labels": cell.n_labels, "seed": cell.seed,
                "method": method, "score": accuracy(y_test, predicted), "macro_f1": macro_f1(y_test, predicted, num),
                "n_train": n_train, "n_test": int(split.is_test.sum())}
               for method, (predicted, n_train) in predictions.items()]
    write_score(study_dir, cell, results)
    return results


def aggregate_scenes(results: list[dict[str, Any]], split: SceneSplit, methods: list[str],
                     test_seen: dict[str, int | None] | None = None) -> dict[str, Any]:
    """Rows per (budget, encoder, method): top-1 ``mean`` / ``std`` / ``ci95``, ``macro_f1`` likewise, and against
    the first random encoder ``diff_vs_random`` (top-1) and ``macro_f1_diff_vs_random``, paired by seed.
    ``test_seen``: per encoder spec, the test images it was pretrained on (:func:`pretrained_on_test`)."""
    rows, baseline = [], None
    shell = {"split": "scene", "holdout": None, "test": [], "pool": []}
    for method in methods:
        mine = [r for r in results if r["method"] == method]
        table = aggregate(mine, shell, ("macro_f1",), METHOD_METRICS[method])
        baseline = table["baseline"]
        for row in table["rows"]:
            row["method"] = method
            if "diff_vs_random" in row:
                f1 = {(r["encoder"], r["seed"]): r["macro_f1"] for r in mine if r["budget"] == row["budget"]}
                diff = paired_difference({s: v for (e, s), v in f1.items() if e == row["encoder"]},
                                         {s: v for (e, s), v in f1.items() if e == baseline})
                row["macro_f1_diff_vs_random"] = {"mean": diff["mean"], "ci95": diff["ci95"], "n": diff["n"]}
        rows += table["rows"]
    record = split.record()
    del record["test"]  # listed in design.json
    study = {"task": "scene", "rows": rows, "baseline": baseline, "split": record, "methods": methods,
             "metric": "top-1", "components": ["macro_f1"], "unit": "labels per class",
             "test_images_seen_in_pretraining": test_seen or {}, "results": results}
    return {**study, "intro": scene_intro(study)}


def scene_intro(study: dict[str, Any]) -> list[str]:
    """The design paragraph of a scene study's study.md (with the encoders pretrained on test images)."""
    split = study["split"]
    held = (f"every image of {split['val_root']}" if split.get("val_root") else f"{split['test_fraction']:g} of "
            f"each class of {split['root']}, seeded stratified split (seed {split['seed']})")
    return [f"Scene classification, {len(split['classes'])} classes; {split['n_train']} training images, "
            f"{split['n_test']} test images: {held} (the test images are listed in design.json). Per (budget, seed) "
            "every encoder is given the same labelled images (nested across budgets); the differences to random init "
            "are paired by seed. CIs: two-sided 95 % Student t over seeds.", "",
            *[f"**{spec} was pretrained on {seen} of the {split['n_test']} test images** (unlabelled): its scores are "
              "transductive, not on unseen images.\n" for spec, seen in study.get("test_images_seen_in_pretraining",
                                                                                {}).items() if seen]]


@STUDIES.register("scene")
def run_scene_study(cfg: StudyConfig, study_dir: Path, selection: CellSelection = "all") -> dict[str, Any] | None:
    """Run the selected cells (:data:`CellSelection`); once all are scored, the aggregate (else None)."""
    split = open_split(cfg)
    cells = make_scene_cells(cfg, split)
    save_design(cfg, study_dir, design_record(cfg, split, cells), len(cells), selection)
    encoders = {c.encoder.spec: c.encoder for c in cells}
    test_seen = {spec: pretrained_on_test(encoder, split) for spec, encoder in encoders.items()}
    for spec, seen in test_seen.items():
        if seen:
            log.warning("encoders: %s was pretrained on %d of the %d test images (unlabelled): its scores are "
                        "transductive; pretrain on `ssl-siam split-scenes` train/ to keep them unseen", spec, seen,
                        int(split.is_test.sum()))
    device = resolve_device(cfg.scene.device, "scene.device")
    bank = FeatureBank(cfg, FolderDataset.from_split(split, cfg.scene.image_size), study_dir / "features", device)
    results = []
    for cell in selected_cells(cells, selection):
        log.info("study cell %d/%d: %s, %s labels per class, seed %d", cell.index + 1, len(cells), cell.encoder.name,
                 cell.n_labels, cell.seed)
        results += run_scene_cell(cfg, cell, split, bank, study_dir, device)
    if selection != "all":
        if (scored := scored_cells(study_dir, cells, selection)) is None:
            return None
        results = [r for known in scored for r in known]
    return aggregate_scenes(results, split, list(cfg.scene.methods), test_seen)
