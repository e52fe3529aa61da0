"""`ssl-siam targets` and `ssl-siam score` through the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import ROOT, TEST_DATA
from PIL import Image

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssl_siam.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=300)


def test_targets_then_score(tmp_path: Path) -> None:
    targ, pred = tmp_path / "targ", tmp_path / "pred"
    proc = cli("targets", str(TEST_DATA / "xbd"), "--out", str(targ))
    assert proc.returncode == 0, proc.stderr
    damage = np.asarray(Image.open(targ / "joplin-tornado_00000000_damage_target.png"))
    assert damage.dtype == np.uint8 and set(np.unique(damage)) <= {0, 1, 2, 3, 4} and damage.max() > 1
    pred.mkdir()
    for kind in ("localization", "damage"):  # a perfect prediction, in the challenge's naming style
        shutil.copy(targ / f"joplin-tornado_00000000_{kind}_target.png",
                    pred / f"test_{kind}_joplin-tornado_00000000_prediction.png")
    proc = cli("score", "--pred", str(pred), "--targ", str(targ), "--json", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["score"] > 0.999 and result["localization_f1"] > 0.999
    assert set(result["damage_f1_per_class"]) == {"no-damage", "minor-damage", "major-damage", "destroyed"}
    assert "score" in proc.stdout

    Image.fromarray(np.full_like(damage, 7)).save(pred / "test_damage_joplin-tornado_00000000_prediction.png")
    proc = cli("score", "--pred", str(pred), "--targ", str(targ))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "test_damage_joplin-tornado_00000000_prediction.png" in proc.stderr


def test_probe_cli_contract(tmp_path: Path) -> None:
    from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder
    from ssl_siam.tools.synthetic import make_xbd_split

    split = tmp_path / "split"
    make_xbd_split(split, 4, size=128, seed=0)
    export_encoder(create_encoder("resnet18", 3), tmp_path / "run", EncoderMeta("resnet18", 3))
    out = tmp_path / "probe"
    proc = cli("probe", "--encoder", str(tmp_path / "run" / "encoder.safetensors"), "--encoder", "random:resnet18",
               "--data", str(split), "--dataset", "xbd-crops", "--out", str(out), "--device", "cpu", "--k", "3",
               "--crop-size", "32")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((out / "probe.json").read_text())
    assert {(r["encoder"], r["method"]) for r in rows} == {(e, m) for e in ("run", "random:resnet18")
                                                           for m in ("linear", "knn")}
    for row in rows:
        assert {"encoder", "dataset", "method", "top1", "macro_f1", "n_train", "n_test"} <= row.keys()
        assert row["dataset"] == "xbd-crops" and row["n_train"] > 0 and row["n_test"] > 0
    assert "| random:resnet18 | xbd-crops | knn |" in (out / "probe.md").read_text()
