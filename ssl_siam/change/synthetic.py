"""Self-supervised change pretraining: unlabeled pairs of real dates with changes pasted into them.

Each training pair keeps its two real dates — whatever differs between them (sun, season, haze, sensor gain, and the
few real changes) is the *no change* class — and gets 1 to ``patches`` rectangles pasted into one of its dates, copied
from elsewhere in that same image (the date displaced by a random offset): new content with the scene's own
radiometry, so only the content tells the change. The target is the pasted area. The whole Siamese change network
learns from unlabeled imagery that a date's radiometry is not change and that new content is. Labels are never
used. The real second date also holds real changes, which this target calls *no change*: ``same_date`` makes a
share of the pairs one date twice (the copy photometrically jittered), which hold none, and ``no_change`` leaves a
share of the pairs without any rectangle. In the spirit of synthetic-change pretraining (e.g. Seo et al. 2023,
"Self-Pair"); the rectangles, the displaced donor and the real second date are this project's choices
(docs/finetuning.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_siam.data.transforms.photometric import jitter_raw


@dataclass(frozen=True)
class SyntheticChange:
    """``data.synthetic_change`` as the training step applies it (``seed``: the run's; mask pixels at
    ``ignore_index``, the padding of crops larger than their image, stay ignored)."""

    seed: int
    patches: int
    min_size: int
    max_size: int
    ignore_index: int = 255
    same_date: float = 0.0
    no_change: float = 0.0


def one_date_twice(pre: torch.Tensor, post: torch.Tensor, generator: torch.Generator, prob: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pair, with probability ``prob``, becomes one of its dates (pre or post, 1/2 each) twice, the second copy
    photometrically jittered (:func:`jitter_raw`): a pair with no real change, only radiometric differences. Other
    pairs are returned as they are (float32 when any pair was replaced)."""
    if prob <= 0:
        return pre, post
    if pre.shape != post.shape:
        raise ValueError(f"same_date needs pre and post with the same bands, got {tuple(pre.shape)} and "
                         f"{tuple(post.shape)}")
    b = pre.shape[0]
    chosen = (torch.rand(b, generator=generator, device=pre.device) < prob)[:, None, None, None]
    from_post = (torch.rand(b, generator=generator, device=pre.device) < 0.5)[:, None, None, None]
    source = torch.where(from_post, post, pre).to(torch.float32)
    copy = jitter_raw(source, pre.dtype, generator)
    return torch.where(chosen, source, pre.to(torch.float32)), torch.where(chosen, copy, post.to(torch.float32))


def paste_changes(pre: torch.Tensor, post: torch.Tensor, generator: torch.Generator, patches: int, min_size: int,
                  max_size: int, no_change: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, C, H, W]`` pre / post → the pair with pasted rectangles and the change target ``[B, H, W]`` (int64 0 / 1).

    Per pair: ``k`` uniform in 1..``patches`` rectangles, sides uniform in [``min_size``, ``max_size``] (clipped to
    the crop), anywhere inside it; each pair's rectangles go into its post image or, with probability 1/2, its pre
    image (appearing and disappearing content), copied from that image displaced by one offset per batch (each
    component uniform in [H/4, 3H/4], wrapping round); with probability ``no_change`` a pair gets none. One batched
    draw, no Python loop over pairs."""
    b, _, h, w = post.shape
    device = post.device
    hi_h, hi_w = min(max_size, h), min(max_size, w)
    lo_h, lo_w = min(min_size, hi_h), min(min_size, hi_w)

    def uniform_int(low: int | torch.Tensor, high: int | torch.Tensor, shape: tuple[int, ...] = (b, patches)
                    ) -> torch.Tensor:  # integers uniform in [low, high]
        u = torch.rand(shape, generator=generator, device=device)
        return (low + u * (high - low + 1)).floor().long().clamp(max=high)

    count = uniform_int(1, patches)[:, :1]  # [B, 1]
    active = torch.arange(patches, device=device)[None] < count  # [B, P]
    if no_change > 0:
        active &= (torch.rand(b, generator=generator, device=device) >= no_change)[:, None]
    ph, pw = uniform_int(lo_h, hi_h), uniform_int(lo_w, hi_w)
    y, x = uniform_int(0, h - ph), uniform_int(0, w - pw)
    rows = torch.arange(h, device=device)[None, None, :, None]
    cols = torch.arange(w, device=device)[None, None, None, :]
    inside = ((rows >= y[..., None, None]) & (rows < (y + ph)[..., None, None]) & (cols >= x[..., None, None])
              & (cols < (x + pw)[..., None, None]) & active[..., None, None])
    mask = inside.any(1)  # [B, H, W]
    into_pre = (torch.rand(b, generator=generator, device=device) < 0.5)[:, None, None, None]
    shift = (int(uniform_int(h // 4, 3 * h // 4, (1,))), int(uniform_int(w // 4, 3 * w // 4, (1,))))
    where = mask[:, None]
    pre = torch.where(where & into_pre, pre.roll(shift, (2, 3)), pre)
    post = torch.where(where & ~into_pre, post.roll(shift, (2, 3)), post)
    return pre, post, mask.long()
