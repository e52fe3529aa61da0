"""timm backbones with any number of input bands, local-only weights, and the encoder export format.

Exported encoders are ``encoder.safetensors`` (the timm state dict, no classifier) beside ``encoder.json``
(:class:`EncoderMeta`: timm name, in_chans, kwargs, band normalization): :func:`load_encoder` rebuilds the timm
model from the pair. An export is read once into an :class:`EncoderMeta` and that object is passed around.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file
from timm.models._manipulate import adapt_input_conv
from torch import nn

from ssl_siam.core.errors import ConfigError, DataError
from ssl_siam.core.files import atomic_path
from ssl_siam.data.stats import BandStats

ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_META = "encoder.json"


def create_encoder(
    backbone: str,
    in_chans: int,
    pretrained: str | Path | None = None,
    features_only: bool = False,
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm model without classifier (``num_classes=0``; pooled features ``[B, num_features]``) or,
    with ``features_only``, one returning the list of multi-scale maps. Weights only from a local file."""
    kwargs = dict(timm_kwargs, in_chans=in_chans, pretrained=False)
    kwargs.update(features_only=True) if features_only else kwargs.update(num_classes=0)
    try:
        model = timm.create_model(backbone, **kwargs)
    except RuntimeError as exc:  # timm raises RuntimeError for unknown model names
        raise ConfigError(f"model.backbone: {exc}") from None
    if pretrained:
        load_weights(model, pretrained)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a torch checkpoint (``state_dict``/``model`` keys unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"weight file {path} does not exist (pretrained weights come only from local files)")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path} is not a readable weight file: {str(exc).splitlines()[0]}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path} does not hold a state dict of tensors")
    return state


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into ``model``: the classifier is dropped, a stem with another band count is
    adapted (timm's ``adapt_input_conv``), and any other missing or mismatched key is an error."""
    state = read_state_dict(path)
    own = model.state_dict()
    cfg = getattr(model, "pretrained_cfg", {})
    heads = tuple(filter(None, (cfg.get("classifier"), "head", "fc")))
    unexpected = []
    for key, value in list(state.items()):
        if key not in own:
            state.pop(key)
            if not key.startswith(heads):  # a classifier/head may be dropped, nothing else
                unexpected.append(key)
        elif key == f"{cfg.get('first_conv')}.weight" and value.shape[1] != own[key].shape[1]:
            state[key] = adapt_input_conv(own[key].shape[1], value.float()).to(value.dtype)
    bad = [k for k, v in state.items() if v.shape != own[k].shape]
    missing = [k for k in own if k not in state]
    if bad or missing or unexpected:
        raise DataError(
            f"{path} does not fit {cfg.get('architecture', type(model).__name__)}: {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(bad)} shape mismatches {bad[:3]}"
        )
    model.load_state_dict(state)


@dataclass(frozen=True)
class EncoderMeta:
    """What ``encoder.json`` says of an exported encoder, and where its weights are."""

    backbone: str  # timm model name
    in_chans: int
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    num_features: int | None = None  # width of the pooled features
    objective: str | None = None  # what trained it: simsiam | byol | dino | metric-<loss>
    step: int | None = None  # optimizer steps it was trained for
    bands: list[int] | None = None  # 1-based bands of the training data (None = all)
    normalization: BandStats | None = None  # per-band statistics its inputs were normalised with
    weights: Path | None = None  # encoder.safetensors (set when read from disk)

    @classmethod
    def read(cls, path: str | Path) -> EncoderMeta:
        """A run dir / ``encoder.safetensors`` / ``encoder.json`` → its metadata; DataError naming the file."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        weights = path if path.suffix == ".safetensors" else folder / ENCODER_WEIGHTS
        meta_path = weights.with_suffix(".json")
        if not weights.is_file() or not meta_path.is_file():
            raise DataError(f"{path}: expected {weights.name} with {meta_path.name} beside it (ssl-siam export)")
        try:
            data = json.loads(meta_path.read_text())
            norm = data.get("normalization")
            return cls(backbone=str(data["backbone"]), in_chans=int(data["in_chans"]),
                       timm_kwargs=dict(data.get("timm_kwargs") or {}), num_features=data.get("num_features"),
                       objective=data.get("objective"), step=data.get("step"), bands=data.get("bands"),
                       normalization=BandStats(**norm) if norm else None, weights=weights)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise DataError(f"{meta_path} is not an encoder description (needs backbone, in_chans)") from None

    def to_json(self) -> dict[str, Any]:
        """The ``encoder.json`` content (plain types; the weights path is not stored)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("weights", "normalization")}
        norm = None if self.normalization is None else dataclasses.asdict(self.normalization)
        return {"format": "ssl-siam-encoder", **data, "normalization": norm}

    def check(self, backbone: str, in_chans: int, key: str) -> None:
        """ConfigError naming ``key`` unless this encoder is a ``backbone`` for ``in_chans`` bands."""
        if (self.backbone, self.in_chans) != (backbone, in_chans):
            raise ConfigError(f"{key}: {self.weights} is a {self.backbone} encoder for {self.in_chans} bands, "
                              f"but the model asks for {backbone} with {in_chans} bands")


def export_encoder(encoder: nn.Module, out_dir: str | Path, meta: EncoderMeta) -> Path:
    """Write ``encoder.safetensors`` + ``encoder.json`` (weights first, each atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_path(out_dir / ENCODER_WEIGHTS) as tmp:
        save_file(state, str(tmp))
    with atomic_path(out_dir / ENCODER_META) as tmp:
        tmp.write_text(json.dumps(meta.to_json(), indent=2))
    return out_dir / ENCODER_WEIGHTS


def load_encoder(source: str | Path | EncoderMeta, features_only: bool = False, **timm_kwargs: Any) -> nn.Module:
    """Rebuild an exported encoder as a timm model in one call.

    ``source``: the run directory, ``encoder.safetensors``, ``encoder.json`` or an :class:`EncoderMeta` already
    read. The model's ``ssl_siam_meta`` attribute holds the :class:`EncoderMeta` (band normalization included) so
    callers can preprocess inputs alike.
    """
    meta = source if isinstance(source, EncoderMeta) else EncoderMeta.read(source)
    model = create_encoder(meta.backbone, meta.in_chans, meta.weights, features_only=features_only,
                           **{**meta.timm_kwargs, **timm_kwargs})
    model.ssl_siam_meta = meta
    return model
