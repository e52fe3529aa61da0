"""``ssl-siam track-train``: SiamFC trained on exemplar / search pairs of annotated sequences (or of synthetic ones
generated into the run directory), run by the shared launcher; with held-out sequences the tracking validator picks
``best.pt`` by success AUC."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import NamedTuple

import torch

from ssl_siam.core.config import from_dict
from ssl_siam.core.errors import ConfigError
from ssl_siam.data.stats import BandStats, given_stats, resolve_stats, stats_of_values
from ssl_siam.encoders import EncoderMeta
from ssl_siam.track.config import TrackConfig
from ssl_siam.track.model import SiamFC, build_siamfc
from ssl_siam.track.pairs import TrackingPairs, sample_pixels
from ssl_siam.track.sequences import Sequence, read_sequences
from ssl_siam.track.task import TrackTask
from ssl_siam.track.validator import TrackingValidator
from ssl_siam.train.checkpoint import load_checkpoint
from ssl_siam.train.distributed import World, main_first
from ssl_siam.train.launch import Built, launch, training_loader
from ssl_siam.train.runtime import Runtime


def build_task(cfg: TrackConfig, in_chans: int, stats: BandStats, encoder: EncoderMeta | None = None,
               with_weights: bool = True, memory_format: torch.memory_format = torch.contiguous_format) -> TrackTask:
    """The SiamFC model and its task; ``encoder`` is the SSL export of ``model.encoder_weights``. ConfigError when
    the crop geometry does not fit the stride or the search shifts can move the target off the response map."""
    m = cfg.model
    model = build_siamfc(m.backbone, in_chans, out_stride=m.out_stride, border=m.border, siamese=m.siamese,
                         encoder=encoder if with_weights else None, pretrained=m.pretrained if with_weights else None,
                         timm_kwargs=m.timm_kwargs)
    response_size = model.response_size(m.exemplar_size, m.search_size)
    reach = (m.search_size - m.exemplar_size) / 2
    if cfg.data.max_shift > reach:
        raise ConfigError(f"data.max_shift={cfg.data.max_shift:g}: the response map reaches ±{reach:g} search px "
                          f"(model.search_size − model.exemplar_size) / 2; expected at most that")
    if cfg.loss.radius < model.stride / math.sqrt(2):  # a target between four cells would have no positive cell
        raise ConfigError(f"loss.radius={cfg.loss.radius:g}: at model.out_stride={model.stride} some target "
                          f"positions get no positive response cell; expected at least stride/√2 = "
                          f"{model.stride / math.sqrt(2):.2f}")
    return TrackTask(model, stats, cfg.augment, response_size, cfg.loss.radius, cfg.train.seed, memory_format)


def synthetic_roots(cfg: TrackConfig, run_dir: Path, world: World) -> tuple[Path, Path]:
    """``RUN/synthetic/{train,val}``, generated on first use (each written under a temporary name and renamed when
    complete, so a resumed run reuses them and an interrupted generation starts again)."""
    from ssl_siam.track.synthetic import generate_sequences

    syn, folder = cfg.data.synthetic, run_dir / "synthetic"
    splits = {"train": (syn.sequences, syn.seed), "val": (syn.val_sequences, syn.seed + 1)}

    def generate() -> None:
        for split, (count, seed) in splits.items():
            if (folder / split).is_dir():
                continue
            tmp = folder / f".{split}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            generate_sequences(tmp, count, num_frames=syn.num_frames, size=syn.size, object_size=syn.object_size,
                               max_speed=syn.max_speed, background=syn.background, occlusion_p=syn.occlusion_p,
                               seed=seed)
            tmp.rename(folder / split)

    main_first(world, generate)
    return folder / "train", folder / "val"


def _read(cfg: TrackConfig, root: str | Path) -> list[Sequence]:
    return read_sequences(root, None if cfg.data.bands is None else [b - 1 for b in cfg.data.bands])


def build_tracking(cfg: TrackConfig, run_dir: Path, runtime: Runtime) -> Built:
    """Sequences (``data.root``, or synthetic ones in the run directory) → pairs → band statistics (``stats.json``,
    resolved once by rank 0) → task → loader; the tracking validator on ``data.val_root`` (or the synthetic
    validation sequences), run on rank 0."""
    d = cfg.data
    if d.root:
        train_root, val_root = Path(d.root), Path(d.val_root) if d.val_root else None
    else:
        train_root, val_root = synthetic_roots(cfg, run_dir, runtime.world)
    sequences = _read(cfg, train_root)
    m = cfg.model
    dataset = TrackingPairs(sequences, exemplar_size=m.exemplar_size, search_size=m.search_size, context=m.context,
                            max_gap=d.max_gap, max_shift=d.max_shift, stretch=d.stretch,
                            samples_per_epoch=d.samples_per_epoch, seed=cfg.train.seed)
    encoder = EncoderMeta.read(m.encoder_weights) if m.encoder_weights else None
    stats = main_first(runtime.world, lambda: resolve_stats(
        run_dir / "stats.json", dataset.num_bands,
        lambda: stats_of_values(sample_pixels(sequences, d.stats_frames, cfg.train.seed)),
        given=given_stats(d.stats), encoder=encoder.normalization if encoder else None, save=runtime.world.is_main))
    task = build_task(cfg, dataset.num_bands, stats, encoder, memory_format=runtime.memory_format)
    built = Built(dataset, task, training_loader(dataset, cfg, runtime), val_every=cfg.train.val_every)
    if val_root is not None:
        built.validator = TrackingValidator(task.model, cfg, stats, _read(cfg, val_root), runtime.device)
    return built


def run_track_train(cfg: TrackConfig) -> Path:
    """Train (or resume) SiamFC as configured; returns the run directory."""
    return launch(cfg, "track-siamfc", build_tracking)


class TrainedTracker(NamedTuple):
    """A trained SiamFC rebuilt from its checkpoint: the model (eval mode, on the device), the run's config (crop
    geometry in ``cfg.model``) and the band statistics its inputs are normalised with."""

    model: SiamFC
    cfg: TrackConfig
    stats: BandStats


def load_trained_tracker(ckpt: str | Path, device: torch.device) -> TrainedTracker:
    """Rebuild a trained SiamFC from its checkpoint alone."""
    state = load_checkpoint(ckpt, kind="track")
    cfg, stats = from_dict(TrackConfig, state["config"]), BandStats(**state["extra"]["stats"])
    task = build_task(cfg, state["extra"]["in_chans"], stats, with_weights=False)
    task.load_state_dict(state["model"])
    return TrainedTracker(task.model.to(device).eval(), cfg, stats)
