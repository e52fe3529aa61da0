"""``ssl-siam <command>``: argument parsing and reporting only; the work happens in the library."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence

from ssl_siam.core.errors import Preempted, UserError


def one_line(exc: BaseException) -> str:
    """Errors re-raised from DataLoader workers carry the worker's traceback: keep its last line only."""
    text = str(exc).strip()
    if "Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    from ssl_siam.cli.parser import build_parser

    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.debug:
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    try:
        return args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"ssl-siam {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Preempted as exc:
        print(f"ssl-siam {args.command}: {exc}", file=sys.stderr)
        return Preempted.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
