"""The ``ssl-siam`` argument parser: one subparser per command, wired to :mod:`ssl_siam.cli.commands`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator

from ssl_siam.cli import commands as c

CONFIG_HELP = ("YAML config file or packaged recipe name (see `ssl-siam recipes`); further KEY.SUB=VALUE "
               "arguments override it (an unknown key is an error)")


class OneLineParser(argparse.ArgumentParser):
    """Bad command-line arguments are one line on stderr and exit code 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def number(kind: type, low: float, high: float | None = None, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float) in [low, high] (or [low, high) with ``high_open``)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        above = high is None or (value < high if high_open else value <= high)
        if value < low or not above:
            bound = f">= {low}" if high is None else f"in [{low}, {high}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"expected {kind.__name__} {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


POSITIVE, NON_NEGATIVE = number(int, 1), number(int, 0)


class BenchChoices:
    """``bench --objective`` choices (:func:`ssl_siam.tools.bench.bench_choices`: the registered objectives and
    finetune), read only when a value is checked or the choices are listed, so ``ssl-siam`` starts without torch."""

    def __iter__(self) -> Iterator[str]:
        from ssl_siam.tools.bench import bench_choices

        return iter(bench_choices())

    def __contains__(self, name: object) -> bool:
        return name in list(self)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ssl-siam", description="Self-supervised pretraining, Siamese damage "
                                     "finetuning and Siamese metric learning for satellite imagery.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pretrain", help="self-supervised pretraining (SimSiam, BYOL, DINO) on unlabeled tiles")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=c.cmd_pretrain)

    p = sub.add_parser("finetune", help="Siamese change finetuning: xBD damage (xView2), binary change (LEVIR, "
                       "S2Looking, OSCD, CSV), semantic change (SECOND)")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=c.cmd_finetune)

    p = sub.add_parser("metric-train", help="Siamese metric learning: contrastive / triplet / learned metric")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=c.cmd_metric_train)

    p = sub.add_parser("study", help="label-efficiency / unseen-disaster study: encoders × budgets × seeds, with CIs "
                       "(change finetuning, or task=scene: scene classification probes)")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--cell", type=NON_NEGATIVE, help="run only this cell (0-based; e.g. one per Slurm array task)")
    p.set_defaults(func=c.cmd_study)

    p = sub.add_parser("verify", help="verification (ROC AUC, EER, accuracy) and one-shot N-way of a metric model")
    p.add_argument("--ckpt", required=True, help="checkpoints/best.pt or last.pt of a metric-train run")
    p.add_argument("--data", nargs="+", required=True, help="held-out pairs, in the form of the run's data.root")
    p.add_argument("--dataset", choices=["geotiff-dates", "pixel-series", "object-series", "xbd-pairs", "pairs-csv"],
                   help="default: the run's data.dataset")
    p.add_argument("--objects", help="object-series: GeoJSON of the held-out polygons (default: the run's)")
    p.add_argument("--oneshot", help="image folder <class>/*.tif of classes unseen in training: N-way one-shot")
    p.add_argument("--n-way", type=number(int, 2), default=5, help="classes per one-shot trial (>= 2)")
    p.add_argument("--trials", type=POSITIVE, default=1000)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=POSITIVE, default=64)
    p.add_argument("--seed", type=NON_NEGATIVE, default=0)
    p.set_defaults(func=c.cmd_verify)

    p = sub.add_parser("score", help="the xView2 metric (or binary / semantic change metrics) over prediction and "
                       "target folders")
    p.add_argument("--task", choices=["damage", "binary", "semantic"], default="damage",
                   help="damage: xView2 score of *_localization/damage_* PNGs; binary: change precision, recall, F1, "
                   "IoU, OA, kappa of <stem>_change_mask.png (or <stem>.png) against <stem>.png masks (0/1 or 0/255); "
                   "semantic: SECOND's SeK, mIoU, score, Fscd, OA of <stem>_label1/_label2.png against --targ's "
                   "label1/ label2/ (a SECOND split)")
    p.add_argument("--pred", required=True, help="folder of predictions (see --task)")
    p.add_argument("--targ", required=True, help="folder of targets (see --task)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.add_argument("--workers", type=POSITIVE, default=2)
    p.set_defaults(func=c.cmd_score)

    p = sub.add_parser("targets", help="rasterise xBD label JSON into xView2 target PNGs")
    p.add_argument("split_dir", help="xBD split directory (images/ and labels/)")
    p.add_argument("--out", required=True)
    p.add_argument("--unclassified", choices=["no-damage", "ignore"], default="no-damage",
                   help="un-classified buildings: no-damage (scoring targets) or 255 (training masks)")
    p.set_defaults(func=c.cmd_targets)

    p = sub.add_parser("predict", help="map damage or change on pre/post images with a finetuned checkpoint")
    p.add_argument("--ckpt", required=True, help="checkpoints/best.pt or last.pt of a finetune run")
    p.add_argument("--pre", help="pre-event image (PNG/JPEG/GeoTIFF)")
    p.add_argument("--post", help="post-event image")
    p.add_argument("--data", help="a split directory (xBD, LEVIR, S2Looking, OSCD, SECOND) or pairs CSV: predict "
                   "every pair")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--window", type=POSITIVE, default=512, help="sliding-window size")
    p.add_argument("--overlap", type=number(float, 0, 1, high_open=True), default=0.25,
                   help="fraction of a window shared with its neighbour, in [0, 1)")
    p.add_argument("--batch-size", type=POSITIVE, default=4)
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    p.add_argument("--bands", type=POSITIVE, nargs="+", help="1-based bands of the pre image (and post, unless "
                   "--post-bands); default: the run's data.bands")
    p.add_argument("--post-bands", type=POSITIVE, nargs="+", help="1-based bands of the post image")
    p.set_defaults(func=c.cmd_predict)

    p = sub.add_parser("probe", help="linear-probe and kNN evaluation of frozen encoders, side by side")
    p.add_argument("--encoder", action="append", required=True,
                   help="RUN/encoder.safetensors, random:<timm name> or timm:<name>=<local weights>; repeatable")
    p.add_argument("--data", nargs="+", required=True, help="image-folder root (class/*.tif) or xBD split dirs")
    p.add_argument("--dataset", choices=["folder", "xbd-crops"], default="folder")
    p.add_argument("--val-data", nargs="+", help="explicit held-out split instead of the automatic one")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto", help="auto = cuda when available, else cpu")
    p.add_argument("--k", type=POSITIVE, default=20, help="neighbours for kNN")
    p.add_argument("--crop-size", type=POSITIVE, default=64)
    p.add_argument("--batch-size", type=POSITIVE, default=64)
    p.add_argument("--seed", type=NON_NEGATIVE, default=0)
    p.set_defaults(func=c.cmd_probe)

    p = sub.add_parser("split-scenes", help="a class folder's fixed, seeded, stratified train / test split as two "
                       "folders of links (pretrain on train/ only; task=scene studies test on the same split)")
    p.add_argument("root", help="class folder: <class>/*.{tif,png,jpg}")
    p.add_argument("--out", required=True, help="new folder: train/<class>/, test/<class>/, split.json")
    p.add_argument("--test-fraction", type=number(float, 0, 1, high_open=True), default=0.5,
                   help="held out of each class (study: scene.test_fraction)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="study: scene.split_seed")
    p.set_defaults(func=c.cmd_split_scenes)

    p = sub.add_parser("bench", help="throughput: model-only ceiling vs our pipeline vs lightly's recipe")
    p.add_argument("--objective", choices=BenchChoices(), default="simsiam", metavar="OBJECTIVE",
                   help="%(choices)s (default: %(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", help="default: resnet50 on CUDA, resnet18 on CPU")
    p.add_argument("--image-size", type=POSITIVE, help="default: 224 on CUDA (512 finetune), 64 on CPU")
    p.add_argument("--batch-size", type=POSITIVE, help="default: 256 on CUDA, 32 on CPU")
    p.add_argument("--workers", type=NON_NEGATIVE, default=2, help="DataLoader workers")
    p.add_argument("--steps", type=POSITIVE, default=10, help="timed steps per measurement")
    p.add_argument("--data", help="tiles to read (default: generated sample tiles)")
    p.add_argument("--cache-dir", help="also time the loader reading PNG / JPEG from this decoded cache "
                   "(ssl-siam cache; built first where missing): loader_cached")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=c.cmd_bench)

    p = sub.add_parser("report", help="one markdown report across pretrain, finetune, metric, verify and probe runs")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (metrics.json), probe or verify outputs")
    p.add_argument("--out", default="report", help="folder for report.md and its plots")
    p.set_defaults(func=c.cmd_report)

    p = sub.add_parser("cache", help="decode PNG / JPEG tiles, pairs and masks once into a cache read by window "
                       "(use it with data.cache_dir)")
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="tile folders, globs or files, or pair datasets (xBD splits: masks rasterised too; LEVIR, "
                   "S2Looking, OSCD, SECOND, pairs CSV)")
    p.add_argument("--out", required=True, help="the cache folder (data.cache_dir of the training)")
    p.add_argument("--workers", type=POSITIVE, default=2, help="decoding processes")
    p.add_argument("--check", action="store_true",
                   help="verify the cache against the sources (every entry present, from this file, same pixels); "
                   "exit 2 naming the first problem")
    p.set_defaults(func=c.cmd_cache)

    p = sub.add_parser("stats", help="per-band normalization statistics of a tile dataset, saved as JSON")
    p.add_argument("data", help="folder, glob or file of GeoTIFF/PNG/JPEG tiles")
    p.add_argument("--out", default="stats.json")
    p.add_argument("--tile-size", type=POSITIVE, default=256)
    p.add_argument("--bands", type=POSITIVE, nargs="+", help="1-based band indices")
    p.add_argument("--band-names", nargs="+", help="values for a {band} placeholder in DATA")
    p.add_argument("--nodata", type=float)
    p.add_argument("--samples", type=POSITIVE, default=256, help="windows to sample")
    p.set_defaults(func=c.cmd_stats)

    p = sub.add_parser("recipes", help="list the packaged config recipes (use them by name with --config)")
    p.set_defaults(func=c.cmd_recipes)

    p = sub.add_parser("synthetic", help="generate a learnable sample dataset in a benchmark's layout (the demo's)")
    p.add_argument("out", help="output folder")
    p.add_argument("--format", choices=("xbd", "levir", "second", "geotiff"), default="xbd",
                   help="xbd: images/ labels/ pairs with damage; levir: A/ B/ label/ change chips; second: im1/ im2/ "
                   "label1/ label2/ land cover; geotiff: unlabeled multi-band scenes")
    p.add_argument("--pairs", type=POSITIVE, default=16, help="pairs (scenes for geotiff)")
    p.add_argument("--size", type=POSITIVE, default=256, help="image side in pixels")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0)
    p.add_argument("--disaster", default="synthetic-storm", help="xbd / levir: the disaster name in the ids")
    p.add_argument("--bands", type=number(int, 1, 4), default=4, help="geotiff: bands (red, green, blue, nir)")
    p.set_defaults(func=c.cmd_synthetic)

    p = sub.add_parser("demo", help="the whole pipeline on generated sample data, on CPU, in minutes")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--quick", action="store_true", help="fewer steps (for tests)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=c.cmd_demo)
    return parser
