"""``ssl-siam track-train``: SiamFC for single-object tracking (synthetic sequences when ``data.root`` is unset)."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import add_config_arguments

NAME = "track-train"
HELP = "SiamFC object tracking: train on annotated sequences (or generated ones)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ssl_siam.core.config import load_config
    from ssl_siam.track.config import TrackConfig
    from ssl_siam.track.run import run_track_train
    from ssl_siam.train.rundir import last_checkpoint_path

    run_dir = run_track_train(load_config(TrackConfig, args.config, args.overrides))
    last = last_checkpoint_path(run_dir)
    print(f"checkpoints: {run_dir / 'checkpoints'} (track with: ssl-siam track --ckpt {last} --frames SEQ/img "
          f"--init X,Y,W,H --out OUT; evaluate with: ssl-siam track-eval --ckpt {last} --data SEQS --out OUT)")
    return 0
