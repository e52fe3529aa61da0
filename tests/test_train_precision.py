"""Mixed precision and channels_last: the CUDA code paths, run here under CPU autocast.

``train.precision`` and ``train.channels_last`` apply on the devices in ``runtime.ACCELERATED`` (CUDA); the tests
add CPU to it, so every objective, finetuning (with its sharded validator) and metric learning run their real
bf16/fp16 autocast and channels_last paths on this machine, and are compared with the fp32 run of the same seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_overrides
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from PIL import Image

from ssl_siam.change import sliding
from ssl_siam.cli import main
from ssl_siam.core.config import load_config
from ssl_siam.ssl.base import fp32_loss
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.ssl.dino import multicrop_forward
from ssl_siam.ssl.run import build_pretraining
from ssl_siam.tools.synthetic import make_xbd_split
from ssl_siam.train import runtime
from ssl_siam.train.launch import prepare

CPU = torch.device("cpu")


@pytest.fixture
def cpu_accelerated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "ACCELERATED", ("cuda", "cpu"))


def test_policy_applies_on_cuda_only() -> None:
    cuda = torch.device("cuda", 0)
    assert runtime.autocast_dtype(cuda, "bf16") is torch.bfloat16
    assert runtime.autocast_dtype(cuda, "fp16") is torch.float16
    assert runtime.autocast_dtype(cuda, "fp32") is None
    assert runtime.autocast_dtype(CPU, "bf16") is None  # CPU runs fp32
    assert runtime.memory_format(cuda, True) is torch.channels_last
    assert runtime.memory_format(cuda, False) is torch.contiguous_format
    assert runtime.memory_format(CPU, True) is torch.contiguous_format
    made = runtime.Runtime.create("cpu", "bf16", channels_last=True)
    assert (made.amp_dtype, made.memory_format) == (None, torch.contiguous_format)


def test_cpu_bf16_is_opt_in() -> None:
    """train.cpu_bf16: bf16 autocast on the CPU whatever train.precision says (fp32 without it)."""
    from ssl_siam.train.config import TrainConfig

    assert runtime.autocast_dtype(CPU, "fp32", cpu_bf16=True) is torch.bfloat16
    assert runtime.autocast_dtype(torch.device("cuda", 0), "fp16", cpu_bf16=True) is torch.float16
    assert runtime.Runtime.for_training(TrainConfig(device="cpu")).amp_dtype is None
    made = runtime.Runtime.for_training(TrainConfig(device="cpu", cpu_bf16=True))
    assert (made.amp_dtype, made.memory_format) == (torch.bfloat16, torch.contiguous_format)


def test_fp32_loss_is_immune_to_autocast() -> None:
    gen = torch.Generator().manual_seed(0)
    teacher = [torch.randn(8, 256, generator=gen) for _ in range(2)]
    student = [torch.randn(8, 256, generator=gen) for _ in range(6)]
    exact = DINOLoss(output_dim=256)(teacher, student, teacher_temp=0.04)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = DINOLoss(output_dim=256)(teacher, student, teacher_temp=0.04)  # einsum runs as a bf16 matmul
        ours = fp32_loss(DINOLoss(output_dim=256), teacher, student, teacher_temp=0.04)
        bf16_inputs = fp32_loss(DINOLoss(output_dim=256), [t.bfloat16() for t in teacher], student, teacher_temp=0.04)
    assert rounded.dtype is torch.bfloat16 and abs(rounded.item() - exact.item()) > 1e-3
    assert ours.dtype is torch.float32 and ours.item() == pytest.approx(exact.item(), abs=1e-6)
    assert bf16_inputs.dtype is torch.float32


def test_dino_last_layer_runs_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 32))
    head = DINOProjectionHead(32, 64, 16, 256)
    views = [torch.randn(4, 3, 8, 8) for _ in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, bottleneck = multicrop_forward(backbone, head, views)
        assert head.last_layer(bottleneck).dtype is torch.bfloat16  # what the head alone would give
    assert all(o.dtype is torch.float32 for o in outputs) and bottleneck.dtype is torch.bfloat16
    torch.testing.assert_close(outputs[0], head.last_layer(bottleneck.float()), rtol=0, atol=0)


def first_step(objective: str, tile_dir: Path, run_dir: Path, precision: str) -> tuple[float, dict[str, object]]:
    """Loss of optimizer step 0, and what the encoder's first convolution saw and produced."""
    overrides = [*tiny_overrides(objective, tile_dir, run_dir), f"train.precision={precision}"]
    cfg = load_config(PretrainConfig, None, overrides)
    session = prepare(cfg, objective, build_pretraining)  # seeds: same initial weights for every precision
    trainer, task = session.trainer, session.built.task
    seen: dict[str, object] = {}

    def hook(module: torch.nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
        seen.setdefault("channels_last", args[0].is_contiguous(memory_format=torch.channels_last))
        seen.setdefault("out_dtype", out.dtype)

    conv = next(m for m in task.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(hook)
    outputs, applied = trainer.train_step(trainer.batches(), 0)
    assert applied
    seen["param_dtypes"] = {p.dtype for p in task.parameters()}
    seen["params_finite"] = all(torch.isfinite(p).all() for p in task.parameters())
    return outputs["loss"], seen


@pytest.mark.parametrize(("objective", "precision", "tol"), [("simsiam", "bf16", 0.01), ("byol", "bf16", 0.05),
                                                              ("dino", "bf16", 0.05), ("simsiam", "fp16", 0.01)])
def test_objective_step_under_autocast_and_channels_last(cpu_accelerated: None, tile_dir: Path, tmp_path: Path,
                                                         objective: str, precision: str, tol: float) -> None:
    loss, seen = first_step(objective, tile_dir, tmp_path / precision, precision)
    reference, plain = first_step(objective, tile_dir, tmp_path / "fp32", "fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    assert seen["out_dtype"] is dtype and seen["channels_last"] is True
    assert plain["out_dtype"] is torch.float32
    assert seen["param_dtypes"] == {torch.float32} and seen["params_finite"]  # fp32 master weights
    assert abs(loss - reference) < tol, (loss, reference)  # same views, same init: only rounding differs


@pytest.fixture(scope="module")
def xbd_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xbd") / "train"
    make_xbd_split(root, 6, size=128, seed=0)
    return root


def finetune_losses(split: Path, run: Path, precision: str) -> dict:
    code = main(["finetune", f"data.root={split}", f"run_dir={run}", "model.backbone=resnet18", "data.crop_size=64",
                 "train.batch_size=2", "train.max_steps=3", "train.val_every=3", "train.device=cpu",
                 "data.num_workers=0", "train.progress=false", "train.log_every=1", "data.stats_samples=8",
                 "data.val_fraction=0.34", "model.decoder_channels=[32,16,16,8,8]", "optim.warmup_steps=0",
                 "model.fusion=learned", f"train.precision={precision}"])
    assert code == 0
    return json.loads((run / "metrics.json").read_text())


def test_finetune_validation_and_predict_under_bf16(cpu_accelerated: None, xbd_split: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bf16 = finetune_losses(xbd_split, tmp_path / "bf16", "bf16")
    fp32 = finetune_losses(xbd_split, tmp_path / "fp32", "fp32")
    assert bf16["history"][0]["loss"] == pytest.approx(fp32["history"][0]["loss"], rel=0.02)
    assert all(np.isfinite(h["loss"]) for h in bf16["history"])
    assert bf16["val"]["images"] == 2 and 0 <= bf16["val"]["score"] <= 1  # validation ran under autocast too

    dtypes = []
    window_probs = sliding._window_probs
    monkeypatch.setattr(sliding, "_window_probs", lambda *a: dtypes.append(a[-1]) or window_probs(*a))
    maps = {}
    for name, accelerated in (("bf16", ("cuda", "cpu")), ("fp32", ("cuda",))):  # the bf16 run's checkpoint
        monkeypatch.setattr(runtime, "ACCELERATED", accelerated)
        out = tmp_path / f"predict_{name}"
        assert main(["predict", "--ckpt", str(tmp_path / "bf16" / "checkpoints" / "last.pt"), "--data",
                     str(xbd_split), "--out", str(out), "--device", "cpu", "--window", "64"]) == 0
        maps[name] = np.stack([np.asarray(Image.open(f)) for f in sorted(out.glob("*_damage_prediction.png"))])
    assert set(dtypes) == {torch.bfloat16, None}
    assert maps["bf16"].shape == maps["fp32"].shape and (maps["bf16"] == maps["fp32"]).mean() > 0.98


def test_metric_learning_under_bf16(cpu_accelerated: None, tmp_path: Path) -> None:
    split = tmp_path / "xbd"
    make_xbd_split(split, 4, size=128, seed=1)
    losses = {}
    for precision in ("bf16", "fp32"):
        run = tmp_path / precision
        assert main(["metric-train", "--config", "demo/metric_resnet18", f"data.root={split}",
                     f"run_dir={run}", "train.batch_size=8", "train.max_steps=2", "data.crop_size=32",
                     "data.num_workers=0", "data.stats_samples=4", "train.progress=false", "train.log_every=1",
                     "optim.warmup_steps=0", f"train.precision={precision}"]) == 0
        losses[precision] = [h["loss"] for h in json.loads((run / "metrics.json").read_text())["history"]]
    assert losses["bf16"][0] == pytest.approx(losses["fp32"][0], rel=0.03)
    assert np.isfinite(losses["bf16"]).all()
