"""The experiment drivers in scripts/ (reported in docs/study.md and docs/benchmark.md) still import and parse
their arguments against the current package, so they cannot rot silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_script_help(script: Path) -> None:
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_gpu_check_smoke_runs_every_step(tmp_path: Path) -> None:
    """``scripts/gpu_check.sh --device cpu --smoke`` (issue 29's check at toy sizes): every step runs and passes,
    each in its own process with its peak memory, the bench JSONs carry the ours / ceiling ratio the summary reports,
    and the outputs of the real steps exist (so the GPU run's minutes go to measuring, not debugging)."""
    import yaml

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
    out = tmp_path / "gc"
    done = subprocess.run(["bash", str(script), "--device", "cpu", "--smoke", "--out", str(out)], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    names = [s["name"] for s in summary["steps"]]
    assert summary["failed"] == [] and names == [
        "bench_simsiam", "bench_byol", "bench_dino", "bench_finetune", "synthetic_data", "pretrain_simsiam",
        "pretrain_byol", "pretrain_dino", "pretrain_simsiam_compile", "torchrun_sync_bn", "finetune", "predict_tta",
        "metric_train"]
    assert all(s["rc"] == 0 and s["peak_memory_mb"] > 0 for s in summary["steps"])
    for step in summary["steps"][:4]:
        bench = json.loads((out / f"{step['name']}.json").read_text())
        assert bench["device"] == "cpu" and step["ours_over_ceiling"] == round(bench["ratios"]["ours_vs_ceiling"], 3)
    runs = out / "work" / "runs"
    config = yaml.safe_load((runs / "pretrain_torchrun" / "config.yaml").read_text())
    assert config["train"]["sync_bn"] is True and config["train"]["precision"] == "bf16"
    assert yaml.safe_load((runs / "pretrain_compile" / "config.yaml").read_text())["train"]["compile"] is True
    for run in ("pretrain_simsiam", "pretrain_byol", "pretrain_dino", "pretrain_torchrun", "finetune", "metric"):
        assert (runs / run / "checkpoints" / "last.pt").is_file(), run
    assert len(list((out / "work" / "predictions").glob("*_damage_prediction.png"))) == 4
    assert "| predict_tta | 0 |" in (out / "summary.md").read_text()


def _load_script(name: str) -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_oscd_frozen_probe_scores_separable_features_perfectly() -> None:
    """The probe's read-out on hand-made features: change cells carry a distinct value, so the logistic regression
    separates them (AP and F1 ≈ 1 at full resolution: only the bilinear upsampling blurs the rectangle's edge);
    features that carry nothing do not (AP near the change rate, 1/6)."""
    probe = _load_script("oscd_frozen_probe")
    rng = np.random.default_rng(0)
    labels, feats, noise = {}, {}, {}
    for city in ("a", "b", "c"):
        lab = np.zeros((40, 48), bool)
        lab[8:24, 12:32] = True  # whole stride-4 cells
        labels[city] = lab
        change = lab[::4, ::4].astype(np.float32)  # the stride-4 grid the features live on
        feats[city] = np.stack([change + 0.05 * rng.standard_normal(change.shape), rng.standard_normal(change.shape)]
                               ).astype(np.float16)
        noise[city] = rng.standard_normal((2, *change.shape)).astype(np.float16)
    good = probe.probe(feats, labels, ["a", "b"], ["c"], seed=0)
    assert good["ap"] > 0.99 and good["f1"] > 0.98 and good["best_f1"] > 0.99
    bad = probe.probe(noise, labels, ["a", "b"], ["c"], seed=0)
    assert bad["ap"] < 0.5


def test_oscd_frozen_probe_runs_on_a_study_directory(tmp_path: Path) -> None:
    """End to end on the generated OSCD layout: one probe per (encoder, budget, seed) of the study's splits."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import write_oscd

    from ssl_siam.data.stats import BandStats
    from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder

    root = write_oscd(tmp_path / "oscd", ["bordeaux", "pisa", "hongkong"], ["dubai"])
    study = tmp_path / "study"
    cell = study / "cells" / "random_resnet18" / "n1" / "seed0"
    cell.mkdir(parents=True)
    (study / "design.json").write_text(json.dumps({"test": ["pisa", "hongkong"]}))
    (cell / "split.json").write_text(json.dumps({"train": ["bordeaux"]}))
    stats = BandStats(low=[0.0] * 13, high=[4000.0] * 13, mean=[0.5] * 13, std=[0.25] * 13)
    export_encoder(create_encoder("resnet18", 13), tmp_path / "ssl", EncoderMeta("resnet18", 13, normalization=stats))
    out = tmp_path / "probe.json"
    script = Path(__file__).resolve().parents[1] / "scripts" / "oscd_frozen_probe.py"
    done = subprocess.run([sys.executable, str(script),
                           str(root), str(study), str(out), "--encoders", str(tmp_path / "ssl"), "random",
                           "--budgets", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [(r["encoder"], r["n"], r["seed"]) for r in rows] == [("ssl", 1, 0), ("random_resnet18", 1, 0)]
    assert all(0 <= r["f1"] <= 1 and 0 < r["ap"] <= 1 and r["best_f1"] >= r["f1"] - 1e-9 for r in rows)


def test_gpu_check_names_the_missing_packages(tmp_path: Path) -> None:
    """On a Python without the project's dependencies (and no wheels to install), the check stops before any step
    with exit 2 and one line naming what is missing, read from pyproject.toml (lazily imported ones included)."""
    import venv

    venv.create(tmp_path / "bare", with_pip=False)
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script), "--device", "cpu", "--smoke", "--out", str(tmp_path / "gc"),
                           "--wheels", str(tmp_path / "no_wheels")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": str(tmp_path / "bare" / "bin" / "python")})
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("gpu_check: missing torch,") and "faiss-cpu" in line and "wheels in" in line
    assert not (tmp_path / "gc").exists()
