"""Siamese embedding networks: encoder (timm backbone or GRU/LSTM over a time series) → projection → L2 norm.

Variants (Bromley et al. 1993; Koch et al. 2015; Schroff et al. 2015): ``classic`` — both branches share θ;
``pseudo`` — each branch has its own θ (e.g. two sensors or two dates with very different looks); ``triplet`` —
three branches (anchor, positive, negative) sharing θ.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_siam.core.errors import ConfigError
from ssl_siam.core.registry import Registry
from ssl_siam.encoders import EncoderMeta, create_encoder, load_encoder

VARIANTS = ("classic", "pseudo", "triplet")

#: name → builder ``(in_chans, hidden_dim, layers, bidirectional) -> nn.Module`` of sequence encoders.
SEQUENCE_ENCODERS: Registry[type[nn.Module]] = Registry("sequence encoder")


class SequenceEncoder(nn.Module):
    """A recurrent encoder of per-pixel or per-object time series ``[B, C, T]`` (bands first, like images).

    The features are the last layer's final hidden state (both directions concatenated when bidirectional):
    ``[B, num_features]``. Dates blanked to 0 by augmentation are simply seen as zeros.
    """

    cell: type[nn.RNNBase]

    def __init__(self, in_chans: int, hidden_dim: int = 128, layers: int = 2, bidirectional: bool = False) -> None:
        super().__init__()
        self.rnn = self.cell(in_chans, hidden_dim, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.directions = 2 if bidirectional else 1
        self.num_features = hidden_dim * self.directions

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4 and x.shape[-1] == 1:  # [B, C, T, 1] (the band-statistics layout) → [B, C, T]
            x = x.squeeze(-1)
        _, hidden = self.rnn(x.transpose(1, 2).contiguous())  # input [B, T, C]
        h = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM returns (h, c); h: [layers·dirs, B, H]
        return torch.cat(list(h[-self.directions:]), dim=1)


@SEQUENCE_ENCODERS.register("gru")
class GRUEncoder(SequenceEncoder):
    cell = nn.GRU


@SEQUENCE_ENCODERS.register("lstm")
class LSTMEncoder(SequenceEncoder):
    cell = nn.LSTM


class EmbeddingNet(nn.Module):
    """``encoder`` → MLP projection (Linear–BN–ReLU–Linear) → L2-normalised embedding ``[B, embed_dim]``."""

    def __init__(self, encoder: nn.Module, embed_dim: int = 128, hidden_dim: int = 512) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(encoder.num_features, hidden_dim), nn.BatchNorm1d(hidden_dim),
                                  nn.ReLU(inplace=True), nn.Linear(hidden_dim, embed_dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.head(self.encoder(x)).float(), dim=1)


class SiameseEmbedding(nn.Module):
    """One :class:`EmbeddingNet` for every branch (``classic``, ``triplet``) or one per branch (``pseudo``).

    ``forward(x, branch)`` embeds a batch with branch 0 (anchor / pre / a) or 1 (b); ``triplet`` and
    ``classic`` ignore ``branch``.
    """

    def __init__(self, make_net: Callable[[], EmbeddingNet], variant: str = "classic") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"model.variant={variant!r}; valid: {', '.join(VARIANTS)}")
        self.variant = variant
        self.branches = nn.ModuleList([make_net() for _ in range(2 if variant == "pseudo" else 1)])

    def forward(self, x: Tensor, branch: int = 0) -> Tensor:
        return self.branches[min(branch, len(self.branches) - 1)](x)

    @property
    def encoder(self) -> nn.Module:
        """The (first) branch's encoder: what is exported for reuse."""
        return self.branches[0].encoder


def build_encoder(backbone: str, in_chans: int, *, encoder: EncoderMeta | None = None,
                  pretrained: str | Path | None = None, timm_kwargs: dict[str, Any] | None = None,
                  rnn_hidden_dim: int = 128, rnn_layers: int = 2, bidirectional: bool = False) -> nn.Module:
    """A sequence encoder (``gru`` | ``lstm``) or a pooled timm backbone, optionally from an exported SSL encoder
    (``encoder``, read once; its backbone and band count must match) or a local timm weight file."""
    if backbone in SEQUENCE_ENCODERS:
        if encoder is not None or pretrained:
            raise ConfigError(f"model.backbone={backbone}: recurrent encoders start from random weights "
                              "(unset model.encoder_weights / model.pretrained)")
        return SEQUENCE_ENCODERS.get(backbone)(in_chans, rnn_hidden_dim, rnn_layers, bidirectional)
    kwargs = dict(timm_kwargs or {})
    if encoder is not None:
        encoder.check(backbone, in_chans, "model.encoder_weights")
        return load_encoder(encoder, **kwargs)
    return create_encoder(backbone, in_chans, pretrained, **kwargs)


def build_siamese(backbone: str, in_chans: int, variant: str = "classic", embed_dim: int = 128,
                  head_hidden_dim: int = 512, **encoder_kwargs: Any) -> SiameseEmbedding:
    """The embedding model of ``variant``; ``pseudo`` builds each branch separately (both from the pretrained
    weights when given, else independently initialised)."""

    def make_net() -> EmbeddingNet:
        return EmbeddingNet(build_encoder(backbone, in_chans, **encoder_kwargs), embed_dim, head_hidden_dim)

    return SiameseEmbedding(make_net, variant)
