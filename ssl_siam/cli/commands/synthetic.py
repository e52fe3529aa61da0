"""``ssl-siam synthetic``: generate a learnable sample dataset in a benchmark's layout (xbd, levir, second,
geotiff)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssl_siam.cli.common import NON_NEGATIVE, POSITIVE, check_output, number

NAME = "synthetic"
HELP = "generate a learnable sample dataset in a benchmark's layout (the demo's)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder")
    parser.add_argument("--format", choices=("xbd", "levir", "second", "geotiff"), default="xbd",
                        help="xbd: images/ labels/ pairs with damage; levir: A/ B/ label/ change chips; second: im1/ "
                        "im2/ label1/ label2/ land cover; geotiff: unlabeled multi-band scenes")
    parser.add_argument("--pairs", type=POSITIVE, default=16, help="pairs (scenes for geotiff)")
    parser.add_argument("--size", type=POSITIVE, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=NON_NEGATIVE, default=0)
    parser.add_argument("--disaster", default="synthetic-storm", help="xbd / levir: the disaster name in the ids")
    parser.add_argument("--bands", type=number(int, 1, 4), default=4, help="geotiff: bands (red, green, blue, nir)")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.tools.scenes import make_geotiff_scenes, make_levir_split, make_second_split
    from ssl_siam.tools.synthetic import make_xbd_split

    check_output(args.out, "out")
    out, n = Path(args.out), args.pairs
    if args.format == "xbd":
        make_xbd_split(out, n, size=args.size, seed=args.seed, disaster=args.disaster)
    elif args.format == "levir":
        make_levir_split(out, n, size=args.size, seed=args.seed, disaster=args.disaster)
    elif args.format == "second":
        make_second_split(out, n, size=args.size, seed=args.seed)
    else:
        make_geotiff_scenes(out, n, size=args.size, bands=args.bands, seed=args.seed)
    print(f"wrote {n} {'scenes' if args.format == 'geotiff' else 'pairs'} in the {args.format} layout to {out}")
    return 0
