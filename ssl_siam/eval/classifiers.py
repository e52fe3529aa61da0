"""Classifiers on frozen features: an L2-regularised linear probe (swept on a held-out part of the training
features) and the temperature-weighted kNN of DINO (Caron et al. 2021, ``eval_knn.py``)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ssl_siam.eval.scores import accuracy
from ssl_siam.eval.splits import stratified_split

LEARNING_RATES = (1e-3, 1e-2, 1e-1)
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)


def fit_linear(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, lr: float, weight_decay: float, steps: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on x [N, F], y [N]: full-batch Adam on cross-entropy +
    ``weight_decay`` · ||W||², from zero weights (the problem is convex, so this is deterministic).
    Returns (weight [K, F], bias [K])."""
    weight = torch.zeros(num_classes, x.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(x @ weight.T + bias, y) + weight_decay * weight.square().sum()
        loss.backward()
        optimizer.step()
    return weight.detach(), bias.detach()


def linear_probe(
    train_x: torch.Tensor,
    train_y: np.ndarray,
    test_x: torch.Tensor,
    num_classes: int,
    *,
    lrs: Sequence[float] = LEARNING_RATES,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    steps: int = 200,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, dict[str, float]]:
    """Predicted test classes [M] and the chosen ``{"lr", "weight_decay"}``.

    Features are standardised with the training mean / std. Every (lr, weight decay) is fitted on a seeded
    stratified 80% of the training features and scored (top-1) on the other 20%; the best (first on ties) is
    refitted on all training features. Without a usable validation part the middle setting is used. Fitted on
    ``device``.
    """
    train_x, test_x = train_x.float().to(device), test_x.float().to(device)
    mean, std = train_x.mean(0), train_x.std(0, unbiased=False).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    y = torch.as_tensor(train_y, dtype=torch.int64, device=train_x.device)
    held = stratified_split(train_y, val_fraction, seed) if len(train_y) > 1 else np.zeros(len(train_y), bool)
    grid = list(itertools.product(lrs, weight_decays))
    best = grid[len(grid) // 2]
    if held.any() and not held.all():
        fit, val = torch.from_numpy(~held).to(train_x.device), torch.from_numpy(held).to(train_x.device)
        scores = []
        for lr, weight_decay in grid:
            weight, bias = fit_linear(train_x[fit], y[fit], num_classes, lr, weight_decay, steps)
            scores.append(accuracy(train_y[held], (train_x[val] @ weight.T + bias).argmax(1).cpu().numpy()))
        best = grid[int(np.argmax(scores))]
    weight, bias = fit_linear(train_x, y, num_classes, *best, steps)
    return (test_x @ weight.T + bias).argmax(1).cpu().numpy(), {"lr": best[0], "weight_decay": best[1]}


def knn_votes(
    train_x: torch.Tensor,
    train_y: np.ndarray,
    test_x: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """[M, K] class votes: cosine similarity of L2-normalised features, the ``k`` most similar training samples
    each voting exp(sim / T) for its class (DINO's weighted kNN; T = 0.07)."""
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be positive and temperature > 0, got {k} and {temperature}")
    train = F.normalize(train_x.float(), dim=1)
    labels = torch.as_tensor(train_y, dtype=torch.int64, device=train.device)
    k = min(k, len(train))
    votes = []
    for query in F.normalize(test_x.float().to(train.device), dim=1).split(chunk):
        sims, nearest = (query @ train.T).topk(k, dim=1)  # [q, k]
        one_hot = F.one_hot(labels[nearest], num_classes).float()  # [q, k, K]
        votes.append((one_hot * (sims / temperature).exp()[..., None]).sum(1))
    return torch.cat(votes).cpu()


def knn_predict(
    train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, num_classes: int, k: int = 20,
    temperature: float = 0.07,
) -> np.ndarray:
    """Predicted test classes [M]: the class with the most weighted votes (:func:`knn_votes`)."""
    return knn_votes(train_x, train_y, test_x, num_classes, k, temperature).argmax(1).numpy()



def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float = 1.0, max_iter: int = 500
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on x [N, F] (float64), y [N]: minimises ``½‖W‖² + c · Σ_i CE(W x_i + b,
    y_i)`` (scikit-learn's ``LogisticRegression(C=c)``; the bias is not penalised) with L-BFGS from zero weights.
    Convex, so the result does not depend on a seed. Returns (weight [K, F], bias [K])."""
    if c <= 0:
        raise ValueError(f"c must be positive, got {c}")
    weight = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
    scale = 1.0 / (c * len(y))  # the same minimiser divided by c·N, so the loss is O(1)

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * scale * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def logistic_regression(
    train_x: torch.Tensor,
    train_y: np.ndarray,
    test_x: torch.Tensor,
    num_classes: int,
    *,
    c: float = 1.0,
    center: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> np.ndarray:
    """Predicted test classes [M] of :func:`fit_logistic` on standardised features — a fixed penalty, nothing
    tuned. Standardised with ``center`` = (mean [F], std [F]) when given (e.g. of every unlabelled training image,
    which a few labels cannot estimate), else with those of ``train_x``; fitted on the device of ``train_x``."""
    train_x, test_x = train_x.double(), test_x.double().to(train_x.device)
    mean, std = center if center is not None else (train_x.mean(0), train_x.std(0, unbiased=False))
    mean, std = mean.double().to(train_x.device), std.double().to(train_x.device)
    std = std.clamp_min(1e-6 * float(std.max()) + 1e-12)  # a constant feature stays 0 instead of blowing up
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    y = torch.as_tensor(train_y, dtype=torch.int64, device=train_x.device)
    weight, bias = fit_logistic(train_x, y, num_classes, c)
    return (test_x @ weight.T + bias).argmax(1).cpu().numpy()
