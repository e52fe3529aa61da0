"""The ``ssl-siam`` subcommands: each turns parsed arguments into one library call and reports the result.

Imports are local to each command, so light commands (``score``, ``targets``, ``recipes``) start without torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from ssl_siam.core.errors import UserError


def check_output(path: str | Path | None, flag: str, folder: bool = True) -> None:
    """Refuse, before any work, an output ``path`` that cannot be written: a file where a folder is expected (or
    the reverse), or a location whose nearest existing parent is not a writable folder. Nothing is created."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        want, have = ("folder", "file") if folder else ("file", "folder")
        raise UserError(f"{flag} {path} is a {have}, expected a {want}")
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, expected a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {parent} is not writable")


def run_training(command: str, config: str | None, overrides: list[str]) -> Path:
    """Load the config of a training ``command`` (pretrain | finetune | metric-train) and run it."""
    from ssl_siam.core.config import load_config

    if command == "pretrain":
        from ssl_siam.ssl.config import PretrainConfig as schema
        from ssl_siam.ssl.run import run_pretrain as run
    elif command == "finetune":
        from ssl_siam.damage.config import FinetuneConfig as schema
        from ssl_siam.damage.run import run_finetune as run
    else:
        from ssl_siam.metric_learning.config import MetricConfig as schema
        from ssl_siam.metric_learning.run import run_metric_train as run
    return run(load_config(schema, config, overrides))


def cmd_pretrain(args: argparse.Namespace) -> int:
    run_dir = run_training("pretrain", args.config, args.overrides)
    print(f"encoder: {run_dir / 'encoder.safetensors'}  (load with ssl_siam.load_encoder('{run_dir}'))")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    run_dir = run_training("finetune", args.config, args.overrides)
    print(f"checkpoints: {run_dir / 'checkpoints'} (best.pt = best validation score of the task: xView2 score, "
          "change F1 or SeK)")
    return 0


