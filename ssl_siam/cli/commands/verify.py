"""``ssl-siam verify``: verification metrics and one-shot N-way accuracy of a metric-learning checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssl_siam.cli.common import NON_NEGATIVE, POSITIVE, add_checkpoint_arguments, check_output, number

NAME = "verify"
HELP = "verification (ROC AUC, EER, accuracy) and one-shot N-way of a metric model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(parser, "metric-train")
    parser.add_argument("--data", nargs="+", required=True, help="held-out pairs, in the form of the run's data.root")
    parser.add_argument("--dataset", help="a metric-train data.dataset (docs/metric-learning.md); default: the run's")
    parser.add_argument("--objects", help="object-series: GeoJSON of the held-out polygons (default: the run's)")
    parser.add_argument("--oneshot", help="image folder <class>/*.tif of classes unseen in training: N-way one-shot")
    parser.add_argument("--n-way", type=number(int, 2), default=5, help="classes per one-shot trial (>= 2)")
    parser.add_argument("--trials", type=POSITIVE, default=1000)
    parser.add_argument("--batch-size", type=POSITIVE, default=64)
    parser.add_argument("--seed", type=NON_NEGATIVE, default=0)


def run(args: argparse.Namespace) -> int:
    from ssl_siam.metric_learning.verify import verify

    check_output(args.out, "--out")
    result = verify(args.ckpt, args.data, args.out, dataset=args.dataset, objects=args.objects,
                         oneshot=args.oneshot, n_way=args.n_way, trials=args.trials, device=args.device,
                         batch_size=args.batch_size, seed=args.seed)
    print(f"pairs {result['n_pairs']} ({result['n_positive']} same)  ROC AUC {result['roc_auc']:.4f}  "
          f"EER {result['eer']:.4f}  best accuracy {result['best_accuracy']:.4f} "
          f"(threshold {result['best_threshold']:.4g})")
    if "oneshot_accuracy" in result:
        print(f"one-shot {result['oneshot_n_way']}-way accuracy {result['oneshot_accuracy']:.4f} "
              f"({result['oneshot_trials']} trials over {result['oneshot_classes']} held-out classes)")
    print(f"written to {Path(args.out) / 'verify.json'} and roc.png")
    return 0
