"""``ssl-siam finetune``: Siamese change finetuning (damage, binary or semantic change) from a pretrained encoder."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import add_config_arguments

NAME = "finetune"
HELP = ("Siamese change finetuning: xBD damage (xView2), binary change (LEVIR, S2Looking, OSCD, CSV), semantic "
        "change (SECOND)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ssl_siam.change.config import FinetuneConfig
    from ssl_siam.change.run import run_finetune
    from ssl_siam.core.config import load_config

    run_dir = run_finetune(load_config(FinetuneConfig, args.config, args.overrides))
    print(f"checkpoints: {run_dir / 'checkpoints'} (best.pt = best validation score of the task: xView2 score, "
          "change F1 or SeK)")
    return 0
