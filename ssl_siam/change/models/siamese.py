"""Siamese UNet for building damage: two views encoded by timm backbones, fused per scale, one UNet decoder.

Follows the Siamese UNets of the xView2 winners and FC-Siam (Daudt et al., ICIP 2018), composed like
torchgeo's ``FCSiamDiff``. Three Siamese variants:

* **classic**: one encoder (shared θ) for pre and post;
* **pseudo**: two encoders of the same architecture, same initial weights, trained apart;
* **asymmetric**: a post encoder of another architecture and/or band count (e.g. SAR), whose features are
  projected by a 1×1 conv to the pre encoder's widths (and resized) before fusion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_siam.change.models.decoder import UNetDecoder
from ssl_siam.change.models.fusion import FUSIONS
from ssl_siam.core.errors import ConfigError
from ssl_siam.encoders import EncoderMeta, create_encoder, load_encoder

SIAMESE_VARIANTS = ("classic", "pseudo", "asymmetric")


class SiameseChangeNet(nn.Module):
    """``forward(pre [B, C_pre, H, W], post [B, C_post, H, W])`` → ``{"logits": [B, K, H, W], "aux": [...]}``.

    ``encoder``/``post_encoder``: timm ``features_only`` models; ``post_encoder=None`` shares ``encoder``.
    ``aux`` holds the 1×1-conv logits ``[B, K, h_i, w_i]`` of every decoder stage but the last, coarse → fine,
    in training mode with ``deep_supervision`` (else ``[]``). ``project_post`` adds the asymmetric variant's
    per-scale 1×1 projections; they are added anyway where post and pre widths differ.

    ``semantic_classes`` > 0 (semantic change, SECOND) adds a second UNet decoder, shared by both dates, on each
    date's own (unfused) features, with a head of that many land-cover classes: the output then also holds
    ``"semantic": [B, 2, S, H, W]`` (pre, post) beside the change logits of the fused decoder.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        post_encoder: nn.Module | None = None,
        fusion: str = "absdiff",
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        attention: bool = True,
        num_classes: int = 5,
        deep_supervision: bool = True,
        project_post: bool = False,
        semantic_classes: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.post_encoder = None if post_encoder is encoder else post_encoder
        channels = encoder.feature_info.channels()
        post_info = (self.post_encoder or encoder).feature_info
        if len(post_info.channels()) != len(channels):
            raise ConfigError(
                f"model.post_backbone: its feature reductions {post_info.reduction()} do not pair with the pre "
                f"encoder's {encoder.feature_info.reduction()} (set out_indices so both have as many scales)"
            )
        if project_post and self.post_encoder is None:
            raise ConfigError("project_post needs a separate post_encoder (siamese=asymmetric)")
        project = project_post or post_info.channels() != channels
        self.post_projections = (
            nn.ModuleList(nn.Conv2d(p, c, 1) for p, c in zip(post_info.channels(), channels)) if project else None
        )
        fusion_cls = FUSIONS.get(fusion)
        self.fusions = nn.ModuleList(fusion_cls(c) for c in channels)
        self.decoder = UNetDecoder([f.out_channels for f in self.fusions], decoder_channels, attention)
        self.deep_supervision = deep_supervision
        widths = self.decoder.out_channels
        self.aux_heads = nn.ModuleList(nn.Conv2d(w, num_classes, 1) for w in widths[:-1] if deep_supervision)
        self.head = nn.Conv2d(widths[-1], num_classes, 1)
        self.semantic_decoder = UNetDecoder(channels, decoder_channels, attention) if semantic_classes else None
        self.semantic_head = nn.Conv2d(widths[-1], semantic_classes, 1) if semantic_classes else None

    def encode(self, pre: torch.Tensor, post: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-scale features of both views, ``[B, C_i, h_i, w_i]`` each, post aligned to pre's widths/sizes."""
        if self.post_encoder is None:
            if pre.shape != post.shape:
                raise ValueError(f"a shared encoder needs pre and post of one shape, got {pre.shape}, {post.shape}")
            features = self.encoder(torch.cat([pre, post]))  # one [2B, ...] batch through the shared θ
            pairs = [f.chunk(2) for f in features]
            return [p for p, _ in pairs], [q for _, q in pairs]
        f_pre, f_post = self.encoder(pre), self.post_encoder(post)
        if self.post_projections is not None:
            f_post = [proj(f) for proj, f in zip(self.post_projections, f_post)]
        f_post = [
            q if q.shape[-2:] == p.shape[-2:] else F.interpolate(q, p.shape[-2:], mode="bilinear", align_corners=False)
            for p, q in zip(f_pre, f_post)
        ]
        return f_pre, f_post

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        f_pre, f_post = self.encode(pre, post)
        fused = [fuse(p, q) for fuse, p, q in zip(self.fusions, f_pre, f_post)]
        stages = self.decoder(fused, size=pre.shape[-2:])  # coarse → fine, the last at H × W
        aux = [head(s) for head, s in zip(self.aux_heads, stages)] if self.training else []
        out: dict[str, torch.Tensor | list[torch.Tensor]] = {"logits": self.head(stages[-1]), "aux": aux}
        if self.semantic_decoder is not None and self.semantic_head is not None:
            both = [torch.cat([p, q]) for p, q in zip(f_pre, f_post)]  # one [2B, ...] pass of the shared decoder
            semantic = self.semantic_head(self.semantic_decoder(both, size=pre.shape[-2:])[-1])
            out["semantic"] = torch.stack(semantic.chunk(2), dim=1)  # [B, 2, S, H, W]
        return out

    @property
    def output_stride(self) -> int:
        """The coarsest feature reduction of the encoder (32 for a ResNet): input sizes must be multiples of it."""
        return max(self.encoder.feature_info.reduction())

    def encoder_modules(self) -> list[nn.Module]:
        """Every module of both branches' backbones."""
        post = [] if self.post_encoder is None else list(self.post_encoder.modules())
        return [*self.encoder.modules(), *post]

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Both branches' backbone parameters (for a lower LR or freezing)."""
        post = [] if self.post_encoder is None else list(self.post_encoder.parameters())
        return [*self.encoder.parameters(), *post]

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Everything trained from scratch: projections, fusions, decoder, heads."""
        encoder_ids = {id(p) for p in self.encoder_parameters()}
        return [p for p in self.parameters() if id(p) not in encoder_ids]


def _encoder(
    backbone: str, in_chans: int, encoder: EncoderMeta | None, pretrained: str | None, timm_kwargs: dict[str, Any]
) -> nn.Module:
    """A features-only encoder from an SSL export (checked against backbone/in_chans), a timm file or random."""
    if encoder is None:
        return create_encoder(backbone, in_chans, pretrained, features_only=True, **timm_kwargs)
    encoder.check(backbone, in_chans, "model.encoder_weights")
    return load_encoder(encoder, features_only=True, **timm_kwargs)


def build_change_net(
    backbone: str,
    in_chans: int,
    *,
    siamese: str = "classic",
    encoder: EncoderMeta | None = None,
    pretrained: str | None = None,
    post_backbone: str | None = None,
    post_in_chans: int | None = None,
    fusion: str = "absdiff",
    decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    attention: bool = True,
    num_classes: int = 5,
    deep_supervision: bool = True,
    semantic_classes: int = 0,
    timm_kwargs: dict[str, Any] | None = None,
) -> SiameseChangeNet:
    """Build a :class:`SiameseChangeNet` variant (see the module docstring).

    ``encoder``: an ``ssl-siam`` encoder export (read with :meth:`EncoderMeta.read`) for the pre encoder (and the
    post one where it fits); ``pretrained``: a local timm weight file. The asymmetric post encoder
    (``post_backbone``/``post_in_chans``, default the pre ones) starts random unless ``encoder`` matches it.
    """
    if siamese not in SIAMESE_VARIANTS:
        raise ConfigError(f"model.siamese: unknown {siamese!r}; valid: {', '.join(SIAMESE_VARIANTS)}")
    if encoder is not None and pretrained:
        raise ConfigError("model.encoder_weights and model.pretrained are exclusive: give one")
    if siamese != "asymmetric" and (post_backbone or post_in_chans):
        raise ConfigError("model.post_backbone / model.post_in_chans need model.siamese=asymmetric")
    timm_kwargs = timm_kwargs or {}
    pre_encoder = _encoder(backbone, in_chans, encoder, pretrained, timm_kwargs)
    post_encoder = None
    if siamese == "pseudo":
        post_encoder = _encoder(backbone, in_chans, encoder, pretrained, timm_kwargs)
        post_encoder.load_state_dict(pre_encoder.state_dict())  # same start, separate parameters
    elif siamese == "asymmetric":
        post_backbone, post_in_chans = post_backbone or backbone, post_in_chans or in_chans
        fits = encoder is not None and (post_backbone, post_in_chans) == (backbone, in_chans)
        post_encoder = _encoder(post_backbone, post_in_chans, encoder if fits else None, None, timm_kwargs)
    return SiameseChangeNet(
        pre_encoder,
        post_encoder=post_encoder,
        fusion=fusion,
        decoder_channels=decoder_channels,
        attention=attention,
        num_classes=num_classes,
        deep_supervision=deep_supervision,
        project_post=siamese == "asymmetric",
        semantic_classes=semantic_classes,
    )
