"""Training throughput in one run: model-only ceiling vs our end-to-end pipeline vs lightly's reference recipe.

All measurements drive the same model, objective and optimizer (one :class:`Trainer`) through
``Trainer.train_step`` (forward + backward + optimizer step; bf16 autocast and channels_last on CUDA):

* ``ceiling``: synthetic batches already on the device, shaped as the objective expects them;
* ``ours``: the DataLoader ``ssl-siam pretrain`` builds (tiles read in workers, views made on the device);
* ``loader``: that DataLoader alone, no model: above ``ceiling``, data loading is not the bottleneck;
* ``lightly``: lightly's PIL transforms (the objective's ``lightly_transform``) run per image in the DataLoader
  workers.

Each objective declares the recipe measured and its overrides (:class:`~ssl_siam.ssl.base.Objective`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ssl_siam.change.config import FinetuneConfig
from ssl_siam.change.run import build_finetuning
from ssl_siam.core.config import load_config
from ssl_siam.core.errors import ConfigError
from ssl_siam.data.sampling import ResumableSampler, make_loader
from ssl_siam.ssl import OBJECTIVES
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.ssl.run import build_pretraining
from ssl_siam.ssl.views import view_specs
from ssl_siam.tools.augbench import augment_throughput
from ssl_siam.tools.synthetic import make_xbd_split
from ssl_siam.train.launch import prepare
from ssl_siam.train.loop import Trainer
from ssl_siam.train.runtime import Runtime, resolve_device

FINETUNE_RECIPE = "finetune/xbd_resnet50"  # what `--objective finetune` measures (objectives name their own)
DEFAULTS = {"cuda": ("resnet50", 224, 256), "cpu": ("resnet18", 64, 32)}  # backbone, view size, batch
FINETUNE_DEFAULTS = {"cuda": (512, 16), "cpu": (64, 32)}  # crop, batch (16: configs/finetune/xbd_resnet50.yaml)
LOADER_BATCHES = 50  # the fewest batches the loader alone is timed over
TILE_MARGIN = 1.15  # tiles are this much larger than the views, so random-resized crops have room


class ImageFiles(torch.utils.data.Dataset):
    """``(index, views)``: image ``paths[index % len(paths)]`` read with PIL and transformed alone, as in
    lightly's examples (a torchvision-style dataset; per-image work in the DataLoader workers)."""

    def __init__(self, paths: list[Path], transform: Callable[[Image.Image], list[torch.Tensor]]) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, list[torch.Tensor]]:
        with Image.open(self.paths[index % len(self.paths)]) as image:
            return index, self.transform(image.convert("RGB"))


def bench_choices() -> list[str]:
    """What ``run_bench`` measures: every registered objective, then ``finetune``."""
    return [*OBJECTIVES, "finetune"]


def loader_rate(loader: torch.utils.data.DataLoader, batch: int, steps: int, warmup: int) -> float:
    """Samples/s of the DataLoader alone (workers read, crop and collate; nothing consumes the batches): the most
    the data side can feed, to hold against ``ceiling``. Timed over at least :data:`LOADER_BATCHES` batches (cheap:
    no model), since a few batches of a fast loader are mostly its prefetch queue and start-up."""
    batches = iter(loader)
    for _ in range(warmup):
        next(batches)
    timed = loader_batches(steps)
    start = time.perf_counter()
    for _ in range(timed):
        next(batches)
    return timed * batch / (time.perf_counter() - start)


def loader_batches(steps: int) -> int:
    return max(steps, LOADER_BATCHES)


def measure(trainer: Trainer, batches: Iterator[Any], steps: int, warmup: int) -> float:
    """Samples/s over ``steps`` optimizer steps after ``warmup`` untimed ones, timed between device syncs."""

    def step() -> None:
        trainer.set_schedules(trainer.state.step)
        trainer.train_step(batches, trainer.state.step)
        trainer.state.step += 1

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * trainer.samples_per_step / (time.perf_counter() - start)


def cached_loader_rate(cfg: Any, build: Callable, runtime: Runtime, cache_dir: Path, run_dir: Path, batch: int,
                       steps: int, warmup: int) -> float:
    """:func:`loader_rate` of the same training reading its PNG / JPEG sources from the decoded cache ``cache_dir``
    (built first where missing, untimed)."""
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir), data=dataclasses.replace(cfg.data, cache_dir=str(cache_dir)))
    session = prepare(cfg, "bench", build, runtime)
    session.close()
    return loader_rate(session.built.loader, batch, steps, warmup)


