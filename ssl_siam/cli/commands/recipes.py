"""``ssl-siam recipes``: list the config recipes shipped in the package (usable by name with ``--config``)."""

from __future__ import annotations

import argparse

NAME = "recipes"
HELP = "list the packaged config recipes (use them by name with --config)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments."""


def run(args: argparse.Namespace) -> int:
    from ssl_siam.core.recipes import recipes

    found = recipes()
    width = max(len(r.name) for r in found)
    for r in found:
        print(f"{r.name:{width}}  {r.command:12}  {r.summary}")
    print(f"use one with --config <name> (e.g. --config {found[0].name}); the files are in {found[0].path.parents[1]}")
    return 0
