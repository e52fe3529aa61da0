"""The SiamFC training task the shared loop runs: raw crop pairs → normalise + augment on the device → response map
→ balanced logistic loss against the label map of where the target is."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from ssl_siam.data.sampling import seeded_generator
from ssl_siam.data.stats import BandStats
from ssl_siam.data.transforms.photometric import Jitter, photometric_jitter
from ssl_siam.track.config import TrackAugmentConfig
from ssl_siam.track.loss import BalancedLogisticLoss, label_map
from ssl_siam.track.model import SiamFC
from ssl_siam.train.task import TrainingTask

#: the 8 elements of the dihedral group D4 as signed permutations of centred (x, y): quarter turns, then a flip
_D4 = torch.tensor([[[1, 0], [0, 1]], [[0, -1], [1, 0]], [[-1, 0], [0, -1]], [[0, 1], [-1, 0]],
                    [[-1, 0], [0, 1]], [[0, 1], [1, 0]], [[1, 0], [0, -1]], [[0, -1], [-1, 0]]], dtype=torch.float32)


def random_dihedral(batch: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """[B, 2, 2] uniform random elements of D4."""
    return _D4.to(device)[torch.randint(0, 8, (batch,), generator=generator, device=device)]


def apply_dihedral(x: Tensor, maps: Tensor) -> Tensor:
    """``x`` [B, C, n, n] with each sample's output pixel (x, y) — centred coordinates — read from input pixel
    ``maps[b] @ (x, y)``: exact (a gather of integer positions), and the same element for crops of any size, so an
    exemplar, its search crop and their label map stay in correspondence. A target at centred position ``o`` of the
    input is at ``maps[b]ᵀ @ o`` in the output."""
    n = x.shape[-1]
    centre = (n - 1) / 2
    coords = torch.arange(n, device=x.device, dtype=torch.float32) - centre
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    source = maps @ torch.stack([cols.flatten(), rows.flatten()]) + centre  # [B, 2, n·n]: (x, y)
    index = (source[:, 1] * n + source[:, 0]).round().long()  # [B, n·n]
    return x.flatten(-2).gather(-1, index[:, None].expand(-1, x.shape[1], -1)).view_as(x)


class TrackTask(TrainingTask):
    """Normalises both crops with the run's band statistics; in training one dihedral element per pair transforms
    exemplar, search and label map together (their correspondence is kept), and the photometric jitter is drawn for
    each crop apart (appearance changes between frames). Logs the loss, the mean response (logit) on positive and
    negative cells, and ``peak_hit``: the fraction of pairs whose response peak is a positive cell."""

    checkpoint_kind = "track"
    identity_keys = ("data.synthetic.",)  # a resumed run reuses the sequences generated under these

    def __init__(self, model: SiamFC, stats: BandStats, augment: TrackAugmentConfig, response_size: int,
                 radius: float, seed: int, memory_format: torch.memory_format = torch.contiguous_format) -> None:
        super().__init__()
        self.model, self.stats, self.augment = model, stats, augment
        self.response_size, self.radius, self.seed, self.memory_format = response_size, radius, seed, memory_format
        self.jitter = Jitter(brightness=augment.brightness, contrast=augment.contrast)
        self.criterion = BalancedLogisticLoss()

    def inputs(self, batch: dict[str, Tensor], generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised, augmented exemplar [B, C, E, E] and search [B, C, S, S], and the labels [B, 1, R, R]."""
        with torch.autocast(batch["exemplar"].device.type, enabled=False):
            z, x = self.stats.to_unit(batch["exemplar"]), self.stats.to_unit(batch["search"])
            labels = label_map(batch["offset"], self.response_size, self.model.stride, self.radius)
            if self.augment.dihedral:
                maps = random_dihedral(len(z), generator, z.device)
                z, x, labels = (apply_dihedral(t, maps) for t in (z, x, labels))
            if self.augment.jitter:
                z, x = photometric_jitter(z, generator, self.jitter), photometric_jitter(x, generator, self.jitter)
            z, x = self.stats.standardize(z), self.stats.standardize(x)
        return z.contiguous(memory_format=self.memory_format), x.contiguous(memory_format=self.memory_format), labels

    def training_step(self, batch: dict[str, Tensor], step: int, micro: int) -> dict[str, Any]:
        z, x, labels = self.inputs(batch, seeded_generator(batch["exemplar"].device, self.seed, step, micro))
        response = self.model(z, x)
        loss = self.criterion(response, labels)
        with torch.no_grad():
            v = response.detach().float()
            peak = v.flatten(1).argmax(dim=1, keepdim=True)
            return {"loss": loss, "pos_response": v[labels > 0].mean(), "neg_response": v[labels == 0].mean(),
                    "peak_hit": labels.flatten(1).gather(1, peak).mean()}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"stats": dataclasses.asdict(self.stats), "in_chans": self.stats.num_bands}
