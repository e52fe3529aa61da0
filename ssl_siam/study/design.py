"""The design of a study: encoders, the test split, nested label subsets and the grid of cells.

Paired by construction: for a given (budget, seed) every encoder finetunes on the same labelled pairs with the
same seed (so the same crops); a seed's subsets are nested across budgets (one seeded permutation of the pool,
its first ``n`` pairs); the test pairs are the same for every cell.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ssl_siam.change.config import FinetuneConfig
from ssl_siam.change.data import find_records, resolve_format
from ssl_siam.change.tasks import ChangeTask
from ssl_siam.core.config import changed_values, flatten, save_config, to_dict
from ssl_siam.core.errors import ConfigError, UserError
from ssl_siam.core.files import atomic_path
from ssl_siam.core.registry import Registry
from ssl_siam.data.pairs import PairRecord
from ssl_siam.eval.features import EncoderSpec, parse_encoder_spec
from ssl_siam.study.config import SceneStudyConfig, StudyConfig
from ssl_siam.train.rundir import last_checkpoint

#: Which cells one invocation runs: ``"all"`` (every unscored one), one index (``--cell I``, e.g. a Slurm array
#: task) or ``"none"`` (``--aggregate``: run nothing, aggregate the scored cells; refused while any is missing).
CellSelection = int | Literal["all", "none"]

#: study ``task`` → runner ``(cfg, study_dir, selection) -> the aggregate study, or None until every cell is
#: scored``; a new kind of study is a module with ``@STUDIES.register("name")`` imported by study/run.py.
STUDIES: Registry[Callable[[StudyConfig, Path, CellSelection], dict[str, Any] | None]] = Registry("study task")


@dataclass(frozen=True)
class EncoderChoice:
    """An ``encoders`` entry: its label, what it sets in the finetune config, and ``parsed``, the same spec as the
    frozen-feature machinery reads it (parsed once, by :func:`parse_encoder`)."""

    spec: str
    name: str  # label in tables and cell folder names
    random: bool
    backbone: str
    parsed: EncoderSpec = field(compare=False, repr=False)
    encoder_weights: str | None = None
    pretrained: str | None = None
    init_weights: str | None = None  # model:RUN — the whole change model starts from RUN's last.pt


def parse_encoder(spec: str) -> EncoderChoice:
    """``RUN_DIR`` / ``encoder.safetensors`` (an ``ssl-siam pretrain`` export), ``random:<timm name>``,
    ``timm:<timm name>=<local weight file>`` or ``model:RUN_DIR`` (a finetune run that exported its encoder, e.g.
    ``data.synthetic_change``: its whole model — encoder, fusion, decoder — starts each cell, named ``<run>+model``);
    a one-line ConfigError naming ``encoders`` otherwise."""
    kind, _, rest = spec.partition(":")
    if kind == "model":
        last = last_checkpoint(Path(rest))
        if last is None or not (Path(rest) / "encoder.json").is_file():
            raise ConfigError(f"encoders: {spec}: expected a finetune run dir with checkpoints/last.pt and an exported "
                              "encoder.json (a data.synthetic_change run)")
        parsed = parse_encoder_spec(rest, "encoders:")
        assert parsed.meta is not None
        return EncoderChoice(spec, f"{parsed.name}+model", False, parsed.meta.backbone, parsed, encoder_weights=rest,
                             init_weights=str(last))
    if kind == "timm" and "=" in rest and not Path(rest.partition("=")[2]).is_file():
        raise ConfigError(f"encoders: {spec}: weight file {rest.partition('=')[2]} does not exist")
    if not Path(spec).exists() and not (kind == "random" and rest) and not (kind == "timm" and "=" in rest):
        raise ConfigError(f"encoders: {spec}: expected an ssl-siam pretrain run dir, random:<timm name> or "
                          "timm:<timm name>=<local weight file>")
    parsed = parse_encoder_spec(spec, "encoders:")
    if parsed.meta is not None:
        return EncoderChoice(spec, parsed.name, False, parsed.meta.backbone, parsed, encoder_weights=spec)
    assert parsed.arch is not None
    if kind == "random":
        return EncoderChoice(spec, spec, True, parsed.arch, parsed)
    return EncoderChoice(spec, f"timm:{parsed.arch}", False, parsed.arch, parsed, pretrained=str(parsed.weights))


@dataclass(frozen=True)
class Split:
    pool: list[PairRecord]  # the labelled pairs cells draw their budgets from
    test: list[PairRecord]  # scored by every cell
    holdout: str | None  # split=disaster: the disaster never labelled in training


def make_split(cfg: StudyConfig, task: ChangeTask, cache_dir: Path) -> Split:
    """``split=image``: test on ``test_ids`` of ``data.root`` (OSCD: cities), on ``data.val_root``, or on a seeded
    ``test_fraction`` of the images of ``data.root``; ``split=disaster`` (xBD): test on every pair of the held-out
    disaster, train on the other disasters' pairs. The layout and task are the finetune config's
    (``task``, resolved from ``finetune.task``; ``.data.format``)."""
    probe = dataclasses.replace(cfg.finetune, data=dataclasses.replace(cfg.finetune.data, root=list(cfg.data.root)))
    fmt = resolve_format(probe, task)
    records = find_records(probe, fmt, cfg.data.root, cache_dir)
    extra = find_records(probe, fmt, cfg.data.val_root, cache_dir, test=True) if cfg.data.val_root else []
    if cfg.split == "image":
        if cfg.test_ids is not None:
            by_id = {r.id: r for r in records}
            if missing := [i for i in cfg.test_ids if i not in by_id]:
                raise ConfigError(f"test_ids: {missing[0]} is not a pair of data.root ({', '.join(sorted(by_id))})")
            test = [by_id[i] for i in sorted(set(cfg.test_ids))]
            pool = [r for r in records if r.id not in set(cfg.test_ids)]
            if not pool or extra:
                raise ConfigError("test_ids: " + ("give test_ids or data.val_root, not both" if extra else
                                                  "every pair of data.root is a test pair; nothing is left to train"))
            return Split(pool, test, None)
        if extra:
            return Split(records, extra, None)
        order = np.random.default_rng(0).permutation(len(records))
        n_test = max(1, round(cfg.test_fraction * len(records)))
        if n_test >= len(records):
            raise ConfigError(f"data.root has {len(records)} pairs: too few to hold out test_fraction="
                              f"{cfg.test_fraction} of them and still train (give data.val_root)")
        test = sorted((records[i] for i in order[:n_test]), key=lambda r: r.id)
        return Split(sorted((records[i] for i in order[n_test:]), key=lambda r: r.id), test, None)
    if fmt != "xbd":
        raise ConfigError(f"split=disaster needs xBD data (disasters in the pair ids), data.format is {fmt}")
    counts = Counter(r.disaster for r in records + extra)
    holdout = cfg.holdout or min(counts, key=lambda d: (-counts[d], d))
    if holdout not in counts:
        raise ConfigError(f"holdout={holdout}: no such disaster in the data ({', '.join(sorted(counts))})")
    pool = [r for r in records if r.disaster != holdout]
    if not pool:
        raise ConfigError(f"split=disaster: every pair of data.root is of {holdout}; nothing is left to train on")
    return Split(pool, [r for r in records + extra if r.disaster == holdout], holdout)


def budget_count(budget: float | str, pool: int) -> int:
    """Labelled pairs (or images of a class) of a budget: a count (>= 1), a fraction of the pool (< 1) or all."""
    if budget == "all":
        return pool
    assert isinstance(budget, float | int)
    n = max(1, round(budget * pool)) if budget < 1 else int(budget)
    if budget >= 1 and budget != int(budget):
        raise ConfigError(f"budgets: {budget:g} is neither a whole count nor a fraction below 1")
    if n > pool:
        raise ConfigError(f"budgets: {budget:g} needs {n} labelled pairs, the pool has {pool}")
    return n


def label_subset(pool: list[PairRecord], n: int, seed: int) -> list[str]:
    """The ids of the first ``n`` pairs of the seed's permutation of the pool: nested across budgets."""
    order = np.random.default_rng([seed, 7]).permutation(len(pool))
    return sorted(pool[i].id for i in order[:n])


