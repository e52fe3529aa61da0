"""ssl-siam: self-supervised pretraining and Siamese change/damage finetuning for satellite imagery."""

from ssl_siam.models.encoders import load_encoder

__all__ = ["load_encoder"]
__version__ = "0.1.0"
