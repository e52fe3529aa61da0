"""The longer label-efficiency study of docs/study.md: SimSiam pretrained for 4 500 steps (41 min on 2 CPU cores)
on 472 unlabeled images of two synthetic disasters (including the held-out one), then the resnet18 Siamese UNet
finetuned from it and from random init on 4, 12 and 24 labelled pairs of one disaster, 3 paired seeds each, scored
on the other disaster (leave-one-disaster-out). Re-running resumes whatever is unfinished.

    python scripts/long_study.py OUT_DIR [--steps 4500] [--finetune-steps 300] \
        [--variant NAME [KEY=VALUE ...]] ...

Each ``--variant`` is one more pretraining run (``OUT_DIR/NAME``, the recipe with the given pretrain overrides),
all compared in the same paired study; without any, one run of the recipe as it is (``OUT_DIR/pretrain``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ssl_siam.core.config import load_config
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.ssl.run import run_pretrain
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.run import run_study
from ssl_siam.tools.synthetic import make_xbd_split

DATA = (("train", 24, 0, "synthetic-storm"), ("hold", 12, 1, "synthetic-tornado"),  # labelled; hold: test only
        ("u_storm", 100, 10, "synthetic-storm-area2"), ("u_tornado", 100, 11, "synthetic-tornado-area2"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=4500, help="pretraining steps")
    parser.add_argument("--finetune-steps", type=int, default=300, help="finetuning steps per cell")
    parser.add_argument("--variant", nargs="+", action="append", metavar=("NAME", "KEY=VALUE"),
                        help="a pretraining run NAME with pretrain overrides KEY=VALUE (repeatable)")
    args = parser.parse_args()
    data = args.out / "data"
    for name, n, seed, disaster in DATA:
        if not (data / name / "images").is_dir():
            make_xbd_split(data / name, n, size=256, seed=seed, disaster=disaster)
            if name.startswith("u_"):
                shutil.rmtree(data / name / "labels")  # unlabeled imagery
    roots = ",".join(str(data / k / "images") for k in ("u_storm", "u_tornado", "train", "hold"))
    encoders = [run_pretrain(load_config(PretrainConfig, "demo/pretrain_simsiam_resnet18", [
        f"data.root=[{roots}]", f"run_dir={args.out / name}", f"train.max_steps={args.steps}",
        "train.checkpoint_every=500", "data.samples_per_epoch=16000", f"knn.data=[{data / 'train'}]",
        "knn.dataset=xbd-crops", "knn.crop_size=48", "knn.every_epochs=1", "train.progress=false",
        "optim.warmup_steps=100", *overrides])) for name, *overrides in args.variant or [["pretrain"]]]
    study = run_study(load_config(StudyConfig, "demo/study_resnet18", [
        f"data.root=[{data / 'train'},{data / 'hold'}]", f"encoders=[{','.join(map(str, encoders))},random:resnet18]",
        "budgets=[4,12,24]", "seeds=[0,1,2]", f"run_dir={args.out / 'study'}",
        f"finetune.train.max_steps={args.finetune_steps}",
        f"finetune.train.checkpoint_every={min(100, args.finetune_steps)}",
        "finetune.data.crop_size=96", "probes=true", "probe_crop_size=48"]))
    print((study / "study.md").read_text())


if __name__ == "__main__":
    main()
