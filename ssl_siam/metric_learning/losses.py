"""Siamese metric-learning losses: contrastive, triplet and a learned (Koch-style) similarity head.

Pair losses take embeddings ``e1, e2`` ``[N, D]`` and ``y`` ``[N]`` with 1 = similar (same place / unchanged) and
0 = dissimilar, and return ``(loss, parts)`` with the parts detached for logging; the triplet loss takes anchors,
positives and negatives ``[N, D]``. Each loss also scores pairs with ``similarity(e1, e2)`` ``[N]`` (higher = more
similar) for verification. All math runs in float32 whatever the autocast dtype; an empty batch gives a zero loss
still attached to the graph. The classes register into the shared :data:`ssl_siam.change.losses.LOSSES` registry; build
one with :func:`build_metric_loss`, which refuses the segmentation losses kept there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_siam.core.errors import ConfigError
from ssl_siam.core.registry import Registry

DISTANCES = ("euclidean", "cosine")
PAIR_LOSSES = ("contrastive", "learned_metric")
TRIPLET_LOSSES = ("triplet",)
#: name → metric loss class (``loss.name`` of ``ssl-siam metric-train``)
METRIC_LOSSES: Registry[type[nn.Module]] = Registry("metric loss: loss.name")

_EPS = 1e-12  # squared euclidean distances are clamped here before sqrt: finite gradient at 0


def _check_distance(metric: str) -> None:
    if metric not in DISTANCES:
        raise ConfigError(f"loss.distance must be one of {', '.join(DISTANCES)}, got {metric!r}")


def pair_distance(e1: Tensor, e2: Tensor, metric: str) -> Tensor:
    """Row-wise distance of ``[N, D]`` embeddings → ``[N]`` float32.

    ``euclidean``: ``sqrt(max(Σ (e1 − e2)², 1e-12))``; ``cosine``: ``1 − cos(e1, e2)`` in [0, 2].
    """
    _check_distance(metric)
    with torch.autocast(e1.device.type, enabled=False):
        e1, e2 = e1.float(), e2.float()
        if metric == "euclidean":
            return (e1 - e2).pow(2).sum(dim=-1).clamp_min(_EPS).sqrt()
        return 1 - F.cosine_similarity(e1, e2, dim=-1)


def distance_matrix(x: Tensor, metric: str) -> Tensor:
    """All-pairs distance of ``[N, D]`` embeddings → ``[N, N]`` float32, same definitions as :func:`pair_distance`.

    Euclidean uses ``‖x_i‖² + ‖x_j‖² − 2 x_i·x_j`` (one matmul); the diagonal is
    ``sqrt(1e-12) = 1e-6`` rather than exactly 0.
    """
    _check_distance(metric)
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        if metric == "euclidean":
            sq = x.pow(2).sum(dim=1)  # [N]
            d2 = sq[:, None] + sq[None, :] - 2 * x @ x.T  # [N, N]
            # self-distances are 0 by definition: their rounding error (~1e-7·‖x‖²) would grow to ~3e-4·‖x‖ under sqrt
            d2 = d2.masked_fill(torch.eye(len(x), dtype=torch.bool, device=x.device), 0)
            return d2.clamp_min(_EPS).sqrt()
        unit = F.normalize(x, dim=1)
        return 1 - unit @ unit.T


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` ``[N]`` where ``mask`` ``[N]`` is true, 0 when it is nowhere; detached."""
    mask = mask.to(values.dtype)
    return ((values * mask).sum() / mask.sum().clamp_min(1)).detach()


def _targets(e1: Tensor, e2: Tensor, y: Tensor) -> Tensor:
    if e1.ndim != 2 or e1.shape != e2.shape or y.shape != e1.shape[:1]:
        raise ValueError(f"expected e1, e2 [N, D] and y [N], got {tuple(e1.shape)}, {tuple(e2.shape)} "
                         f"and {tuple(y.shape)}")
    return y.float()


