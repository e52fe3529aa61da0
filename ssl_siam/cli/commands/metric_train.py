"""``ssl-siam metric-train``: Siamese metric learning (contrastive, triplet or learned metric)."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import add_config_arguments

NAME = "metric-train"
HELP = "Siamese metric learning: contrastive / triplet / learned metric"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ssl_siam.core.config import load_config
    from ssl_siam.metric_learning.config import MetricConfig
    from ssl_siam.metric_learning.run import run_metric_train
    from ssl_siam.train.rundir import last_checkpoint_path

    run_dir = run_metric_train(load_config(MetricConfig, args.config, args.overrides))
    print(f"checkpoints: {run_dir / 'checkpoints'} (verify with: ssl-siam verify --ckpt "
          f"{last_checkpoint_path(run_dir)} --data ...)")
    return 0
