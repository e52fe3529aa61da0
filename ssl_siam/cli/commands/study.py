"""``ssl-siam study``: a label-efficiency / unseen-disaster study (all cells, one with ``--cell``, or none with
``--aggregate``)."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import NON_NEGATIVE, add_config_arguments

NAME = "study"
HELP = ("label-efficiency / unseen-disaster study: encoders × budgets × seeds, with CIs (change finetuning, or "
        "task=scene: scene classification probes)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--cell", type=NON_NEGATIVE, help="run only this cell (0-based; e.g. one per Slurm array "
                       "task)")
    which.add_argument("--aggregate", action="store_true", help="run no cell: write the aggregate from the scored "
                       "cells (an error naming the missing ones while any is not scored)")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.core.config import load_config
    from ssl_siam.study.config import StudyConfig
    from ssl_siam.study.run import run_study

    selection = "none" if args.aggregate else "all" if args.cell is None else args.cell
    study_dir = run_study(load_config(StudyConfig, args.config, args.overrides), selection)
    done = study_dir / "study.md"
    print(f"study: {done}" if done.is_file() else f"cell {args.cell} done in {study_dir} (run the study again "
          "without --cell, once every cell is done, to aggregate)")
    return 0
