"""``ssl-siam predict``: map damage or change on one pre/post pair, or on every pair of a split, with a finetuned
checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssl_siam.cli.common import FRACTION, POSITIVE, add_checkpoint_arguments, check_output
from ssl_siam.core.errors import UserError

NAME = "predict"
HELP = "map damage or change on pre/post images with a finetuned checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(parser, "finetune")
    parser.add_argument("--pre", help="pre-event image (PNG/JPEG/GeoTIFF), or a folder of per-band GeoTIFFs "
                        "(OSCD's <city>/imgs_1: stacked in the run's data.oscd_bands order)")
    parser.add_argument("--post", help="post-event image (or folder, e.g. <city>/imgs_2)")
    parser.add_argument("--data", help="a split directory (xBD, LEVIR, S2Looking, OSCD, SECOND) or pairs CSV: "
                        "predict every pair")
    parser.add_argument("--ids", nargs="+", help="with --data: only these pairs (e.g. OSCD cities by name)")
    parser.add_argument("--window", type=POSITIVE, default=512, help="sliding-window size")
    parser.add_argument("--overlap", type=FRACTION, default=0.25,
                        help="fraction of a window shared with its neighbour, in [0, 1)")
    parser.add_argument("--batch-size", type=POSITIVE, default=4)
    parser.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    parser.add_argument("--bands", type=POSITIVE, nargs="+", help="1-based bands of the pre image (and post, unless "
                        "--post-bands); default: the run's data.bands")
    parser.add_argument("--post-bands", type=POSITIVE, nargs="+", help="1-based bands of the post image")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.change.datasets import data_format
    from ssl_siam.change.predict import date_folders, predict_pair, predict_split
    from ssl_siam.change.run import load_finetuned

    if bool(args.data) == bool(args.pre or args.post) or (args.pre is None) != (args.post is None):
        raise UserError("give either --pre and --post, or --data XBD_SPLIT_DIR")
    if args.ids and not args.data:
        raise UserError("--ids picks pairs of --data; with --pre / --post there is one pair")
    check_output(args.out, "--out")
    task, cfg, runtime, change = load_finetuned(args.ckpt, args.device)
    bands = args.bands or cfg.data.bands
    post_bands = args.post_bands or (None if args.bands else cfg.data.post_bands)
    kwargs = dict(bands=bands, post_bands=post_bands, window=args.window, overlap=args.overlap, tta=args.tta,
                  batch_size=args.batch_size)
    out = Path(args.out)
    if args.data:
        fmt = data_format(Path(args.data), cfg.data.format)
        written = predict_split(task, change, runtime, Path(args.data), out, fmt, ids=args.ids, **kwargs)
    else:
        pre, post, stem = date_folders(Path(args.pre), Path(args.post), cfg.data.oscd_bands, out)
        written = predict_pair(task, change, runtime, pre, post, out, stem=stem, **kwargs)
    print(f"wrote {len(written)} files to {out}")
    return 0
