"""The ``ssl-siam`` argument parser: one subparser per module of :mod:`ssl_siam.cli.commands`."""

from __future__ import annotations

import argparse
import sys

from ssl_siam.cli import commands


class OneLineParser(argparse.ArgumentParser):
    """Bad command-line arguments are one line on stderr and exit code 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ssl-siam", description="Self-supervised pretraining, Siamese damage "
                                     "finetuning and Siamese metric learning for satellite imagery.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands.COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
    return parser
