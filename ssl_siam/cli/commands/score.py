"""``ssl-siam score``: a change task's metric (xView2, binary or semantic change) over prediction and target
folders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssl_siam.cli.common import POSITIVE, check_output, number

NAME = "score"
HELP = "the xView2 metric (or binary / semantic change metrics) over prediction and target folders"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="damage",
                        help="a change task (change/tasks/); damage: xView2 score of *_localization/damage_* PNGs; "
                        "binary: change precision, recall, F1, IoU, OA, kappa of <stem>_change_mask.png (or "
                        "<stem>.png) against <stem>.png masks (0/1 or 0/255); semantic: SECOND's SeK, mIoU, score, "
                        "Fscd, OA of <stem>_label1/_label2.png against --targ's label1/ label2/ (a SECOND split)")
    parser.add_argument("--pred", required=True, help="folder of predictions (see --task)")
    parser.add_argument("--targ", required=True, help="folder of targets (see --task)")
    parser.add_argument("--json", help="also write the scores to this JSON file")
    parser.add_argument("--mask-threshold", type=number(int, 1, 255), help="binary: target mask values >= this "
                        "are change, below it no change (anti-aliased masks; the run's data.mask_threshold); "
                        "default: targets must hold 0/1 or 0/255")
    parser.add_argument("--workers", type=POSITIVE, default=2)


def run(args: argparse.Namespace) -> int:
    from ssl_siam.change.tasks import change_task

    task = change_task(args.task, args.mask_threshold)
    check_output(args.json, "--json", folder=False)
    score = task.score_dirs(Path(args.pred), Path(args.targ), workers=args.workers)
    print(score.table())
    if args.json:
        Path(args.json).write_text(json.dumps(score.to_dict(), indent=2))
    return 0
