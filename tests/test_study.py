"""ssl-siam study: paired and nested design, leave-one-disaster-out, resume, --cell, and the CI arithmetic."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
import yaml

from ssl_siam.change.tasks import change_task
from ssl_siam.cli import main
from ssl_siam.core.config import load_config
from ssl_siam.core.errors import ConfigError
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.design import Split, make_cells, make_split
from ssl_siam.study.run import run_study
from ssl_siam.study.stats import paired_difference, summarize
from ssl_siam.study.summary import aggregate
from ssl_siam.tools.synthetic import make_xbd_split
from ssl_siam.train.checkpoint import load_checkpoint

TINY = ["finetune.model.backbone=resnet18", "finetune.data.crop_size=64", "finetune.train.batch_size=2",
        "finetune.train.max_steps=2", "finetune.train.device=cpu", "finetune.data.num_workers=0",
        "finetune.train.progress=false", "finetune.data.stats_samples=4", "finetune.optim.warmup_steps=0",
        "finetune.model.decoder_channels=[16,16,8,8,8]", "test_window=128"]


@pytest.fixture(scope="module")
def two_disasters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("study")
    make_xbd_split(root / "xbd", 4, size=128, seed=0, disaster="alpha-flood")
    make_xbd_split(root / "xbd", 3, size=128, seed=1, disaster="beta-fire")
    export_encoder(create_encoder("resnet18", 3), root / "ssl", EncoderMeta("resnet18", 3))
    return {"root": root, "xbd": root / "xbd", "ssl": root / "ssl"}


def config(data: dict[str, Path], *extra: str) -> StudyConfig:
    return load_config(StudyConfig, "study/xbd_label_efficiency", [
        f"data.root={data['xbd']}", f"encoders=[{data['ssl']},random:resnet18]", "budgets=[1,2]", "seeds=[0,1]",
        *TINY, *extra])


def split_of(cfg: StudyConfig, cache_dir: Path) -> Split:
    """The study's split, with its task resolved as the study resolves it."""
    return make_split(cfg, change_task(cfg.finetune.task), cache_dir)


def test_summary_and_paired_difference_by_hand() -> None:
    s = summarize([0.2, 0.4, 0.6])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.4) and s["std"] == pytest.approx(0.2)
    half = 4.302652729911275 * 0.2 / math.sqrt(3)  # t(0.975, df=2)
    assert s["ci95"] == pytest.approx([0.4 - half, 0.4 + half])
    d = paired_difference({0: 0.5, 1: 0.7, 2: 0.9, 3: 0.1}, {0: 0.4, 1: 0.5, 2: 0.6})  # seed 3 has no pair
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.2) and d["std"] == pytest.approx(0.1)
    assert d["ci95"] == pytest.approx([0.2 - 4.302652729911275 * 0.1 / math.sqrt(3),
                                       0.2 + 4.302652729911275 * 0.1 / math.sqrt(3)])
    assert summarize([0.3])["ci95"] is None and summarize([])["mean"] is None


def test_aggregate_rows_against_hand_numbers() -> None:
    results = [{"index": i, "encoder": e, "encoder_name": e, "random": e.startswith("random"), "budget": 2,
                "n_labels": 2, "seed": s, "score": v, "localization_f1": v, "damage_f1": v}
               for i, (e, s, v) in enumerate([("ssl", 0, 0.5), ("random:r", 0, 0.4), ("ssl", 1, 0.7),
                                              ("random:r", 1, 0.5)])]
    study = aggregate(results, {"split": "image", "holdout": None, "test": ["a"], "pool": ["b", "c"]},
                      ("localization_f1", "damage_f1"), "xView2 score")
    ssl, rnd = study["rows"]
    assert ssl["mean"] == pytest.approx(0.6) and rnd["mean"] == pytest.approx(0.45)
    assert ssl["diff_vs_random"]["mean"] == pytest.approx(0.15) and "diff_vs_random" not in rnd
    half = 12.706204736174707 * math.sqrt(0.005) / math.sqrt(2)  # diffs 0.1, 0.2: std √0.005, t(0.975, 1)
    assert ssl["diff_vs_random"]["ci95"] == pytest.approx([0.15 - half, 0.15 + half])


