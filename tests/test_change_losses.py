"""Focal, Dice, FocalDice and deep supervision against hand computations; ignore index; training signal."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_siam.change.losses import (
    LOSSES,
    DeepSupervisionLoss,
    DiceLoss,
    FocalDiceLoss,
    FocalLoss,
    build_loss,
    resize_target,
)
from ssl_siam.core.errors import ConfigError

IGNORE = 255


def batch(b: int = 2, k: int = 5, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits ``[b, k, size, size]`` and a target with about a fifth of its pixels ignored."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, size, size, generator=g) * 2
    target = torch.randint(0, k, (b, size, size), generator=g)
    target[torch.rand(b, size, size, generator=g) < 0.2] = IGNORE
    return logits, target


def scalar(out: torch.Tensor | tuple) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def pixel(*values: float) -> torch.Tensor:
    """One pixel's logits as ``[1, K, 1, 1]``."""
    return torch.tensor(values).view(1, -1, 1, 1)


# --- focal -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("b", [1, 3])
def test_focal_gamma0_is_cross_entropy(b: int) -> None:
    logits, target = batch(b=b)
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), expected)


def test_focal_one_pixel_by_hand() -> None:
    logits = pixel(0.0, math.log(3.0))  # softmax → p = (1/4, 3/4)
    easy, hard = torch.ones(1, 1, 1, dtype=torch.long), torch.zeros(1, 1, 1, dtype=torch.long)
    loss = FocalLoss(num_classes=2, gamma=2.0)
    assert loss(logits, easy).item() == pytest.approx(-(0.25**2) * math.log(0.75), rel=1e-5)
    assert loss(logits, hard).item() == pytest.approx(-(0.75**2) * math.log(0.25), rel=1e-5)
    alpha = FocalLoss(num_classes=2, gamma=2.0, alpha=[0.25, 0.75])
    assert alpha(logits, easy).item() == pytest.approx(-0.75 * 0.25**2 * math.log(0.75), rel=1e-5)
    assert alpha(logits, hard).item() == pytest.approx(-0.25 * 0.75**2 * math.log(0.25), rel=1e-5)


def test_focal_alpha_weights_each_pixel_by_its_class() -> None:
    logits, target = batch()
    alpha = [0.1, 0.5, 1.0, 2.0, 4.0]
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")  # 0 at ignored pixels
    valid = target != IGNORE
    weights = torch.tensor(alpha)[torch.where(valid, target, 0)]
    expected = (weights * ce).sum() / valid.sum()  # plain mean over valid pixels, not divided by Σ α_t
    torch.testing.assert_close(FocalLoss(gamma=0.0, alpha=alpha)(logits, target), expected)


def test_focal_down_weights_easy_pixels() -> None:
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    easy, hard = pixel(4.0, 0.0, 0.0), pixel(-1.0, 0.0, 0.0)
    focal = FocalLoss(num_classes=3, gamma=2.0)
    assert focal(easy, target) < 2e-3 * F.cross_entropy(easy, target)  # (1 − p_t)² ≈ 0.035² = 1.2e-3
    assert focal(hard, target) > 0.5 * F.cross_entropy(hard, target)


def test_focal_is_stable_for_extreme_logits() -> None:
    logits = pixel(1e4, -1e4).repeat(1, 1, 2, 1).requires_grad_()
    target = torch.tensor([[[0], [1]]])  # one confidently right pixel, one confidently wrong
    loss = FocalLoss(num_classes=2)(logits, target)
    loss.backward()
    assert loss.item() == pytest.approx(1e4, rel=1e-4)  # mean of ≈0 and 2e4
    assert torch.isfinite(logits.grad).all()


# --- dice --------------------------------------------------------------------------------------------------------

# Two classes on a 2×2 image: class-1 probabilities and the target, with Dice worked out by hand below.
P1 = torch.tensor([[0.9, 0.2], [0.6, 0.5]])
TARGET = torch.tensor([[[1, 0], [1, 0]]])


def two_class_logits() -> torch.Tensor:
    return torch.stack([torch.zeros(2, 2), torch.logit(P1)]).unsqueeze(0)  # [1, 2, 2, 2]


