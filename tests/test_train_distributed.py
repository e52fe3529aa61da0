"""torchrun with 2 CPU processes (gloo) equals one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, tiny_overrides

from ssl_siam.train.checkpoint import load_checkpoint

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


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def run_two(launcher: str, script: list[str]) -> None:
    """``script`` as 2 processes: torchrun on one node, torchrun on 2 "nodes" (one process each, static
    rendezvous: every process has LOCAL_RANK 0), or as srun starts tasks (SLURM_* variables, no torchrun)."""
    port = free_port()
    if launcher == "torchrun":
        run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", *script])
        return
    procs = []
    for rank in range(2):
        if launcher == "two-nodes":
            cmd, env = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
                        "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}", *script], ENV
        else:  # srun on 2 nodes × 1 task
            cmd = [sys.executable, *script]
            env = {**ENV, "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0", "SLURM_NTASKS": "2",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                      cwd=ROOT))
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]


@pytest.mark.parametrize(("launcher", "accumulate"), [("torchrun", 1), ("torchrun", 2), ("two-nodes", 1),
                                                      ("srun", 1)])
def test_two_processes_equal_one(tmp_path: Path, tile_dir: Path, launcher: str, accumulate: int) -> None:
    """Global micro-batch 8 / accumulate (one process) vs half of it on each of 2 processes; with accumulation
    the DDP all-reduce is skipped (no_sync) on all but the last micro-batch."""
    def overrides(name: str, batch: int) -> list[str]:
        return [*tiny_overrides("dino", tile_dir, tmp_path / name, steps=3), *DETERMINISTIC,
                f"train.batch_size={batch}", f"train.accumulate={accumulate}"]

    run([sys.executable, "pretrain/pretrain.py", *overrides("one", 8 // accumulate)])
    run_two(launcher, ["pretrain/pretrain.py", *overrides("two", 4 // accumulate)])

    one, two = (load_checkpoint(tmp_path / n / "checkpoints" / "last.pt") for n in ("one", "two"))
    assert one["step"] == two["step"] == 3
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    losses = [[h["loss"] for h in json.loads((tmp_path / n / "metrics.json").read_text())["history"]]
              for n in ("one", "two")]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-4, atol=1e-5)
    assert [p.name for p in (tmp_path / "two" / "checkpoints").iterdir()] == ["last.pt"]  # rank 0 wrote once


class _PixelModel(torch.nn.Module):
    """A fixed 1×1 convolution over (pre, post): cheap, deterministic, and its maps hit and miss buildings."""

    output_stride = 32

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(6, 5, 1)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            self.conv.weight.copy_(torch.randn(5, 6, 1, 1, generator=generator))
            self.conv.bias.copy_(torch.randn(5, generator=generator))

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.conv(torch.cat([pre, post], dim=1))}


def _validate(rank: int, size: int, port: int, split: str, out: str) -> None:
    """Score the split's pairs with the xView2 validator as rank ``rank`` of ``size`` (gloo)."""
    import torch.distributed as dist

    from ssl_siam.change.tasks.damage import XView2Validator
    from ssl_siam.change.training import FinetuneTask
    from ssl_siam.data.pair_crops import PairCropDataset
    from ssl_siam.data.stats import BandStats
    from ssl_siam.data.xbd.pairs import find_pairs
    from ssl_siam.data.xbd.targets import ensure_targets
    from ssl_siam.train.distributed import World
    from ssl_siam.train.runtime import Runtime

    if size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=size)
    records = ensure_targets(find_pairs([Path(split)])[0], Path(out).parent / f"targets{size}",
                             unclassified="ignore", ignore_index=255)
    stats = BandStats([0.0] * 3, [255.0] * 3, [0.5] * 3, [0.25] * 3)
    task = FinetuneTask(_PixelModel(), torch.nn.Identity(), stats, stats)
    dataset = PairCropDataset(records, None, train=False)
    runtime = Runtime(torch.device("cpu"), World(rank, size))
    metrics = XView2Validator(task, dataset, runtime, 64, False, 255)()
    if rank == 0:
        Path(out).write_text(json.dumps(metrics))
    if size > 1:
        dist.destroy_process_group()