def _pretrain(objective: str, root: Path, run_dir: Path, device: torch.device, backbone: str, image_size: int,
              batch: int, workers: int, steps: int, warmup: int, aug_seconds: float,
              cache_dir: Path | None = None) -> dict[str, float | None]:
    tile, method = math.ceil(image_size * TILE_MARGIN), OBJECTIVES.get(objective)
    cfg = load_config(PretrainConfig, method.bench_recipe, [
        f"model.backbone={backbone}", f"data.tile_size={tile}", f"augment.global_size={image_size}",
        f"augment.local_size={round(image_size * 96 / 224)}", f"train.batch_size={batch}",
        f"data.num_workers={workers}", f"data.samples_per_epoch={batch * (warmup + loader_batches(steps) + 2)}",
        f"train.max_steps={3 * (warmup + steps)}", *method.bench_overrides, f"run_dir={run_dir}"])
    cfg.data.root = [str(root)]
    runtime = Runtime.create(device, cfg.train.precision, cfg.train.channels_last)
    session = prepare(cfg, "bench", build_pretraining, runtime)
    session.close()  # a temporary run dir: nothing to protect
    trainer, dataset, loader = session.trainer, session.built.dataset, session.built.loader

    specs = view_specs(cfg.augment, tile)
    views = [torch.randn(batch, dataset.num_bands, s.size, s.size, device=device) for s in specs]
    rates: dict[str, float | None] = {
        "ceiling": measure(trainer, itertools.repeat((torch.arange(batch, device=device), views)), steps, warmup),
        "ours": measure(trainer, iter(loader), steps, warmup),
        "loader": loader_rate(loader, batch, steps, warmup),
        "loader_cached": None if cache_dir is None else cached_loader_rate(
            cfg, build_pretraining, runtime, cache_dir, run_dir.with_name("run-cached"), batch, steps, warmup),
    }
    del views
    transform = method.lightly_transform(specs[0].size, specs[-1].size, cfg.augment)
    rates["lightly"] = None  # lightly's PIL pipeline reads single-file 8-bit RGB images only
    if dataset.num_bands == 3 and dataset.dtype == np.uint8 and all(len(s.paths) == 1 for s in dataset.files):
        images = ImageFiles([s.paths[0] for s in dataset.files], transform)
        sampler = ResumableSampler(len(dataset), batch, seed=cfg.train.seed)
        lightly_loader = make_loader(images, sampler, num_workers=workers, prefetch_factor=cfg.data.prefetch_factor,
                                     pin_memory=cfg.data.pin_memory and device.type == "cuda")
        rates["lightly"] = measure(trainer, iter(lightly_loader), steps, warmup)
    aug = augment_throughput(3, torch.uint8, tile=tile, view_size=image_size, batch=min(batch, 64),
                             seconds=aug_seconds, specs=specs, lightly_transform=transform)
    return {**rates, "aug_ours_per_core": aug["ours"], "aug_lightly_per_core": aug["lightly"]}


def _finetune(split: Path, run_dir: Path, device: torch.device, backbone: str, crop: int, batch: int,
              workers: int, steps: int, warmup: int, cache_dir: Path | None = None) -> dict[str, float | None]:
    cfg = load_config(FinetuneConfig, FINETUNE_RECIPE, [
        f"model.backbone={backbone}", f"data.crop_size={crop}", f"train.batch_size={batch}",
        f"data.num_workers={workers}", f"data.samples_per_epoch={batch * (warmup + loader_batches(steps) + 2)}",
        f"train.max_steps={2 * (warmup + steps)}", "train.freeze_encoder_epochs=0", "data.val_fraction=0",
        f"run_dir={run_dir}"])
    cfg.data.root = [str(split)]
    runtime = Runtime.create(device, cfg.train.precision, cfg.train.channels_last)
    session = prepare(cfg, "bench", build_finetuning, runtime)
    session.close()  # a temporary run dir: nothing to protect
    trainer, dataset, loader = session.trainer, session.built.dataset, session.built.loader

    item = dataset[0]
    synthetic = {
        "pre": torch.randint(0, 256, (batch, *item["pre"].shape), device=device).to(item["pre"].dtype),
        "post": torch.randint(0, 256, (batch, *item["post"].shape), device=device).to(item["post"].dtype),
        "mask": torch.randint(0, dataset.num_classes, (batch, crop, crop), device=device),  # the run's classes
        "index": torch.arange(batch, device=device),
    }
    return {"ceiling": measure(trainer, itertools.repeat(synthetic), steps, warmup),
            "ours": measure(trainer, iter(loader), steps, warmup), "loader": loader_rate(loader, batch, steps, warmup),
            "loader_cached": None if cache_dir is None else cached_loader_rate(
                cfg, build_finetuning, runtime, cache_dir, run_dir.with_name("run-cached"), batch, steps, warmup),
            "lightly": None,
            "aug_ours_per_core": None, "aug_lightly_per_core": None}


