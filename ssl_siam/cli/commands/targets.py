"""``ssl-siam targets``: rasterise xBD label JSON into the xView2 localization and damage target PNGs."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import check_output

NAME = "targets"
HELP = "rasterise xBD label JSON into xView2 target PNGs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("split_dir", help="xBD split directory (images/ and labels/)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--unclassified", choices=["no-damage", "ignore"], default="no-damage",
                        help="un-classified buildings: no-damage (scoring targets) or 255 (training masks)")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.data.xbd.labels import write_targets

    check_output(args.out, "--out")
    count = write_targets(args.split_dir, args.out, unclassified=args.unclassified)
    print(f"wrote localization and damage targets for {count} pairs to {args.out}")
    return 0
