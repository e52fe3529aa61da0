"""``ssl-siam <command>``: argument parsing and reporting only; the work happens in the library."""

from __future__ import annotations

import errno
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
    route_gdal_messages(debug)
    try:
        return args.func(args)
    except Preempted as exc:
        print(f"ssl-siam {args.command}: {exc}", file=sys.stderr)
        return Preempted.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        code, message = describe(exc)
        print(f"ssl-siam {args.command}: {message}", file=sys.stderr)
        return code


def describe(exc: Exception) -> tuple[int, str]:
    """Exit code and one line for an error: 2 for bad input (and a full or read-only disk), 1 for an internal
    error, which says to rerun with --debug for the traceback."""
    if isinstance(exc, UserError):
        return 2, f"error: {one_line(exc)}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return 2, f"error: no space left on the device writing {exc.filename or 'a file'}"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return 2, f"error: cannot write {exc.filename or 'a file'} ({exc.strerror})"
    return 1, f"internal error: {type(exc).__name__}: {one_line(exc)[:300]}; rerun with --debug for the traceback"


def route_gdal_messages(debug: bool) -> None:
    """GDAL's own messages (rasterio logs them as warnings / errors, e.g. libtiff's TIFFSetField notes) go to the
    log at debug level instead of the terminal: every failure that matters reaches the user as our own error."""
    logging.getLogger("rasterio").setLevel(logging.DEBUG if debug else logging.CRITICAL)
