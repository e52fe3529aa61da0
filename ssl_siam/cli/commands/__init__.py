"""The ``ssl-siam`` commands: one module each, registered here in ``ssl-siam --help`` order.

A command module holds ``NAME`` (the command), ``HELP`` (its line in ``--help``), ``add_arguments(parser)`` and
``run(args) -> int`` (one library call, the exit code); imports stay inside ``run`` so ``ssl-siam`` starts without
torch. A new command is one new module, imported below and added to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from ssl_siam.cli.commands import (
    bench,
    cache,
    demo,
    embed,
    finetune,
    metric_train,
    predict,
    pretrain,
    probe,
    recipes,
    report,
    score,
    split_scenes,
    stats,
    study,
    synthetic,
    targets,
    verify,
)


class Command(Protocol):
    """What :func:`ssl_siam.cli.parser.build_parser` reads from a command module."""

    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: tuple[Command, ...] = (pretrain, finetune, metric_train, study, verify, score, targets, predict, probe, embed,
                                 split_scenes, bench, report, cache, stats, recipes, synthetic, demo)