def run_bench(objective: str = "simsiam", *, backbone: str | None = None, image_size: int | None = None,
              batch_size: int | None = None, workers: int = 2, device: str = "auto", steps: int = 10, warmup: int = 2,
              data: str | None = None, aug_seconds: float = 3.0, cache_dir: str | None = None) -> dict:
    """Training samples/s (pairs/s for ``finetune``) of the model-only ceiling, our pipeline and lightly's.

    ``data``: tiles (a folder, glob or file, as ``data.root`` of ``ssl-siam pretrain``) or, for ``finetune``, an
    xBD split folder; None generates synthetic RGB PNGs ``image_size · 1.15`` px wide in a temporary folder.
    lightly reads whole files, so it runs only on single-file 3-band uint8 tiles (else None). ``aug_seconds``: CPU
    time per side of the per-core augmentation comparison. ``cache_dir``: also time the loader reading the PNG / JPEG
    sources from this decoded cache (``loader_cached``; built first where missing, untimed). Heads, optimizer and
    augmentations are the paper recipes in ``configs/`` (the objective's ``bench_recipe``); nothing is frozen (the
    objective's ``bench_overrides``, e.g. DINO's last layer; the finetuning encoder), so every step is a full update.
    """
    if objective not in bench_choices():
        raise ConfigError(f"unknown benchmark objective {objective!r}; valid: {', '.join(bench_choices())}")
    if steps < 1 or warmup < 0 or workers < 0:
        raise ValueError(f"need steps >= 1, warmup >= 0, workers >= 0; got {steps}, {warmup}, {workers}")
    dev = resolve_device(device, "--device")
    kind = "cuda" if dev.type == "cuda" else "cpu"
    default_backbone, default_size, default_batch = DEFAULTS[kind]
    if objective == "finetune":
        default_size, default_batch = FINETUNE_DEFAULTS[kind]
    backbone, size, batch = backbone or default_backbone, image_size or default_size, batch_size or default_batch
    with tempfile.TemporaryDirectory(prefix="ssl-siam-bench-") as tmp:
        root, run_dir = Path(tmp) / "xbd", Path(tmp) / "run"
        run_dir.mkdir()
        if data is None:
            pairs = 16 if objective == "finetune" else min(max(math.ceil(batch * (warmup + steps) / 2), 8), 128)
            make_xbd_split(root, pairs, size=math.ceil(size * TILE_MARGIN))
        if objective == "finetune":
            rates = _finetune(Path(data) if data else root, run_dir, dev, backbone, size, batch, workers, steps,
                              warmup, Path(cache_dir) if cache_dir else None)
        else:
            source = Path(data) if data else root / "images"
            rates = _pretrain(objective, source, run_dir, dev, backbone, size, batch, workers, steps, warmup,
                              aug_seconds, Path(cache_dir) if cache_dir else None)

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    return {"device": Runtime.create(dev).describe(), "objective": objective, "backbone": backbone,
            "image_size": size, "batch_size": batch,
            "workers": workers, "samples_per_s": rates,
            "ratios": {"ours_vs_ceiling": ratio(rates["ours"], rates["ceiling"]),
                       "loader_vs_ceiling": ratio(rates["loader"], rates["ceiling"]),
                       "loader_cached_vs_loader": ratio(rates["loader_cached"], rates["loader"]),
                       "ours_vs_lightly": ratio(rates["ours"], rates["lightly"]),
                       "aug_ours_vs_lightly": ratio(rates["aug_ours_per_core"], rates["aug_lightly_per_core"])}}


def format_bench(result: dict) -> str:
    """A readable table of :func:`run_bench`'s result."""
    rates, ratios, size = result["samples_per_s"], result["ratios"], result["image_size"]

    def times(key: str, text: str) -> str:
        return "" if ratios[key] is None else text.format(ratios[key])

    def per_worker(rate: float | None) -> str:
        return "" if rate is None or not result["workers"] else f" ({rate / result['workers']:.1f} per worker)"

    rows = [
        ("ceiling (model only, data on device)", rates["ceiling"], ""),
        ("ours (end to end)", rates["ours"], times("ours_vs_ceiling", "{:.2f}× ceiling")),
        ("ours, data loading alone", rates["loader"], times("loader_vs_ceiling", "{:.2f}× ceiling") + per_worker(
            rates["loader"])),
        ("ours, data loading from the cache", rates["loader_cached"],
         times("loader_cached_vs_loader", "{:.2f}× uncached") + per_worker(rates["loader_cached"])),
        ("lightly (end to end)", rates["lightly"], times("ours_vs_lightly", "ours {:.2f}×")),
        ("augmentation per core, ours", rates["aug_ours_per_core"], ""),
        ("augmentation per core, lightly", rates["aug_lightly_per_core"], times("aug_ours_vs_lightly", "ours {:.2f}×")),
    ]
    width = max(len(label) for label, _, _ in rows)
    unit = "pairs/s" if result["objective"] == "finetune" else "samples/s"
    head = (f"{result['objective']} · {result['backbone']} · {size}×{size} · batch {result['batch_size']} · "
            f"{result['workers']} workers · {result['device']}")
    lines = [f"{label:{width}}  {'n/a' if rate is None else f'{rate:.1f}':>10}  {note}".rstrip()
             for label, rate, note in rows]
    return "\n".join([head, f"{'':{width}}  {unit:>10}", *lines])
