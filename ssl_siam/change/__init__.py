"""Siamese change/damage segmentation: per-scale fusion, attention-gated UNet decoder, SiameseDamageNet."""

from ssl_siam.change.attention import AttentionGate
from ssl_siam.change.decoder import UNetDecoder
from ssl_siam.change.fusion import FUSIONS
from ssl_siam.change.model import SiameseDamageNet, build_damage_net

__all__ = ["FUSIONS", "AttentionGate", "SiameseDamageNet", "UNetDecoder", "build_damage_net"]
