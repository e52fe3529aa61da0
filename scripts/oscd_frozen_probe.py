"""Frozen-feature change probe on OSCD (docs/study.md, "Real imagery: OSCD"): does an encoder's frozen
|F_pre − F_post| separate change from no change better than random weights do?

    python scripts/oscd_frozen_probe.py OSCD_ROOT STUDY_DIR OUT.json --encoders RUN [RUN ...] [--budgets 1 3] \
        [--bands B02 B03 ...]

Per encoder (and per seed for ``random``: the study's random-init draw): the absolute difference of the two dates'
features at every level of the resnet (eval mode, no finetuning), upsampled to stride 4 and concatenated; a logistic
regression (balanced classes, standardised features, C = 0.1) fitted on 4 000 change and 12 000 no-change cells of
exactly the labelled cities of each study cell (``STUDY_DIR/cells/random_resnet18/n<budget>/seed<s>/split.json``),
and scored on the study's test cities at full resolution (probabilities upsampled): F1 at 0.5, average precision
and the best-threshold F1 (an oracle). Inputs are normalised alike for every encoder (the first encoder's band
statistics). ``--bands``: the OSCD bands stacked, in the encoders' order (default all 13). Prints one JSON line per
probe and writes them all to OUT.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_recall_curve

from ssl_siam.change.datasets.oscd import city_mask
from ssl_siam.data.oscd import city_dates
from ssl_siam.data.stats import BandStats, normalise
from ssl_siam.encoders import EncoderMeta, create_encoder, load_encoder

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def read(path: Path) -> torch.Tensor:
    with rasterio.open(path) as src:
        return torch.from_numpy(src.read().astype(np.float32))


def difference_features(encoder: torch.nn.Module, root: Path, cache: Path, city: str, stats: BandStats,
                        bands: list[str]) -> np.ndarray:
    """[D, ceil(H/4), ceil(W/4)] float16: |F_pre − F_post| of every level, bilinearly resampled to stride 4."""
    pre, post = city_dates(root, city, bands, cache / "oscd")
    x = normalise(torch.stack([read(pre), read(post)]), stats)
    h, w = x.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    with torch.no_grad():
        levels = encoder(x)
    size = ((h + ph) // 4, (w + pw) // 4)
    out = [F.interpolate((f[0:1] - f[1:2]).abs(), size=size, mode="bilinear", align_corners=False)[0, :, :(h + 3) // 4,
                                                                                                      :(w + 3) // 4]
           for f in levels]
    return torch.cat(out).to(torch.float16).numpy()


def label(root: Path, cache: Path, city: str) -> np.ndarray:
    with rasterio.open(city_mask(root, city, cache)) as src:
        return src.read(1) > 0


def probe(feats: dict[str, np.ndarray], labels: dict[str, np.ndarray], train: list[str], test: list[str],
          seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for city in train:
        f, lab = feats[city], labels[city]
        h, w = lab.shape
        lab4 = F.avg_pool2d(F.pad(torch.from_numpy(lab[None, None].astype(np.float32)), (0, (-w) % 4, 0, (-h) % 4)),
                            4)[0, 0].numpy() > 0.5
        f, lab4 = f.reshape(f.shape[0], -1).T, lab4.reshape(-1)
        pos, neg = np.flatnonzero(lab4), np.flatnonzero(~lab4)
        keep = np.concatenate([rng.choice(pos, min(len(pos), 4000), replace=False),
                               rng.choice(neg, min(len(neg), 12000), replace=False)])
        xs.append(f[keep].astype(np.float32))
        ys.append(lab4[keep])
    x, y = np.concatenate(xs), np.concatenate(ys)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    clf = LogisticRegression(C=0.1, class_weight="balanced", max_iter=300).fit((x - mu) / sd, y)
    probs, truth = [], []
    for city in test:
        f, lab = feats[city], labels[city]
        p = clf.predict_proba((f.reshape(f.shape[0], -1).T.astype(np.float32) - mu) / sd)[:, 1]
        p = F.interpolate(torch.from_numpy(p.reshape(1, 1, *f.shape[1:]).astype(np.float32)), scale_factor=4,
                          mode="bilinear", align_corners=False)[0, 0, :lab.shape[0], :lab.shape[1]].numpy()
        probs.append(p.ravel())
        truth.append(lab.ravel())
    p, t = np.concatenate(probs), np.concatenate(truth)
    pred = p >= 0.5
    precision, recall, _ = precision_recall_curve(t, p)
    return {"f1": float(2 * (pred & t).sum() / (pred.sum() + t.sum())), "ap": float(average_precision_score(t, p)),
            "best_f1": float(np.nanmax(2 * precision * recall / (precision + recall + 1e-12)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the published OSCD root")
    parser.add_argument("study", type=Path, help="an oscd_label_efficiency study directory (splits, test cities)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--encoders", nargs="+", required=True, help="pretrain run directories, or 'random'")
    parser.add_argument("--budgets", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--bands", nargs="+", choices=BANDS, default=BANDS, help="OSCD bands, in the encoders' order")
    args = parser.parse_args()
    torch.set_num_threads(1)
    test = json.loads((args.study / "design.json").read_text())["test"]
    cells = {}
    for n in args.budgets:
        for split in sorted((args.study / "cells" / "random_resnet18" / f"n{n}").glob("seed*/split.json")):
            cells[n, int(split.parent.name[4:])] = json.loads(split.read_text())["train"]
    cities = sorted({c for v in cells.values() for c in v} | set(test))
    cache = args.study / "cache"
    labels = {c: label(args.root, cache, c) for c in cities}
    first = next(e for e in args.encoders if e != "random")
    stats = EncoderMeta.read(first).normalization
    results = []
    for name in args.encoders:
        for seed in sorted({s for _, s in cells}) if name == "random" else [None]:
            if name == "random":
                torch.manual_seed(seed)
                encoder = create_encoder("resnet18", len(args.bands), None, features_only=True).eval()
            else:
                encoder = load_encoder(EncoderMeta.read(name), features_only=True).eval()
            feats = {c: difference_features(encoder, args.root, cache, c, stats, args.bands) for c in cities}
            for (n, s), train in cells.items():
                if name == "random" and s != seed:
                    continue
                row = {"encoder": "random_resnet18" if name == "random" else Path(name).name, "n": n, "seed": s,
                       **probe(feats, labels, train, test, s)}
                print(json.dumps(row), flush=True)
                results.append(row)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
