"""`ssl-siam report`: pretraining curves, finetune scores and probe rows from run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssl_siam.core.errors import DataError
from ssl_siam.tools.report import write_report


def fake_run(path: Path, metrics: dict, config: str) -> Path:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "config.yaml").write_text(config)
    return path


def test_report_tables_and_plots(tmp_path: Path) -> None:
    history = [{"step": s, "loss": -s / 10, "collapse_std_relative": 1.0} for s in (1, 2, 3)]
    pre = fake_run(tmp_path / "ssl", {"step": 3, "loss": -0.3, "collapse_std_relative": 0.97, "samples_per_s": 12.0,
                                      "history": history}, "objective: byol\nmodel: {backbone: resnet18}\n")
    val = {"score": 0.5, "localization_f1": 0.8, "damage_f1": 0.37, "f1_no-damage": 0.9, "f1_minor-damage": 0.1,
           "f1_major-damage": 0.2, "f1_destroyed": 0.6}
    ft = fake_run(tmp_path / "ft", {"step": 8, "loss": 1.0, "val": val, "best_score": 0.61,
                                    "val_history": [{"step": 4, **val}, {"step": 8, **val}]},
                  "model: {backbone: resnet18, encoder_weights: runs/ssl}\n")
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "probe.json").write_text(json.dumps([{"encoder": "random:resnet18", "dataset": "xbd-crops",
                                                   "method": "knn", "top1": 0.42, "macro_f1": 0.31, "n_train": 30,
                                                   "n_test": 10}]))
    report = write_report([pre, ft, probe], tmp_path / "out").read_text()
    assert "| ssl | byol | resnet18 | 3 | -0.3000 | 0.970 | 12.0 | – |" in report
    assert "| ft | resnet18 | runs/ssl | 0.610 | 0.500 | 0.800 | 0.370 | 0.900 | 0.100 | 0.200 | 0.600 | – |" in report
    assert "| random:resnet18 | xbd-crops | knn | 0.420 | 0.310 | 30 | 10 |" in report
    assert (tmp_path / "out" / "pretrain_curves.png").stat().st_size > 1000
    assert (tmp_path / "out" / "finetune_curves.png").stat().st_size > 1000
    with pytest.raises(DataError, match="expected metrics.json .* probe.json, verify.json or study.json"):
        write_report([tmp_path], tmp_path / "out2")


def test_report_knn_pretraining_metric_runs_and_verify(tmp_path: Path) -> None:
    """A pretraining run with a kNN monitor (it has `val`) stays a pretraining row; metric-train runs and
    `ssl-siam verify` outputs get their own tables."""
    knn = {"step": 4, "knn_top1": 0.5}
    pre = fake_run(tmp_path / "ssl", {"step": 4, "loss": 0.1, "val": knn, "best_knn_top1": 0.55, "val_history": [knn],
                                      "history": []}, "objective: simsiam\nmodel: {backbone: resnet18}\n")
    val = {"step": 10, "roc_auc": 0.91, "eer": 0.12, "best_accuracy": 0.88}
    metric = fake_run(tmp_path / "met", {"step": 10, "loss": 0.2, "val": val, "best_roc_auc": 0.93,
                                         "val_history": [val]},
                      "data: {dataset: xbd-pairs}\nmodel: {backbone: resnet18, variant: classic}\n"
                      "loss: {name: contrastive, mining: none}\n")
    verify = tmp_path / "verify"
    verify.mkdir()
    (verify / "verify.json").write_text(json.dumps({"checkpoint": "met/checkpoints/best.pt", "data": ["hold"],
                                                    "n_pairs": 84, "roc_auc": 0.97, "eer": 0.13, "best_accuracy": 0.92,
                                                    "oneshot_accuracy": 0.8, "oneshot_n_way": 5}))
    report = write_report([pre, metric, verify], tmp_path / "out").read_text()
    assert "| ssl | simsiam | resnet18 | 4 | 0.1000 | nan | 0.0 | 0.550 |" in report
    row = "| met | xbd-pairs | resnet18 | classic | contrastive | none | 10 | 0.2000 | 0.930 | 0.910 | 0.120 | 0.880 |"
    assert row in report
    assert "| met/checkpoints/best.pt | hold | 84 | 0.970 | 0.130 | 0.920 | 0.800 (5-way) |" in report
    assert "Finetuning" not in report and (tmp_path / "out" / "metric_curves.png").stat().st_size > 1000
