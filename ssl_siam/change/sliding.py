"""Whole-scene inference of a pair model: overlapping windows with Gaussian blending and flip TTA, streamed by
rows so a scene of any size passes through bounded memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from ssl_siam.core.errors import DataError

_FLIPS = ((), (-1,), (-2,), (-2, -1))  # identity, hflip, vflip, both, as dims of [B, C, H, W]


def window_weights(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """[size, size] Gaussian window (sigma = size / 8, peak 1), as in nnU-Net (Isensee et al., 2021).

    Predictions near a window's border, where padding cuts the receptive field, count less than those near its
    centre; the weight never reaches 0 (>= e^-8 per axis), so pixels only a border covers still get a value.
    """
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / (size / 8)) ** 2)
    return g[:, None] * g[None, :]


def sliding_window(
    model: nn.Module,
    pre: torch.Tensor,
    post: torch.Tensor,
    *,
    multiple: int,
    window: int = 512,
    overlap: float = 0.25,
    batch_size: int = 4,
    tta: bool = False,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Class probabilities [K, H, W] (float32, on pre's device) of a normalised pair pre [C, H, W], post [C', H, W].

    Square windows of ``window`` px, stride window·(1 − overlap), the last row / column shifted back inside the
    image; each window's softmax is weighted by ``window_weights`` and the sum normalised by the summed weights.
    An image smaller than ``window`` uses min(window, H, W) rounded down to a multiple of ``multiple`` (the
    model's output stride, e.g. 32 for a ResNet; DataError below it). ``tta`` averages the identity, horizontal,
    vertical and double flips (un-flipped) in probability space.
    The model (``forward(pre, post) -> {"logits": [B, K, h, w]}``) runs in eval mode on ``device`` (default: its
    parameters' device) under autocast with ``amp_dtype`` when given; its training mode is restored afterwards.
    :func:`sliding_window_rows` is the same computation streamed over row blocks.
    """
    if pre.dim() != 3 or post.dim() != 3 or pre.shape[1:] != post.shape[1:]:
        raise ValueError(f"expected pre [C, H, W] and post [C', H, W], got {tuple(pre.shape)} and {tuple(post.shape)}")
    if not (pre.is_floating_point() and post.is_floating_point()):
        raise ValueError(f"expected normalised float images, got {pre.dtype} and {post.dtype}")
    height, width = pre.shape[1:]
    probs: torch.Tensor | None = None
    for top, block in sliding_window_rows(model, lambda a, b: (pre[:, a:b], post[:, a:b]), height, width,
                                          multiple=multiple, window=window, overlap=overlap,
                                          batch_size=batch_size, tta=tta, device=device, amp_dtype=amp_dtype,
                                          out_device=pre.device):
        if probs is None:
            probs = torch.empty(block.shape[0], height, width, device=pre.device)
        probs[:, top : top + block.shape[1]] = block
    assert probs is not None  # at least one row of windows
    return probs


RowReader = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


def sliding_window_rows(
    model: nn.Module,
    read: RowReader,
    height: int,
    width: int,
    *,
    multiple: int,
    window: int = 512,
    overlap: float = 0.25,
    batch_size: int = 4,
    tta: bool = False,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    out_device: torch.device | str = "cpu",
) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`sliding_window` streamed: yields ``(top, probs [K, h, W])`` for consecutive row blocks, top to
    bottom, each final when yielded. ``read(top, bottom)`` returns rows ``[top, bottom)`` of the normalised pair
    (pre [C, h, W], post [C', h, W]); it is called once per row of windows, so at most ``window + stride`` rows
    of probabilities and one row of windows of input are held: a scene of any height streams through memory.
    """
    if window < 1 or batch_size < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(
            f"expected window >= 1, batch_size >= 1, 0 <= overlap < 1, got {window}, {batch_size}, {overlap}"
        )
    size = _window_size(window, height, width, multiple)
    stride = max(1, round(size * (1.0 - overlap)))
    rows, cols = _starts(height, size, stride), _starts(width, size, stride)
    if device is None:
        device = next((p.device for p in model.parameters()), out_device)
    weights = window_weights(size, out_device)
    probs: torch.Tensor | None = None  # [K, h, W] weighted sums of image rows [done, top + size)
    total = torch.zeros(size, width, device=out_device)
    done = 0  # rows above are final and yielded
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, top in enumerate(rows):
                pre, post = read(top, top + size)
                if probs is not None:  # extend the accumulators down to this row of windows' bottom
                    grow = top + size - done - probs.shape[1]
                    probs = torch.cat([probs, probs.new_zeros(probs.shape[0], grow, width)], dim=1)
                    total = torch.cat([total, total.new_zeros(grow, width)])
                for start in range(0, len(cols), batch_size):
                    batch = cols[start : start + batch_size]
                    pre_b = torch.stack([pre[:, :, c : c + size] for c in batch]).to(device)
                    post_b = torch.stack([post[:, :, c : c + size] for c in batch]).to(device)
                    out = _window_probs(model, pre_b, post_b, tta, amp_dtype).to(out_device)  # [B, K, size, size]
                    if probs is None:
                        probs = torch.zeros(out.shape[1], size, width, device=out_device)
                    for c, p in zip(batch, out):
                        probs[:, top - done : top - done + size, c : c + size] += p * weights
                        total[top - done : top - done + size, c : c + size] += weights
                assert probs is not None
                bottom = rows[i + 1] if i + 1 < len(rows) else height  # no later window reaches above it
                yield done, probs[:, : bottom - done] / total[: bottom - done]
                probs, total, done = probs[:, bottom - done :], total[bottom - done :], bottom
    finally:
        model.train(was_training)


def _window_size(window: int, height: int, width: int, multiple: int) -> int:
    if min(height, width) >= window:
        return window
    size = min(window, height, width) // multiple * multiple
    if size < multiple:
        raise DataError(f"cannot predict: image is {height}×{width}, smaller than the minimum window {multiple} "
                        "(the model's output stride)")
    return size


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Window offsets along one axis: every ``stride``, plus one flush with the end."""
    starts = list(range(0, length - size + 1, stride))
    return starts if starts[-1] == length - size else [*starts, length - size]


def _window_probs(
    model: nn.Module, pre: torch.Tensor, post: torch.Tensor, tta: bool, amp_dtype: torch.dtype | None
) -> torch.Tensor:
    """[B, K, h, w] float32 softmax of the model on a batch, averaged over the flips when ``tta``."""
    flips = _FLIPS if tta else _FLIPS[:1]
    total = torch.zeros((), device=pre.device)
    for dims in flips:
        with torch.autocast(pre.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = model(pre.flip(dims), post.flip(dims))
        logits = outputs["logits"]
        if logits.dim() != 4 or logits.shape[0] != pre.shape[0] or logits.shape[-2:] != pre.shape[-2:]:
            raise ValueError(f"model logits {tuple(logits.shape)} do not match the window batch {tuple(pre.shape)}")
        total = total + output_probs(outputs).flip(dims)
    return total / len(flips)


def output_probs(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, K, h, w] float32 softmax of ``outputs["logits"]``; a semantic-change model's ``"semantic"`` [B, 2, S, h,
    w] appends each date's land-cover softmax: channels ``[change K, pre S, post S]``."""
    probs = outputs["logits"].float().softmax(dim=1)
    if (semantic := outputs.get("semantic")) is None:
        return probs
    return torch.cat([probs, *semantic.float().softmax(dim=2).unbind(dim=1)], dim=1)
