"""Is a frozen encoder's poor damage probe an artefact of the probe? The buildings of one xBD-format split probed
by kNN on raw, centred and standardised features and by the linear probe, with the features' mean pairwise cosine
similarity (a feature mean that dominates every direction makes cosine kNN vote by class frequency).

    python scripts/feature_check.py TRAIN_SPLIT TEST_SPLIT ENCODER [ENCODER ...] [--crop-size 48]

ENCODER: a pretraining run dir, ``random:<timm name>`` or ``timm:<name>=<weights>`` (as ``ssl-siam probe``).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from ssl_siam.eval.classifiers import knn_predict, linear_probe
from ssl_siam.eval.datasets import combine_views, open_dataset
from ssl_siam.eval.features import encoder_features, parse_encoder_spec
from ssl_siam.eval.scores import accuracy, macro_f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train")
    parser.add_argument("test")
    parser.add_argument("encoders", nargs="+")
    parser.add_argument("--crop-size", type=int, default=48)
    args = parser.parse_args()
    data = open_dataset("xbd-crops", [args.train], [args.test], args.crop_size, 0)
    test, labels, num = torch.from_numpy(data.is_test), data.labels, len(data.classes)
    y_train, y_test = labels[~data.is_test], labels[data.is_test]
    print("| encoder | mean cosine | kNN raw | kNN centred | kNN standardised | linear |\n|---|---|---|---|---|---|")
    def scores(pred: np.ndarray) -> str:
        return f"{accuracy(y_test, pred):.3f} / {macro_f1(y_test, pred, num):.3f}"

    with tempfile.TemporaryDirectory() as cache:
        for spec in map(parse_encoder_spec, args.encoders):
            features = combine_views(encoder_features(spec, data, cache, torch.device("cpu"), 64, 0))
            train, held = features[~test], features[test]
            unit = F.normalize(train, dim=1)
            cosine = (unit @ unit.T)[~torch.eye(len(unit), dtype=torch.bool)].mean().item()
            mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
            variants = ((train, held), (train - mean, held - mean), ((train - mean) / std, (held - mean) / std))
            cells = [scores(knn_predict(a, y_train, b, num)) for a, b in variants]
            cells.append(scores(linear_probe(train, y_train, held, num)[0]))  # standardises on its own
            print(f"| {spec.name} | {cosine:.3f} | " + " | ".join(cells) + " |")
    print(f"\ntop-1 / macro-F1 on {int(test.sum())} test buildings; train class counts "
          f"{np.bincount(y_train, minlength=num).tolist()}")


if __name__ == "__main__":
    main()
