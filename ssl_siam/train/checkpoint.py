"""Checkpoints that survive a kill at any moment: temp file in the same folder, fsync, atomic rename.

Only plain types and tensors are stored, so loading uses ``torch.load(weights_only=True)``. Every checkpoint
carries a CRC-32 of its content (``torch.load`` does not verify the zip CRCs), checked on load, so a file
damaged on disk or in transfer is refused rather than resumed from.
"""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_siam.core.config import changed_values, flatten
from ssl_siam.core.errors import DataError
from ssl_siam.core.files import atomic_path

FORMAT = "ssl-siam-checkpoint"


def content_crc(obj: Any, crc: int = 0) -> int:
    """CRC-32 over a nest of dicts/lists/tuples of tensors and plain values, in order (tensor bytes included)."""
    if isinstance(obj, torch.Tensor):
        data = obj.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        return zlib.crc32(data, zlib.crc32(f"{obj.dtype}{tuple(obj.shape)}".encode(), crc))
    if isinstance(obj, dict):
        for key, value in obj.items():
            crc = content_crc(value, zlib.crc32(repr(key).encode(), crc))
        return crc
    if isinstance(obj, (list, tuple)):
        for value in obj:
            crc = content_crc(value, crc)
        return crc
    return zlib.crc32(repr(obj).encode(), crc)


def atomic_save(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to ``path`` so that a reader sees either the old complete file or the new one; a failed
    write (disk full, permissions) is a one-line DataError and leaves the previous file in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # closed, then renamed
            torch.save({**obj, "crc32": content_crc(obj)}, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:120]
        kept = f"the previous {path.name} is kept" if path.is_file() else "no earlier checkpoint exists"
        raise DataError(f"cannot write checkpoint {path} ({reason}); {kept}") from None
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load one of our checkpoints on the CPU; anything else, or (with ``kind``) a checkpoint of another kind of
    training, is a one-line :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path} is not a readable checkpoint ({str(exc).split('.')[0][:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"{path} is not an ssl-siam checkpoint")
    stored = ckpt.pop("crc32", None)
    if stored is None or content_crc(ckpt) != stored:
        raise DataError(f"{path} is corrupted (content checksum mismatch); resume from an earlier copy or restart")
    if kind is not None and checkpoint_kind(ckpt) != kind:
        raise DataError(f"{path} is a {checkpoint_kind(ckpt)} checkpoint, expected a {kind} checkpoint "
                        f"(written by {KIND_COMMANDS[kind]})")
    return ckpt


#: every training's checkpoint kind (its task's ``checkpoint_kind``) → the command that writes it
KIND_COMMANDS = {"pretrain": "ssl-siam pretrain", "finetune": "ssl-siam finetune", "metric": "ssl-siam metric-train",
                  "scene": "ssl-siam study task=scene, method finetune", "track": "ssl-siam track-train"}


def checkpoint_kind(ckpt: dict[str, Any]) -> str:
    """The training that wrote ``ckpt``: its stored ``kind``. Checkpoints written before kinds were stored (0.1)
    are recognised by what their ``extra`` holds."""
    if "kind" in ckpt:
        return ckpt["kind"]
    extra = ckpt.get("extra", {})
    return "finetune" if "pre_stats" in extra else "metric" if "mining" in extra else "pretrain"


#: config keys that fix what a checkpoint is: resuming it under other values is refused, naming them; a task adds
#: its own (``TrainingTask.identity_keys``, e.g. the pretraining objective's options section)
IDENTITY_KEYS = ("objective", "model.", "data.bands", "data.post_bands", "data.dataset", "loss.name",
                 "augment.n_global", "augment.n_local")
#: the starting weights: irrelevant once resumed
_START_ONLY = ("model.encoder_weights", "model.pretrained", "model.init_weights")



def config_differences(saved: dict[str, Any], config: dict[str, Any], extra_keys: tuple[str, ...] = ()) -> list[str]:
    """``key: saved → asked`` for every identity key (:data:`IDENTITY_KEYS` and ``extra_keys``) that differs between
    a checkpoint's config and the config of the run that wants to resume it."""
    old, new, identity = flatten(saved), flatten(config), IDENTITY_KEYS + extra_keys
    keys = [k for k in old.keys() | new.keys() if k.startswith(identity) and k not in _START_ONLY]
    return changed_values(old, new, keys)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as plain types/tensors."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
