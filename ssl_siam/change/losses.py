"""Segmentation losses for damage and change maps: focal, soft Dice, their sum, deep supervision over decoder
stages, and the semantic-change combination.

Every loss takes logits ``[B, K, H, W]`` and a long target ``[B, H, W]`` whose ``ignore_index`` pixels
(xBD's ``un-classified``) count nowhere. Losses are computed in float32 whatever the autocast dtype, and keep no
state between calls: per-class weights are fixed configuration, held as non-persistent buffers so they follow
``.to(device)`` without entering checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_siam.core.errors import ConfigError
from ssl_siam.core.registry import Registry
from ssl_siam.data.semantic import split_code

#: name → loss class; build one with :func:`build_loss`.
LOSSES: Registry[type[nn.Module]] = Registry("loss")


def _class_weights(values: Sequence[float] | None, num_classes: int, what: str) -> Tensor:
    """``[K]`` float32 weights; ``None`` means 1 for every class."""
    if values is None:
        return torch.ones(num_classes)
    if len(values) != num_classes or any(v < 0 for v in values):
        raise ConfigError(f"{what} needs {num_classes} non-negative values, got {list(values)}")
    return torch.tensor([float(v) for v in values])


def _check(logits: Tensor, target: Tensor) -> None:
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"expected logits [B, K, H, W] and target [B, H, W], got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection").

    ``FL = −α_t (1 − p_t)^γ log p_t`` per pixel, averaged over non-ignored pixels (a plain mean, as the paper
    normalises by the number of anchors; unlike ``F.cross_entropy(weight=...)`` it does not divide by Σ α_t).
    ``γ = 0`` with ``alpha=None`` is cross-entropy. An all-ignored batch gives 0, still attached to the graph.
    """

    def __init__(self, num_classes: int = 5, gamma: float = 2.0, alpha: Sequence[float] | None = None,
                 ignore_index: int = 255) -> None:
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"focal gamma must be ≥ 0, got {gamma}")
        self.num_classes, self.gamma, self.ignore_index = num_classes, float(gamma), ignore_index
        self.register_buffer("alpha", _class_weights(alpha, num_classes, "focal alpha"), persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits ``[B, K, H, W]``, target ``[B, H, W]`` long → 0-dim float32 loss."""
        _check(logits, target)
        valid = target != self.ignore_index  # [B, H, W]
        safe = torch.where(valid, target, 0)
        # log_softmax in float32 is the stable form; p_t and 1 − p_t follow from log p_t without cancellation.
        log_pt = F.log_softmax(logits.float(), dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)  # [B, H, W]
        loss = -self.alpha[safe] * (-torch.expm1(log_pt)).pow(self.gamma) * log_pt
        loss = torch.where(valid, loss, 0.0)  # ignored pixels: zero value and zero gradient
        return loss.sum() / valid.sum().clamp_min(1)


@LOSSES.register("dice")
class DiceLoss(nn.Module):
    """Multi-class soft Dice (Milletari et al. 2016, V-Net) on softmax probabilities vs the one-hot target.

    Per class ``c``, over the whole batch and non-ignored pixels only:
    ``dice_c = (2 Σ p_c y_c + smooth) / (Σ p_c + Σ y_c + smooth)``; loss ``= Σ_c w_c (1 − dice_c) / Σ_c w_c``.
    A class absent from the target but predicted is penalised (``dice_c = smooth / (Σ p_c + smooth)``); a class
    absent from both gives ``dice_c ≈ 1`` (exactly 1 when ``Σ p_c = 0``), i.e. no penalty. Softmax is never
    exactly 0, so over a large batch an absent class still pushes its residual probability down a little.
    """

    def __init__(self, num_classes: int = 5, class_weights: Sequence[float] | None = None,
                 ignore_index: int = 255, smooth: float = 1.0) -> None:
        super().__init__()
        weights = _class_weights(class_weights, num_classes, "dice class_weights")
        if weights.sum() <= 0:
            raise ConfigError("dice class_weights must not all be 0")
        self.num_classes, self.ignore_index, self.smooth = num_classes, ignore_index, float(smooth)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits ``[B, K, H, W]``, target ``[B, H, W]`` long → 0-dim float32 loss."""
        _check(logits, target)
        valid = (target != self.ignore_index).unsqueeze(1)  # [B, 1, H, W]
        probs = torch.where(valid, F.softmax(logits.float(), dim=1), 0.0)  # [B, K, H, W]
        safe = torch.where(valid.squeeze(1), target, 0)
        onehot = (F.one_hot(safe, self.num_classes).permute(0, 3, 1, 2) * valid).to(probs.dtype)  # [B, K, H, W]
        dims = (0, 2, 3)
        intersection = (probs * onehot).sum(dims)  # [K]
        denominator = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        return (self.class_weights * (1 - dice)).sum() / self.class_weights.sum()


@LOSSES.register("focal_dice")
class FocalDiceLoss(nn.Module):
    """``focal_weight · focal + dice_weight · dice``: focal handles hard pixels, Dice the xBD class imbalance.

    ``alpha`` weights focal, ``class_weights`` weights Dice. Returns ``(total, {"focal", "dice"})`` with the
    parts detached for logging.
    """

    def __init__(self, focal_weight: float = 1.0, dice_weight: float = 1.0, num_classes: int = 5,
                 gamma: float = 2.0, alpha: Sequence[float] | None = None,
                 class_weights: Sequence[float] | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.focal_weight, self.dice_weight = float(focal_weight), float(dice_weight)
        self.focal = FocalLoss(num_classes, gamma, alpha, ignore_index)
        self.dice = DiceLoss(num_classes, class_weights, ignore_index)

    def forward(self, logits: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        focal, dice = self.focal(logits, target), self.dice(logits, target)
        total = self.focal_weight * focal + self.dice_weight * dice
        return total, {"focal": focal.detach(), "dice": dice.detach()}


class DeepSupervisionLoss(nn.Module):
    """Main loss plus weighted losses on coarser decoder outputs (deeply supervised nets, Lee et al. 2015).

    ``outputs["aux"]`` lists ``[B, K, h, w]`` logits coarse → fine; ``aux_weights[0]`` applies to the *finest*
    aux stage, ``aux_weights[1]`` to the next coarser, and so on (missing weights are 0 and those stages are not
    computed; extra weights are ignored). Parts ``aux0, aux1, ...`` are numbered the same way (aux0 = finest),
    so logs stay comparable across decoders of different depth.

    The target is brought to each aux size by nearest-neighbour subsampling rather than upsampling the aux
    logits bilinearly: labels and the ignore index stay exact (no interpolated class ids), and the coarse
    stage is judged at its own resolution at a fraction of the cost. Thin structures can vanish from a coarse
    target; that is acceptable for a down-weighted auxiliary signal.

    ``base`` returns ``(total, parts)`` (e.g. :class:`FocalDiceLoss`) or a bare scalar.
    """

    def __init__(self, base: nn.Module, aux_weights: Sequence[float]) -> None:
        super().__init__()
        self.base = base
        self.aux_weights = tuple(float(w) for w in aux_weights)

    def _base(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Mapping[str, Tensor]]:
        out = self.base(logits, target)
        return out if isinstance(out, tuple) else (out, {})

    def forward(self, outputs: Mapping[str, Tensor | Sequence[Tensor]],
                target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """outputs ``{"logits": [B, K, H, W], "aux": [[B, K, h, w], ...]}``, target ``[B, H, W]``."""
        total, base_parts = self._base(outputs["logits"], target)
        parts = {"main": total.detach(), **{f"main_{k}": v for k, v in base_parts.items()}}
        for i, aux in enumerate(reversed(list(outputs.get("aux") or ()))):
            weight = self.aux_weights[i] if i < len(self.aux_weights) else 0.0
            if weight == 0.0:
                continue
            aux_loss, _ = self._base(aux, resize_target(target, aux.shape[-2:]))
            total = total + weight * aux_loss
            parts[f"aux{i}"] = aux_loss.detach()
        parts["total"] = total.detach()
        return total, parts


class SemanticChangeLoss(nn.Module):
    """Semantic change (SECOND): ``change`` (e.g. deep-supervised Focal + Dice) on the change logits against
    ``label1 > 0``, plus ``semantic_weight`` × the cross-entropy of each date's land-cover logits on the changed
    pixels (SECOND labels land cover only where it changed; class ``c`` ≥ 1 is logit ``c − 1``).

    The target is the code mask ``label1 · 7 + label2`` (:mod:`ssl_siam.data.semantic`); ``ignore_index`` pixels
    count in no term."""

    def __init__(self, change: nn.Module, semantic_weight: float = 1.0, ignore_index: int = 255) -> None:
        super().__init__()
        self.change, self.semantic_weight, self.ignore_index = change, float(semantic_weight), ignore_index

    def forward(self, outputs: Mapping[str, Tensor | Sequence[Tensor]],
                target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        label1, label2 = split_code(target, self.ignore_index)
        changed = torch.where(label1 == self.ignore_index, label1, (label1 > 0).long())
        total, parts = self.change(outputs, changed)
        semantic = outputs["semantic"]
        assert isinstance(semantic, Tensor)
        for date, label in enumerate((label1, label2), start=1):
            classes = torch.where((label > 0) & (label != self.ignore_index), label - 1, -100)
            logits = semantic[:, date - 1].float()
            if (classes >= 0).any():
                loss = F.cross_entropy(logits, classes, ignore_index=-100)
            else:  # no changed pixel in the batch: a zero that keeps the graph
                loss = logits.sum() * 0.0
            total = total + self.semantic_weight * loss
            parts[f"semantic{date}"] = loss.detach()
        parts["total"] = total.detach()
        return total, parts


def resize_target(target: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest-neighbour resize of a label map ``[B, H, W]`` to ``[B, *size]``; class ids and ignore stay exact.

    For an integer factor ``s`` this picks ``target[:, ::s, ::s]`` (PyTorch ``mode="nearest"``).
    """
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.interpolate(target.unsqueeze(1).float(), size=tuple(size), mode="nearest").squeeze(1).long()


def build_loss(name: str = "focal_dice", **kwargs: object) -> nn.Module:
    """Build a registered loss by name (``focal``, ``dice``, ``focal_dice``); unknown names raise ConfigError."""
    return LOSSES.get(name)(**kwargs)
