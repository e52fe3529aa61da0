"""The GPU check (docs/benchmark.md, "GPU check"): ``ssl-siam bench`` for every objective and finetuning, then a few
real steps of every training and of predict on the device — bf16 autocast and channels_last as the recipes set
them, once with ``train.compile=true``, once under ``torchrun --nproc_per_node 1`` with ``train.sync_bn=true`` —
each in its own process, with its peak memory. Writes ``OUT/bench_<objective>.json``, ``OUT/steps.json`` and
``OUT/summary.json`` (+ ``summary.md``); exits 1 if any step failed. ``--smoke``: the same steps at toy sizes.

    python scripts/gpu_check.py --device cuda --out DIR          # (scripts/gpu_check.sh installs first)
    python scripts/gpu_check.py --device cpu --smoke --out DIR   # minutes on a CPU: what the suite runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_OBJECTIVES = ("simsiam", "byol", "dino", "finetune")
TARGETS = {"simsiam": 0.9, "dino": 0.9, "finetune": 0.9}  # ours / ceiling, issue 29


def sizes(smoke: bool) -> dict[str, object]:
    """Model and data sizes: the paper recipes on a GPU, toys for ``--smoke``."""
    if smoke:
        return {"backbone": "resnet18", "image": 32, "batch": 4, "finetune_image": 64, "finetune_batch": 2,
                "steps": 2, "pairs": 4, "size": 96, "workers": 0}
    return {"backbone": "resnet50", "image": 224, "batch": 256, "finetune_image": 512, "finetune_batch": 8,
            "steps": 10, "pairs": 16, "size": 1024, "workers": min(16, os.cpu_count() or 1)}


def child(argv: list[str], report: Path) -> int:
    """Run ``ssl-siam argv`` in this process and write its exit code and peak memory to ``report``."""
    import torch

    from ssl_siam.cli import main

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    code = main(argv)
    peak = (torch.cuda.max_memory_allocated() if cuda else
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux: ru_maxrss in KiB
    if int(os.environ.get("RANK", "0")) == 0:
        report.write_text(json.dumps({"rc": code, "peak_memory_mb": round(peak / 2**20, 1),
                                      "memory": "cuda max_memory_allocated" if cuda else "process max RSS"}))
    return code


def run_step(name: str, argv: list[str], out: Path, launcher: list[str] | None = None) -> dict[str, object]:
    """One step in a fresh process (a CUDA error cannot poison the next); its log in ``OUT/logs/<name>.log``."""
    report, log = out / "logs" / f"{name}.json", out / "logs" / f"{name}.log"
    report.unlink(missing_ok=True)
    command = [*(launcher or [sys.executable]), __file__, "--child", str(report), "--", *argv]
    start = time.perf_counter()
    with log.open("w") as handle:
        rc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False).returncode
    result: dict[str, object] = {"name": name, "argv": argv, "rc": rc, "seconds": round(time.perf_counter() - start, 1)}
    if report.exists():
        result.update(json.loads(report.read_text()))
    if rc:
        result["log_tail"] = log.read_text()[-2000:]
    return result


def steps(device: str, smoke: bool, out: Path) -> list[tuple[str, list[str], list[str] | None]]:
    """(name, ssl-siam arguments, launcher) of every step, in order."""
    s, work = sizes(smoke), out / "work"
    data, runs = work / "xbd", work / "runs"
    amp = ["train.precision=bf16", "train.channels_last=true", f"train.device={device}"]
    loader = [f"data.num_workers={s['workers']}", "train.progress=false", "train.log_every=1"]
    small = ["data.stats_samples=8", "simsiam.proj_hidden_dim=64", "simsiam.out_dim=64", "simsiam.pred_hidden_dim=16",
             "byol.proj_hidden_dim=64", "byol.out_dim=32", "byol.pred_hidden_dim=64", "dino.hidden_dim=64",
             "dino.bottleneck_dim=32", "dino.out_dim=128", "augment.global_size=32", "augment.local_size=16",
             "data.tile_size=64"] if smoke else []
    n = str(s["steps"])
    out_list: list[tuple[str, list[str], list[str] | None]] = []
    for objective in BENCH_OBJECTIVES:
        image = s["finetune_image"] if objective == "finetune" else s["image"]
        batch = s["finetune_batch"] if objective == "finetune" else s["batch"]
        out_list.append((f"bench_{objective}", ["bench", "--objective", objective, "--device", device, "--backbone",
                                                str(s["backbone"]), "--image-size", str(image), "--batch-size",
                                                str(batch), "--workers", str(s["workers"]), "--steps", n,
                                                "--aug-seconds", "0.2" if smoke else "3",
                                                "--json", str(out / f"bench_{objective}.json")], None))
    out_list.append(("synthetic_data", ["synthetic", str(data), "--format", "xbd", "--pairs", str(s["pairs"]),
                                        "--size", str(s["size"])], None))
    def pretrain(objective: str, run: str, *extra: str) -> list[str]:
        return ["pretrain", "--config", f"{objective}_resnet50", *extra, f"model.backbone={s['backbone']}",
                f"data.root={data}/images", f"train.batch_size={s['batch']}", f"train.max_steps={n}",
                f"run_dir={runs}/{run}", *amp, *loader, *small]

    for objective in ("simsiam", "byol", "dino"):
        out_list.append((f"pretrain_{objective}", pretrain(objective, f"pretrain_{objective}"), None))
    out_list.append(("pretrain_simsiam_compile", pretrain("simsiam", "pretrain_compile", "train.compile=true"), None))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", "29517"]
    out_list.append(("torchrun_sync_bn", pretrain("simsiam", "pretrain_torchrun", "train.sync_bn=true"), torchrun))
    finetune = [f"model.backbone={s['backbone']}", f"data.root={data}", "data.val_fraction=0.25",
                f"data.crop_size={s['finetune_image']}", f"train.batch_size={s['finetune_batch']}",
                f"train.max_steps={n}", f"data.val_window={s['finetune_image']}", *amp, *loader]
    if smoke:
        finetune += ["model.decoder_channels=[16,16,8,8,8]", "data.stats_samples=4"]
    out_list.append(("finetune", ["finetune", "--config", "xbd_resnet50", *finetune, f"run_dir={runs}/finetune"],
                     None))
    out_list.append(("predict_tta", ["predict", "--ckpt", f"{runs}/finetune/checkpoints/last.pt", "--data", str(data),
                                     "--out", str(work / "predictions"), "--device", device, "--tta", "--window",
                                     str(s["finetune_image"])], None))
    metric = [f"model.backbone={s['backbone']}", f"data.root=[{data}]", f"train.max_steps={n}",
              f"train.batch_size={s['finetune_batch'] * 2}", "data.crop_size=32" if smoke else "data.crop_size=64",
              *amp, *loader, f"run_dir={runs}/metric"]
    out_list.append(("metric_train", ["metric-train", "--config", "xbd_building_pairs", *metric], None))
    return out_list


def summarise(results: list[dict[str, object]], out: Path, device: str) -> dict[str, object]:
    """Bench ratios against the targets, and every step's outcome, as JSON and a Markdown table."""
    rows = []
    table = ["| step | rc | seconds | peak memory (MB) | ours / ceiling | target |", "|---|---|---|---|---|---|"]
    for r in results:
        ratio, target = None, None
        name = str(r["name"])
        if name.startswith("bench_") and (out / f"{name}.json").exists():
            bench = json.loads((out / f"{name}.json").read_text())
            ratio = bench["ratios"].get("ours_vs_ceiling")
            ratio = None if ratio is None else round(ratio, 3)
            target = TARGETS.get(name.removeprefix("bench_"))
        rows.append({**{k: r.get(k) for k in ("name", "rc", "seconds", "peak_memory_mb")}, "ours_over_ceiling": ratio,
                     "target": target, "target_met": None if ratio is None or target is None else ratio >= target})
        table.append(f"| {name} | {r['rc']} | {r['seconds']} | {r.get('peak_memory_mb', '—')} | "
                     f"{'—' if ratio is None else ratio} | {'—' if target is None else target} |")
    summary = {"device": device, "failed": [r["name"] for r in results if r["rc"]], "steps": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text("\n".join(table) + "\n")
    return summary


def main() -> int:
    if sys.argv[1:2] == ["--child"]:  # a step's own process: --child REPORT -- ssl-siam arguments
        return child(sys.argv[4:], Path(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true", help="toy sizes (minutes on a CPU)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out / "work", ignore_errors=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    results = []
    for name, argv, launcher in steps(args.device, args.smoke, out):
        results.append(run_step(name, argv, out, launcher))
        r = results[-1]
        print(f"{name}: rc {r['rc']}, {r['seconds']} s, peak {r.get('peak_memory_mb', '?')} MB", flush=True)
        (out / "steps.json").write_text(json.dumps(results, indent=1))
    summary = summarise(results, out, args.device)
    print((out / "summary.md").read_text(), end="")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
