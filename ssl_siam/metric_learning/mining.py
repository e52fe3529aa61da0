"""Online mining of triplets and pairs within a batch, from an ``[N, N]`` distance matrix and ``[N]`` labels.

Mining returns indices only, computed without gradients on the detached distances; the caller gathers the
embeddings with them (``embeddings[a]``) so the loss's gradients flow. Everything is masks and arg-reductions
over the whole batch (``±inf`` outside the candidates), no loop over anchors. Ties go to the lowest index.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightly.utils.dist import gather, rank, world_size
from torch import Tensor

from ssl_siam.core.errors import ConfigError

MINING = ("all", "semi-hard", "batch-hard")


def _masks(distances: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """float32 distances ``[N, N]``, positive mask (same label, not self) and negative mask (other label)."""
    n = labels.shape[0] if labels.ndim == 1 else -1
    if distances.shape != (n, n):
        raise ValueError(f"expected distances [N, N] and labels [N], got {tuple(distances.shape)} "
                         f"and {tuple(labels.shape)}")
    labels = labels.to(distances.device)
    same = labels[:, None] == labels[None, :]  # [N, N]
    eye = torch.eye(n, dtype=torch.bool, device=distances.device)
    return distances.detach().float(), same & ~eye, ~same


def _hardest(d: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Anchors with ≥ 1 positive and ≥ 1 negative ``[A]``, their farthest positive and closest negative ``[A]``."""
    anchors = (pos.any(dim=1) & neg.any(dim=1)).nonzero().squeeze(1)
    hardest_pos = torch.where(pos, d, float("-inf")).argmax(dim=1)  # [N]
    hardest_neg = torch.where(neg, d, float("inf")).argmin(dim=1)
    return anchors, hardest_pos[anchors], hardest_neg[anchors]


@torch.no_grad()
def mine_triplets(distances: Tensor, labels: Tensor, strategy: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(anchor, positive, negative)`` long index tensors ``[T]`` on the distances' device.

    ``all``: every ``(a, p, n)`` with ``labels[a] == labels[p]``, ``a ≠ p`` and ``labels[n] ≠ labels[a]``.
    ``semi-hard`` (Schroff et al. 2015, FaceNet; as ``tfa.losses.TripletSemiHardLoss``): for each positive pair the
    closest negative farther than ``D(a, p)``, else the farthest negative; anchors without negatives are dropped.
    ``batch-hard`` (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss"): one triplet per anchor with
    ≥ 1 positive and ≥ 1 negative, its farthest positive and closest negative.
    """
    if strategy not in MINING:
        raise ConfigError(f"loss.mining must be one of {', '.join(MINING)} for triplets, got {strategy!r}")
    d, pos, neg = _masks(distances, labels)
    if strategy == "all":
        a, p, n = (pos[:, :, None] & neg[:, None, :]).nonzero(as_tuple=True)  # [N, N, N] mask
        return a, p, n
    if strategy == "batch-hard":
        return _hardest(d, pos, neg)
    a, p = pos.nonzero(as_tuple=True)  # [P] positive pairs
    d_ap = d[a, p]  # [P]
    d_an, is_neg = d[a], neg[a]  # [P, N]
    farther = is_neg & (d_an > d_ap[:, None])
    semi_hard = torch.where(farther, d_an, float("inf")).argmin(dim=1)  # [P]
    fallback = torch.where(is_neg, d_an, float("-inf")).argmax(dim=1)
    n = torch.where(farther.any(dim=1), semi_hard, fallback)
    keep = is_neg.any(dim=1)
    return a[keep], p[keep], n[keep]


@torch.no_grad()
def mine_pairs(distances: Tensor, labels: Tensor, strategy: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(i, j, y)``: long indices ``[M]`` and float32 targets ``[M]`` (1 = same label) on the distances' device.

    ``all``: every pair ``i < j``. ``batch-hard``: per anchor with ≥ 1 positive and ≥ 1 negative, its farthest
    positive (y = 1) and its closest negative (y = 0): ``2A`` pairs, all positives first, then all negatives.
    """
    if strategy == "semi-hard":
        raise ConfigError("loss.mining=semi-hard applies to the triplet loss; pair losses take all or batch-hard")
    if strategy not in MINING:
        raise ConfigError(f"loss.mining must be one of all, batch-hard for pairs, got {strategy!r}")
    d, pos, neg = _masks(distances, labels)
    if strategy == "all":
        i, j = torch.triu_indices(len(d), len(d), offset=1, device=d.device)
        return i, j, pos[i, j].float()
    anchors, hardest_pos, hardest_neg = _hardest(d, pos, neg)
    y = torch.cat([torch.ones_like(anchors), torch.zeros_like(anchors)]).float()
    return anchors.repeat(2), torch.cat([hardest_pos, hardest_neg]), y


def gather_batch(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mining candidates from every process (torchrun): all embeddings ``[W·N, D]`` — gradients flow back to the
    process that owns each row (lightly's ``GatherLayer``) — their labels ``[W·N]``, and the mask ``[W·N]`` of this
    process's own rows, the anchors it mines for (so each anchor is mined once, on its own process). Every
    process must hold the same ``N``. Identity (all rows local) on a single process."""
    if world_size() == 1:
        return embeddings, labels, torch.ones(len(labels), dtype=torch.bool, device=labels.device)
    everything = torch.cat(gather(embeddings))
    all_labels = [torch.empty_like(labels) for _ in range(world_size())]
    dist.all_gather(all_labels, labels.contiguous())
    local = torch.zeros(len(everything), dtype=torch.bool, device=labels.device)
    local[rank() * len(labels):(rank() + 1) * len(labels)] = True
    return everything, torch.cat(all_labels), local
