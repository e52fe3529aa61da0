"""Metric losses and in-batch mining against hand computations; config errors; gradients through mined indices."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_siam.change.losses import LOSSES
from ssl_siam.core.errors import ConfigError
from ssl_siam.metric_learning.losses import (
    METRIC_LOSSES,
    PAIR_LOSSES,
    TRIPLET_LOSSES,
    ContrastiveLoss,
    LearnedMetricLoss,
    TripletLoss,
    build_metric_loss,
    distance_matrix,
    pair_distance,
)
from ssl_siam.metric_learning.mining import mine_pairs, mine_triplets


def t(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# 1-D points with labels [0, 0, 1, 1, 1]; |x_i − x_j| is
#   0: [ 0,  2,  3,  5, 10]
#   1: [ 2,  0,  1,  3,  8]
#   2: [ 3,  1,  0,  2,  7]
#   3: [ 5,  3,  2,  0,  5]
#   4: [10,  8,  7,  5,  0]
POINTS = t((0.0,), (2.0,), (3.0,), (5.0,), (10.0,))
LABELS = torch.tensor([0, 0, 1, 1, 1])


def batch_distances() -> torch.Tensor:
    return distance_matrix(POINTS, "euclidean")


def test_registered_and_exported() -> None:
    assert METRIC_LOSSES.names() == ["contrastive", "learned_metric", "triplet"]
    assert "focal" in LOSSES and "focal" not in METRIC_LOSSES  # the segmentation losses have their own registry
    assert PAIR_LOSSES == ("contrastive", "learned_metric") and TRIPLET_LOSSES == ("triplet",)


def test_contrastive_euclidean_by_hand() -> None:
    e1 = t((0.0, 0.0), (0.0, 0.0), (1.0, 1.0))
    e2 = t((0.3, 0.4), (0.6, 0.0), (1.0, 3.0))
    y = torch.tensor([1, 0, 0])
    # D = [0.5, 0.6, 2.0], m = 1:
    #   similar     y=1: D² = 0.25
    #   dissimilar  y=0: max(0, 1 − 0.6)² = 0.16
    #   dissimilar  y=0 beyond the margin: max(0, 1 − 2)² = 0
    #   mean = (0.25 + 0.16 + 0) / 3 = 0.41 / 3
    loss, parts = ContrastiveLoss(margin=1.0)(e1, e2, y)
    assert loss.item() == pytest.approx(0.41 / 3, abs=1e-6)
    assert parts["pos_distance"].item() == pytest.approx(0.5, abs=1e-6)
    assert parts["neg_distance"].item() == pytest.approx((0.6 + 2.0) / 2, abs=1e-6)
    assert torch.allclose(ContrastiveLoss().similarity(e1, e2), -torch.tensor([0.5, 0.6, 2.0]), atol=1e-6)
    # the margin-exceeding negative alone contributes exactly 0
    alone, _ = ContrastiveLoss(margin=1.0)(e1[2:], e2[2:], y[2:])
    assert alone.item() == 0.0


def test_contrastive_cosine_by_hand() -> None:
    e1 = t((1.0, 0.0), (1.0, 0.0), (2.0, 0.0))
    e2 = t((1.0, 1.0), (1.0, 1.0), (0.0, 3.0))
    y = torch.tensor([1.0, 0.0, 0.0])
    d = 1 - 1 / math.sqrt(2)  # cos((1,0), (1,1)) = 1/√2; orthogonal → D = 1
    assert torch.allclose(pair_distance(e1, e2, "cosine"), torch.tensor([d, d, 1.0]), atol=1e-6)
    # m = 0.5: y=1 → d²; y=0 → (0.5 − d)²; y=0 with D = 1 > m → 0
    loss, parts = ContrastiveLoss(margin=0.5, distance="cosine")(e1, e2, y)
    assert loss.item() == pytest.approx((d**2 + (0.5 - d) ** 2 + 0) / 3, abs=1e-6)
    assert parts["pos_distance"].item() == pytest.approx(d, abs=1e-6)


def test_pair_distance_euclidean_gradient_finite_at_zero() -> None:
    e1 = torch.ones(2, 3, requires_grad=True)
    d = pair_distance(e1, torch.ones(2, 3), "euclidean")
    assert torch.allclose(d, torch.full((2,), 1e-6))
    d.sum().backward()
    assert torch.isfinite(e1.grad).all()


def test_triplet_by_hand() -> None:
    a = t((0.0, 0.0), (0.0, 0.0), (1.0, 1.0))
    p = t((1.0, 0.0), (0.0, 0.5), (1.0, 2.0))
    n = t((0.0, 1.1), (2.0, 0.0), (1.0, 1.5))
    # D(a,p) = [1, 0.5, 1], D(a,n) = [1.1, 2, 0.5], m = 0.2:
    #   max(0, 1 − 1.1 + 0.2) = 0.1;  max(0, 0.5 − 2 + 0.2) = 0;  max(0, 1 − 0.5 + 0.2) = 0.7
    #   mean = 0.8 / 3, 2 of 3 active
    loss, parts = TripletLoss(margin=0.2)(a, p, n)
    assert loss.item() == pytest.approx(0.8 / 3, abs=1e-6)
    assert parts["active_fraction"].item() == pytest.approx(2 / 3)
    assert parts["pos_distance"].item() == pytest.approx(2.5 / 3, abs=1e-6)
    assert parts["neg_distance"].item() == pytest.approx(3.6 / 3, abs=1e-6)
    assert torch.allclose(TripletLoss().similarity(a, n), -torch.tensor([1.1, 2.0, 0.5]), atol=1e-6)


def test_triplet_empty_is_zero_and_backpropagates() -> None:
    a = torch.zeros(0, 4, requires_grad=True)
    loss, parts = TripletLoss()(a, torch.zeros(0, 4), torch.zeros(0, 4))
    assert loss.item() == 0.0 and loss.requires_grad
    assert all(math.isfinite(v.item()) for v in parts.values())
    loss.backward()
    assert a.grad is not None and a.grad.shape == (0, 4)


def test_losses_are_float32_under_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    e1, e2 = torch.randn(4, 8, generator=g).bfloat16(), torch.randn(4, 8, generator=g).bfloat16()
    y = torch.tensor([1, 0, 1, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for criterion in (ContrastiveLoss(), LearnedMetricLoss(8, 16)):
            loss, _ = criterion(e1, e2, y)
            assert loss.dtype == torch.float32
        assert TripletLoss()(e1, e2, e2.flip(0))[0].dtype == torch.float32
        assert distance_matrix(e1, "euclidean").dtype == torch.float32


def test_learned_metric_shapes_and_training() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    criterion = LearnedMetricLoss(embed_dim=8, hidden_dim=32)
    e1 = torch.randn(64, 8, generator=g)
    # first half: near-duplicates (similar); second half: unrelated vectors (dissimilar)
    e2 = torch.cat([e1[:32] + 0.05 * torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)])
    y = torch.cat([torch.ones(32), torch.zeros(32)])
    assert criterion.logits(e1, e2).shape == (64,)
    assert torch.allclose(criterion.logits(e1, e2), criterion.logits(e2, e1), atol=1e-6)  # symmetric features
    sim = criterion.similarity(e1, e2)
    assert sim.shape == (64,) and ((sim > 0) & (sim < 1)).all()
    optimizer = torch.optim.Adam(criterion.parameters(), lr=1e-2)
    first, _ = criterion(e1, e2, y)
    for _ in range(60):
        optimizer.zero_grad()
        loss, parts = criterion(e1, e2, y)
        loss.backward()
        optimizer.step()
    last, parts = criterion(e1, e2, y)
    assert last.item() < 0.5 * first.item()
    assert parts["accuracy"].item() > 0.9


def test_distance_matrix_matches_cdist_and_cosine() -> None:
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(distance_matrix(x, "euclidean"), torch.cdist(x, x), atol=1e-5)
    cosine = 1 - F.cosine_similarity(x[:, None], x[None, :], dim=-1)
    assert torch.allclose(distance_matrix(x, "cosine"), cosine, atol=1e-5)
    i, j = torch.triu_indices(12, 12, offset=1)
    assert torch.allclose(distance_matrix(x, "euclidean")[i, j], pair_distance(x[i], x[j], "euclidean"), atol=1e-5)


def test_mine_triplets_batch_hard() -> None:
    a, p, n = mine_triplets(batch_distances(), LABELS, "batch-hard")
    # farthest positive / closest negative per row of the table above
    assert a.tolist() == [0, 1, 2, 3, 4]
    assert p.tolist() == [1, 0, 4, 4, 2]
    assert n.tolist() == [2, 2, 1, 1, 1]
    assert a.dtype == p.dtype == n.dtype == torch.long


def test_mine_triplets_semi_hard() -> None:
    a, p, n = mine_triplets(batch_distances(), LABELS, "semi-hard")
    # (0,1) D=2: negatives 3,5,10 → closest > 2 is 3 (idx 2);  (1,0) D=2: negatives 1,3,8 → 3 (idx 3)
    # (2,3) D=2: negatives 3,1 → 3 (idx 0);  (2,4) D=7: none > 7 → farthest negative, 3 (idx 0)
    # (3,2) D=2: negatives 5,3 → 3 (idx 1);  (3,4) D=5: none > 5 (strict) → farthest, 5 (idx 0)
    # (4,2) D=7: negatives 10,8 → 8 (idx 1);  (4,3) D=5: → 8 (idx 1)
    assert a.tolist() == [0, 1, 2, 2, 3, 3, 4, 4]
    assert p.tolist() == [1, 0, 3, 4, 2, 4, 2, 3]
    assert n.tolist() == [2, 3, 0, 0, 1, 0, 1, 1]


def test_mine_triplets_all_and_degenerate_batches() -> None:
    a, p, n = mine_triplets(batch_distances(), LABELS, "all")
    # class 0: 2 anchors × 1 positive × 3 negatives; class 1: 3 anchors × 2 positives × 2 negatives
    assert len(a) == 2 * 1 * 3 + 3 * 2 * 2
    assert (LABELS[a] == LABELS[p]).all() and (a != p).all() and (LABELS[a] != LABELS[n]).all()
    assert len(set(zip(a.tolist(), p.tolist(), n.tolist()))) == len(a)
    # one class only: no negatives, nothing mined; a singleton class gives no anchor but serves as negative
    for strategy in ("all", "semi-hard", "batch-hard"):
        assert len(mine_triplets(batch_distances(), torch.zeros(5, dtype=torch.long), strategy)[0]) == 0
    a, p, n = mine_triplets(batch_distances()[:3, :3], torch.tensor([0, 0, 1]), "batch-hard")
    assert a.tolist() == [0, 1] and p.tolist() == [1, 0] and n.tolist() == [2, 2]


def test_mine_pairs() -> None:
    i, j, y = mine_pairs(batch_distances(), LABELS, "all")
    assert len(i) == 5 * 4 // 2 and (i < j).all()
    assert y.dtype == torch.float32 and y.tolist() == (LABELS[i] == LABELS[j]).float().tolist()
    assert y.sum().item() == 1 + 3  # C(2,2) + C(3,2) same-label pairs
    i, j, y = mine_pairs(batch_distances(), LABELS, "batch-hard")
    assert i.tolist() == [0, 1, 2, 3, 4] * 2
    assert j.tolist() == [1, 0, 4, 4, 2] + [2, 2, 1, 1, 1]  # farthest positives, then closest negatives
    assert y.tolist() == [1.0] * 5 + [0.0] * 5


def test_mining_errors() -> None:
    with pytest.raises(ConfigError, match=r"loss\.mining=semi-hard applies to the triplet loss"):
        mine_pairs(batch_distances(), LABELS, "semi-hard")
    for fn in (mine_pairs, mine_triplets):
        with pytest.raises(ConfigError, match=r"loss\.mining.*batch-hard"):
            fn(batch_distances(), LABELS, "hardest")


def test_build_metric_loss() -> None:
    assert build_metric_loss("contrastive", 8, None, "euclidean").margin == 1.0
    assert build_metric_loss("triplet", 8, None, "cosine").margin == 0.2
    triplet = build_metric_loss("triplet", 8, 0.5, "cosine")
    assert isinstance(triplet, TripletLoss) and triplet.margin == 0.5 and triplet.distance == "cosine"
    learned = build_metric_loss("learned_metric", 8, 1.0, "euclidean", hidden_dim=32)
    assert isinstance(learned, LearnedMetricLoss)
    assert (learned.head[0].in_features, learned.head[0].out_features) == (16, 32)  # [|e1 − e2|, e1 ⊙ e2] → hidden
    with pytest.raises(ConfigError, match=r"loss\.name.*contrastive, learned_metric, triplet"):
        build_metric_loss("focal", 8, None, "euclidean")
    with pytest.raises(ConfigError, match=r"unknown metric loss: loss\.name 'arcface'"):
        build_metric_loss("arcface", 8, None, "euclidean")
    with pytest.raises(ConfigError, match=r"loss\.distance"):
        build_metric_loss("contrastive", 8, None, "manhattan")
    with pytest.raises(ConfigError, match=r"loss\.margin"):
        build_metric_loss("contrastive", 8, 0.0, "euclidean")


def test_gradients_flow_through_mined_indices() -> None:
    g = torch.Generator().manual_seed(0)
    embeddings = torch.randn(8, 4, generator=g, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    distances = distance_matrix(embeddings.detach(), "euclidean")
    a, p, n = mine_triplets(distances, labels, "batch-hard")
    loss, _ = TripletLoss(margin=10.0)(embeddings[a], embeddings[p], embeddings[n])
    loss.backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    embeddings.grad = None
    i, j, y = mine_pairs(distances, labels, "batch-hard")
    loss, _ = ContrastiveLoss(margin=10.0)(embeddings[i], embeddings[j], y)
    loss.backward()
    assert embeddings.grad.abs().sum() > 0
