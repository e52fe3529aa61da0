"""``ssl-siam verify``: verification metrics of a trained metric model on held-out pairs, and N-way one-shot
accuracy on classes never seen in training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ssl_siam.core.config import from_dict, to_dict
from ssl_siam.core.errors import DataError
from ssl_siam.eval.datasets import FolderDataset
from ssl_siam.metric_learning.config import MetricDataConfig
from ssl_siam.metric_learning.run import load_metric_task, open_data
from ssl_siam.metric_learning.task import MetricTask
from ssl_siam.metric_learning.validator import VAL_LOCATIONS, embed_pairs
from ssl_siam.metric_learning.verification_metrics import one_shot_accuracy, plot_roc, roc_curve, verification_report
from ssl_siam.train.runtime import resolve_device


def model_similarity(task: MetricTask) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The trained loss's own score (−distance, or the learned head's probability) as a one-shot metric:
    query vectors ``[T, D]`` and support vectors ``[T, N, D]`` → ``[T, N]``."""
    device = next(task.parameters()).device

    def similarity(query: np.ndarray, supports: np.ndarray) -> np.ndarray:
        n = supports.shape[1]
        q = torch.from_numpy(np.repeat(query, n, axis=0)).to(device)
        with torch.no_grad():
            return task.similarity(q, torch.from_numpy(supports.reshape(q.shape)).to(device)).view(-1, n).cpu().numpy()

    return similarity


def verify(ckpt_path: str | Path, data: list[str], out: str | Path, *, dataset: str | None = None,
           objects: str | None = None, oneshot: str | None = None, n_way: int = 5, trials: int = 1000,
           device: str = "auto", batch_size: int = 64, seed: int = 0) -> dict[str, Any]:
    """Verification metrics of a checkpoint on held-out pairs (all of them; + optional one-shot N-way accuracy on
    an image folder of classes never seen in training); writes ``verify.json`` and ``roc.png`` to ``out``."""
    torch_device = resolve_device(device, "--device")
    task, cfg = load_metric_task(ckpt_path, torch_device)
    if dataset:  # read as a config's data.dataset is (an old name under its current one)
        cfg.data = from_dict(MetricDataConfig, {**to_dict(cfg.data), "dataset": dataset}, "data.")
    pairs = open_data(cfg, list(data), seed + 1, VAL_LOCATIONS, objects)
    if pairs.num_bands != task.pipeline.stats.num_bands:
        raise DataError(f"{data[0]}: {pairs.num_bands} bands, the model was trained on {task.pipeline.stats.num_bands}")
    scores, labels = embed_pairs(task, pairs, torch_device, batch_size)
    result: dict[str, Any] = {"checkpoint": str(ckpt_path), "data": list(data), "dataset": cfg.data.dataset,
                              **verification_report(scores, labels)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(scores, labels)
    name = Path(str(ckpt_path)).parent.parent.name or "model"
    result["roc_png"] = str(plot_roc({name: (fpr, tpr, result["roc_auc"])}, out / "roc.png"))
    if oneshot:
        folder = FolderDataset(oneshot, None, cfg.data.crop_size, seed)
        loader = DataLoader(folder, batch_size=batch_size)
        with torch.no_grad():
            embeddings = torch.cat([task.embed(x[:, 0].to(torch_device), 0) for x in loader]).float().cpu().numpy()
        accuracy = one_shot_accuracy(embeddings, folder.labels, n_way, trials, seed, model_similarity(task))
        result.update(oneshot_n_way=n_way, oneshot_trials=trials, oneshot_classes=len(folder.classes),
                      oneshot_accuracy=accuracy)
    (out / "verify.json").write_text(json.dumps(result, indent=2))
    return result
