"""What a run reports while it trains: TensorBoard scalars, log lines (progress without a bar, validation
summaries) and the atomic metrics.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from ssl_siam.core.files import atomic_path


def add_scalars(writer: SummaryWriter | None, prefix: str, metrics: dict[str, float], step: int) -> None:
    """Every metric but ``step`` as ``<prefix>/<name>`` at ``step`` (nothing without a writer: other ranks)."""
    if writer is not None:
        for key, value in metrics.items():
            if key != "step":
                writer.add_scalar(f"{prefix}/{key}", value, step)


def summary(metrics: dict[str, float]) -> str:
    """``name value, ...`` for a log line."""
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def progress_line(metrics: dict[str, float], total_steps: int) -> str:
    """``step 10/40: loss 0.6931, lr 2.00e-04, 12.3 samples/s``: the log line of a run without a progress bar."""
    return (f"step {int(metrics['step'])}/{total_steps}: loss {metrics['loss']:.4f}, lr {metrics['lr']:.2e}, "
            f"{metrics['samples_per_s']:.1f} samples/s")


def metrics_record(last: dict[str, float], state: Any, total_steps: int, validator: Any) -> dict[str, Any]:
    """What metrics.json holds: the last step's metrics, the step counts and history, and with validations the
    latest, the best of ``validator.best_metric``, their history and what the validator describes of its data
    (its optional ``info``, e.g. the held-out pair ids)."""
    data = {**last, "step": state.step, "total_steps": total_steps, "bad_steps": state.bad_steps,
            "history": state.history}
    if state.val_history and validator is not None:
        data.update({"val": state.val_history[-1], f"best_{validator.best_metric}": state.best,
                     "val_history": state.val_history, **getattr(validator, "info", {})})
    return data


def write_metrics_json(run_dir: Path, data: dict[str, Any]) -> None:
    """``run_dir/metrics.json``, replaced atomically (a reader never sees half a file)."""
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(data, indent=1))
