"""ssl-siam: self-supervised pretraining and Siamese change/damage finetuning for satellite imagery."""

from __future__ import annotations

from typing import Any

__all__ = ["load_encoder"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so that light commands (`ssl-siam score`, `targets`) start without importing torch and timm.
    if name == "load_encoder":
        from ssl_siam.encoders import load_encoder

        return load_encoder
    raise AttributeError(f"module 'ssl_siam' has no attribute {name!r}")
