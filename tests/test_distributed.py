"""torchrun with 2 CPU processes (gloo) equals one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from conftest import ROOT, tiny_overrides

from ssl_siam.checkpoint import load_checkpoint

# DINO on a ViT (LayerNorm, no BatchNorm) with deterministic views: the only difference between the two runs is
# how the global batch is split, so DDP gradient averaging, sharding and DINO's cross-rank centre must match.
DETERMINISTIC = ["model.backbone=vit_tiny_patch16_224", "model.timm_kwargs={img_size: 32, patch_size: 8, "
                 "dynamic_img_size: true}", "data.tile_size=32", "augment.global_size=32", "augment.local_size=16",
                 "augment.n_local=2", "augment.global_scale=[1,1]", "augment.local_scale=[1,1]",
                 "augment.flip_p=0", "augment.rot90=false", "augment.jitter_p=0",
                 "augment.grayscale_p=0", "augment.blur_p=[0,0]", "augment.local_blur_p=0",
                 "augment.solarize_p=[0,0]", "optim.name=sgd", "optim.lr=0.05", "train.checkpoint_every=100"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_equal_one(tmp_path: Path, tile_dir: Path) -> None:
    def overrides(name: str, batch: int) -> list[str]:
        return [*tiny_overrides("dino", tile_dir, tmp_path / name, steps=3), *DETERMINISTIC,
                f"train.batch_size={batch}"]

    run([sys.executable, "pretrain/pretrain.py", *overrides("one", 8)])
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
         "pretrain/pretrain.py", *overrides("two", 4)])

    one, two = (load_checkpoint(tmp_path / n / "checkpoints" / "last.pt") for n in ("one", "two"))
    assert one["step"] == two["step"] == 3
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    losses = [[h["loss"] for h in json.loads((tmp_path / n / "metrics.json").read_text())["history"]]
              for n in ("one", "two")]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-4, atol=1e-5)
    assert [p.name for p in (tmp_path / "two" / "checkpoints").iterdir()] == ["last.pt"]  # rank 0 wrote once
