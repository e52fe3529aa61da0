"""The experiment drivers in scripts/ (reported in docs/study.md and docs/benchmark.md) still import and parse
their arguments against the current package, so they cannot rot silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