@METRIC_LOSSES.register("contrastive")
class ContrastiveLoss(nn.Module):
    """Contrastive loss (Hadsell, Chopra & LeCun 2006, "Dimensionality Reduction by Learning an Invariant Mapping").

    Per pair ``L = y·D² + (1 − y)·max(0, m − D)²``, averaged over the N pairs: similar pairs are pulled together,
    dissimilar ones pushed out to the margin ``m`` and ignored beyond it. Parts: mean D of the similar
    (``pos_distance``) and dissimilar (``neg_distance``) pairs, 0 where there are none.
    """

    def __init__(self, margin: float = 1.0, distance: str = "euclidean") -> None:
        super().__init__()
        if margin <= 0:
            raise ConfigError(f"loss.margin must be > 0 for the contrastive loss, got {margin}")
        _check_distance(distance)
        self.margin, self.distance = float(margin), distance

    def forward(self, e1: Tensor, e2: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """e1, e2 ``[N, D]``, y ``[N]`` (1 = similar) → (0-dim float32 loss, parts)."""
        y = _targets(e1, e2, y)
        d = pair_distance(e1, e2, self.distance)  # [N]
        per_pair = y * d.pow(2) + (1 - y) * (self.margin - d).clamp_min(0).pow(2)
        loss = per_pair.sum() / max(per_pair.numel(), 1)
        return loss, {"pos_distance": _masked_mean(d, y > 0.5), "neg_distance": _masked_mean(d, y <= 0.5)}

    def similarity(self, e1: Tensor, e2: Tensor) -> Tensor:
        """``−D`` ``[N]``."""
        return -pair_distance(e1, e2, self.distance)


@METRIC_LOSSES.register("triplet")
class TripletLoss(nn.Module):
    """Triplet loss (Schroff, Kalenichenko & Philbin 2015, "FaceNet").

    ``mean over triplets of max(0, D(a, p) − D(a, n) + m)``. Parts: ``active_fraction`` (triplets with a positive
    loss) and the mean ``pos_distance`` D(a, p) and ``neg_distance`` D(a, n). No triplets give a zero loss.
    """

    def __init__(self, margin: float = 0.2, distance: str = "euclidean") -> None:
        super().__init__()
        if margin < 0:
            raise ConfigError(f"loss.margin must be ≥ 0 for the triplet loss, got {margin}")
        _check_distance(distance)
        self.margin, self.distance = float(margin), distance

    def forward(self, a: Tensor, p: Tensor, n: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """anchors, positives, negatives ``[N, D]`` → (0-dim float32 loss, parts)."""
        if a.ndim != 2 or a.shape != p.shape or a.shape != n.shape:
            raise ValueError(f"expected a, p, n [N, D], got {tuple(a.shape)}, {tuple(p.shape)}, {tuple(n.shape)}")
        d_ap, d_an = pair_distance(a, p, self.distance), pair_distance(a, n, self.distance)  # [N]
        per_triplet = (d_ap - d_an + self.margin).clamp_min(0)
        count = max(per_triplet.numel(), 1)
        loss = per_triplet.sum() / count  # N = 0: an empty sum, 0 and still attached to the graph
        parts = {"active_fraction": ((per_triplet > 0).sum() / count).float().detach(),
                 "pos_distance": (d_ap.sum() / count).detach(), "neg_distance": (d_an.sum() / count).detach()}
        return loss, parts

    def similarity(self, e1: Tensor, e2: Tensor) -> Tensor:
        """``−D`` ``[N]``."""
        return -pair_distance(e1, e2, self.distance)


@METRIC_LOSSES.register("learned_metric")
class LearnedMetricLoss(nn.Module):
    """Learned similarity (Koch, Zemel & Salakhutdinov 2015, "Siamese Neural Networks for One-shot Image Recognition").

    An MLP ``head`` (2·embed_dim → hidden_dim → ReLU → 1) on ``[|e1 − e2|, e1 ⊙ e2]`` gives a logit, trained with
    binary cross-entropy against ``y``; ``similarity`` is its sigmoid. Koch et al. use a weighted L1 distance; the
    product term adds the symmetric interaction features. Part ``accuracy``: ``logit > 0`` vs ``y``.
    """

    def __init__(self, embed_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        if embed_dim <= 0 or hidden_dim <= 0:
            raise ConfigError(f"learned_metric needs embed_dim > 0 and loss.metric_hidden_dim > 0, "
                              f"got {embed_dim} and {hidden_dim}")
        self.head = nn.Sequential(nn.Linear(2 * embed_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 1))

    def logits(self, e1: Tensor, e2: Tensor) -> Tensor:
        """e1, e2 ``[N, D]`` → float32 logits ``[N]`` (symmetric in e1, e2)."""
        with torch.autocast(e1.device.type, enabled=False):
            e1, e2 = e1.float(), e2.float()
            features = torch.cat([(e1 - e2).abs(), e1 * e2], dim=-1)  # [N, 2D]
            return self.head(features).squeeze(-1)

    def forward(self, e1: Tensor, e2: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """e1, e2 ``[N, D]``, y ``[N]`` (1 = similar) → (0-dim float32 BCE, parts)."""
        y = _targets(e1, e2, y)
        logit = self.logits(e1, e2)  # [N]
        count = max(logit.numel(), 1)
        loss = F.binary_cross_entropy_with_logits(logit, y, reduction="sum") / count
        accuracy = ((logit > 0).float() == y).sum() / count
        return loss, {"accuracy": accuracy.float().detach()}

    def similarity(self, e1: Tensor, e2: Tensor) -> Tensor:
        """``sigmoid(logit)`` ``[N]`` in (0, 1)."""
        return torch.sigmoid(self.logits(e1, e2))


def build_metric_loss(name: str, embed_dim: int, margin: float | None, distance: str,
                      hidden_dim: int = 256) -> nn.Module:
    """Build ``contrastive``, ``triplet`` or ``learned_metric``; ``margin=None`` keeps the class default.

    ``distance`` is checked for every loss (``learned_metric`` ignores it, as it does ``margin``). Unknown names
    raise a ConfigError listing the metric losses.
    """
    cls = METRIC_LOSSES.get(name)
    _check_distance(distance)
    if name == "learned_metric":
        return cls(embed_dim=embed_dim, hidden_dim=hidden_dim)
    kwargs = {} if margin is None else {"margin": margin}
    return cls(distance=distance, **kwargs)
