"""``ssl-siam report``: one markdown report (with plots) across pretrain, finetune, metric, verify and probe runs."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import check_output

NAME = "report"
HELP = "one markdown report across pretrain, finetune, metric, verify and probe runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories (metrics.json), probe or verify outputs")
    parser.add_argument("--out", default="report", help="folder for report.md and its plots")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.tools.report import write_report

    check_output(args.out, "--out")
    print(f"report: {write_report(args.runs, args.out)}")
    return 0
