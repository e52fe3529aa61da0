"""kNN monitor: DINO-style weighted kNN accuracy of the current encoder on a labeled set, during pretraining."""

from __future__ import annotations

import torch
from torch import nn

from ssl_siam.data.stats import BandStats
from ssl_siam.eval.classifiers import knn_predict
from ssl_siam.eval.datasets import ProbeDataset, combine_views
from ssl_siam.eval.features import extract_features
from ssl_siam.eval.scores import accuracy, macro_f1


class KNNMonitor:
    """A validator of the training loop: returns ``knn_top1`` (what ``best.pt`` follows) and ``knn_macro_f1``.

    ``dataset`` is a probe dataset (``folder`` or ``xbd-crops``) with its own train/test split; features are
    extracted fresh each time from ``encoder`` (the module being trained, in eval mode) with the run's ``stats``.
    Runs on rank 0 (its metrics are broadcast to the other ranks).
    """

    best_metric = "knn_top1"
    sharded = False

    def __init__(self, encoder: nn.Module, stats: BandStats, dataset: ProbeDataset, device: torch.device,
                 k: int = 20, temperature: float = 0.07, batch_size: int = 64) -> None:
        self.encoder, self.stats, self.dataset, self.device = encoder, stats, dataset, device
        self.k, self.temperature, self.batch_size = k, temperature, batch_size

    def __call__(self) -> dict[str, float]:
        features = combine_views(extract_features(self.encoder, self.stats, self.dataset, self.device,
                                                  self.batch_size))
        test = self.dataset.is_test
        y_train, y_test = self.dataset.labels[~test], self.dataset.labels[test]
        num = len(self.dataset.classes)
        pred = knn_predict(features[torch.from_numpy(~test)].to(self.device), y_train,
                           features[torch.from_numpy(test)], num, self.k, self.temperature)
        return {"knn_top1": accuracy(y_test, pred), "knn_macro_f1": macro_f1(y_test, pred, num)}