@dataclass(frozen=True)
class Cell:
    index: int
    encoder: EncoderChoice
    budget: float | str
    n_labels: int
    seed: int
    ids: tuple[str, ...]

    @property
    def folder(self) -> str:
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', self.encoder.name)}/n{self.n_labels}/seed{self.seed}"


def parse_encoders(cfg: StudyConfig) -> list[EncoderChoice]:
    """Every ``encoders`` entry, parsed; at least one, and no two with the same name (their cell folders)."""
    encoders = [parse_encoder(s) for s in cfg.encoders]
    if not encoders:
        raise ConfigError("encoders: expected at least one encoder")
    if len({e.name for e in encoders}) < len(encoders):
        raise ConfigError(f"encoders: two encoders share a name ({', '.join(e.name for e in encoders)})")
    return encoders


#: finetune keys that say how a cell runs, not what it computes: a study may change them between runs
RUN_ONLY_KEYS = ("run_dir", "resume", "data.num_workers", "data.pin_memory", "data.prefetch_factor",
                 "data.cache_dir", "train.device", "train.checkpoint_every", "train.log_every", "train.progress")


def settings_record(section: str, config: Any, run_only: tuple[str, ...]) -> dict[str, Any]:
    """The config ``section`` (a dataclass) as ``section.key`` → value, without the keys in ``run_only``: the
    settings every cell of a study shares (``design.json`` "settings")."""
    return {f"{section}.{k}": v for k, v in flatten(to_dict(config)).items() if k not in run_only}


