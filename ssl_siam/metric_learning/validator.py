"""Verification of a Siamese embedding on held-out pairs: similarity scores and labels, and the validator the
loop runs during ``ssl-siam metric-train``."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from ssl_siam.metric_learning.datasets import PairDataset
from ssl_siam.metric_learning.task import MetricTask
from ssl_siam.metric_learning.verification_metrics import verification_report

VAL_LOCATIONS = 512  # verification pairs drawn from location data: 512 positives + 512 negatives


@torch.no_grad()
def embed_pairs(task: MetricTask, dataset: PairDataset, device: torch.device, batch_size: int = 64,
                num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Verification (scores, labels) of a dataset without augmentation: its labelled pairs, or for location
    data each location's two observations (label 1) and its first one vs the next location's second (label 0)."""
    task.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    ea, eb, labels = [], [], []
    for batch in loader:
        ea.append(task.embed(batch["a"].to(device), 0))
        eb.append(task.embed(batch["b"].to(device), 1))
        if "label" in batch:
            labels.append(batch["label"].float())
    a, b = torch.cat(ea), torch.cat(eb)
    if labels:
        return task.similarity(a, b).float().cpu().numpy(), torch.cat(labels).numpy()
    scores = torch.cat([task.similarity(a, b), task.similarity(a, b.roll(1, dims=0))]).float().cpu().numpy()
    return scores, np.concatenate([np.ones(len(a)), np.zeros(len(a))])


class VerificationValidator:
    """ROC AUC / EER / best accuracy on held-out pairs during training; ``best.pt`` follows ROC AUC. Runs on rank
    0 (its metrics are broadcast)."""

    best_metric = "roc_auc"
    sharded = False

    def __init__(self, task: MetricTask, dataset: PairDataset, device: torch.device, batch_size: int) -> None:
        self.task, self.dataset, self.device, self.batch_size = task, dataset, device, batch_size

    def __call__(self) -> dict[str, float]:
        return {k: float(v) for k, v in verification_report(*embed_pairs(self.task, self.dataset, self.device,
                                                                          self.batch_size)).items()}
