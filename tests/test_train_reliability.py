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

from ssl_siam.core.config import load_config
from ssl_siam.core.errors import Preempted
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.ssl.run import run_pretrain
from ssl_siam.ssl.simsiam import SimSiam
from ssl_siam.train.checkpoint import load_checkpoint
from ssl_siam.train.loop import TrainingError

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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_checkpoints_and_exits_for_requeue(tmp_path: Path, tile_dir: Path,
                                                             sig: signal.Signals) -> None:
    run_dir = tmp_path / "pre"
    proc = start(tile_dir, run_dir, steps=400, every=1000)
    wait_for(lambda: (run_dir / "tb").is_dir())
    time.sleep(3)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == Preempted.exit_code
    stderr = proc.stderr.read()
    assert f"stopped by {sig.name}" in stderr and "Traceback" not in stderr
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


def test_non_finite_gradients_with_a_finite_loss_are_skipped(tmp_path: Path, tile_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """sqrt(|0·w|) is 0 but its gradient is NaN: the loss stays finite, the step must still be skipped."""
    forward = SimSiam.forward

    def nan_gradient(self, views, step):
        out = forward(self, views, step)
        if step != 1:
            return out
        weight = next(self.parameters())
        return {**out, "loss": out["loss"] + (weight.sum() * 0.0).abs().sqrt()}

    monkeypatch.setattr(SimSiam, "forward", nan_gradient)
    run_dir = run_pretrain(load_config(PretrainConfig, None, tiny_overrides("simsiam", tile_dir, tmp_path / "r", 3)))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["bad_steps"] == 1
    assert all(torch.isfinite(v.float()).all() for v in load_checkpoint(run_dir / "checkpoints" / "last.pt")
               ["model"].values())


def test_collapse_warns_or_stops(tmp_path: Path, tile_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A constant embedding (std·√d = 0) warns by default and stops the run with train.stop_on_collapse=true."""
    forward = SimSiam.forward

    def collapsed(self, views, step):
        out = forward(self, views, step)
        return {**out, "embedding": torch.ones_like(out["embedding"])}

    monkeypatch.setattr(SimSiam, "forward", collapsed)
    over = tiny_overrides("simsiam", tile_dir, tmp_path / "warn", steps=2)
    with pytest.warns(UserWarning, match="representation collapse suspected"):
        run_pretrain(load_config(PretrainConfig, None, over))
    metrics = json.loads((tmp_path / "warn" / "metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["collapse_std_relative"] == pytest.approx(0.0, abs=1e-6)
    over = tiny_overrides("simsiam", tile_dir, tmp_path / "stop", steps=4) + ["train.stop_on_collapse=true"]
    with pytest.raises(TrainingError, match=r"step 0: representation collapse .* last good checkpoint"):
        run_pretrain(load_config(PretrainConfig, None, over))


def test_stale_temp_checkpoint_of_a_killed_writer_is_removed(tmp_path: Path, tile_dir: Path) -> None:
    """kill -9 during a checkpoint write leaves `.last.pt.PID.tmp` beside the intact last.pt: the restart
    resumes from last.pt and deletes the leftover (and one named as older versions did, `.last.pt.tmp-PID`)."""
    over = tiny_overrides("simsiam", tile_dir, tmp_path / "run", steps=2)
    run_pretrain(load_config(PretrainConfig, None, over))
    leftovers = [tmp_path / "run" / "checkpoints" / name for name in (".last.pt.99999.tmp", ".last.pt.tmp-99998")]
    for leftover in leftovers:
        leftover.write_bytes(b"half a checkpoint")
    run_pretrain(load_config(PretrainConfig, None, [*over, "train.max_steps=3"]))
    assert not any(leftover.exists() for leftover in leftovers)
    assert checkpoint_step(tmp_path / "run") == 3


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path: Path, tile_dir: Path) -> None:
    from ssl_siam.core.errors import DataError

    over = tiny_overrides("simsiam", tile_dir, tmp_path / "arch", steps=1)
    run_pretrain(load_config(PretrainConfig, None, over))
    with pytest.raises(DataError, match=r"holds another run \(model.backbone=resnet18 → resnet10t\)"):
        run_pretrain(load_config(PretrainConfig, None, [*over, "model.backbone=resnet10t", "train.max_steps=2"]))


def test_skip_bad_tiles(tmp_path: Path, tile_dir: Path) -> None:
    import shutil

    import numpy as np
    import rasterio

    from ssl_siam.core.errors import DataError

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


# ---------------------------------------------------------------- checkpoints on a damaged or full disk
def test_corrupted_checkpoint_is_refused(tmp_path: Path) -> None:
    """A flipped byte inside a tensor payload (which torch.load would accept silently) fails the CRC check."""
    from ssl_siam.core.errors import DataError
    from ssl_siam.train.checkpoint import FORMAT, atomic_save

    path = tmp_path / "last.pt"
    atomic_save({"format": FORMAT, "step": 3, "model": {"w": torch.randn(256, 256)}}, path)
    assert load_checkpoint(path)["step"] == 3
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupted"):
        load_checkpoint(path)


class _Exploit:
    """Unpickling this would run a shell command: what weights_only loading must refuse."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoints_with_code_are_refused(tmp_path: Path) -> None:
    from ssl_siam.core.errors import DataError
    from ssl_siam.train.checkpoint import FORMAT

    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "step": 1, "payload": _Exploit()}, path)
    with pytest.raises(DataError, match="evil.pt is not a readable checkpoint"):
        load_checkpoint(path)


