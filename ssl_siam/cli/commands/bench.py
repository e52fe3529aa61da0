"""``ssl-siam bench``: training throughput, model-only ceiling vs our pipeline vs lightly's recipe."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from ssl_siam.cli.common import NON_NEGATIVE, POSITIVE, check_output, number

NAME = "bench"
HELP = "throughput: model-only ceiling vs our pipeline vs lightly's recipe"


class BenchChoices:
    """``bench --objective`` choices (:func:`ssl_siam.tools.bench.bench_choices`: the registered objectives and
    finetune), read only when a value is checked or the choices are listed, so ``ssl-siam`` starts without torch."""

    def __iter__(self) -> Iterator[str]:
        from ssl_siam.tools.bench import bench_choices

        return iter(bench_choices())

    def __contains__(self, name: object) -> bool:
        return name in list(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objective", choices=BenchChoices(), default="simsiam", metavar="OBJECTIVE",
                        help="%(choices)s (default: %(default)s)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", help="default: resnet50 on CUDA, resnet18 on CPU")
    parser.add_argument("--image-size", type=POSITIVE, help="default: 224 on CUDA (512 finetune), 64 on CPU")
    parser.add_argument("--batch-size", type=POSITIVE, help="default: 256 on CUDA, 32 on CPU")
    parser.add_argument("--workers", type=NON_NEGATIVE, default=2, help="DataLoader workers")
    parser.add_argument("--steps", type=POSITIVE, default=10, help="timed steps per measurement")
    parser.add_argument("--data", help="tiles to read (default: generated sample tiles)")
    parser.add_argument("--cache-dir", help="also time the loader reading PNG / JPEG from this decoded cache "
                        "(ssl-siam cache; built first where missing): loader_cached")
    parser.add_argument("--aug-seconds", type=number(float, 0), default=3.0,
                        help="CPU seconds per side of the per-core augmentation comparison (default: %(default)s)")
    parser.add_argument("--json", help="also write the result to this JSON file")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.tools.bench import format_bench, run_bench

    check_output(args.json, "--json", folder=False)
    result = run_bench(args.objective, backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size,
                       workers=args.workers, device=args.device, steps=args.steps, data=args.data,
                       cache_dir=args.cache_dir, aug_seconds=args.aug_seconds)
    print(format_bench(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
