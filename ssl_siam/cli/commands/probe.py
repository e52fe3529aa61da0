"""``ssl-siam probe``: linear-probe and kNN accuracy of frozen encoders, side by side."""

from __future__ import annotations

import argparse
import dataclasses

from ssl_siam.cli.common import NON_NEGATIVE, POSITIVE, check_output

NAME = "probe"
HELP = "linear-probe and kNN evaluation of frozen encoders, side by side"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", action="append", required=True,
                        help="RUN/encoder.safetensors, random:<timm name> or timm:<name>=<local weights>; repeatable")
    parser.add_argument("--data", nargs="+", required=True, help="image-folder root (class/*.tif) or xBD split dirs")
    parser.add_argument("--dataset", choices=["folder", "xbd-crops"], default="folder")
    parser.add_argument("--val-data", nargs="+", help="explicit held-out split instead of the automatic one")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="auto", help="auto = cuda when available, else cpu")
    parser.add_argument("--k", type=POSITIVE, default=20, help="neighbours for kNN")
    parser.add_argument("--crop-size", type=POSITIVE, default=64)
    parser.add_argument("--batch-size", type=POSITIVE, default=64)
    parser.add_argument("--seed", type=NON_NEGATIVE, default=0)


def run(args: argparse.Namespace) -> int:
    from ssl_siam.probe.run import probe_table, run_probe

    check_output(args.out, "--out")
    rows = run_probe(args.encoder, args.data, args.dataset, args.out, val_data=args.val_data, device=args.device,
                     k=args.k, crop_size=args.crop_size, batch_size=args.batch_size, seed=args.seed)
    print("\n".join(probe_table([dataclasses.asdict(r) for r in rows])))
    print(f"written to {args.out}/probe.json and probe.md")
    return 0
