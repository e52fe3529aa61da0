"""``ssl-siam demo``: the whole pipeline on generated sample data, on CPU, in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssl_siam.cli.common import check_output

NAME = "demo"
HELP = "the whole pipeline on generated sample data, on CPU, in minutes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output")
    parser.add_argument("--quick", action="store_true", help="fewer steps (for tests)")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.tools.demo import run_demo

    check_output(args.out, "--out")
    report = run_demo(Path(args.out), quick=args.quick, device=args.device)
    print(f"demo finished: {report}")
    return 0
