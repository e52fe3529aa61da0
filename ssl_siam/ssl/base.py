"""What every self-supervised objective provides to the shared training loop, and the registry that finds it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from ssl_siam.core.registry import Registry
from ssl_siam.train.optim import param_groups

if TYPE_CHECKING:
    from ssl_siam.ssl.config import AugmentConfig

#: name → :class:`Objective` subclass, in registration order (the order of ``ssl/__init__.py``'s import line);
#: the name is also the objective's section of the pretraining config
OBJECTIVES: Registry[type[Objective]] = Registry("objective")


@torch.no_grad()
def copy_buffers(source: nn.Module, target: nn.Module) -> None:
    """Copy BN running statistics; lightly's ``update_momentum`` only averages parameters."""
    for src, dst in zip(source.buffers(), target.buffers()):
        dst.copy_(src)


def fp32_loss(criterion: Callable[..., torch.Tensor], *args: torch.Tensor | list[torch.Tensor],
              **kwargs: object) -> torch.Tensor:
    """``criterion`` on float32 copies of its tensor (or list-of-tensor) arguments with autocast off.

    Autocast would run e.g. lightly DINOLoss's einsum as a bf16 matmul over out_dim probabilities; the loss
    must not depend on the device's autocast op lists."""
    def fp32(x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        return [t.float() for t in x] if isinstance(x, list) else x.float()

    first = args[0][0] if isinstance(args[0], list) else args[0]
    with torch.autocast(first.device.type, enabled=False):
        return criterion(*(fp32(a) for a in args), **kwargs)


class Objective(nn.Module):
    """An SSL method: ``forward(views, step)`` returns ``{"loss", "embedding", ...scalars to log}``.

    ``views`` is a list of ``[B, C, H, W]`` tensors; ``embedding`` ``[B, D]`` feeds the collapse monitor.
    Schedules are pure functions of the optimizer ``step`` given ``configure(total_steps, steps_per_epoch)``.

    A subclass is built as ``cls(make_encoder, cfg)`` from the pretraining config; ``make_encoder()`` returns a
    fresh timm backbone (pooled features), so EMA teachers are built, not deep-copied (DINO's weight-normed head
    cannot be deep-copied). It declares ``options``, the dataclass of its config section (named as the objective,
    set with ``<name>.key=value``; a run resumes only under the same options), and for ``ssl-siam bench`` the
    recipe it measures, the overrides that make every step a full update, and lightly's reference transform.
    """

    options: ClassVar[type]
    bench_recipe: ClassVar[str]
    bench_overrides: ClassVar[tuple[str, ...]] = ()
    total_steps: int = 1
    steps_per_epoch: int = 1

    def configure(self, total_steps: int, steps_per_epoch: int) -> None:
        self.total_steps, self.steps_per_epoch = max(total_steps, 1), max(steps_per_epoch, 1)

    def param_groups(self) -> list[dict]:
        return param_groups(self.parameters())

    def before_optimizer_step(self, step: int) -> None:
        """Called after backward, before the optimizer step (e.g. cancel gradients)."""

    def after_optimizer_step(self, step: int) -> None:
        """Called after the optimizer step (e.g. EMA teacher update)."""

    def export_encoder(self) -> nn.Module:
        """The backbone to export for downstream use."""
        raise NotImplementedError

    @staticmethod
    def lightly_transform(global_size: int, local_size: int, augment: AugmentConfig) -> Callable:
        """lightly's PIL transform of this method at our view sizes, the reference ``ssl-siam bench`` compares."""
        raise NotImplementedError
