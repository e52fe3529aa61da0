"""``ssl-siam track``: follow one or several boxes through frames with a ``track-train`` checkpoint."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import POSITIVE, add_checkpoint_arguments, check_output, number
from ssl_siam.core.errors import UserError

NAME = "track"
HELP = "track objects through an image folder, stack or video with a SiamFC checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(parser, "track-train")
    parser.add_argument("--frames", required=True, help="a folder of images (frames in natural name order), a "
                        "multi-band stack (.tif/.vrt, frame-major) or a video file")
    parser.add_argument("--init", required=True, nargs="+", metavar="X,Y,W,H", help="the target's box on the first "
                        "frame (top-left corner and size in px, as in groundtruth_rect.txt); several boxes track "
                        "several targets at once (boxes.csv then has a target column, 0 = the first box)")
    parser.add_argument("--bands", type=POSITIVE, nargs="+", help="1-based bands of each frame (default: the run's "
                        "data.bands, else all)")
    parser.add_argument("--bands-per-frame", type=POSITIVE, help="a stack file: bands per frame (default: as many as "
                        "the model takes)")
    parser.add_argument("--redetect", type=number(float, 0, 1), metavar="SCORE", help="re-detect a target whose "
                        "score falls below SCORE over a 3x wider search window (default: off)")
    parser.add_argument("--no-gif", action="store_true", help="skip overlay.gif")
    parser.add_argument("--video", action="store_true", help="also write overlay.mp4 (every frame)")


def parse_box(text: str, flag: str = "--init") -> tuple[float, float, float, float]:
    """``X,Y,W,H`` -> four floats; a one-line error otherwise."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise UserError(f"{flag} {text!r}: expected X,Y,W,H, four numbers separated by commas (e.g. 20,30,12,12)")
    return values  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    from ssl_siam.track.predict import track_files

    boxes = [parse_box(text) for text in args.init]
    check_output(args.out, "--out")
    report = track_files(args.ckpt, args.frames, boxes, args.out, device=args.device, bands=args.bands,
                         bands_per_frame=args.bands_per_frame, gif=not args.no_gif, video=args.video,
                         redetect=args.redetect)
    print(f"tracked {report['targets']} target(s) over {report['frames']} frames at {report['fps']:.1f} frames/s "
          f"on {report['device']} (frame reading excluded); wrote {', '.join(report['outputs'])} to {args.out}")
    return 0
