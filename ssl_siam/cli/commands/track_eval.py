"""``ssl-siam track-eval``: OTB one-pass evaluation of a ``track-train`` checkpoint on annotated sequences."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import add_checkpoint_arguments, check_output, number

NAME = "track-eval"
HELP = "success AUC / precision of a SiamFC checkpoint on annotated sequences (one-pass evaluation)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(parser, "track-train")
    parser.add_argument("--data", required=True, help="a sequence folder (<seq>/img/* + groundtruth_rect.txt) or a "
                        "folder of them")
    parser.add_argument("--precision-px", type=number(float, 0), default=20.0,
                        help="centre-error threshold of the reported precision, px (default 20)")
    parser.add_argument("--redetect", type=number(float, 0, 1), metavar="SCORE", help="re-detect a target whose "
                        "score falls below SCORE over a 3x wider search window (default: off)")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.track.evaluate import evaluate_tracker

    check_output(args.out, "--out")
    result = evaluate_tracker(args.ckpt, args.data, args.out, precision_px=args.precision_px, device=args.device,
                              redetect=args.redetect)
    print(f"{result['sequences']} sequences, {result['frames']} frames scored: success AUC "
          f"{result['success_auc']:.3f}  precision@{args.precision_px:g}px {result['precision']:.3f}  normalised "
          f"precision {result['norm_precision']:.3f}  {result['fps']:.1f} frames/s on {result['device']}")
    return 0
