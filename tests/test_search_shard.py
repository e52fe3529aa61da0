"""``ssl-siam embed`` under torchrun: 2 gloo processes share the parts of each round and write the same index as
one process — every tile exactly once, ids contiguous, the same embeddings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from conftest import ROOT
from rasterio.transform import from_origin

from ssl_siam.search.index import load_index

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embed(launcher: list[str], data: Path, out: Path) -> None:
    cmd = [*launcher, "-m", "ssl_siam.cli", "embed", "--encoder", "random:resnet18", "--data", str(data),
           "--tile", "32", "--out", str(out), "--device", "cpu", "--workers", "0", "--chunk-size", "5",
           "--batch-size", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_embed_every_tile_once_as_one_process_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):  # 3 × 64 × 96: 6 tiles each; c's top half nodata (its 3 top tiles skipped)
        data = rng.integers(100, 4000, size=(3, 64, 96)).astype(np.uint16)
        data[:, :32] = 0 if i == 2 else data[:, :32]
        with rasterio.open(tmp_path / f"{'abc'[i]}.tif", "w", driver="GTiff", height=64, width=96, count=3,
                           dtype="uint16", crs="EPSG:32633", transform=from_origin(500000 + 2000 * i, 5500000, 10, 10),
                           nodata=0) as dst:
            dst.write(data)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    _embed([sys.executable], tmp_path, tmp_path / "one")
    _embed(torchrun, tmp_path, tmp_path / "two")
    one, two = load_index(tmp_path / "one"), load_index(tmp_path / "two")
    assert two[0].to_json() == one[0].to_json()  # parts of 5 windows: 4 parts, 2 rounds of 2
    assert (two[0].tiles, two[0].skipped_nodata, two[0].parts) == (15, 3, 4)
    assert two[2].column("id").to_pylist() == list(range(15)) and two[2].equals(one[2])
    np.testing.assert_array_equal(two[1], one[1])
