"""Running a study: every cell an ordinary finetune run directory under ``STUDY/cells/``, scored on the test
pairs; finished cells are skipped and unfinished ones resumed, so a study survives interruptions and its cells can
run as independent jobs (``--cell I``, e.g. a Slurm array)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ssl_siam.change.config import FinetuneConfig
from ssl_siam.change.evaluate import evaluate
from ssl_siam.change.run import run_finetune
from ssl_siam.change.tasks import change_task
from ssl_siam.core.config import from_dict, to_dict
from ssl_siam.core.errors import UserError
from ssl_siam.study import scenes  # noqa: F401  (registers task=scene)
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.design import (
    RUN_ONLY_KEYS,
    STUDIES,
    Cell,
    CellSelection,
    Split,
    make_cells,
    make_split,
    read_score,
    save_design,
    scored_cells,
    selected_cells,
    settings_record,
    write_score,
)
from ssl_siam.study.probes import aggregate_probes, probe_cells
from ssl_siam.study.summary import aggregate, change_intro, write_study
from ssl_siam.train.rundir import last_checkpoint_path

log = logging.getLogger(__name__)


def cell_config(cfg: StudyConfig, cell: Cell, run_dir: Path) -> FinetuneConfig:
    """The cell's finetune config: ``cfg.finetune`` with the pool, the cell's labelled ids, its encoder and seed;
    no validation split (the cell is scored on the test pairs with ``last.pt``, never selected on them)."""
    data = {**to_dict(cfg.finetune), "run_dir": str(run_dir), "resume": "auto"}
    data["data"] = {**data["data"], "root": list(cfg.data.root), "val_root": [], "val_fraction": 0.0,
                    "val_ids": None, "train_ids": list(cell.ids),
                    "targets_dir": str(run_dir.parents[3] / "cache")}  # the study's masks
    data["model"] = {**data["model"], "backbone": cell.encoder.backbone,
                     "encoder_weights": cell.encoder.encoder_weights, "pretrained": cell.encoder.pretrained,
                     "init_weights": cell.encoder.init_weights}
    data["train"] = {**data["train"], "seed": cell.seed}
    return from_dict(FinetuneConfig, data)


def design_record(cfg: StudyConfig, split: Split, cells: list[Cell]) -> dict[str, Any]:
    settings = {"test_window": cfg.test_window, **settings_record("finetune", cfg.finetune, RUN_ONLY_KEYS)}
    return {"split": cfg.split, "holdout": split.holdout, "test": [r.id for r in split.test],
            "pool": [r.id for r in split.pool], "settings": settings,
            "cells": [{"index": c.index, "encoder": c.encoder.spec, "budget": c.budget, "n_labels": c.n_labels,
                       "seed": c.seed, "ids": list(c.ids), "dir": f"cells/{c.folder}"} for c in cells]}


def run_cell(cfg: StudyConfig, cell: Cell, split: Split, study_dir: Path) -> dict[str, Any]:
    """Finetune (or resume) one cell and score ``last.pt`` on the test pairs; a scored cell is read back."""
    if (known := read_score(study_dir, cell)) is not None:
        return known
    cell_dir = study_dir / "cells" / cell.folder
    ft = cell_config(cfg, cell, cell_dir)
    start = time.perf_counter()
    run_finetune(ft)
    score = evaluate(last_checkpoint_path(cell_dir), split.test, cell_dir / "test", device=ft.train.device,
                     window=cfg.test_window)
    result = {"index": cell.index, "encoder": cell.encoder.spec, "encoder_name": cell.encoder.name,
              "random": cell.encoder.random, "budget": cell.budget, "n_labels": cell.n_labels, "seed": cell.seed,
              "seconds": time.perf_counter() - start, **score.to_dict()}
    write_score(study_dir, cell, result)
    return result


@STUDIES.register("change")
def run_change_study(cfg: StudyConfig, study_dir: Path, selection: CellSelection = "all") -> dict[str, Any] | None:
    """Finetune and score the selected cells (:data:`CellSelection`); once all are scored, the aggregate (with the
    building probes when ``probes``), else None."""
    task = change_task(cfg.finetune.task, cfg.finetune.data.mask_threshold)  # resolved once, passed down
    split = make_split(cfg, task, study_dir / "cache")
    cells = make_cells(cfg, split)
    design = design_record(cfg, split, cells)
    save_design(cfg, study_dir, design, len(cells), selection)
    for cell in selected_cells(cells, selection):
        log.info("study cell %d/%d: %s, %d labelled pairs, seed %d", cell.index + 1, len(cells), cell.encoder.name,
                 cell.n_labels, cell.seed)
        run_cell(cfg, cell, split, study_dir)
    if (results := scored_cells(study_dir, cells, selection)) is None:
        return None
    study = aggregate(results, design, task.components, task.metric)
    if cfg.probes:
        study["probes"] = aggregate_probes(probe_cells(cfg, task, split, cells, study_dir), design)
    return {**study, "intro": change_intro(study)}


def run_study(cfg: StudyConfig, selection: CellSelection = "all") -> Path:
    """Run the study of ``task`` (the selected cells: :data:`CellSelection`) and, once every cell is scored, write
    ``study.json``, ``study.md`` and ``study.png``; returns the study directory."""
    study_dir = Path(cfg.run_dir or f"runs/study-{time.strftime('%Y%m%d-%H%M%S')}")
    if selection == "none" and not (study_dir / "design.json").is_file():  # before any reading or caching
        raise UserError(f"{study_dir}: no study here (no design.json) to aggregate; check run_dir, or run the study")
    if study := STUDIES.get(cfg.task)(cfg, study_dir, selection):
        write_study(study, study_dir)
    return study_dir