def test_design_is_paired_nested_and_leaves_a_disaster_out(two_disasters: dict[str, Path]) -> None:
    cfg = config(two_disasters, "split=disaster", "budgets=[1,2,3]")
    split = split_of(cfg, two_disasters["root"] / "cache")
    assert split.holdout == "alpha-flood"  # the disaster with the most pairs by default
    assert {r.disaster for r in split.test} == {"alpha-flood"} and len(split.test) == 4
    assert {r.disaster for r in split.pool} == {"beta-fire"}  # no image of the held-out disaster in training
    cells = make_cells(cfg, split)
    assert len(cells) == 2 * 3 * 2 and [c.index for c in cells] == list(range(12))
    for seed in (0, 1):
        for budget in (1, 2, 3):
            same = [c for c in cells if c.seed == seed and c.budget == budget]
            assert len({c.ids for c in same}) == 1  # every encoder: the same labelled pairs (and seed)
        nested = [next(c.ids for c in cells if c.seed == seed and c.budget == b) for b in (1, 2, 3)]
        assert set(nested[0]) < set(nested[1]) < set(nested[2])
    other = split_of(config(two_disasters, "split=disaster", "holdout=beta-fire"), two_disasters["root"])
    assert other.holdout == "beta-fire"
    with pytest.raises(ConfigError, match="holdout=gamma: no such disaster"):
        split_of(config(two_disasters, "split=disaster", "holdout=gamma"), two_disasters["root"])
    with pytest.raises(ConfigError, match="budgets: 9 needs 9 labelled pairs, the pool has 3"):
        make_cells(config(two_disasters, "split=disaster", "budgets=[9]"), split)


