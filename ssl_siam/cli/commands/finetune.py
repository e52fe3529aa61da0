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
    if (run_dir / "checkpoints" / "best.pt").is_file():
        print(f"checkpoints: {run_dir / 'checkpoints'} (best.pt = best validation score of the task: xView2 score, "
              "change F1 or SeK)")
    else:
        print(f"checkpoints: {run_dir / 'checkpoints'} (last.pt; nothing was validated, so no best.pt)")
    if (run_dir / "encoder.json").is_file():
        print(f"encoder: {run_dir} (model.encoder_weights=RUN, or an ssl-siam study encoder)")
    return 0
