"""Why does pretraining not help the demo? Paired finetuning studies at the demo's scale (its data: 8 labelled
pairs of one synthetic disaster, a held-out disaster, 20x unlabeled images; its finetune recipe), each varying one
thing against the same random-init baseline: the SSL objective (SimSiam, BYOL, DINO, pretrained alike), the encoder
learning rate, frozen encoder BatchNorm, and freezing the encoder early on.

    python scripts/diagnose_pretraining.py OUT_DIR [--device cpu] [--questions 0 2]

Writes OUT_DIR/diagnosis.md (one table per question: mean, 95 % CI and the paired difference to random init).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssl_siam.core.config import load_config
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.ssl.run import run_pretrain
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.run import run_study
from ssl_siam.tools.demo import make_demo_data

BUDGET, SEEDS = 8, [0, 1, 2]
VARIANTS = {  # question -> finetune overrides (the demo recipe otherwise)
    "objective (demo finetune recipe)": [],
    "encoder_lr_scale 1.0 (recipe: 0.5)": ["finetune.train.encoder_lr_scale=1.0"],
    "encoder BatchNorm frozen": ["finetune.train.encoder_bn=frozen"],
    "encoder frozen for the first 40 of 80 steps": ["finetune.train.freeze_encoder_epochs=40"],
}


def pretrain(paths: dict[str, Path], out: Path, objective: str, device: str) -> Path:
    roots = [paths[k] / "images" for k in ("unlabeled_storm", "unlabeled_tornado", "train", "hold")]
    overrides = [f"data.root=[{','.join(map(str, roots))}]", f"run_dir={out / objective}", f"objective={objective}",
                 f"train.device={device}", "train.progress=false"]
    return run_pretrain(load_config(PretrainConfig, "demo/pretrain_simsiam_resnet18", overrides))


def interval(ci: list[float]) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--questions", type=int, nargs="+", default=list(range(len(VARIANTS))),
                        help="which of the questions to run (0-based, in the order above)")
    args = parser.parse_args()
    paths = make_demo_data(args.out / "data", quick=False)
    encoders = {name: pretrain(paths, args.out / "pretrain", name, args.device) for name in ("simsiam", "byol", "dino")}
    lines = ["# Pretraining diagnosis (demo scale)", "",
             f"{BUDGET} labelled pairs of synthetic-storm, tested on synthetic-tornado (never labelled); seeds "
             f"{SEEDS}; xView2 score; paired difference to random init with its 95 % CI.", ""]
    for number, (question, overrides) in enumerate(VARIANTS.items()):
        if number not in args.questions:
            continue
        chosen = list(encoders.values()) if number == 0 else [encoders["simsiam"]]
        cfg = load_config(StudyConfig, "demo/study_resnet18", [
            f"data.root=[{paths['train']},{paths['hold']}]", f"budgets=[{BUDGET}]", f"seeds={SEEDS}",
            f"encoders=[{','.join(map(str, chosen))},random:resnet18]", f"run_dir={args.out / f'study{number}'}",
            f"finetune.train.device={args.device}", f"probes={number == 0}", *overrides])
        study = json.loads((run_study(cfg) / "study.json").read_text())
        tables = {question: study["rows"], **{f"{question}: frozen encoder, {m} probe of the buildings' damage "
                                              f"(top-1)": p["rows"] for m, p in study.get("probes", {}).items()}}
        for title, rows in tables.items():
            lines += [f"## {title}", "", "| encoder | mean | 95 % CI | − random (paired) | 95 % CI |",
                      "|---|---|---|---|---|"]
            for row in rows:
                diff = row.get("diff_vs_random")
                paired = f"{diff['mean']:+.3f} | {interval(diff['ci95'])}" if diff else "— | —"
                lines.append(f"| {Path(row['encoder']).name} | {row['mean']:.3f} | {interval(row['ci95'])} | "
                             f"{paired} |")
            lines.append("")
    (args.out / "diagnosis.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
