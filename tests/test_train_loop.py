"""The shared loop: schedules, checkpoint → resume equals an uninterrupted run, atomic checkpoints."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import killed_after_first_checkpoint, tiny_overrides

from ssl_siam.core.config import load_config
from ssl_siam.core.errors import DataError, UserError
from ssl_siam.data.sampling import ResumableSampler
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.ssl.run import run_pretrain
from ssl_siam.train.checkpoint import atomic_save, load_checkpoint
from ssl_siam.train.loop import Trainer
from ssl_siam.train.optim import lr_at


def test_lr_schedule_is_warmup_then_cosine() -> None:
    assert lr_at(0, 100, 1.0, 10, 0.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10, 0.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 10, 0.0) == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)


def test_sampler_resumes_mid_epoch_and_shards() -> None:
    full = ResumableSampler(20, 4, seed=3)
    full.set_epoch(1)
    order = list(full)
    assert len(order) == 20 and sorted(i - 20 for i in order) == list(range(20))
    full.set_epoch(1, start_batch=2)
    assert list(full) == order[8:]
    ranks = [ResumableSampler(20, 2, seed=3, rank=r, num_replicas=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    a, b = (set(s) for s in ranks)
    assert not a & b and len(a) == len(b) == 10


def run(tmp_path: Path, tile_dir: Path, name: str, objective: str, steps: int = 6, **extra: object) -> Path:
    over = tiny_overrides(objective, tile_dir, tmp_path / name, steps=steps) + ["train.checkpoint_every=3"]
    over += [f"{k}={v}" for k, v in extra.items()]
    return run_pretrain(load_config(PretrainConfig, None, over))


@pytest.mark.parametrize("objective", ["simsiam", "dino"])
def test_resume_equals_uninterrupted(tmp_path: Path, tile_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                     objective: str) -> None:
    extra = {"augment.n_local": 2} if objective == "dino" else {}
    full = run(tmp_path, tile_dir, "full", objective, **extra)

    killed_after_first_checkpoint(monkeypatch, lambda: run(tmp_path, tile_dir, "cut", objective, **extra))
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 3  # killed after step 3
    resumed = run(tmp_path, tile_dir, "cut", objective, **extra)  # same run_dir → resumes

    a = load_checkpoint(full / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    losses = lambda d: [h["loss"] for h in json.loads((d / "metrics.json").read_text())["history"]]  # noqa: E731
    assert losses(full) == losses(resumed)


def test_run_dir_contents_and_metrics(tmp_path: Path, tile_dir: Path) -> None:
    run_dir = run(tmp_path, tile_dir, "r", "byol", steps=3)
    for name in ("config.yaml", "checkpoints/last.pt", "encoder.safetensors", "encoder.json", "metrics.json",
                 "stats.json"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["collapse_std"] > 0 and "loss" in metrics and "momentum" in metrics
    # the saved config relaunches the same run: it resumes, finds it finished, and keeps the step
    again = run_pretrain(load_config(PretrainConfig, run_dir / "config.yaml"))
    assert load_checkpoint(again / "checkpoints" / "last.pt")["step"] == 3


def test_resume_flags(tmp_path: Path, tile_dir: Path) -> None:
    with pytest.raises(UserError, match="resume=true"):
        run(tmp_path, tile_dir, "none", "simsiam", resume="true")
    run(tmp_path, tile_dir, "done", "simsiam", steps=1)
    with pytest.raises(UserError, match="already holds"):
        run(tmp_path, tile_dir, "done", "simsiam", steps=1, resume="false")


def test_checkpoint_files(tmp_path: Path) -> None:
    path = tmp_path / "ck" / "last.pt"
    atomic_save({"format": "ssl-siam-checkpoint", "step": 1}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    path.write_bytes(path.read_bytes()[:20])  # truncated
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(DataError, match="not an ssl-siam checkpoint"):
        load_checkpoint(path)


def test_normalization_from_config(tmp_path: Path, tile_dir: Path) -> None:
    norm = "{low: [0, 0, 0], high: [255, 255, 255], mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}"
    run_dir = run(tmp_path, tile_dir, "n", "simsiam", steps=1, **{"data.normalization": norm})
    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["high"] == [255.0, 255.0, 255.0] and stats["std"] == [0.2, 0.2, 0.2]
    with pytest.raises(UserError, match="data.normalization"):
        run(tmp_path, tile_dir, "n2", "simsiam", steps=1, **{"data.normalization": "{low: [0], high: [1]}"})


def test_knn_monitor_logs_and_keeps_best(tmp_path: Path, tile_dir: Path) -> None:
    from ssl_siam.tools.synthetic import make_xbd_split

    make_xbd_split(tmp_path / "a" / "train", 2, size=96, seed=0, disaster="storm-a")
    make_xbd_split(tmp_path / "b" / "train", 2, size=96, seed=1, disaster="storm-b")
    run_dir = run(tmp_path, tile_dir, "knn", "simsiam", steps=4, **{
        "knn.data": f"[{tmp_path / 'a' / 'train'},{tmp_path / 'b' / 'train'}]", "knn.dataset": "xbd-crops",
        "knn.crop_size": 32, "knn.k": 3, "knn.every_epochs": 0.25})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [v["step"] for v in metrics["val_history"]] == [2, 4]  # 8 batches per epoch × 0.25
    assert all(0.0 <= v["knn_top1"] <= 1.0 for v in metrics["val_history"])
    assert metrics["best_knn_top1"] == max(v["knn_top1"] for v in metrics["val_history"])
    assert (run_dir / "checkpoints" / "best.pt").is_file()


def test_compiled_backbones_train_like_eager_ones(tmp_path: Path, tile_dir: Path) -> None:
    """train.compile=true: torch.compile (inductor) on the backbone only; same losses as eager, and the checkpoint
    has the eager key names, so compiled and eager runs resume each other."""
    def losses(name: str, *extra: str) -> list[float]:
        over = [*tiny_overrides("simsiam", tile_dir, tmp_path / name, steps=2), "augment.global_size=32", *extra]
        run_pretrain(load_config(PretrainConfig, None, over))
        return [h["loss"] for h in json.loads((tmp_path / name / "metrics.json").read_text())["history"]]

    from torch._dynamo.utils import counters

    eager = losses("eager")
    counters.clear()
    compiled = losses("compiled", "train.compile=true")
    assert counters["stats"]["unique_graphs"] >= 1  # the backbone really went through dynamo
    assert compiled == pytest.approx(eager, rel=1e-3, abs=1e-4)
    keys = [set(load_checkpoint(tmp_path / n / "checkpoints" / "last.pt")["model"]) for n in ("eager", "compiled")]
    assert keys[0] == keys[1]


def test_sync_bn_without_cuda_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from ssl_siam.core.errors import ConfigError
    from ssl_siam.train import runtime
    from ssl_siam.train.config import TrainConfig
    from ssl_siam.train.distributed import World

    monkeypatch.setattr(runtime, "init_distributed", lambda device: (World(0, 2), device))  # as under torchrun
    with pytest.raises(ConfigError, match="train.sync_bn=true needs CUDA"):
        runtime.Runtime.for_training(TrainConfig(device="cpu", sync_bn=True))


def test_checkpoint_kind_is_stored_and_checked(tmp_path: Path) -> None:
    from ssl_siam.train.checkpoint import checkpoint_kind

    path = tmp_path / "last.pt"
    atomic_save({"format": "ssl-siam-checkpoint", "kind": "metric", "extra": {}}, path)
    assert load_checkpoint(path, kind="metric")["kind"] == "metric"
    with pytest.raises(DataError, match="is a metric checkpoint, expected a finetune checkpoint"):
        load_checkpoint(path, kind="finetune")
    # checkpoints written before kinds were stored are recognised by their extra
    assert checkpoint_kind({"extra": {"pre_stats": {}, "post_stats": {}}}) == "finetune"
    assert checkpoint_kind({"extra": {"mining": "none", "stats": {}}}) == "metric"
    assert checkpoint_kind({"extra": {}}) == "pretrain"


def test_resuming_a_run_dir_of_another_training_is_refused(tmp_path: Path, tile_dir: Path) -> None:
    run_dir = run(tmp_path, tile_dir, "r", "simsiam", steps=1)
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["kind"] == "pretrain"
    atomic_save({**ckpt, "kind": "finetune"}, run_dir / "checkpoints" / "last.pt")
    with pytest.raises(DataError, match="is a finetune checkpoint, this run is pretrain"):
        run(tmp_path, tile_dir, "r", "simsiam", steps=2)


def test_without_a_terminal_a_line_every_log_every_steps(tmp_path: Path, tile_dir: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ssl_siam.train.loop")
    run(tmp_path, tile_dir, "log", "simsiam", steps=5, **{"train.log_every": 2})  # train.progress=false
    lines = [r.getMessage() for r in caplog.records if r.name == "ssl_siam.train.loop"]
    line_format = r"step \d/5: loss -?\d+\.\d{4}, lr \S+, \d+\.\d samples/s"
    progress = [line for line in lines if re.fullmatch(line_format, line)]
    assert [line.split(":")[0] for line in progress] == ["step 2/5", "step 4/5", "step 5/5"], lines


@pytest.mark.parametrize("interval", ["train.val_every=100", "data.samples_per_epoch=200"])
def test_a_run_shorter_than_its_validation_interval_validates_at_its_end(
        tmp_path: Path, interval: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Validation every 100 steps, or once per 100-step epoch, in a 3-step run whose last step is skipped
    (non-finite): the end still validates, logs the metrics and checkpoints."""
    from test_change_layouts import TINY

    from ssl_siam.cli import main
    from ssl_siam.tools.scenes import make_levir_split

    original = Trainer.train_step

    def skip_last(self: Trainer, batches: Iterator[Any], step: int) -> tuple[dict[str, Any], bool]:
        out, applied = original(self, batches, step)
        return out, applied and step < self.total_steps - 1

    monkeypatch.setattr(Trainer, "train_step", skip_last)
    caplog.set_level(logging.INFO, logger="ssl_siam.train.loop")
    make_levir_split(tmp_path / "data", 3, size=64, seed=0)
    run_dir = tmp_path / "run"
    with pytest.warns(UserWarning, match="step 2: non-finite"):
        assert main(["finetune", "task=binary", f"data.root={tmp_path / 'data'}", f"run_dir={run_dir}", *TINY,
                     "train.max_steps=3", "data.val_window=64", "data.val_fraction=0.34", interval]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [v["step"] for v in metrics["val_history"]] == [3] and metrics["step"] == 3 and "f1" in metrics["val"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 3
    assert any(r.getMessage().startswith("step 3/3 validation: precision") for r in caplog.records)
