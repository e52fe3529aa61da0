"""ssl-siam study task=scene and split-scenes: the fixed stratified split, paired nested label subsets, the CI
arithmetic of the rows, and a planted separable folder classified perfectly."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import SHARED_DATA, write_scene_folder

from ssl_siam.cli import main
from ssl_siam.core.config import load_config
from ssl_siam.core.errors import ConfigError
from ssl_siam.data.class_folders import split_scenes, write_split
from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder
from ssl_siam.eval.classifiers import logistic_regression
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.design import parse_encoder
from ssl_siam.study.scenes import aggregate_scenes, label_subset, make_scene_cells, open_split, pretrained_on_test
from ssl_siam.study.summary import write_study

T_975 = {1: 12.706204736174707, 2: 4.302652729911275}  # Student t(0.975, df)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scenes")
    folder = write_scene_folder(root / "scenes", per_class=8)
    export_encoder(create_encoder("resnet18", 3), root / "ssl", EncoderMeta("resnet18", 3))
    return {"root": root, "scenes": folder, "ssl": root / "ssl"}


def config(data: dict[str, Path], *extra: str) -> StudyConfig:
    return load_config(StudyConfig, "study/scenes_label_efficiency", [
        f"data.root={data['scenes']}", f"encoders=[{data['ssl']},random:resnet18]", "budgets=[1,2,all]",
        "seeds=[0,1]", "scene.image_size=32", "scene.device=cpu", "scene.k=3", *extra])


def test_split_is_stratified_fixed_by_seed_and_written_as_links(scenes: dict[str, Path], tmp_path: Path) -> None:
    split = split_scenes(scenes["scenes"], 0.5, seed=0)
    assert split.classes == ["field", "forest", "water"] and len(split.files) == 24
    assert Counter(split.labels[split.is_test].tolist()) == {0: 4, 1: 4, 2: 4}  # half of every class
    again, other = split_scenes(scenes["scenes"], 0.5, seed=0), split_scenes(scenes["scenes"], 0.5, seed=1)
    assert np.array_equal(split.is_test, again.is_test) and not np.array_equal(split.is_test, other.is_test)
    out = write_split(split, tmp_path / "split")
    train = sorted(p.relative_to(out / "train").as_posix() for p in (out / "train").rglob("*.png"))
    assert train == sorted(i for i, t in zip(split.ids(), split.is_test) if not t)
    assert all(p.is_symlink() and p.resolve().parent.parent == scenes["scenes"].resolve()
               for p in (out / "test").rglob("*.png"))
    assert write_split(split, out) == out  # the same split again: nothing to do
    with pytest.raises(Exception, match="not empty and not this split"):
        write_split(other, out)
    # the study, with data.root=ROOT and the same seed and fraction, tests on exactly the written test/ images
    study_split = open_split(config(scenes, "scene.test_fraction=0.5", "scene.split_seed=0"))
    assert sorted(i for i, t in zip(study_split.ids(), study_split.is_test) if t) == sorted(
        p.relative_to(out / "test").as_posix() for p in (out / "test").rglob("*.png"))


def test_label_subsets_are_per_class_nested_and_paired(scenes: dict[str, Path]) -> None:
    cfg = config(scenes)
    split = open_split(cfg)
    cells = make_scene_cells(cfg, split)
    assert len(cells) == 2 * 3 * 2  # seeds × budgets × encoders
    for seed in (0, 1):
        subsets = {}
        for budget, n in ((1, 1), (2, 2), ("all", 4)):
            mine = [c for c in cells if c.seed == seed and c.budget == budget]
            assert len({c.indices for c in mine}) == 1  # every encoder: the same labelled images (paired)
            chosen = np.array(mine[0].indices)
            assert not split.is_test[chosen].any()
            assert Counter(split.labels[chosen].tolist()) == {0: n, 1: n, 2: n} and mine[0].n_labels == n
            subsets[budget] = set(chosen.tolist())
        assert subsets[1] < subsets[2] < subsets["all"]  # nested
    assert set(label_subset(split, 2, 0)) != set(label_subset(split, 2, 1))
    with pytest.raises(ConfigError, match="budgets: 5 labels per class, class field has 4 training images"):
        label_subset(split, 5, 0)


def test_rows_ci_and_paired_differences_by_hand(scenes: dict[str, Path]) -> None:
    split = open_split(config(scenes))
    values = {("ssl", 0): (0.9, 0.8), ("ssl", 1): (0.7, 0.6), ("ssl", 2): (0.8, 0.8),
              ("random:r", 0): (0.6, 0.5), ("random:r", 1): (0.6, 0.4), ("random:r", 2): (0.5, 0.5)}
    results = [{"index": i, "encoder": e, "encoder_name": e, "random": e.startswith("random"), "budget": 5,
                "n_labels": 5, "seed": s, "method": m, "score": top1, "macro_f1": f1, "n_train": 15, "n_test": 12}
               for i, ((e, s), (top1, f1)) in enumerate(values.items()) for m in ("linear", "knn")]
    study = aggregate_scenes(results, split, ["linear", "knn"])
    assert [(r["encoder"], r["method"]) for r in study["rows"]] == [
        ("ssl", "linear"), ("random:r", "linear"), ("ssl", "knn"), ("random:r", "knn")]
    ssl, rnd = study["rows"][:2]
    assert ssl["mean"] == pytest.approx(0.8) and ssl["std"] == pytest.approx(0.1) and ssl["n_runs"] == 3
    half = T_975[2] * 0.1 / math.sqrt(3)
    assert ssl["ci95"] == pytest.approx([0.8 - half, 0.8 + half])
    # top-1 differences 0.3, 0.1, 0.3: mean 7/30, std √(0.04/3 · … ) by hand
    diffs = [0.3, 0.1, 0.3]
    mean = sum(diffs) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert ssl["diff_vs_random"]["mean"] == pytest.approx(mean)
    assert ssl["diff_vs_random"]["ci95"] == pytest.approx([mean - T_975[2] * std / math.sqrt(3),
                                                           mean + T_975[2] * std / math.sqrt(3)])
    assert ssl["macro_f1_diff_vs_random"]["mean"] == pytest.approx((0.3 + 0.2 + 0.3) / 3)
    assert ssl["macro_f1"]["mean"] == pytest.approx((0.8 + 0.6 + 0.8) / 3)
    assert "diff_vs_random" not in rnd and study["split"]["n_test"] == 12


def test_logistic_regression_is_scikit_learns() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    y, test_y = rng.integers(0, 3, 40), rng.integers(0, 3, 300)
    x, test_x = rng.normal(size=(40, 6)), rng.normal(size=(300, 6))
    x[:, 0] += y
    test_x[:, 0] += test_y
    mean, std = x.mean(0), x.std(0)
    reference = sklearn.LogisticRegression(C=0.3, tol=1e-10, max_iter=10_000).fit((x - mean) / std, y)
    ours = logistic_regression(torch.tensor(x), y, torch.tensor(test_x), 3, c=0.3)
    assert np.array_equal(ours, reference.predict((test_x - mean) / std))
    # standardised with given pool statistics instead of the labelled features' own
    pool = (torch.tensor(x).mean(0) + 1, torch.tensor(x).std(0, unbiased=False) * 2)
    shifted = sklearn.LogisticRegression(C=0.3, tol=1e-10, max_iter=10_000).fit(
        (x - pool[0].numpy()) / pool[1].numpy(), y)
    assert np.array_equal(logistic_regression(torch.tensor(x), y, torch.tensor(test_x), 3, c=0.3, center=pool),
                          shifted.predict((test_x - pool[0].numpy()) / pool[1].numpy()))


def test_study_and_probe_cli_on_a_planted_folder(scenes: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "study"
    assert main(["study", "--config", "scenes_label_efficiency", f"data.root={scenes['scenes']}",
                 f"encoders=[{scenes['ssl']},random:resnet18]", "budgets=[1,all]", "seeds=[0,1]", f"run_dir={out}",
                 "scene.image_size=32", "scene.device=cpu", "scene.batch_size=16"]) == 0
    study = json.loads((out / "study.json").read_text())
    assert {(r["encoder"], r["budget"], r["method"]) for r in study["rows"]} == {
        (e, b, m) for e in (str(scenes["ssl"]), "random:resnet18") for b in (1, "all") for m in ("linear", "knn")}
    for row in study["rows"]:
        assert row["n_runs"] == 2 and {"mean", "ci95", "std", "macro_f1"} <= row.keys()
        assert ("diff_vs_random" in row) == (row["encoder"] != "random:resnet18")
        if row["budget"] == "all":
            assert row["mean"] == 1.0  # the planted colours separate every class
    assert (out / "study.png").is_file() and "| encoder | method | labels per class |" in (out / "study.md").read_text()
    # rerun: every cell is read back, no feature extracted again; another design in the same folder is refused
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("every cell should be read back")

    monkeypatch.setattr("ssl_siam.study.scenes.encoder_features", fail)
    first = (out / "study.json").read_text()
    assert main(["study", "--config", str(out / "config.yaml")]) == 0  # the resolved config, written by the study
    assert (out / "study.json").read_text() == first
    (out / "study.json").unlink()
    assert main(["study", "--config", str(out / "config.yaml"), "--aggregate"]) == 0  # from the scored cells alone
    assert (out / "study.json").read_text() == first
    assert main(["study", "--config", "scenes_label_efficiency", f"data.root={scenes['scenes']}",
                 "encoders=[random:resnet18]", "budgets=[1]", "seeds=[0]", f"run_dir={out}", "scene.device=cpu"]) == 2
    assert "holds another design" in capsys.readouterr().err
    # the report shows the study
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert "| random:resnet18 | knn | 1 |" in (tmp_path / "report" / "report.md").read_text()
    # the probe contract: a labelled folder and an explicit test folder
    split = write_split(split_scenes(scenes["scenes"], 0.5, 0), tmp_path / "split")
    assert main(["probe", "--encoder", str(scenes["ssl"]), "--encoder", "random:resnet18", "--data",
                 str(split / "train"), "--dataset", "folder", "--val-data", str(split / "test"), "--out",
                 str(tmp_path / "probe"), "--device", "cpu", "--crop-size", "32", "--k", "3"]) == 0
    rows = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert [(r["method"], r["n_train"], r["n_test"]) for r in rows] == [("linear", 12, 12), ("knn", 12, 12)] * 2
    assert all(r["top1"] == 1.0 for r in rows)


def test_test_images_seen_in_pretraining_are_counted_and_reported(scenes: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "leaky"
    export_encoder(create_encoder("resnet18", 3), run, EncoderMeta("resnet18", 3))
    split = open_split(config(scenes))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"root": [str(scenes["scenes"])]}}))  # all of it
    assert pretrained_on_test(parse_encoder(str(run)), split) == 12
    study = aggregate_scenes([], split, [], {str(run): 12, "random:resnet18": 0})
    written = tmp_path / "out"
    written.mkdir()
    study["rows"] = [{"encoder": str(run), "encoder_name": "leaky", "method": "knn", "n_labels": 1, "n_runs": 1,
                      "mean": 0.5, "std": None, "ci95": None, "macro_f1": {"mean": 0.5}}]
    write_study(study, written)
    assert f"**{run} was pretrained on 12 of the 12 test images**" in (written / "study.md").read_text()
    halves = write_split(split_scenes(scenes["scenes"], 0.5, 0), tmp_path / "split")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"root": [str(halves / "train")]}}))  # the train half
    assert pretrained_on_test(parse_encoder(str(run)), split) == 0
    assert pretrained_on_test(parse_encoder("random:resnet18"), split) == 0


@pytest.mark.skipif(not (SHARED_DATA / "rsscn7").is_dir(), reason="../shared/data/rsscn7 is absent (a fresh clone)")
def test_rsscn7_split_halves_every_class() -> None:
    split = split_scenes(SHARED_DATA / "rsscn7", 0.5, seed=0)
    assert len(split.classes) == 7 and len(split.files) == 2800
    assert Counter(split.labels[split.is_test].tolist()) == {c: 200 for c in range(7)}