def design_conflict(saved: dict[str, Any], design: dict[str, Any], defaults: dict[str, Any] | None = None
                    ) -> str | None:
    """Why a study directory holding ``saved`` cannot take ``design``, or None. Encoders, budgets and seeds may be
    added or dropped (scored cells are kept); the split, the cells' shared settings and each kept cell's labelled
    pairs must stay. A design saved before settings were recorded is not checked for them; a setting the saved
    design does not know (a key added to the schema since) counts as its value in ``defaults`` (the schema's
    defaults keep the earlier behaviour), so only a non-default value of a new key is a change."""
    for key in sorted((saved.keys() | design.keys()) - {"cells"}):
        if key == "settings":
            if key not in saved:
                continue
            new = {k: v for k, v in (defaults or {}).items() if k in design[key] and k not in saved[key]}
            known = {**new, **saved[key]}
            if changed := changed_values(known, design[key]):
                return f"its cells ran with other settings ({'; '.join(changed[:3])})"
        elif saved.get(key) != design.get(key):
            return f"its {key} differs"
    before = {c["dir"]: {k: v for k, v in c.items() if k != "index"} for c in saved.get("cells", [])}
    for cell in design["cells"]:
        record = {k: v for k, v in cell.items() if k != "index"}
        if cell["dir"] in before and before[cell["dir"]] != record:
            return f"its cell {cell['dir']} was drawn otherwise"
    return None


def score_path(study_dir: Path, cell: Any) -> Path:
    """Where a cell's scores live (``cell``: a change or scene cell); the one place that names the file."""
    return study_dir / "cells" / cell.folder / "score.json"


def write_score(study_dir: Path, cell: Any, result: Any) -> None:
    """Save a cell's scores atomically (a killed worker leaves no half-written ``score.json``)."""
    done = score_path(study_dir, cell)
    done.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(done) as tmp:
        tmp.write_text(json.dumps(result, indent=1))


def read_score(study_dir: Path, cell: Any) -> Any:
    """The cell's ``score.json`` (``cell``: a change or scene cell), or None while it is not scored. A cell folder
    scored for another encoder of the same name (two run dirs ``a/ssl`` and ``b/ssl``) is refused in one line."""
    done = score_path(study_dir, cell)
    if not done.is_file():
        return None
    result = json.loads(done.read_text())
    first = result[0] if isinstance(result, list) and result else result
    if isinstance(first, dict) and first.get("encoder", cell.encoder.spec) != cell.encoder.spec:
        raise ConfigError(f"{done}: scored for encoder {first['encoder']}, this study gives its folder to "
                          f"{cell.encoder.spec}; choose another run_dir or rename one of the encoders")
    return result


def selected_cells(cells: list[Any], selection: CellSelection) -> list[Any]:
    """The cells this invocation runs (``selection``: :data:`CellSelection`, checked by :func:`save_design`)."""
    return cells if selection == "all" else [] if selection == "none" else [cells[selection]]


def scored_cells(study_dir: Path, cells: list[Any], selection: CellSelection) -> list[Any] | None:
    """Every cell's score (:func:`read_score`), or None while some are missing; with ``selection="none"``
    (``--aggregate``) a missing cell is a one-line error naming them, since nothing else would run them."""
    scores = [read_score(study_dir, c) for c in cells]
    missing = [c.index for c, s in zip(cells, scores) if s is None]
    if missing and selection == "none":
        raise UserError(f"{study_dir}: cells {index_ranges(missing)} of 0-{len(cells) - 1} are not scored yet; run "
                        "them (--cell I, or without --aggregate) before aggregating")
    return None if missing else scores


def index_ranges(indices: list[int]) -> str:
    """Sorted cell indices as runs, ``[0, 1, 2, 5, 7, 8]`` → ``"0-2, 5, 7-8"`` (a short line for a big study)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def save_design(cfg: StudyConfig, study_dir: Path, design: dict, n_cells: int, selection: CellSelection) -> None:
    """Check ``--cell``, refuse a study directory whose design conflicts (:func:`design_conflict`), then write
    ``design.json`` and the resolved ``config.yaml`` (the same for every study task)."""
    if isinstance(selection, int) and not 0 <= selection < n_cells:
        raise ConfigError(f"--cell {selection}: the study has cells 0..{n_cells - 1}")
    study_dir.mkdir(parents=True, exist_ok=True)
    saved = study_dir / "design.json"
    defaults = {"test_window": StudyConfig.test_window, **settings_record("finetune", FinetuneConfig(), ()),
                **settings_record("scene", SceneStudyConfig(), ())}
    if saved.is_file() and (conflict := design_conflict(json.loads(saved.read_text()), design, defaults)):
        raise ConfigError(f"{saved}: this study directory holds another design ({conflict}); keep its settings "
                          "or choose another run_dir")
    with atomic_path(saved) as tmp:
        tmp.write_text(json.dumps(design, indent=1))
    save_config(cfg, study_dir / "config.yaml")


def make_cells(cfg: StudyConfig, split: Split) -> list[Cell]:
    """Every (seed, budget, encoder) in that order; ``--cell I`` runs the I-th."""
    encoders = parse_encoders(cfg)
    cells = []
    for seed in cfg.seeds:
        for budget in cfg.budgets:
            n = budget_count(budget, len(split.pool))
            ids = tuple(label_subset(split.pool, n, seed))
            for encoder in encoders:
                cells.append(Cell(len(cells), encoder, budget, n, seed, ids))
    return cells
