"""`ssl-siam demo --quick`: every stage runs (search included), in the real regime, and the report holds real numbers
from the run."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ssl_siam.tools.demo import run_demo


def test_quick_demo_runs_every_stage(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", quick=True)
    text = report.read_text()
    demo, runs = tmp_path / "demo", tmp_path / "demo" / "runs"
    assert (runs / "pretrain" / "encoder.safetensors").is_file()
    # pretraining saw every image, labels unused: the unlabeled archive of both disasters, labelled and test images
    roots = yaml.safe_load((runs / "pretrain" / "config.yaml").read_text())["data"]["root"]
    assert {Path(r).parent.name for r in roots} == {"storm", "tornado", "train", "hold"}
    study = json.loads((runs / "study" / "study.json").read_text())
    assert {r["encoder_name"] for r in study["rows"]} == {"pretrain", "random:resnet18"}
    assert study["split"] == "disaster" and study["holdout"] == "synthetic-tornado" and study["n_test_pairs"] == 3
    ssl = next(r for r in study["rows"] if r["encoder_name"] == "pretrain")
    assert ssl["n_runs"] == 2 and f"{ssl['mean']:.3f}" in text and "SSL − random" in text
    assert len(list((runs / "study" / "cells").glob("*/n2/seed*/score.json"))) == 4
    assert "_overlay.png" in text and (runs / "study" / "study.png").is_file()
    for name in ("metric_ssl", "metric_random"):
        result = json.loads((runs / name / "verify" / "verify.json").read_text())
        assert 0.0 <= result["roc_auc"] <= 1.0 and f"**{result['roc_auc']:.3f}**" in text
        assert (runs / name / "verify" / "roc.png").is_file()
    probe = json.loads((demo / "probe" / "probe.json").read_text())
    assert len(probe) == 4 and f"| {probe[0]['top1']:.3f} |" in text
    assert not (demo / "data" / "unlabeled" / "storm" / "labels").exists()
    search = demo / "search"  # embed + search of the held-out images with the demo's own SSL encoder
    index = json.loads((search / "index" / "index.json").read_text())
    assert index["encoder"]["kind"] == "export" and index["counts"]["tiles"] == 6 * 16  # 3 pairs, 256² / 64²
    hits = json.loads((search / "hits" / "hits.geojson").read_text())["features"]
    assert len(hits) == 6 and f"| 1 | {hits[0]['properties']['id']} |" in text
    assert (search / "hits" / "contact_sheet.png").is_file() and "](search/hits/contact_sheet.png)" in text
    assert "](search/hits/hits.csv)" in text and (search / "hits" / "hits.csv").is_file()
    track = demo / "track"  # SiamFC from the demo's SSL encoder and from random init, scored on held-out sequences
    ssl_cfg = yaml.safe_load((track / "ssl" / "config.yaml").read_text())
    assert ssl_cfg["model"]["encoder_weights"] == str(runs / "pretrain")
    assert yaml.safe_load((track / "random" / "config.yaml").read_text())["model"]["encoder_weights"] is None
    for name in ("ssl", "random"):
        result = json.loads((track / name / "eval" / "track_eval.json").read_text())
        assert 0.0 <= result["success_auc"] <= 1.0 and f"**{result['success_auc']:.3f}**" in text
    shown = (track / "ssl" / "track" / "boxes.csv").read_text().splitlines()
    assert shown[0] == "frame,x,y,w,h,score" and len(shown) == 1 + 8  # one row per frame of the quick sequences
    assert "](track/ssl/track/overlay.gif)" in text and (track / "ssl" / "track" / "overlay.gif").is_file()
