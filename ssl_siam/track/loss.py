"""SiamFC's training target and loss (Bertinetto et al. 2016, section 2.2): a response cell is positive when it lies
within ``radius`` px of the target, negative elsewhere, and the logistic loss ``log(1 + exp(−y·v))`` is averaged with
class-balanced weights, so the few positives of a map weigh as much as its many negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_siam.track.model import response_offsets


def label_map(offsets: Tensor, size: int, stride: int, radius: float) -> Tensor:
    """``offsets`` [B, 2] target position (x, y) in search px from the search centre → [B, 1, size, size] float
    labels: 1 where a cell's displacement (:func:`~ssl_siam.track.model.response_offsets`) is within ``radius`` px
    of the target, else 0. A radius of at least ``stride / √2`` gives every target a positive cell."""
    cells = response_offsets(size, stride).to(offsets.device)
    dx = cells[None, None, :] - offsets[:, 0, None, None]  # [B, 1, size]: columns
    dy = cells[None, :, None] - offsets[:, 1, None, None]  # [B, size, 1]: rows
    return (dx.square() + dy.square() <= radius**2).float()[:, None]


class BalancedLogisticLoss(nn.Module):
    """``forward(response [B, 1, h, w] logits, labels [B, 1, h, w] in {0, 1})`` → scalar: per sample, the positives'
    weights sum to 1/2 and the negatives' to 1/2 (a class absent from a map leaves the other's 1/2); batch mean."""

    def forward(self, response: Tensor, labels: Tensor) -> Tensor:
        dims = tuple(range(1, response.ndim))
        positives = labels.sum(dims, keepdim=True).clamp_min(1)
        negatives = (1 - labels).sum(dims, keepdim=True).clamp_min(1)
        weights = torch.where(labels > 0, 0.5 / positives, 0.5 / negatives)
        losses = F.binary_cross_entropy_with_logits(response.float(), labels, reduction="none")  # log(1 + e^(−y·v))
        return (weights * losses).sum(dims).mean()
