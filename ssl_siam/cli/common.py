"""What several ``ssl-siam`` commands share: argument types, the config arguments, the output-path check."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from ssl_siam.core.errors import UserError

CONFIG_HELP = ("YAML config file or packaged recipe name (see `ssl-siam recipes`); further KEY.SUB=VALUE "
               "arguments override it (an unknown key is an error)")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and the ``KEY=VALUE`` overrides of a command that runs a config (trainings, study)."""
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def add_checkpoint_arguments(parser: argparse.ArgumentParser, training: str) -> None:
    """``--ckpt`` (a checkpoint of a ``training`` run, e.g. "finetune"), ``--out`` and ``--device``: what every
    command that applies a trained model takes."""
    parser.add_argument("--ckpt", required=True, help=f"checkpoints/best.pt or last.pt of a {training} run")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="auto", help="auto = cuda when available, else cpu")


def number(kind: type, low: float, high: float | None = None, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float) in [low, high] (or [low, high) with ``high_open``)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        above = high is None or (value < high if high_open else value <= high)
        if value < low or not above:
            bound = f">= {low}" if high is None else f"in [{low}, {high}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"expected {kind.__name__} {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


POSITIVE, NON_NEGATIVE = number(int, 1), number(int, 0)
FRACTION = number(float, 0, 1, high_open=True)


def check_output(path: str | Path | None, flag: str, folder: bool = True) -> None:
    """Refuse, before any work, an output ``path`` that cannot be written: a file where a folder is expected (or
    the reverse), or a location whose nearest existing parent is not a writable folder. Nothing is created."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        want, have = ("folder", "file") if folder else ("file", "folder")
        raise UserError(f"{flag} {path} is a {have}, expected a {want}")
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, expected a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {parent} is not writable")