def test_dice_by_hand() -> None:
    # class 0: p = .1 .8 .4 .5, y = 0 1 0 1 → (2·1.3 + 1) / (1.8 + 2 + 1); class 1: (2·1.5 + 1) / (2.2 + 2 + 1)
    dice0, dice1 = 3.6 / 4.8, 4.0 / 5.2
    loss = DiceLoss(num_classes=2)(two_class_logits(), TARGET)
    assert loss.item() == pytest.approx(((1 - dice0) + (1 - dice1)) / 2, rel=1e-5)
    weighted = DiceLoss(num_classes=2, class_weights=[1.0, 3.0])(two_class_logits(), TARGET)
    assert weighted.item() == pytest.approx((1 * (1 - dice0) + 3 * (1 - dice1)) / 4, rel=1e-5)


def test_dice_excludes_ignored_pixels() -> None:
    target = TARGET.clone()
    target[0, 1, 1] = IGNORE  # drops p1 = .5 (y = 0) from every sum
    dice0, dice1 = (2 * 0.8 + 1) / (1.3 + 1 + 1), (2 * 1.5 + 1) / (1.7 + 2 + 1)
    loss = DiceLoss(num_classes=2)(two_class_logits(), target)
    assert loss.item() == pytest.approx(((1 - dice0) + (1 - dice1)) / 2, rel=1e-5)


def test_dice_perfect_prediction_is_zero() -> None:
    _, target = batch()
    logits = F.one_hot(torch.where(target == IGNORE, 0, target), 5).permute(0, 3, 1, 2).float() * 30
    assert DiceLoss()(logits, target).item() < 1e-6


def test_dice_class_absent_from_both_costs_nothing() -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.long)  # class 1 absent from the target
    absent = DiceLoss(num_classes=2)(pixel(30.0, -30.0).expand(1, 2, 2, 2), target)
    predicted = DiceLoss(num_classes=2)(pixel(-30.0, 30.0).expand(1, 2, 2, 2), target)
    assert absent.item() < 1e-6
    assert predicted.item() > 0.7  # class 1 predicted but absent: dice_1 = 1 / (4 + 1)


# --- shared properties -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["focal", "dice", "focal_dice"])
def test_ignored_pixels_have_no_effect(name: str) -> None:
    loss = build_loss(name)
    logits, target = batch()
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    changed = torch.where(ignored, torch.randn_like(logits) * 100, logits).requires_grad_()
    torch.testing.assert_close(scalar(loss(changed, target)), scalar(loss(logits, target)))
    scalar(loss(changed, target)).backward()
    assert changed.grad[ignored].abs().max() == 0
    assert changed.grad[~ignored].abs().max() > 0


@pytest.mark.parametrize("name", ["focal", "dice", "focal_dice"])
def test_all_ignored_gives_zero_and_backward_works(name: str) -> None:
    logits = torch.randn(2, 5, 4, 4, requires_grad=True)
    value = scalar(build_loss(name)(logits, torch.full((2, 4, 4), IGNORE)))
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("name", ["focal", "dice", "focal_dice"])
def test_float32_under_autocast(name: str) -> None:
    logits, target = batch()
    logits = logits.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = scalar(build_loss(name)(logits, target))
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, scalar(build_loss(name)(logits.float(), target)))


