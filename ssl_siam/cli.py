"""``ssl-siam <command>``: argument parsing and reporting only; the work happens in the library."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ssl_siam.errors import Preempted, UserError

CONFIG_HELP = "YAML config; further KEY.SUB=VALUE arguments override it (an unknown key is an error)"


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ssl_siam.config import load_config
    from ssl_siam.pretraining import run_pretrain
    from ssl_siam.schema import PretrainConfig

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    run_dir = run_pretrain(cfg)
    print(f"encoder: {run_dir / 'encoder.safetensors'}  (load with ssl_siam.load_encoder('{run_dir}'))")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from ssl_siam.config import load_config
    from ssl_siam.finetuning import run_finetune
    from ssl_siam.schema import FinetuneConfig

    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    run_dir = run_finetune(cfg)
    print(f"checkpoints: {run_dir / 'checkpoints'} (best.pt = best validation xView2 score)")
    return 0


def cmd_metric_train(args: argparse.Namespace) -> int:
    from ssl_siam.config import load_config
    from ssl_siam.metric.run import run_metric_train
    from ssl_siam.schema import MetricConfig

    cfg = load_config(MetricConfig, args.config, args.overrides)
    run_dir = run_metric_train(cfg)
    print(f"checkpoints: {run_dir / 'checkpoints'} (verify with: ssl-siam verify --ckpt "
          f"{run_dir / 'checkpoints' / 'last.pt'} --data ...)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ssl_siam.metric.run import verify

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
    from ssl_siam.metrics import score_dirs

    score = score_dirs(args.pred, args.targ, workers=args.workers)
    print(score.table())
    if args.json:
        Path(args.json).write_text(json.dumps(score.to_dict(), indent=2))
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from ssl_siam.data.xbd_labels import write_targets

    count = write_targets(args.split_dir, args.out, unclassified=args.unclassified)
    print(f"wrote localization and damage targets for {count} pairs to {args.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ssl_siam.engine import autocast_dtype, resolve_device
    from ssl_siam.finetuning import load_finetuned
    from ssl_siam.inference import predict_pair, predict_split

    if bool(args.data) == bool(args.pre or args.post) or (args.pre is None) != (args.post is None):
        raise UserError("give either --pre and --post, or --data XBD_SPLIT_DIR")
    device = resolve_device(args.device)
    task, cfg = load_finetuned(args.ckpt, device)
    kwargs = dict(bands=cfg.data.bands, post_bands=cfg.data.post_bands, window=args.window, overlap=args.overlap,
                  tta=args.tta, batch_size=args.batch_size, device=device, amp_dtype=autocast_dtype(device, cfg.train))
    out = Path(args.out)
    if args.data:
        written = predict_split(task, Path(args.data), out, **kwargs)
    else:
        written = predict_pair(task, Path(args.pre), Path(args.post), out, **kwargs)
    print(f"wrote {len(written)} files to {out}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    import torch

    from ssl_siam.probe import run_probe
    from ssl_siam.report import probe_table

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    rows = run_probe(args.encoder, args.data, args.dataset, args.out, val_data=args.val_data, device=device,
                     k=args.k, crop_size=args.crop_size, batch_size=args.batch_size, seed=args.seed)
    print("\n".join(probe_table([dataclasses.asdict(r) for r in rows])))
    print(f"written to {args.out}/probe.json and probe.md")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ssl_siam.bench import format_bench, run_bench

    result = run_bench(args.objective, backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size,
                       workers=args.workers, device=args.device, steps=args.steps, data=args.data)
    print(format_bench(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ssl_siam.report import write_report

    print(f"report: {write_report(args.runs, args.out)}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from ssl_siam.data.stats import compute_stats
    from ssl_siam.data.tiles import TileDataset

    dataset = TileDataset(args.data, args.tile_size, bands=args.bands, band_names=args.band_names,
                          nodata=args.nodata)
    stats = compute_stats(dataset, num_samples=args.samples)
    stats.save(args.out)
    print(f"{'band':>4} {'low':>10} {'high':>10} {'mean':>8} {'std':>8}")
    for i, row in enumerate(zip(stats.low, stats.high, stats.mean, stats.std), 1):
        print(f"{i:>4} {row[0]:>10.4g} {row[1]:>10.4g} {row[2]:>8.4f} {row[3]:>8.4f}")
    print(f"saved to {args.out}; use it with data.stats={args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ssl_siam.demo import run_demo

    report = run_demo(Path(args.out), quick=args.quick, device=args.device)
    print(f"demo finished: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssl-siam", description="Self-supervised pretraining, Siamese damage "
                                     "finetuning and Siamese metric learning for satellite imagery.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pretrain", help="self-supervised pretraining (SimSiam, BYOL, DINO) on unlabeled tiles")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("finetune", help="Siamese damage finetuning on xBD with xView2 validation")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("metric-train", help="Siamese metric learning: contrastive / triplet / learned metric")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_metric_train)

    p = sub.add_parser("verify", help="verification (ROC AUC, EER, accuracy) and one-shot N-way of a metric model")
    p.add_argument("--ckpt", required=True, help="checkpoints/best.pt or last.pt of a metric-train run")
    p.add_argument("--data", nargs="+", required=True, help="held-out pairs, in the form of the run's data.root")
    p.add_argument("--dataset", choices=["geotiff-dates", "pixel-series", "object-series", "xbd-pairs", "pairs-csv"],
                   help="default: the run's data.dataset")
    p.add_argument("--objects", help="object-series: GeoJSON of the held-out polygons (default: the run's)")
    p.add_argument("--oneshot", help="image folder <class>/*.tif of classes unseen in training: N-way one-shot")
    p.add_argument("--n-way", type=int, default=5)
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("score", help="the xView2 challenge metric over prediction and target PNG folders")
    p.add_argument("--pred", required=True, help="folder of *_localization_prediction.png / *_damage_prediction.png")
    p.add_argument("--targ", required=True, help="folder of *_localization_target.png / *_damage_target.png")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("targets", help="rasterise xBD label JSON into xView2 target PNGs")
    p.add_argument("split_dir", help="xBD split directory (images/ and labels/)")
    p.add_argument("--out", required=True)
    p.add_argument("--unclassified", choices=["no-damage", "ignore"], default="no-damage",
                   help="un-classified buildings: no-damage (scoring targets) or 255 (training masks)")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("predict", help="map damage on pre/post images with a finetuned checkpoint")
    p.add_argument("--ckpt", required=True, help="checkpoints/best.pt or last.pt of a finetune run")
    p.add_argument("--pre", help="pre-event image (PNG/JPEG/GeoTIFF)")
    p.add_argument("--post", help="post-event image")
    p.add_argument("--data", help="an xBD split directory: predict every pair")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--window", type=int, default=512, help="sliding-window size")
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("probe", help="linear-probe and kNN evaluation of frozen encoders, side by side")
    p.add_argument("--encoder", action="append", required=True,
                   help="RUN/encoder.safetensors, random:<timm name> or timm:<name>=<local weights>; repeatable")
    p.add_argument("--data", nargs="+", required=True, help="image-folder root (class/*.tif) or xBD split dirs")
    p.add_argument("--dataset", choices=["folder", "xbd-crops"], default="folder")
    p.add_argument("--val-data", nargs="+", help="explicit held-out split instead of the automatic one")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto", help="auto = cuda when available, else cpu")
    p.add_argument("--k", type=int, default=20, help="neighbours for kNN")
    p.add_argument("--crop-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("bench", help="throughput: model-only ceiling vs our pipeline vs lightly's recipe")
    p.add_argument("--objective", choices=["simsiam", "byol", "dino", "finetune"], default="simsiam")
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", help="default: resnet50 on CUDA, resnet18 on CPU")
    p.add_argument("--image-size", type=int, help="default: 224 on CUDA (512 finetune), 64 on CPU")
    p.add_argument("--batch-size", type=int, help="default: 256 on CUDA, 32 on CPU")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--data", help="tiles to read (default: generated sample tiles)")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="one markdown report across pretrain, finetune, metric, verify and probe runs")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (metrics.json), probe or verify outputs")
    p.add_argument("--out", default="report", help="folder for report.md and its plots")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("stats", help="per-band normalization statistics of a tile dataset, saved as JSON")
    p.add_argument("data", help="folder, glob or file of GeoTIFF/PNG/JPEG tiles")
    p.add_argument("--out", default="stats.json")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--bands", type=int, nargs="+", help="1-based band indices")
    p.add_argument("--band-names", nargs="+", help="values for a {band} placeholder in DATA")
    p.add_argument("--nodata", type=float)
    p.add_argument("--samples", type=int, default=256, help="windows to sample")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("demo", help="the whole pipeline on generated sample data, on CPU, in minutes")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--quick", action="store_true", help="fewer steps (for tests)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_demo)
    return parser


def one_line(exc: BaseException) -> str:
    """Errors re-raised from DataLoader workers carry the worker's traceback: keep its last line only."""
    text = str(exc).strip()
    if "Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.debug:
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    try:
        return args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"ssl-siam {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Preempted as exc:
        print(f"ssl-siam {args.command}: {exc}", file=sys.stderr)
        return Preempted.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
