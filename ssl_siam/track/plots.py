"""Success and precision plots of the one-pass evaluation, several trackers on one figure, as the OTB papers show
them (legends ranked by the score they carry)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ssl_siam.core.files import atomic_path
from ssl_siam.track.metrics import IOU_THRESHOLDS, PX_THRESHOLDS


def plot_curves(summaries: dict[str, dict], out_png: Path, precision_px: float = 20.0) -> Path:
    """Writes the success plot (x: IoU threshold, legend: AUC) beside the precision plot (x: centre error in px,
    legend: precision at ``precision_px``) for each tracker's :func:`~ssl_siam.track.metrics.summarise` output."""
    fig = Figure(figsize=(10, 4.2))  # no pyplot: no global figure state, any backend-less process can plot
    success_ax, precision_ax = fig.subplots(1, 2)
    for name, s in sorted(summaries.items(), key=lambda kv: -kv[1]["success_auc"]):
        success_ax.plot(IOU_THRESHOLDS, s["success_curve"], label=f"{name} [{s['success_auc']:.3f}]")
    for name, s in sorted(summaries.items(), key=lambda kv: -kv[1]["precision"]):
        precision_ax.plot(PX_THRESHOLDS, s["precision_curve"], label=f"{name} [{s['precision']:.3f}]")
    precision_ax.axvline(precision_px, color="grey", linestyle=":", linewidth=1)
    success_ax.set(xlabel="overlap threshold (IoU)", ylabel="success rate", xlim=(0, 1), ylim=(0, 1.02),
                   title="Success plot of OPE (legend: AUC)")
    precision_ax.set(xlabel="location error threshold (px)", ylabel="precision", xlim=(0, PX_THRESHOLDS[-1]),
                     ylim=(0, 1.02), title=f"Precision plot of OPE (legend: at {precision_px:g} px)")
    for ax in (success_ax, precision_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left" if ax is success_ax else "lower right", fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png, ".png") as tmp:
        fig.savefig(tmp, dpi=110)
    return out_png
