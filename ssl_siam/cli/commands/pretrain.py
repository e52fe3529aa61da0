"""``ssl-siam pretrain``: self-supervised pretraining of an encoder on unlabeled tiles."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import add_config_arguments

NAME = "pretrain"
HELP = "self-supervised pretraining (SimSiam, BYOL, DINO) on unlabeled tiles"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ssl_siam.core.config import load_config
    from ssl_siam.ssl.config import PretrainConfig
    from ssl_siam.ssl.run import run_pretrain

    run_dir = run_pretrain(load_config(PretrainConfig, args.config, args.overrides))
    print(f"encoder: {run_dir / 'encoder.safetensors'}  (load with ssl_siam.load_encoder('{run_dir}'))")
    return 0
