"""Runs that survive faults: kill -9 mid-run, Slurm-style SIGTERM preemption, non-finite steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, tiny_overrides

from ssl_siam.checkpoint import load_checkpoint
from ssl_siam.config import load_config
from ssl_siam.engine import TrainingError
from ssl_siam.errors import Preempted
from ssl_siam.pretraining import run_pretrain
from ssl_siam.schema import PretrainConfig
from ssl_siam.ssl.simsiam import SimSiam

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def start(tile_dir: Path, run_dir: Path, steps: int, every: int) -> subprocess.Popen:
    args = tiny_overrides("simsiam", tile_dir, run_dir, steps=steps) + [f"train.checkpoint_every={every}"]
    return subprocess.Popen([sys.executable, "-m", "ssl_siam.cli", "pretrain", *args], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def checkpoint_step(run_dir: Path) -> int:
    path = run_dir / "checkpoints" / "last.pt"
    return load_checkpoint(path)["step"] if path.is_file() else -1


def test_kill_9_then_resume_matches_uninterrupted(tmp_path: Path, tile_dir: Path) -> None:
    full = start(tile_dir, tmp_path / "full", steps=12, every=3)
    assert full.wait(timeout=300) == 0, full.stderr.read()

    cut = start(tile_dir, tmp_path / "cut", steps=12, every=3)
    wait_for(lambda: checkpoint_step(tmp_path / "cut") >= 3)
    cut.send_signal(signal.SIGKILL)  # at any moment: possibly in the middle of writing the next checkpoint
    cut.wait()
    killed_at = checkpoint_step(tmp_path / "cut")
    assert 3 <= killed_at < 12
    again = start(tile_dir, tmp_path / "cut", steps=12, every=3)
    assert again.wait(timeout=300) == 0, again.stderr.read()

    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 12
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["last.pt"]  # no temp file left


def test_sigterm_checkpoints_and_exits_for_requeue(tmp_path: Path, tile_dir: Path) -> None:
    run_dir = tmp_path / "pre"
    proc = start(tile_dir, run_dir, steps=400, every=1000)
    wait_for(lambda: (run_dir / "tb").is_dir())
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == Preempted.exit_code
    stderr = proc.stderr.read()
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    stopped = checkpoint_step(run_dir)
    assert 0 < stopped < 400
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == stopped


def test_non_finite_steps_are_skipped_then_stop(tmp_path: Path, tile_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    forward = SimSiam.forward

    def nan_at_steps(bad: set[int]):
        def patched(self, views, step):
            out = forward(self, views, step)
            return {**out, "loss": out["loss"] * float("nan")} if step in bad else out
        return patched

    def cfg(name: str, steps: int) -> PretrainConfig:
        over = tiny_overrides("simsiam", tile_dir, tmp_path / name, steps=steps) + ["train.max_bad_steps=2"]
        return load_config(PretrainConfig, None, over)

    monkeypatch.setattr(SimSiam, "forward", nan_at_steps({1, 2}))
    run_dir = run_pretrain(cfg("skip", 4))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["bad_steps"] == 2
    for value in load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"].values():
        assert torch.isfinite(value.float()).all()

    monkeypatch.setattr(SimSiam, "forward", nan_at_steps(set(range(100))))
    with pytest.raises(TrainingError, match=r"3 non-finite steps in a row .* last good checkpoint"):
        run_pretrain(cfg("stop", 10))


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path: Path, tile_dir: Path) -> None:
    from ssl_siam.errors import DataError

    over = tiny_overrides("simsiam", tile_dir, tmp_path / "arch", steps=1)
    run_pretrain(load_config(PretrainConfig, None, over))
    with pytest.raises(DataError, match="does not match this model"):
        run_pretrain(load_config(PretrainConfig, None, [*over, "model.backbone=resnet10t", "train.max_steps=2"]))


def test_skip_bad_tiles(tmp_path: Path, tile_dir: Path) -> None:
    import shutil

    import numpy as np
    import rasterio

    from ssl_siam.errors import DataError

    data = tmp_path / "tiles"
    shutil.copytree(tile_dir, data)
    bad = data / "zz_truncated.tif"
    noise = np.random.default_rng(0).integers(0, 255, (3, 512, 512), dtype=np.uint8)
    with rasterio.open(bad, "w", driver="GTiff", width=512, height=512, count=3, dtype="uint8", tiled=True,
                       blockxsize=128, blockysize=128, compress="deflate") as dst:
        dst.write(noise)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])  # opens, fails when read
    over = tiny_overrides("simsiam", data, tmp_path / "strict", steps=3)
    with pytest.raises(DataError, match="zz_truncated.tif"):
        run_pretrain(load_config(PretrainConfig, None, over))
    over = tiny_overrides("simsiam", data, tmp_path / "skip", steps=3) + ["data.skip_bad=true",
                                                                           "data.max_bad_fraction=0.9"]
    assert (run_pretrain(load_config(PretrainConfig, None, over)) / "encoder.safetensors").is_file()
    over = tiny_overrides("simsiam", data, tmp_path / "limit", steps=30) + ["data.skip_bad=true",
                                                                             "data.max_bad_fraction=0.001"]
    with pytest.raises(DataError, match="max_bad_fraction"):
        run_pretrain(load_config(PretrainConfig, None, over))
