"""The package works installed from its wheel, not only from the checkout: recipes by name, demo and bench run
from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "runs", "demo_output",
                              ".pytest_cache", ".ruff_cache")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a clean copy of the source tree, installed into a target folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=SKIP)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("ssl_siam-*.whl"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    return site


def from_wheel(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_wheel_carries_the_recipes_and_runs_the_quick_demo_elsewhere(installed: Path, tmp_path: Path) -> None:
    where = from_wheel(installed, tmp_path, "-c", "import ssl_siam.core.recipes as r; print(r.RECIPES_DIR)")
    assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(installed), where.stderr
    assert not (Path(where.stdout.strip())).is_symlink()  # real files in the wheel
    listed = from_wheel(installed, tmp_path, "-m", "ssl_siam.cli", "recipes")
    assert listed.returncode == 0, listed.stderr
    assert "pretrain/simsiam_resnet50" in listed.stdout and "finetune/xbd_resnet50" in listed.stdout
    config = from_wheel(installed, tmp_path, "-c", "from ssl_siam.core.config import load_config; "
                        "from ssl_siam.ssl.config import PretrainConfig; "
                        "print(load_config(PretrainConfig, 'simsiam_resnet50', ['data.root=x']).optim.lr)")
    assert config.returncode == 0 and config.stdout.strip() == "0.05", config.stderr
    demo = from_wheel(installed, tmp_path, "-m", "ssl_siam.cli", "demo", "--quick", "--out", "demo")
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert (tmp_path / "demo" / "report.md").is_file()
    bench = from_wheel(installed, tmp_path, "-m", "ssl_siam.cli", "bench", "--device", "cpu", "--steps", "1",
                       "--batch-size", "4", "--image-size", "32", "--workers", "0")
    assert bench.returncode == 0 and "ceiling" in bench.stdout, bench.stderr[-3000:]
