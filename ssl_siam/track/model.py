"""SiamFC (Bertinetto et al., "Fully-Convolutional Siamese Networks for Object Tracking", ECCVW 2016) on a timm
backbone truncated to a small output stride, for the tiny objects of satellite video.

The exemplar ``z`` and the search region ``x`` are embedded by the same fully convolutional encoder (``classic``) or
by two encoders of one architecture and one start (``pseudo``); the response is their cross-correlation
``f(z, x) = φ(z) ⋆ φ(x)`` followed by a BatchNorm2d(1) — the paper's batch-normalised scalar adjustment: it puts the
raw correlation, whose scale grows with the feature width and the exemplar area, on the unit scale the logistic loss
expects, without a hand-set factor (the reference code's fixed 1e-3), and is a plain affine map in eval mode, so a
tracked sample never depends on the others of its batch.

Translation equivariance: SiamFC's AlexNet has no padding; timm backbones pad every convolution with zeros, so the
feature cells near a border see the padding. We drop ``border`` cells at every side of both embeddings (as SiamRPN++
crops the template features, Li et al. 2019) and train with random search shifts (``data.max_shift``) so that no
position of the response map is favoured. Geometry: with crops whose sides are multiples of the stride ``s``,
exemplar pixel ``p`` faces search pixel ``p + s·c`` at response cell ``c``, so cell ``k`` of an ``R``-cell map is a
displacement of ``s·(k − (R − 1)/2)`` px from the search centre (:func:`response_offsets`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_siam.core.errors import ConfigError
from ssl_siam.encoders import EncoderMeta, create_encoder, load_encoder

SIAMESE = ("classic", "pseudo")


def xcorr(z: Tensor, x: Tensor) -> Tensor:
    """Per-sample cross-correlation: ``z`` [B, D, hz, wz] over ``x`` [B, D, hx, wx] → [B, 1, hx−hz+1, wx−wz+1], as one
    grouped convolution over the batch; ``z`` with batch 1 is correlated with every ``x`` (a scale pyramid)."""
    if z.shape[0] == 1:
        return F.conv2d(x, z)
    if z.shape[0] != x.shape[0]:
        raise ValueError(f"exemplar batch {z.shape[0]} and search batch {x.shape[0]}: expected equal, or 1 exemplar")
    batch, dim, height, width = x.shape
    out = F.conv2d(x.reshape(1, batch * dim, height, width), z, groups=batch)  # [1, B, h, w]
    return out.view(batch, 1, *out.shape[-2:])


def response_offsets(size: int, stride: int) -> Tensor:
    """[size] displacement in search px of each response cell (along one axis) from the search centre."""
    return stride * (torch.arange(size, dtype=torch.float32) - (size - 1) / 2)


class SiamFC(nn.Module):
    """``forward(exemplar [B, C, E, E], search [B, C, S, S])`` → response logits ``[B, 1, R, R]``,
    ``R = (S − E) / stride + 1``; inputs normalised. ``search_encoder`` (pseudo) embeds the search branch."""

    def __init__(self, encoder: nn.Module, search_encoder: nn.Module | None = None, border: int = 1) -> None:
        super().__init__()
        self.encoder, self.search_encoder, self.border = encoder, search_encoder, border
        self.stride: int = encoder.feature_info.reduction()[-1]
        self.adjust = nn.BatchNorm2d(1)

    def embed(self, x: Tensor, search: bool = False) -> Tensor:
        """[B, C, H, W] → [B, D, H/stride − 2·border, W/stride − 2·border]; ``search`` picks the pseudo variant's
        search encoder (the classic one has a single encoder)."""
        encoder = self.search_encoder if search and self.search_encoder is not None else self.encoder
        features = encoder(x)[-1]
        b = self.border
        return features[..., b:features.shape[-2] - b, b:features.shape[-1] - b] if b else features

    def response(self, z: Tensor, x: Tensor) -> Tensor:
        """Exemplar features [B or 1, D, hz, wz] and search features [B, D, hx, wx] → adjusted response logits."""
        return self.adjust(xcorr(z, x))

    def forward(self, exemplar: Tensor, search: Tensor) -> Tensor:
        return self.response(self.embed(exemplar), self.embed(search, search=True))

    def response_size(self, exemplar_size: int, search_size: int) -> int:
        """Cells per side of the response; ConfigError unless both crop sides are multiples of the stride and the
        exemplar keeps at least one feature cell after the border is dropped."""
        s = self.stride
        if exemplar_size % s or search_size % s or search_size <= exemplar_size:
            raise ConfigError(f"model.exemplar_size={exemplar_size}, model.search_size={search_size}: expected "
                              f"multiples of the stride {s}, the search larger than the exemplar")
        if exemplar_size // s <= 2 * self.border:
            raise ConfigError(f"model.exemplar_size={exemplar_size}: {exemplar_size // s} feature cells at stride {s}"
                              f", none left after model.border={self.border} at each side")
        return (search_size - exemplar_size) // s + 1


def _features(backbone: str, in_chans: int, out_index: int | None, encoder: EncoderMeta | None,
              pretrained: str | Path | None, timm_kwargs: dict[str, Any]) -> nn.Module:
    """A timm ``features_only`` model (every level, or only up to ``out_index``) from an SSL export, a local weight
    file or random weights."""
    kwargs = dict(timm_kwargs, **({"out_indices": (out_index,)} if out_index is not None else {}))
    if encoder is not None:
        encoder.check(backbone, in_chans, "model.encoder_weights")
        return load_encoder(encoder, features_only=True, **kwargs)
    return create_encoder(backbone, in_chans, pretrained, features_only=True, **kwargs)


def build_encoder(backbone: str, in_chans: int, out_stride: int, *, encoder: EncoderMeta | None = None,
                  pretrained: str | Path | None = None, timm_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The backbone truncated at its first feature level of reduction ``out_stride`` (the later stages are not
    built). Weights are loaded into the whole backbone — where they are checked key by key — and its first levels
    copied over."""
    timm_kwargs = timm_kwargs or {}
    whole = _features(backbone, in_chans, None, encoder, pretrained, timm_kwargs)
    reductions = whole.feature_info.reduction()
    if out_stride not in reductions:
        raise ConfigError(f"model.out_stride={out_stride}: {backbone} has feature levels of stride "
                          f"{', '.join(map(str, reductions))}")
    truncated = _features(backbone, in_chans, reductions.index(out_stride), None, None, timm_kwargs)
    whole_state = whole.state_dict()
    truncated.load_state_dict({k: whole_state[k] for k in truncated.state_dict()})
    return truncated


def build_siamfc(backbone: str, in_chans: int, *, out_stride: int = 4, border: int = 1, siamese: str = "classic",
                 encoder: EncoderMeta | None = None, pretrained: str | Path | None = None,
                 timm_kwargs: dict[str, Any] | None = None) -> SiamFC:
    """A :class:`SiamFC` of the ``siamese`` variant; ``pseudo``'s search encoder starts as a copy of the exemplar one
    and is trained apart. ``encoder`` is an SSL export read once; ``pretrained`` a local timm weight file."""
    if siamese not in SIAMESE:
        raise ConfigError(f"model.siamese: unknown {siamese!r}; valid: {', '.join(SIAMESE)}")
    if encoder is not None and pretrained:
        raise ConfigError("model.encoder_weights and model.pretrained are exclusive: give one")
    exemplar = build_encoder(backbone, in_chans, out_stride, encoder=encoder, pretrained=pretrained,
                             timm_kwargs=timm_kwargs)
    return SiamFC(exemplar, copy.deepcopy(exemplar) if siamese == "pseudo" else None, border)
