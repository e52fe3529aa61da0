"""End-to-end throughput benchmark: tiny CPU runs return every documented rate and consistent ratios."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ssl_siam.core.errors import ConfigError
from ssl_siam.tools.bench import format_bench, run_bench

RATES = {"ceiling", "ours", "loader", "loader_cached", "lightly", "aug_ours_per_core", "aug_lightly_per_core"}
RATIOS = {"ours_vs_ceiling": ("ours", "ceiling"), "loader_vs_ceiling": ("loader", "ceiling"),
          "loader_cached_vs_loader": ("loader_cached", "loader"),
          "ours_vs_lightly": ("ours", "lightly"),
          "aug_ours_vs_lightly": ("aug_ours_per_core", "aug_lightly_per_core")}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine two OpenMP threads stall each other under load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check(result: dict, objective: str, size: int, unmeasured: set[str], batch: int = 8) -> None:
    assert set(result) == {"device", "objective", "backbone", "image_size", "batch_size", "workers", "samples_per_s",
                           "ratios"}
    assert (result["device"], result["objective"], result["backbone"]) == ("cpu", objective, "resnet18")
    assert (result["image_size"], result["batch_size"]) == (size, batch)
    rates, ratios = result["samples_per_s"], result["ratios"]
    assert set(rates) == RATES and set(ratios) == set(RATIOS)
    for key, rate in rates.items():
        assert (rate is None) == (key in unmeasured), key
        assert rate is None or (math.isfinite(rate) and rate > 0), (key, rate)
    for key, (num, den) in RATIOS.items():
        if rates[num] is None or rates[den] is None:
            assert ratios[key] is None
        else:
            assert ratios[key] == pytest.approx(rates[num] / rates[den])
    table = format_bench(result)
    assert objective in table and f"{rates['ours']:.1f}" in table


@pytest.mark.parametrize("objective", ["simsiam", "dino"])
def test_pretrain_bench(objective: str) -> None:
    result = run_bench(objective, backbone="resnet18", image_size=32, batch_size=8, workers=1, device="cpu",
                       steps=2, warmup=1, aug_seconds=0.2)
    check(result, objective, 32, unmeasured={"loader_cached"})
    assert "samples/s" in format_bench(result)


def test_finetune_bench(tmp_path: Path) -> None:
    # 128² crops of 148² pairs: large enough to be decoded (smaller images are read from the source)
    result = run_bench("finetune", backbone="resnet18", image_size=128, batch_size=2, workers=0, device="cpu",
                       steps=2, warmup=1, cache_dir=str(tmp_path / "cache"))
    check(result, "finetune", 128, unmeasured={"lightly", "aug_ours_per_core", "aug_lightly_per_core"}, batch=2)
    assert "pairs/s" in format_bench(result) and "from the cache" in format_bench(result)
    assert len(list((tmp_path / "cache").glob("decoded/*/*/*.tif"))) == 4 * 16  # the 16 bench pairs, decoded


def test_unknown_objective() -> None:
    with pytest.raises(ConfigError, match="simsiam, byol, dino, finetune"):
        run_bench("mae", device="cpu")