def test_study_runs_cells_resumes_and_aggregates(two_disasters: dict[str, Path], capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    study = two_disasters["root"] / "run"
    args = ["study", "--config", "study/xbd_label_efficiency", f"data.root={two_disasters['xbd']}",
            f"encoders=[{two_disasters['ssl']},random:resnet18]", "budgets=[1,2]", "seeds=[0,1]", "split=disaster",
            f"run_dir={study}", *TINY]
    assert main([*args, "--cell", "5"]) == 0  # exactly one cell: seed 1, budget 1, random init
    scored = sorted(p.relative_to(study).as_posix() for p in study.rglob("score.json"))
    assert scored == ["cells/random_resnet18/n1/seed1/score.json"]
    assert not (study / "study.json").exists()
    design = json.loads((study / "design.json").read_text())
    cell = design["cells"][5]
    ft = yaml.safe_load((study / cell["dir"] / "config.yaml").read_text())
    assert ft["data"]["train_ids"] == cell["ids"] and ft["train"]["seed"] == 1 and ft["data"]["val_root"] == []

    from ssl_siam.study import run as study_run

    finetuned = []
    original = study_run.run_finetune
    monkeypatch.setattr(study_run, "run_finetune", lambda cfg: finetuned.append(cfg.run_dir) or original(cfg))
    capsys.readouterr()
    assert main([*args, "--aggregate"]) == 2 and finetuned == []  # runs nothing, names what is missing
    assert capsys.readouterr().err.strip().endswith(f"{study}: cells 0-4, 6-7 of 0-7 are not scored yet; run them "
                                                    "(--cell I, or without --aggregate) before aggregating")
    typo = [a if not a.startswith("run_dir=") else f"run_dir={study}_typo" for a in args]
    assert main([*typo, "--aggregate"]) == 2 and not (study.parent / "run_typo").exists()  # nothing created
    assert "no study here (no design.json) to aggregate" in capsys.readouterr().err
    assert not (study / "study.json").exists()
    assert main(args) == 0  # the other 7 cells; the scored one is skipped
    assert len(finetuned) == 7 and not any(d.endswith("random_resnet18/n1/seed1") for d in finetuned)
    result = json.loads((study / "study.json").read_text())
    assert (study / "study.md").is_file() and (study / "study.png").is_file()
    rows = {(r["encoder_name"], r["n_labels"]): r for r in result["rows"]}
    assert set(rows) == {("ssl", 1), ("ssl", 2), ("random:resnet18", 1), ("random:resnet18", 2)}
    for (name, n), row in rows.items():
        assert row["n_runs"] == 2 and 0 <= row["mean"] <= 1 and len(row["ci95"]) == 2
        scores = [r["score"] for r in result["results"] if r["encoder_name"] == name and r["n_labels"] == n]
        assert row["mean"] == pytest.approx(sum(scores) / 2)
    assert set(rows[("ssl", 1)]["diff_vs_random"]) == {"mean", "ci95", "n"}
    finetuned.clear()
    assert main(args) == 0 and finetuned == []  # everything done: nothing reruns
    written = (study / "study.json").read_text()
    (study / "study.json").unlink()
    assert main([*args, "--aggregate"]) == 0 and finetuned == []
    assert (study / "study.json").read_text() == written  # the aggregate alone, from the scored cells
    assert main([*args, "probes=true", "probe_crop_size=32"]) == 0 and finetuned == []  # probes need no finetune
    probes = json.loads((study / "study.json").read_text())["probes"]
    assert set(probes) == {"linear", "knn"}
    from ssl_siam.data.xbd.buildings import labelled_buildings
    from ssl_siam.data.xbd.pairs import find_pairs

    count = {r.id: len(labelled_buildings(r, 0)) for r in find_pairs(two_disasters["xbd"])[0]}
    for cell in design["cells"]:  # each probe trains on the buildings of exactly its cell's labelled pairs
        (row,) = [r for r in probes["linear"]["results"] if r["index"] == cell["index"]]
        assert row["n_train"] == sum(count[i] for i in cell["ids"]) and row["seed"] == cell["seed"]
        assert row["n_test"] == sum(count[i] for i in design["test"]) and 0 <= row["score"] <= 1
    for method in ("linear", "knn"):
        (ssl,) = [r for r in probes[method]["rows"] if r["encoder_name"] == "ssl" and r["n_labels"] == 2]
        top1 = {(r["encoder_name"], r["seed"]): r["score"] for r in probes[method]["results"] if r["n_labels"] == 2}
        assert ssl["diff_vs_random"]["mean"] == pytest.approx(
            sum(top1["ssl", s] - top1["random:resnet18", s] for s in (0, 1)) / 2)
    assert "kNN top-1 (buildings)" in (study / "study.md").read_text()
    capsys.readouterr()
    assert main([*args[:-len(TINY)], "seeds=[0]", *TINY]) == 0 and finetuned == []  # fewer seeds: read back
    assert {r["n_runs"] for r in json.loads((study / "study.json").read_text())["rows"]} == {1}
    assert main([*args, "finetune.train.log_every=1", "finetune.train.checkpoint_every=5"]) == 0  # how, not what
    assert finetuned == [] and len(json.loads((study / "study.json").read_text())["results"]) == 8
    capsys.readouterr()
    assert main([*args, "finetune.train.max_steps=3"]) == 2 and finetuned == []  # scored under other settings
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds another design" in err and "finetune.train.max_steps=2 → 3" in err
    assert main([*args, "split=image"]) == 2 and "holds another design (its " in capsys.readouterr().err


def test_an_encoder_added_to_a_study_runs_only_its_cells(two_disasters: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A study directory grows: an encoder (or seed, budget) added later finetunes only the new cells; the scored
    ones are read back and the aggregate pairs them."""
    from ssl_siam.study import run as study_run

    finetuned: list[str] = []
    original = study_run.run_finetune
    monkeypatch.setattr(study_run, "run_finetune", lambda cfg: finetuned.append(cfg.run_dir) or original(cfg))
    base = ["budgets=[1]", "seeds=[0]", f"run_dir={tmp_path / 'run'}"]
    run_study(config(two_disasters, "encoders=[random:resnet18]", *base))
    score = tmp_path / "run" / "cells" / "random_resnet18" / "n1" / "seed0" / "score.json"
    first = score.read_text()
    run_study(config(two_disasters, *base))  # the ssl encoder joins
    assert [Path(d).relative_to(tmp_path / "run").as_posix() for d in finetuned] == [
        "cells/random_resnet18/n1/seed0", "cells/ssl/n1/seed0"]
    assert score.read_text() == first
    study = json.loads((tmp_path / "run" / "study.json").read_text())
    (ssl,) = [r for r in study["rows"] if r["encoder_name"] == "ssl"]
    scores = {r["encoder_name"]: r["score"] for r in study["results"]}
    assert ssl["diff_vs_random"]["mean"] == pytest.approx(scores["ssl"] - scores["random:resnet18"])
    # another encoder named ssl (a run dir of the same name elsewhere) never reads the first one's scores
    import shutil

    other = tmp_path / "other" / "ssl"
    shutil.copytree(two_disasters["ssl"], other)
    run_study(config(two_disasters, "encoders=[random:resnet18]", *base))  # the ssl cell leaves the design
    finetuned.clear()
    with pytest.raises(ConfigError, match=r"ssl/n1/seed0/score.json: scored for encoder .*, this study gives"):
        run_study(config(two_disasters, f"encoders=[{other},random:resnet18]", *base))
    assert finetuned == []


def test_design_conflicts_by_hand() -> None:
    from ssl_siam.study.design import design_conflict

    cell = {"index": 0, "encoder": "random:resnet18", "budget": 1, "n_labels": 1, "seed": 0, "ids": ["a"],
            "dir": "cells/random_resnet18/n1/seed0"}
    saved = {"split": "image", "test": ["t"], "settings": {"finetune.optim.lr": 0.1}, "cells": [cell]}
    moved = {**cell, "index": 1}  # another encoder listed first: same cell, new index
    added = {**cell, "encoder": "ssl", "dir": "cells/ssl/n1/seed0"}
    assert design_conflict(saved, {**saved, "cells": [added, moved]}) is None
    assert design_conflict(saved, {**saved, "cells": []}) is None
    assert design_conflict(saved, {**saved, "cells": [{**cell, "ids": ["b"]}]}) == (
        "its cell cells/random_resnet18/n1/seed0 was drawn otherwise")
    assert design_conflict(saved, {**saved, "test": ["u"]}) == "its test differs"
    assert design_conflict(saved, {**saved, "settings": {"finetune.optim.lr": 0.2}}) == (
        "its cells ran with other settings (finetune.optim.lr=0.1 → 0.2)")
    legacy = {k: v for k, v in saved.items() if k != "settings"}  # written before settings were recorded
    assert design_conflict(legacy, {**saved, "settings": {"finetune.optim.lr": 0.2}}) is None
    # a key added to the schema after the design was saved: its default is the earlier behaviour, anything else a change
    grown = {**saved, "settings": {"finetune.optim.lr": 0.1, "finetune.data.new_key": False}}
    assert design_conflict(saved, grown, {"finetune.data.new_key": False, "finetune.optim.lr": 0.05}) is None
    assert design_conflict(saved, {**grown, "settings": {**grown["settings"], "finetune.data.new_key": True}},
                           {"finetune.data.new_key": False}) == (
        "its cells ran with other settings (finetune.data.new_key=False → True)")
    assert design_conflict(saved, grown) == "its cells ran with other settings (finetune.data.new_key=None → False)"


def test_an_interrupted_cell_resumes_from_its_checkpoint(two_disasters: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A cell killed after its first checkpoint continues from it on the next run instead of starting over."""
    from ssl_siam.train.loop import Trainer

    cfg = config(two_disasters, "encoders=[random:resnet18]", "budgets=[1]", "seeds=[0]",
                 "finetune.train.checkpoint_every=1", f"run_dir={tmp_path / 'run'}")
    original = Trainer.save_checkpoint

    class Killed(Exception):
        pass

    def save_then_die(self: Trainer, name: str = "last.pt") -> None:
        original(self, name)
        if self.state.step == 1:
            raise Killed

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run_study(cfg)
    cell = tmp_path / "run" / "cells" / "random_resnet18" / "n1" / "seed0"
    assert load_checkpoint(cell / "checkpoints" / "last.pt")["step"] == 1 and not (cell / "score.json").exists()
    monkeypatch.setattr(Trainer, "save_checkpoint", original)
    caplog.set_level(logging.INFO, logger="ssl_siam.train.launch")
    run_study(cfg)
    assert "at step 1" in caplog.text  # resumed, not restarted
    assert load_checkpoint(cell / "checkpoints" / "last.pt")["step"] == 2 and (cell / "score.json").is_file()


def test_a_timm_weight_file_is_an_encoder_of_the_study(two_disasters: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``timm:<name>=<file>``: its cells finetune a model whose encoder starts from that file's weights."""
    import timm

    from ssl_siam.change.models.siamese import build_change_net
    from ssl_siam.study import run as study_run

    weights = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), weights)
    with pytest.raises(ConfigError, match="encoders: timm:resnet18=.*missing.pth does not exist"):
        make_cells(config(two_disasters, f"encoders=[timm:resnet18={tmp_path / 'missing.pth'}]"),
                   split_of(config(two_disasters), tmp_path / "cache"))
    seen = []
    original = study_run.run_finetune
    monkeypatch.setattr(study_run, "run_finetune", lambda cfg: seen.append(cfg) or original(cfg))
    cfg = config(two_disasters, f"encoders=[timm:resnet18={weights},random:resnet18]", "budgets=[1]", "seeds=[0]",
                 f"run_dir={tmp_path / 'run'}")
    run_study(cfg, 0)
    (ft,) = seen
    assert ft.model.pretrained == str(weights) and ft.model.encoder_weights is None
    assert (tmp_path / "run" / "cells" / "timm_resnet18" / "n1" / "seed0" / "score.json").is_file()
    net = build_change_net(ft.model.backbone, 3, pretrained=ft.model.pretrained, decoder_channels=[16, 16, 8, 8, 8])
    assert torch.equal(net.encoder.conv1.weight, torch.load(weights)["conv1.weight"])


@pytest.mark.parametrize("task", ["binary", "semantic"])
def test_study_compares_encoders_on_change_benchmarks(task: str, tmp_path: Path) -> None:
    from ssl_siam.tools.scenes import make_levir_split, make_second_split

    if task == "binary":
        make_levir_split(tmp_path / "data", 6, size=64, seed=0)
    else:
        make_second_split(tmp_path / "data", 6, size=64, seed=0)
    export_encoder(create_encoder("resnet18", 3), tmp_path / "ssl", EncoderMeta("resnet18", 3))
    recipe = "levir_label_efficiency" if task == "binary" else "second_label_efficiency"
    study = tmp_path / "run"
    assert main(["study", "--config", recipe, f"data.root={tmp_path / 'data'}", f"run_dir={study}",
                 f"encoders=[{tmp_path / 'ssl'},random:resnet18]", "budgets=[2]", "seeds=[0,1]", *TINY]) == 0
    result = json.loads((study / "study.json").read_text())
    assert result["metric"] == ("change F1" if task == "binary" else "SECOND score (0.3 mIoU + 0.7 SeK)")
    assert result["n_test_pairs"] == 2 and result["n_pool"] == 4
    components = ("iou", "precision", "recall") if task == "binary" else ("sek", "miou")
    for cell in result["results"]:
        assert all(0 <= cell[k] <= 1 for k in ("score", *components))
        if task == "semantic":
            assert cell["score"] == pytest.approx(0.3 * cell["miou"] + 0.7 * cell["sek"])
        else:
            p, r = cell["precision"], cell["recall"]
            assert cell["score"] == pytest.approx(cell["f1"]) and cell["f1"] == pytest.approx(
                2 * p * r / (p + r) if p + r else 0.0)
            assert cell["iou"] == pytest.approx(cell["f1"] / (2 - cell["f1"]))  # IoU = F1 / (2 − F1), pixels summed
    ssl = next(r for r in result["rows"] if r["encoder_name"] == "ssl")
    assert all(k in ssl for k in components)  # summarised beside the score
    by_seed = {(c["encoder_name"], c["seed"]): c["score"] for c in result["results"]}
    assert ssl["diff_vs_random"]["n"] == 2 and ssl["diff_vs_random"]["mean"] == pytest.approx(
        sum(by_seed["ssl", s] - by_seed["random:resnet18", s] for s in (0, 1)) / 2)
    assert all(k in ssl for k in components)
    assert result["metric"] in (study / "study.md").read_text()
