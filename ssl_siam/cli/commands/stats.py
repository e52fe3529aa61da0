"""``ssl-siam stats``: per-band normalization statistics of a tile dataset, saved as JSON for ``data.stats``."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import POSITIVE, check_output

NAME = "stats"
HELP = "per-band normalization statistics of a tile dataset, saved as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="folder, glob or file of GeoTIFF/PNG/JPEG tiles")
    parser.add_argument("--out", default="stats.json")
    parser.add_argument("--tile-size", type=POSITIVE, default=256)
    parser.add_argument("--bands", type=POSITIVE, nargs="+", help="1-based band indices")
    parser.add_argument("--band-names", nargs="+", help="values for a {band} placeholder in DATA")
    parser.add_argument("--nodata", type=float)
    parser.add_argument("--samples", type=POSITIVE, default=256, help="windows to sample")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.data.stats import compute_stats
    from ssl_siam.data.tiles import TileDataset

    check_output(args.out, "--out", folder=False)
    dataset = TileDataset(args.data, args.tile_size, bands=args.bands, band_names=args.band_names,
                          nodata=args.nodata)
    stats = compute_stats(dataset, num_samples=args.samples)
    stats.save(args.out)
    print(f"{'band':>4} {'low':>10} {'high':>10} {'mean':>8} {'std':>8}")
    for i, row in enumerate(zip(stats.low, stats.high, stats.mean, stats.std), 1):
        print(f"{i:>4} {row[0]:>10.4g} {row[1]:>10.4g} {row[2]:>8.4f} {row[3]:>8.4f}")
    print(f"saved to {args.out}; use it with data.stats={args.out}")
    return 0
