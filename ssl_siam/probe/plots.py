"""Probe figures: a confusion matrix per (encoder, dataset, method) and a bar chart comparing encoders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], title: str, path: Path) -> Path:
    """Counts annotated on cells coloured by the row-normalised rate (rows: true class, columns: predicted)."""
    confusion = np.asarray(confusion)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.6 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(confusion):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if rates[row, col] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_comparison(rows: Sequence[dict[str, object]], path: Path) -> Path:
    """Two panels (top-1, macro F1): one group of bars per encoder, one bar per dataset / method."""
    encoders = list(dict.fromkeys(str(r["encoder"]) for r in rows))
    series = list(dict.fromkeys(f"{r['dataset']} {r['method']}" for r in rows))
    width = 0.8 / len(series)
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 2.5 * len(encoders)), 3.5), squeeze=False)
    for ax, metric, label in zip(axes[0], ("top1", "macro_f1"), ("top-1", "macro F1")):
        for s, name in enumerate(series):
            values = {str(r["encoder"]): r[metric] for r in rows if f"{r['dataset']} {r['method']}" == name}
            xs = np.arange(len(encoders)) + (s - (len(series) - 1) / 2) * width
            ax.bar(xs, [values.get(e, np.nan) for e in encoders], width, label=name)
        ax.set_xticks(range(len(encoders)), encoders, rotation=20, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
