"""``ssl-siam cache``: decode PNG / JPEG tiles, pairs and masks once into a cache read by window (or check one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssl_siam.cli.common import POSITIVE, check_output

NAME = "cache"
HELP = ("decode PNG / JPEG tiles, pairs and masks once into a cache read by window (use it with "
        "data.cache_dir)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="SRC",
                        help="tile folders, globs or files, or pair datasets (xBD splits: masks rasterised too; "
                        "LEVIR, S2Looking, OSCD, SECOND, pairs CSV)")
    parser.add_argument("--out", required=True, help="the cache folder (data.cache_dir of the training)")
    parser.add_argument("--workers", type=POSITIVE, default=2, help="decoding processes")
    parser.add_argument("--check", action="store_true",
                        help="verify the cache against the sources (every entry present, from this file, same "
                        "pixels); exit 2 naming the first problem")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.core.errors import DataError
    from ssl_siam.tools.cache import cache_sources

    check_output(args.out, "--out")
    report = cache_sources(args.sources, Path(args.out), workers=args.workers, check=args.check)
    if report.problems:
        raise DataError(f"{len(report.problems)} of {report.sources} cache entries are missing or wrong, e.g. "
                        f"{report.problems[0]}")
    print(f"{'checked' if args.check else 'cache'} {args.out}: {report.summary()}")
    return 0