def cmd_metric_train(args: argparse.Namespace) -> int:
    run_dir = run_training("metric-train", args.config, args.overrides)
    print(f"checkpoints: {run_dir / 'checkpoints'} (verify with: ssl-siam verify --ckpt "
          f"{run_dir / 'checkpoints' / 'last.pt'} --data ...)")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from ssl_siam.core.config import load_config
    from ssl_siam.study.config import StudyConfig
    from ssl_siam.study.run import run_study

    study_dir = run_study(load_config(StudyConfig, args.config, args.overrides), only_cell=args.cell)
    done = study_dir / "study.md"
    print(f"study: {done}" if done.is_file() else f"cell {args.cell} done in {study_dir} (run the study again "
          "without --cell, once every cell is done, to aggregate)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
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


def cmd_score(args: argparse.Namespace) -> int:
    from ssl_siam.damage.binary import score_binary_dirs
    from ssl_siam.damage.semantic import score_semantic_dirs
    from ssl_siam.damage.xview2 import score_dirs

    check_output(args.json, "--json", folder=False)
    if args.task == "damage":
        score = score_dirs(args.pred, args.targ, workers=args.workers)
    else:
        score = (score_binary_dirs if args.task == "binary" else score_semantic_dirs)(args.pred, args.targ)
    print(score.table())
    if args.json:
        Path(args.json).write_text(json.dumps(score.to_dict(), indent=2))
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from ssl_siam.data.xbd.labels import write_targets

    check_output(args.out, "--out")
    count = write_targets(args.split_dir, args.out, unclassified=args.unclassified)
    print(f"wrote localization and damage targets for {count} pairs to {args.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ssl_siam.damage.predict import predict_pair, predict_split
    from ssl_siam.damage.run import load_finetuned
    from ssl_siam.data.change import data_format

    if bool(args.data) == bool(args.pre or args.post) or (args.pre is None) != (args.post is None):
        raise UserError("give either --pre and --post, or --data XBD_SPLIT_DIR")
    check_output(args.out, "--out")
    task, cfg, runtime = load_finetuned(args.ckpt, args.device)
    bands = args.bands or cfg.data.bands
    post_bands = args.post_bands or (None if args.bands else cfg.data.post_bands)
    kwargs = dict(bands=bands, post_bands=post_bands, window=args.window, overlap=args.overlap, tta=args.tta,
                  batch_size=args.batch_size)
    out = Path(args.out)
    if args.data:
        fmt = data_format(Path(args.data), cfg.data.format)
        written = predict_split(task, runtime, Path(args.data), out, fmt, **kwargs)
    else:
        written = predict_pair(task, runtime, Path(args.pre), Path(args.post), out, **kwargs)
    print(f"wrote {len(written)} files to {out}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from ssl_siam.probe.run import probe_table, run_probe

    check_output(args.out, "--out")
    rows = run_probe(args.encoder, args.data, args.dataset, args.out, val_data=args.val_data, device=args.device,
                     k=args.k, crop_size=args.crop_size, batch_size=args.batch_size, seed=args.seed)
    print("\n".join(probe_table([dataclasses.asdict(r) for r in rows])))
    print(f"written to {args.out}/probe.json and probe.md")
    return 0


def cmd_split_scenes(args: argparse.Namespace) -> int:
    from ssl_siam.data.class_folders import split_scenes, write_split

    if args.test_fraction <= 0:
        raise UserError(f"--test-fraction: expected a fraction in (0, 1), got {args.test_fraction}")
    check_output(args.out, "--out")
    split = split_scenes(args.root, args.test_fraction, args.seed)
    out = write_split(split, args.out)
    print(f"{out}: {int((~split.is_test).sum())} training images in {out / 'train'}, {int(split.is_test.sum())} "
          f"test images in {out / 'test'} ({len(split.classes)} classes; seed {args.seed})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ssl_siam.tools.bench import format_bench, run_bench

    check_output(args.json, "--json", folder=False)
    result = run_bench(args.objective, backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size,
                       workers=args.workers, device=args.device, steps=args.steps, data=args.data,
                       cache_dir=args.cache_dir)
    print(format_bench(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ssl_siam.tools.report import write_report

    check_output(args.out, "--out")
    print(f"report: {write_report(args.runs, args.out)}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from ssl_siam.core.errors import DataError
    from ssl_siam.tools.cache import cache_sources

    check_output(args.out, "--out")
    report = cache_sources(args.sources, Path(args.out), workers=args.workers, check=args.check)
    if report.problems:
        raise DataError(f"{len(report.problems)} of {report.sources} cache entries are missing or wrong, e.g. "
                        f"{report.problems[0]}")
    print(f"{'checked' if args.check else 'cache'} {args.out}: {report.summary()}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from ssl_siam.data.stats import compute_stats
    from ssl_siam.data.tiles import TileDataset

    check_output(args.out, "--out", folder=False)
    dataset = TileDataset(args.data, args.tile_size, bands=args.bands, band_names=args.band_names,
                          nodata=args.nodata)
    stats = compute_stats(dataset, num_samples=args.samples)
    stats.save(args.out)
    print(f"{'band':>4} {'low':>10} {'high':>10} {'mean':>8} {'std':>8}")
    for i, row in enumerate(zip(stats.low, stats.high, stats.mean, stats.std), 1):
        print(f"{i:>4} {row[0]:>10.4g} {row[1]:>10.4g} {row[2]:>8.4f} {row[3]:>8.4f}")
    print(f"saved to {args.out}; use it with data.stats={args.out}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from ssl_siam.core.recipes import recipes

    found = recipes()
    width = max(len(r.name) for r in found)
    for r in found:
        print(f"{r.name:{width}}  {r.command:12}  {r.summary}")
    print(f"use one with --config <name> (e.g. --config {found[0].name}); the files are in {found[0].path.parents[1]}")
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    from ssl_siam.tools.scenes import make_geotiff_scenes, make_levir_split, make_second_split
    from ssl_siam.tools.synthetic import make_xbd_split

    check_output(args.out, "out")
    out, n = Path(args.out), args.pairs
    if args.format == "xbd":
        make_xbd_split(out, n, size=args.size, seed=args.seed, disaster=args.disaster)
    elif args.format == "levir":
        make_levir_split(out, n, size=args.size, seed=args.seed, disaster=args.disaster)
    elif args.format == "second":
        make_second_split(out, n, size=args.size, seed=args.seed)
    else:
        make_geotiff_scenes(out, n, size=args.size, bands=args.bands, seed=args.seed)
    print(f"wrote {n} {'scenes' if args.format == 'geotiff' else 'pairs'} in the {args.format} layout to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ssl_siam.tools.demo import run_demo

    check_output(args.out, "--out")
    report = run_demo(Path(args.out), quick=args.quick, device=args.device)
    print(f"demo finished: {report}")
    return 0