def test_disk_full_while_checkpointing_keeps_the_previous_one(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from ssl_siam.core.errors import DataError
    from ssl_siam.train import checkpoint

    path = tmp_path / "last.pt"
    checkpoint.atomic_save({"format": checkpoint.FORMAT, "step": 1}, path)

    def full_disk(obj: object, f: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(DataError, match=r"cannot write checkpoint .*last.pt \(No space left on device\); "
                                        r"the previous last.pt is kept"):
        checkpoint.atomic_save({"format": checkpoint.FORMAT, "step": 2}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_run_dir_unwritable_or_full_is_detected_before_training(tmp_path: Path, tile_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    from collections import namedtuple

    from ssl_siam.cli import main
    from ssl_siam.train import rundir

    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert main(["pretrain", *tiny_overrides("simsiam", tile_dir, blocker / "run")]) == 2
    assert "is not writable" in capsys.readouterr().err
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda _: usage(2**30, 2**30 - 2**23, 2**23))
    assert main(["pretrain", *tiny_overrides("simsiam", tile_dir, tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "only 8 MiB free" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


# ---------------------------------------------------------------- bad input: one line, exit code 2
@pytest.fixture(scope="module")
def xbd_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssl_siam.tools.synthetic import make_xbd_split

    split = tmp_path_factory.mktemp("bad-input") / "train"
    make_xbd_split(split, 2, size=128, seed=0)
    return split


def _png(path: Path, size: int = 96, bands: int = 3) -> Path:
    import numpy as np
    from PIL import Image

    data = np.random.default_rng(0).integers(0, 255, (size, size, bands), dtype=np.uint8)
    Image.fromarray(data.squeeze()).save(path)
    return path


def _tiles(tmp_path: Path, name: str, bad: str) -> Path:
    """A tile folder of good PNGs plus one bad file of kind ``bad``."""
    folder = tmp_path / name
    folder.mkdir()
    for i in range(4):
        _png(folder / f"ok_{i}.png")
    target = folder / {"truncated-png": "bad.png", "corrupt-png": "bad.png", "truncated-jpeg": "bad.jpg",
                       "truncated-tif": "bad.tif"}[bad]
    if bad == "corrupt-png":
        target.write_bytes(b"this is not an image at all")
    elif bad == "truncated-png":
        whole = _png(folder / "bad.png").read_bytes()
        target.write_bytes(whole[: len(whole) // 2])
    elif bad == "truncated-jpeg":
        from PIL import Image
        Image.open(_png(folder / "full.png")).save(target, quality=90)
        (folder / "full.png").unlink()
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        import numpy as np
        import rasterio
        with rasterio.open(target, "w", driver="GTiff", width=96, height=96, count=3, dtype="uint8") as dst:
            dst.write(np.random.default_rng(1).integers(0, 255, (3, 96, 96), dtype=np.uint8))
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    return folder


def _xbd_case(split: Path, tmp_path: Path, case: str) -> Path:
    """A copy of the split broken in one way."""
    import shutil

    copy = tmp_path / "split"
    shutil.copytree(split, copy)
    label = sorted((copy / "labels").glob("*_post_disaster.json"))[0]
    data = json.loads(label.read_text())
    if case == "not-json":
        label.write_text("{ not json")
    elif case == "no-xy":
        label.write_text(json.dumps({"features": {"lng_lat": []}, "metadata": data.get("metadata", {})}))
    elif case == "bad-wkt":
        data["features"]["xy"][0]["wkt"] = "POLYGON ((0 0, 10"
        label.write_text(json.dumps(data))
    elif case == "unknown-subtype":
        data["features"]["xy"][0]["properties"]["subtype"] = "obliterated"
        label.write_text(json.dumps(data))
    elif case == "size-mismatch":
        post = sorted((copy / "images").glob("*_post_disaster.png"))[0]
        _png(post, size=64)
    return copy


BAD_TILES = [("truncated-png", "bad.png: truncated PNG"), ("corrupt-png", "bad.png: cannot open as a raster image"),
             ("truncated-jpeg", "bad.jpg: cannot read window"), ("truncated-tif", "bad.tif: cannot")]
BAD_LABELS = [("not-json", "_post_disaster.json"), ("no-xy", "features.xy"), ("bad-wkt", "WKT"),
              ("unknown-subtype", "obliterated"), ("size-mismatch", "size")]


def _one_line_exit_2(argv: list[str], expected: str, capsys: pytest.CaptureFixture) -> None:
    from ssl_siam.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err


@pytest.mark.parametrize(("bad", "expected"), BAD_TILES)
def test_bad_tile_files(tmp_path: Path, capsys: pytest.CaptureFixture, bad: str, expected: str) -> None:
    folder = _tiles(tmp_path, "tiles", bad)
    over = [o for o in tiny_overrides("simsiam", folder, tmp_path / "run", steps=2) if "stats_samples" not in o]
    _one_line_exit_2(["pretrain", *over, "data.stats_samples=64", "data.tile_size=32"], expected, capsys)


@pytest.mark.parametrize(("case", "expected"), BAD_LABELS)
def test_bad_xbd_labels_and_pairs(tmp_path: Path, xbd_pairs: Path, capsys: pytest.CaptureFixture, case: str,
                                  expected: str) -> None:
    split = _xbd_case(xbd_pairs, tmp_path, case)
    _one_line_exit_2(["finetune", f"data.root={split}", f"run_dir={tmp_path / 'run'}", "model.backbone=resnet18",
                      "train.device=cpu", "data.num_workers=0", "train.max_steps=1"], expected, capsys)


def test_bad_inputs_of_every_command(tmp_path: Path, tile_dir: Path, xbd_pairs: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    """The remaining cases of the contract, each a one-line error naming the file or key."""
    from ssl_siam.encoders import EncoderMeta, create_encoder, export_encoder

    (tmp_path / "empty").mkdir()
    tiny = tiny_overrides("simsiam", tile_dir, tmp_path / "r", steps=1)
    cases = [
        (["pretrain", *tiny_overrides("simsiam", tmp_path / "empty", tmp_path / "r1")], "empty"),
        (["pretrain", *tiny_overrides("simsiam", tmp_path / "missing", tmp_path / "r2")], "missing"),
        (["pretrain", *tiny, "train.batch_sise=4"], "train.batch_sise"),
        (["pretrain", *tiny, "train.batch_size=four"], "train.batch_size"),
        (["finetune", f"data.root={tmp_path / 'empty'}", f"run_dir={tmp_path / 'r3'}"], "empty"),
    ]
    for argv, expected in cases:
        _one_line_exit_2(argv, expected, capsys)

    # an encoder for 4 bands on 3-band data
    four = tmp_path / "enc4"
    export_encoder(create_encoder("resnet18", 4), four, EncoderMeta("resnet18", 4))
    _one_line_exit_2(["finetune", f"data.root={xbd_pairs}", f"run_dir={tmp_path / 'r4'}", "model.backbone=resnet18",
                      f"model.encoder_weights={four}", "train.device=cpu", "data.num_workers=0",
                      "train.max_steps=1", "data.stats_samples=4"], "4 bands", capsys)
    # a GeoTIFF pair whose post image is in another CRS
    import numpy as np
    import rasterio

    geo = tmp_path / "geo"
    (geo / "images").mkdir(parents=True)
    label = sorted((xbd_pairs / "labels").glob("*_post_disaster.json"))[0]
    image_id = label.name.removesuffix("_post_disaster.json")
    (geo / "labels").mkdir()
    for phase, crs in (("pre", "EPSG:32636"), ("post", "EPSG:32637")):
        (geo / "labels" / f"{image_id}_{phase}_disaster.json").write_text(
            (xbd_pairs / "labels" / f"{image_id}_{phase}_disaster.json").read_text())
        with rasterio.open(geo / "images" / f"{image_id}_{phase}_disaster.tif", "w", driver="GTiff", width=128,
                           height=128, count=3, dtype="uint8", crs=crs,
                           transform=rasterio.Affine(0.5, 0, 500_000, 0, -0.5, 4_000_000)) as dst:
            dst.write(np.zeros((3, 128, 128), np.uint8))
    _one_line_exit_2(["finetune", f"data.root={geo}", f"run_dir={tmp_path / 'r5'}", "train.device=cpu"],
                     "pre and post must share a CRS", capsys)
    # a checkpoint that is not one, and one of pretraining given to predict
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    pre = _png(tmp_path / "pre.png", size=96)
    argv = ["predict", "--pre", str(pre), "--post", str(pre), "--out", str(tmp_path / "p"), "--device", "cpu"]
    _one_line_exit_2([*argv, "--ckpt", str(junk)], "junk.pt", capsys)
    from ssl_siam.ssl.run import run_pretrain
    run_pretrain(load_config(PretrainConfig, None, tiny))
    _one_line_exit_2([*argv, "--ckpt", str(tmp_path / "r" / "checkpoints" / "last.pt")],
                     "is a pretrain checkpoint, expected a finetune checkpoint", capsys)


def test_a_second_process_on_the_same_run_dir_is_refused(tmp_path: Path, tile_dir: Path) -> None:
    """Two real processes on one run_dir: the second exits 2 with one line naming the first, which finishes with
    exactly the checkpoint of a run that was alone (pausing it does not change the run)."""
    steps = 24
    solo = start(tile_dir, tmp_path / "solo", steps=steps, every=6)
    assert solo.wait(timeout=300) == 0, solo.stderr.read()
    first = start(tile_dir, tmp_path / "shared", steps=steps, every=6)
    lock = tmp_path / "shared" / ".lock"
    wait_for(lambda: lock.is_file() and f"pid {first.pid} " in lock.read_text())  # the first holds the run dir
    # paused while the second starts, so a slow machine cannot let the first finish (and release) first
    first.send_signal(signal.SIGSTOP)
    try:
        second = start(tile_dir, tmp_path / "shared", steps=steps, every=6)
        assert second.wait(timeout=300) == 2
        assert first.poll() is None  # still mid-run when the second was refused
    finally:
        first.send_signal(signal.SIGCONT)
    err = second.stderr.read().strip()
    assert len(err.splitlines()) == 1 and f"is in use by ssl-siam pid {first.pid}" in err, err
    assert first.wait(timeout=300) == 0, first.stderr.read()
    a = load_checkpoint(tmp_path / "solo" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "shared" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == steps
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_a_run_that_skips_most_steps_does_not_exit_0(tmp_path: Path, tile_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every other step non-finite (never more than max_bad_steps in a row), 3 of 4 overall: the run ends with an
    error instead of exporting an untrained encoder."""
    original = SimSiam.forward

    def mostly_nan(self, views, step):
        out = original(self, views, step)
        return {**out, "loss": out["loss"] * float("nan")} if step != 2 else out

    monkeypatch.setattr(SimSiam, "forward", mostly_nan)
    cfg = load_config(PretrainConfig, None, tiny_overrides("simsiam", tile_dir, tmp_path / "r", steps=4)
                      + ["train.max_bad_steps=10"])
    with pytest.raises(TrainingError, match="3 of 4 steps were skipped as non-finite"):
        run_pretrain(cfg)
    assert not (tmp_path / "r" / "encoder.safetensors").exists()