def test_losses_are_stateless_and_validate_inputs() -> None:
    loss = FocalDiceLoss(alpha=[1.0] * 5, class_weights=[1.0] * 5)
    assert loss.state_dict() == {}  # weights are config, not checkpointed state
    logits, target = batch()
    torch.testing.assert_close(loss(logits, target)[0], loss(logits, target)[0])
    with pytest.raises(ConfigError, match="alpha"):
        FocalLoss(alpha=[1.0, 1.0])
    with pytest.raises(ConfigError, match="class_weights"):
        DiceLoss(class_weights=[1.0, -1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="target"):
        FocalLoss()(logits, target[:, :4])


# --- focal + dice ------------------------------------------------------------------------------------------------


def test_focal_dice_total_is_weighted_sum_of_parts() -> None:
    logits, target = batch()
    loss = FocalDiceLoss(focal_weight=2.0, dice_weight=0.5, alpha=[1, 2, 3, 4, 5], class_weights=[0, 1, 1, 2, 2])
    total, parts = loss(logits.requires_grad_(), target)
    assert set(parts) == {"focal", "dice"} and not any(p.requires_grad for p in parts.values())
    torch.testing.assert_close(parts["focal"], FocalLoss(alpha=[1, 2, 3, 4, 5])(logits, target).detach())
    torch.testing.assert_close(parts["dice"], DiceLoss(class_weights=[0, 1, 1, 2, 2])(logits, target).detach())
    torch.testing.assert_close(total, 2.0 * parts["focal"] + 0.5 * parts["dice"])
    assert total.requires_grad


# --- deep supervision --------------------------------------------------------------------------------------------


def test_resize_target_is_nearest_subsampling() -> None:
    _, target = batch(size=8)
    torch.testing.assert_close(resize_target(target, (4, 4)), target[:, ::2, ::2])
    torch.testing.assert_close(resize_target(target, (2, 2)), target[:, ::4, ::4])
    assert resize_target(target, (8, 8)) is target


def test_deep_supervision_by_hand() -> None:
    base = FocalDiceLoss()
    logits, target = batch(size=8)
    coarse, fine = torch.randn(2, 5, 2, 2), torch.randn(2, 5, 4, 4)
    outputs = {"logits": logits, "aux": [coarse, fine]}  # coarse → fine
    main, main_parts = base(logits, target)
    fine_loss, coarse_loss = base(fine, target[:, ::2, ::2])[0], base(coarse, target[:, ::4, ::4])[0]

    total, parts = DeepSupervisionLoss(base, [0.5, 0.25])(outputs, target)  # 0.5 → finest aux
    torch.testing.assert_close(total, main + 0.5 * fine_loss + 0.25 * coarse_loss)
    assert set(parts) == {"main", "main_focal", "main_dice", "aux0", "aux1", "total"}
    torch.testing.assert_close(parts["main_focal"], main_parts["focal"])
    torch.testing.assert_close(parts["aux0"], fine_loss)
    torch.testing.assert_close(parts["aux1"], coarse_loss)
    torch.testing.assert_close(parts["total"], total)

    extra, _ = DeepSupervisionLoss(base, [0.5, 0.25, 9.0])(outputs, target)  # extra weight ignored
    torch.testing.assert_close(extra, total)
    missing, parts = DeepSupervisionLoss(base, [0.5])(outputs, target)  # coarse stage weighs 0
    torch.testing.assert_close(missing, main + 0.5 * fine_loss)
    assert "aux1" not in parts


def test_deep_supervision_without_aux_is_main() -> None:
    logits, target = batch()
    main, _ = FocalDiceLoss()(logits, target)
    for outputs in ({"logits": logits, "aux": []}, {"logits": logits}):
        total, parts = DeepSupervisionLoss(FocalDiceLoss(), [0.5, 0.25])(outputs, target)
        torch.testing.assert_close(total, main)
        assert set(parts) == {"main", "main_focal", "main_dice", "total"}


def test_deep_supervision_accepts_scalar_base() -> None:
    logits, target = batch()
    aux = torch.randn(2, 5, 4, 4)
    total, parts = DeepSupervisionLoss(FocalLoss(), [1.0])({"logits": logits, "aux": [aux]}, target)
    torch.testing.assert_close(total, FocalLoss()(logits, target) + FocalLoss()(aux, target[:, ::2, ::2]))
    assert set(parts) == {"main", "aux0", "total"}


class TinySegNet(nn.Module):
    """One conv stem and a 1×1 head applied at full, 1/2 and 1/4 resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.head = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 5, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        feat = torch.relu(self.stem(x))
        aux = [self.head(F.avg_pool2d(feat, s)) for s in (4, 2)]
        return {"logits": self.head(feat), "aux": aux}


def test_deep_supervision_sgd_lowers_loss() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    target = (x * torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1, 1)).sum(1).mul(5 / 7).long().clamp_max(4)
    target[:, :2] = IGNORE
    model, loss = TinySegNet(), DeepSupervisionLoss(build_loss(), [0.4, 0.2])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    values = []
    for _ in range(30):
        total, _ = loss(model(x), target)
        opt.zero_grad()
        total.backward()
        opt.step()
        values.append(total.item())
    assert values[-1] < 0.8 * values[0]


# --- registry ----------------------------------------------------------------------------------------------------


def test_registry_and_factory() -> None:
    import ssl_siam.metric_learning.losses  # noqa: F401  (the metric losses have a registry of their own)

    assert LOSSES.names() == ["dice", "focal", "focal_dice"]
    assert isinstance(build_loss(), FocalDiceLoss)
    assert build_loss("focal", gamma=0.0).gamma == 0.0
    with pytest.raises(ConfigError, match="unknown loss 'lovasz'; valid: dice, focal, focal_dice"):
        build_loss("lovasz")
