"""``ssl-siam split-scenes``: a fixed, seeded, stratified train / test split of a class folder, as links."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import FRACTION, NON_NEGATIVE, check_output
from ssl_siam.core.errors import UserError

NAME = "split-scenes"
HELP = ("a class folder's fixed, seeded, stratified train / test split as two folders of links (pretrain on train/ "
        "only; task=scene studies test on the same split)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="class folder: <class>/*.{tif,png,jpg}")
    parser.add_argument("--out", required=True, help="new folder: train/<class>/, test/<class>/, split.json")
    parser.add_argument("--test-fraction", type=FRACTION, default=0.5,
                        help="held out of each class (study: scene.test_fraction)")
    parser.add_argument("--seed", type=NON_NEGATIVE, default=0, help="study: scene.split_seed")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.data.class_folders import split_scenes, write_split

    if args.test_fraction <= 0:
        raise UserError(f"--test-fraction: expected a fraction in (0, 1), got {args.test_fraction}")
    check_output(args.out, "--out")
    split = split_scenes(args.root, args.test_fraction, args.seed)
    out = write_split(split, args.out)
    print(f"{out}: {int((~split.is_test).sum())} training images in {out / 'train'}, {int(split.is_test.sum())} "
          f"test images in {out / 'test'} ({len(split.classes)} classes; seed {args.seed})")
    return 0
