"""The damage-finetuning task the loop runs: raw pair batch → (photometric jitter) → normalise → model → loss."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import default_collate

from ssl_siam.change.models.siamese import SiameseChangeNet
from ssl_siam.change.synthetic import SyntheticChange, one_date_twice, paste_changes
from ssl_siam.data.sampling import seeded_generator
from ssl_siam.data.stats import BandStats
from ssl_siam.data.transforms.geometry import pair_geometry
from ssl_siam.data.transforms.photometric import jitter_pair
from ssl_siam.encoders import EncoderMeta, export_encoder
from ssl_siam.train.optim import param_groups
from ssl_siam.train.task import TrainingTask


class JitterCollate:
    """DataLoader ``collate_fn`` that jitters the batch's pre and post images in the worker (the default;
    ``data.photometric_on_device=true`` leaves it to :class:`FinetuneTask` on the device). Seeded by (seed, the
    batch's first sample index), exactly as the device path, so the two placements give the same batch on CPU."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = default_collate(items)
        generator = seeded_generator(torch.device("cpu"), self.seed, int(batch["index"][0]))
        batch["pre"], batch["post"] = jitter_pair(batch["pre"], batch["post"], generator)
        return batch


@dataclass(frozen=True)
class Geometry:
    """``data.geometric_on_device``: the joint geometry applied by the task (:func:`pair_geometry`)."""

    seed: int
    misregistration_px: int = 0
    ignore_index: int = 255


class FinetuneTask(TrainingTask):
    """Batches ``{"pre", "post": raw [B, C, H, W], "mask": [B, H, W], "index"}`` → normalised pair → model → loss;
    with ``jitter_seed`` the training pairs are photometrically jittered on the device first (else the workers
    did it, :class:`JitterCollate`, or nobody). The checkpoint stores both normalizations, so prediction needs
    the checkpoint alone. ``radiometric``: the run's ``data.radiometric``, which prediction applies to each pair
    before :meth:`normalize` (the training dataset applied it to the crops). ``synthetic``
    (``data.synthetic_change``): the target is made by pasting changes into each batch (:func:`paste_changes`), and
    the run exports its pre encoder as ``encoder.safetensors`` + ``encoder.json`` (``export_meta``), usable as
    ``model.encoder_weights`` and by ``ssl-siam study``."""

    checkpoint_kind = "finetune"

    def __init__(self, model: SiameseChangeNet, criterion: nn.Module, pre_stats: BandStats, post_stats: BandStats,
                 freeze_encoder_epochs: float = 0.0, encoder_lr_scale: float = 1.0,
                 memory_format: torch.memory_format = torch.contiguous_format, jitter_seed: int | None = None,
                 encoder_bn: str = "train", geometry: Geometry | None = None, radiometric: str = "none",
                 synthetic: SyntheticChange | None = None, export_meta: EncoderMeta | None = None) -> None:
        super().__init__()
        self.synthetic, self.export_meta = synthetic, export_meta
        self.radiometric = radiometric
        self.model, self.criterion, self.encoder_bn, self.geometry = model, criterion, encoder_bn, geometry
        self.pre_stats, self.post_stats = pre_stats, post_stats
        self.freeze_epochs, self.encoder_lr_scale = freeze_encoder_epochs, encoder_lr_scale
        self.memory_format, self.freeze_steps, self.jitter_seed = memory_format, 0, jitter_seed
        if encoder_lr_scale == 0:  # a frozen encoder (the SeCo protocol): no gradients, no backward through it
            for param in model.encoder_parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> FinetuneTask:
        """``train.encoder_bn=frozen`` keeps the encoder's BatchNorm layers in eval mode: their running statistics
        (the pretrained ones) normalise every batch and are never updated; their affine weights still train."""
        super().train(mode)
        if mode and self.encoder_bn == "frozen":
            for module in self.model.encoder_modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def configure(self, total_steps: int, steps_per_epoch: int) -> None:
        self.freeze_steps = round(self.freeze_epochs * steps_per_epoch)

    def normalize(self, pre: torch.Tensor, post: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (or jittered float) ``[B, C, H, W]`` pair → standardised float pair in the training memory format."""
        pre = self.pre_stats.standardize(self.pre_stats.to_unit(pre))
        post = self.post_stats.standardize(self.post_stats.to_unit(post))
        return pre.contiguous(memory_format=self.memory_format), post.contiguous(memory_format=self.memory_format)

    def training_step(self, batch: dict[str, Any], step: int, micro: int) -> dict[str, torch.Tensor]:
        pre, post, mask = batch["pre"], batch["post"], batch["mask"]
        if self.jitter_seed is not None:  # device-side draws seeded by the batch's first index: resumes augment alike
            first = int(batch["index"][0])
            pre, post = jitter_pair(pre, post, seeded_generator(pre.device, self.jitter_seed, first))
        if self.synthetic is not None:  # unlabeled pairs: the pasted rectangles are the change (padding stays ignored)
            sc = self.synthetic
            generator = seeded_generator(pre.device, sc.seed, int(batch["index"][0]), 2)
            pre, post = one_date_twice(pre, post, generator, sc.same_date)
            pre, post, pasted = paste_changes(pre, post, generator, sc.patches, sc.min_size, sc.max_size,
                                              sc.no_change)
            mask = torch.where(mask == sc.ignore_index, mask, pasted)
        if self.geometry is not None:
            g, first = self.geometry, int(batch["index"][0])
            pre, post, mask = pair_geometry(pre, post, mask, seeded_generator(pre.device, g.seed, first, 1),
                                            misregistration_px=g.misregistration_px, ignore_index=g.ignore_index)
        total, parts = self.criterion(self.model(*self.normalize(pre, post)), mask)
        return {"loss": total, **{k: v for k, v in parts.items() if k != "total"}}

    def param_groups(self) -> list[dict]:
        return [*param_groups(self.model.encoder_parameters(), lr_scale=self.encoder_lr_scale),
                *param_groups(self.model.decoder_parameters())]

    def before_optimizer_step(self, step: int) -> None:
        if step < self.freeze_steps:  # encoder frozen: its weights get no update (BN statistics still adapt)
            for param in self.model.encoder_parameters():
                param.grad = None

    def export(self, run_dir: Path, step: int) -> None:
        if self.export_meta is not None:
            export_encoder(self.model.encoder, run_dir, dataclasses.replace(self.export_meta, step=step))

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"pre_stats": dataclasses.asdict(self.pre_stats), "post_stats": dataclasses.asdict(self.post_stats),
                "in_chans": self.pre_stats.num_bands, "post_in_chans": self.post_stats.num_bands}
