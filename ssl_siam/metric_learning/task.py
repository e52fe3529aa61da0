"""The metric-learning task the shared loop runs: raw pair batch → normalise + augment → embed → mine → loss."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssl_siam.data.sampling import seeded_generator
from ssl_siam.data.stats import BandStats
from ssl_siam.data.transforms.multiview import MultiViewAugment, ViewSpec
from ssl_siam.encoders import EncoderMeta, export_encoder
from ssl_siam.metric_learning.config import MetricAugmentConfig
from ssl_siam.metric_learning.losses import TRIPLET_LOSSES, distance_matrix
from ssl_siam.metric_learning.mining import gather_batch, mine_pairs, mine_triplets
from ssl_siam.metric_learning.model import SiameseEmbedding
from ssl_siam.train.collapse import CollapseMonitor
from ssl_siam.train.task import TrainingTask


class InputPipeline(nn.Module):
    """Raw ``[B, C, H, W]`` images or ``[B, C, T, 1]`` series → standardised float input; in training mode each
    call draws a fresh augmentation (images: crop/flip/rot90/per-band jitter on the device; series: Gaussian noise
    and blanked dates)."""

    def __init__(self, stats: BandStats, cfg: MetricAugmentConfig, size: int, series: bool) -> None:
        super().__init__()
        self.stats, self.series, self.cfg = stats, series, cfg
        self.augment = None if series else MultiViewAugment([ViewSpec(
            size=size, scale=cfg.scale, flip_p=cfg.flip_p, rot90=cfg.rot90, jitter_p=cfg.jitter_p,
            brightness=cfg.brightness, contrast=cfg.contrast, saturation=0.0, hue=0.0, grayscale_p=0.0,
            blur_p=0.0)])

    def forward(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One input, augmented on its own in training."""
        with torch.autocast(raw.device.type, enabled=False):
            x = self.stats.to_unit(raw)
            if self.training and self.augment is not None:
                x = self.augment(x, generator=generator)[0]
            x = self.stats.standardize(x)
            if self.training and self.series:
                shape = (x.shape[0], 1, x.shape[2], 1)  # [B, 1, T, 1]: a blanked date loses every band
                keep = torch.rand(shape, generator=generator, device=x.device) >= self.cfg.series_dropout
                noise = torch.randn(x.shape, generator=generator, device=x.device) * self.cfg.series_noise
                x = (x + noise) * keep
            return x

    def pair(self, raw_a: Tensor, raw_b: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Both inputs of a pair. With ``augment.joint`` (images, training) they share one crop/flip/rotation —
        stacked along the bands, whose jitter is drawn per band and so stays independent per input — and
        co-registered pairs stay co-registered; otherwise each is augmented on its own."""
        if not (self.cfg.joint and self.training and self.augment is not None):
            return self(raw_a, generator), self(raw_b, generator)
        with torch.autocast(raw_a.device.type, enabled=False):
            stacked = torch.cat([self.stats.to_unit(raw_a), self.stats.to_unit(raw_b)], dim=1)  # [B, 2C, H, W]
            a, b = self.augment(stacked, generator=generator)[0].chunk(2, dim=1)
            return self.stats.standardize(a), self.stats.standardize(b)


class MetricTask(TrainingTask):
    """Embeds both (or three) branch inputs and applies the metric loss.

    Labelled pairs use their labels. Location batches (``group``) either use the pairs they hold
    (``mining="none"``: positive ``(a_i, b_i)``, negative ``(a_i, b_{i-1})`` or the given ``n``) or mine pairs /
    triplets among all ``2B`` (``3B``) embeddings of the batch, two embeddings being positive when their groups
    are equal — with ``gather``, among the embeddings of every process (anchors stay this process's own).
    ``export_meta`` (image encoders) describes the encoder :meth:`export` writes; series encoders export nothing.
    """

    checkpoint_kind = "metric"

    def __init__(self, model: SiameseEmbedding, criterion: nn.Module, pipeline: InputPipeline, loss_name: str,
                 mining: str, distance: str, seed: int,
                 memory_format: torch.memory_format = torch.contiguous_format, gather: bool = False,
                 collapse: CollapseMonitor | None = None, export_meta: EncoderMeta | None = None) -> None:
        super().__init__()
        self.model, self.criterion, self.pipeline = model, criterion, pipeline
        self.triplet = loss_name in TRIPLET_LOSSES
        self.mining, self.distance, self.seed, self.memory_format = mining, distance, seed, memory_format
        self.gather, self.collapse, self.export_meta = gather, collapse, export_meta

    def embed(self, raw: Tensor, branch: int, generator: torch.Generator | None = None) -> Tensor:
        return self._embed(self.pipeline(raw, generator), branch)

    def _embed(self, x: Tensor, branch: int) -> Tensor:
        return self.model(x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x, branch)

    def training_step(self, batch: dict[str, Tensor], step: int, micro: int) -> dict[str, Any]:
        generator = seeded_generator(batch["a"].device, self.seed, step, micro)
        a, b = self.pipeline.pair(batch["a"], batch["b"], generator)
        ea, eb = self._embed(a, 0), self._embed(b, 1)
        en = self.embed(batch["n"], 0, generator) if "n" in batch else None
        if "label" in batch:
            loss, parts = self.criterion(ea, eb, batch["label"].float())
            embeddings = torch.cat([ea, eb])
        elif self.mining == "none":
            loss, parts, embeddings = self._given(ea, eb, en, batch["group"])
        else:
            loss, parts, embeddings = self._mined(ea, eb, en, batch)
        return {"loss": loss, **parts, "embedding": embeddings.detach()}

    def _given(self, ea: Tensor, eb: Tensor, en: Tensor | None,
               group: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """The batch's own pairs: (a_i, b_i) positive; (a_i, b_{i-1}) or (a_i, n_i) negative."""
        negative = en if en is not None else eb.roll(1, dims=0)
        embeddings = torch.cat([t for t in (ea, eb, en) if t is not None])
        if self.triplet:
            return (*self.criterion(ea, eb, negative), embeddings)
        same = (group == group.roll(1)).float() if en is None else torch.zeros_like(group, dtype=torch.float32)
        y = torch.cat([torch.ones_like(same), same])
        return (*self.criterion(torch.cat([ea, ea]), torch.cat([eb, negative]), y), embeddings)

    def _mined(self, ea: Tensor, eb: Tensor, en: Tensor | None,
               batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        own = torch.cat([t for t in (ea, eb, en) if t is not None])
        groups = [batch["group"], batch["group"]] + ([batch["group_n"]] if en is not None else [])
        labels = torch.cat(groups)
        if self.gather:  # candidates from every process; anchors only among this process's rows
            embeddings, labels, local = gather_batch(own, labels)
        else:
            embeddings, local = own, torch.ones(len(labels), dtype=torch.bool, device=labels.device)
        with torch.no_grad():
            distances = distance_matrix(embeddings.detach().float(), self.distance)
        if self.triplet:
            a, p, n = mine_triplets(distances, labels, self.mining)
            a, p, n = (t[local[a]] for t in (a, p, n))
            loss, parts = self.criterion(embeddings[a], embeddings[p], embeddings[n])
            parts = {**parts, "triplets": torch.tensor(float(a.numel()))}
        else:
            i, j, y = mine_pairs(distances, labels, self.mining)
            i, j, y = (t[local[i]] for t in (i, j, y))
            loss, parts = self.criterion(embeddings[i], embeddings[j], y)
            parts = {**parts, "pairs": torch.tensor(float(i.numel()))}
        return loss, parts, own

    def step_metrics(self, outputs: dict[str, Any], step: int) -> dict[str, float]:
        return self.collapse(outputs.get("embedding"), step) if self.collapse is not None else {}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"stats": dataclasses.asdict(self.pipeline.stats), "in_chans": self.pipeline.stats.num_bands,
                "series": self.pipeline.series, "mining": self.mining}

    def export(self, run_dir: Path, step: int) -> None:
        if self.export_meta is not None:
            encoder = self.model.encoder
            export_encoder(encoder, run_dir, dataclasses.replace(self.export_meta, step=step,
                                                                 num_features=encoder.num_features))

    @torch.no_grad()
    def similarity(self, ea: Tensor, eb: Tensor) -> Tensor:
        """Verification score of embedding pairs (higher = more similar): the loss's own similarity."""
        return self.criterion.similarity(ea, eb)
