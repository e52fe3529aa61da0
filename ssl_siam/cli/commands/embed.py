"""``ssl-siam embed``: every grid tile of an archive through a frozen encoder, into a resumable embedding index."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import POSITIVE, check_output, number

NAME = "embed"
HELP = "embed every grid tile of an archive with a frozen encoder into an index (resumable, appendable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", required=True,
                        help="a pretrain / metric-train run dir or its encoder.safetensors, random:<timm name> or "
                             "timm:<timm name>=<local weights>")
    parser.add_argument("--data", nargs="+", required=True,
                        help="folders, files, glob patterns or {band} patterns of GeoTIFF / PNG / JPEG scenes")
    parser.add_argument("--out", required=True,
                        help="index folder: created, resumed after a crash, or appended with new scenes")
    parser.add_argument("--tile", type=POSITIVE, default=64, help="tile side in pixels")
    parser.add_argument("--stride", type=POSITIVE, help="grid step in pixels (default: --tile, no overlap)")
    parser.add_argument("--batch-size", type=POSITIVE, default=64)
    parser.add_argument("--device", default="auto", help="auto = cuda when available, else cpu")
    parser.add_argument("--workers", type=number(int, 0), default=2, help="DataLoader processes reading windows")
    parser.add_argument("--max-nodata", type=number(float, 0, 1), default=0.5,
                        help="skip (and count) tiles with a larger nodata fraction")
    parser.add_argument("--bands", type=POSITIVE, nargs="+", help="1-based band indices (default: all)")
    parser.add_argument("--band-names", nargs="+", help="values for a {band} placeholder in --data")
    parser.add_argument("--chunk-size", type=POSITIVE, default=16384,
                        help="windows per index part (the unit of resumption and of memory)")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.search.embed import embed_archive

    check_output(args.out, "--out")
    result = embed_archive(args.encoder, args.data, args.out, tile=args.tile, stride=args.stride,
                           batch_size=args.batch_size, device=args.device, workers=args.workers,
                           max_nodata=args.max_nodata, bands=args.bands, band_names=args.band_names,
                           chunk_size=args.chunk_size)
    state = result.state
    if not result.is_main:
        return 0
    if result.upgraded_parts:
        print(f"upgraded {result.upgraded_parts} tile table part(s) of the existing index to GeoParquet")
    print(f"added {result.new_tiles} tiles of {result.new_scenes} scenes ({result.new_skipped} skipped as nodata) "
          f"on {result.device}; index: {state.tiles} tiles of {len(state.done)} scenes, dim {state.dim}, "
          f"{state.parts} parts")
    print(f"written to {args.out}/index.json, embeddings/ and tiles/")
    return 0