def test_xview2_validation_sums_counts_across_ranks(tmp_path: Path) -> None:
    """3 images over 2 ranks (2 + 1): the summed TP/FP/FN give exactly the single-process score."""
    import torch.multiprocessing as mp

    from ssl_siam.tools.synthetic import make_xbd_split

    split = tmp_path / "val"
    make_xbd_split(split, 3, size=64, seed=1)
    _validate(0, 1, 0, str(split), str(tmp_path / "one.json"))
    mp.spawn(_validate, args=(2, free_port(), str(split), str(tmp_path / "two.json")), nprocs=2)
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert 0 < one["localization_f1"] < 1
    assert two == one
    assert one["images"] == 3  # each image scored once, on one rank


def _mining_points() -> tuple[torch.Tensor, torch.Tensor]:
    """8 points of 4 places (2 each); rank r holds rows 4r..4r+3, so hardest negatives often live on the other rank."""
    points = torch.randn(8, 3, generator=torch.Generator().manual_seed(3))
    return points, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def _mining_losses(embeddings: torch.Tensor, labels: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    from ssl_siam.metric_learning.losses import TripletLoss, distance_matrix
    from ssl_siam.metric_learning.mining import mine_triplets

    a, p, n = mine_triplets(distance_matrix(embeddings.detach(), "euclidean"), labels, "batch-hard")
    a, p, n = (t[local[a]] for t in (a, p, n))
    return TripletLoss(margin=1.0)(embeddings[a], embeddings[p], embeddings[n])[0]


def _gather_worker(rank: int, size: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from ssl_siam.metric_learning.mining import gather_batch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=size)
    points, labels = _mining_points()
    mine = points[4 * rank:4 * rank + 4].clone().requires_grad_()
    embeddings, all_labels, local = gather_batch(mine, labels[4 * rank:4 * rank + 4])
    assert torch.equal(all_labels, labels) and int(local.sum()) == 4
    _mining_losses(embeddings, all_labels, local).backward()
    torch.save(mine.grad, Path(out) / f"grad{rank}.pt")
    dist.destroy_process_group()


def test_mining_across_ranks_equals_one_process(tmp_path: Path) -> None:
    """loss.gather: each rank mines its own anchors among every rank's embeddings; the gradients that reach each
    rank's rows equal those of one process summing both ranks' losses over all 8 embeddings."""
    import torch.multiprocessing as mp

    points, labels = _mining_points()
    reference = points.clone().requires_grad_()
    blocks = [torch.arange(8) // 4 == r for r in range(2)]
    sum(_mining_losses(reference, labels, block) for block in blocks).backward()
    mp.spawn(_gather_worker, args=(2, free_port(), str(tmp_path)), nprocs=2)
    gathered = torch.cat([torch.load(tmp_path / f"grad{r}.pt") for r in range(2)])
    torch.testing.assert_close(gathered, reference.grad)
    assert reference.grad[4:].abs().sum() > 0 and reference.grad[:4].abs().sum() > 0


def test_finetune_under_torchrun(tmp_path: Path) -> None:
    """finetune/finetune.py unchanged under torchrun (2 gloo processes): trains, validates every held-out image once
    across the ranks, rank 0 writes the checkpoints."""
    from ssl_siam.tools.synthetic import make_xbd_split

    make_xbd_split(tmp_path / "train", 4, size=96, seed=0)
    make_xbd_split(tmp_path / "val", 3, size=96, seed=1)
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
         "finetune/finetune.py", f"data.root={tmp_path / 'train'}", f"data.val_root={tmp_path / 'val'}",
         f"run_dir={tmp_path / 'run'}", "model.backbone=resnet18", "data.crop_size=64", "data.val_window=64",
         "train.batch_size=2", "train.max_steps=2", "train.val_every=2", "train.device=cpu", "data.num_workers=0",
         "train.progress=false", "data.stats_samples=4", "model.decoder_channels=[16,16,8,8,8]"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["val"]["images"] == 3 and 0.0 <= metrics["val"]["score"] <= 1.0
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
