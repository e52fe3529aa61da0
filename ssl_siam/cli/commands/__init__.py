"""The ``ssl-siam`` commands: one module each, named in ``MODULES`` in ``ssl-siam --help`` order.

A command module holds ``NAME`` (the command), ``HELP`` (its line in ``--help``), ``add_arguments(parser)`` and
``run(args) -> int`` (one library call, the exit code); imports stay inside ``run`` so ``ssl-siam`` starts without
torch. A new command is one new module plus its name in ``MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable
from typing import Protocol, cast

MODULES = ("pretrain", "finetune", "metric_train", "track_train", "track", "track_eval", "study", "verify", "score",
           "targets", "predict", "probe", "embed", "search", "split_scenes", "bench", "report", "cache", "stats",
           "recipes", "synthetic", "demo")


class Command(Protocol):
    """What :func:`ssl_siam.cli.parser.build_parser` reads from a command module."""

    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def load(modules: Iterable[str]) -> tuple[Command, ...]:
    """The command modules of this package named in ``modules``, in that order."""
    return tuple(cast(Command, importlib.import_module(f"{__name__}.{name}")) for name in modules)


COMMANDS = load(MODULES)
