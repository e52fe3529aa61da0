"""`ssl-siam demo --quick`: every stage runs and the report holds real numbers from the run."""

from __future__ import annotations

import json
from pathlib import Path

from ssl_siam.tools.demo import run_demo


def test_quick_demo_runs_every_stage(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", quick=True)
    text = report.read_text()
    runs = tmp_path / "demo" / "runs"
    assert (runs / "pretrain" / "encoder.safetensors").is_file()
    for name in ("finetune_ssl", "finetune_random"):
        score = json.loads((runs / name / "hold_score.json").read_text())
        assert 0.0 <= score["score"] <= 1.0
        assert f"**{score['score']:.3f}**" in text
        assert (runs / name / "checkpoints" / "best.pt").is_file()
        overlays = list((runs / name / "hold_predictions").glob("*_overlay.png"))
        assert len(overlays) == 4  # every held-out pair predicted
    assert "SSL (SimSiam)" in text and "random init" in text and "_overlay.png" in text
    for name in ("metric_ssl", "metric_random"):
        result = json.loads((runs / name / "verify" / "verify.json").read_text())
        assert 0.0 <= result["roc_auc"] <= 1.0 and f"**{result['roc_auc']:.3f}**" in text
        assert (runs / name / "verify" / "roc.png").is_file()
    probe = json.loads((tmp_path / "demo" / "probe" / "probe.json").read_text())
    assert len(probe) == 4 and f"| {probe[0]['top1']:.3f} |" in text
