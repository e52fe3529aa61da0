"""A study's aggregate: per encoder × budget the xView2 score's mean, std and 95 % CI over seeds (and its
components), the paired difference to random init, as ``study.json``, ``study.md`` and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ssl_siam.study.stats import paired_difference, summarize

METHOD_METRICS = {"linear": "linear probe top-1", "knn": "kNN top-1", "finetune": "finetuned top-1"}


def aggregate(results: list[dict[str, Any]], design: dict[str, Any], components: tuple[str, ...],
              metric: str) -> dict[str, Any]:
    """``{"rows": [...], "design": ...}``: one row per encoder × budget, in the design's order. Each row holds
    ``encoder``, ``budget``, ``n_labels``, ``n_runs``, ``mean``, ``std``, ``ci95`` of the score, the same summary
    per component, and for every encoder but random init ``diff_vs_random`` (``mean``, ``ci95``, ``n``): the paired
    difference over the seeds both ran, against the first ``random:`` encoder. ``metric`` names the score and
    ``components`` the results' keys summarised beside it (the task's: :class:`~ssl_siam.change.tasks.ChangeTask`).
    """
    encoders = list(dict.fromkeys(r["encoder"] for r in sorted(results, key=lambda r: r["index"])))
    budgets = list(dict.fromkeys(r["budget"] for r in sorted(results, key=lambda r: r["index"])))
    baseline = next((e for e in encoders if any(r["random"] for r in results if r["encoder"] == e)), None)

    def by_seed(encoder: str, budget: float, key: str = "score") -> dict[int, float]:
        return {r["seed"]: r[key] for r in results if r["encoder"] == encoder and r["budget"] == budget}

    rows = []
    for budget in budgets:
        for encoder in encoders:
            cell = [r for r in results if r["encoder"] == encoder and r["budget"] == budget]
            score = summarize([r["score"] for r in cell])
            row = {"encoder": encoder, "encoder_name": cell[0]["encoder_name"], "budget": budget,
                   "n_labels": cell[0]["n_labels"], "n_runs": score["n"], "mean": score["mean"], "std": score["std"],
                   "ci95": score["ci95"], **{k: summarize([r[k] for r in cell]) for k in components}}
            if baseline is not None and encoder != baseline:
                diff = paired_difference(by_seed(encoder, budget), by_seed(baseline, budget))
                row["diff_vs_random"] = {"mean": diff["mean"], "ci95": diff["ci95"], "n": diff["n"]}
            rows.append(row)
    return {"rows": rows, "baseline": baseline, "split": design["split"], "holdout": design["holdout"],
            "metric": metric, "components": components,
            "n_test_pairs": len(design["test"]), "n_pool": len(design["pool"]), "results": results}


def _interval(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("mean") is None:
        return "–"
    ci = summary.get("ci95")
    return f"{summary['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def study_table(study: dict[str, Any]) -> list[str]:
    """The markdown table of a study's rows (with a method column where rows have one)."""
    components = study.get("components", ("localization_f1", "damage_f1"))  # damage studies before it was recorded
    names = " | ".join(c.replace("_", " ") for c in components)
    metric = study.get("metric", "xView2 score")
    methods = "method | " if "method" in study["rows"][0] else ""
    lines = [f"| encoder | {methods}{study.get('unit', 'labelled pairs')} | runs | {metric}, mean [95 % CI] | std | "
             f"{names} | Δ vs random, paired [95 % CI] |",
             "|---|---|---|---|---|" + "---|" * (len(components) + 1 + bool(methods))]
    for r in study["rows"]:
        std = "–" if r["std"] is None else f"{r['std']:.3f}"
        diff = _interval(r.get("diff_vs_random")) if "diff_vs_random" in r else "(baseline)"
        parts = " | ".join(_interval(r[c]) for c in components)
        method = f"{r['method']} | " if methods else ""
        lines.append(f"| {r['encoder_name']} | {method}{r['n_labels']} | {r['n_runs']} | {_interval(r)} | {std} | "
                     f"{parts} | {diff} |")
    return lines


def plot_study(study: dict[str, Any], path: Path) -> Path:
    """Score against labels, one line per encoder with its 95 % CI band; one panel per method where rows have
    one."""
    methods = list(dict.fromkeys(r.get("method") for r in study["rows"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 3.5), squeeze=False)
    for ax, method in zip(axes[0], methods):
        rows_of = [r for r in study["rows"] if r.get("method") == method]
        for name in dict.fromkeys(r["encoder_name"] for r in rows_of):
            rows = [r for r in rows_of if r["encoder_name"] == name]
            x = [r["n_labels"] for r in rows]
            ax.plot(x, [r["mean"] for r in rows], marker="o", label=name)
            if all(r["ci95"] for r in rows):
                ax.fill_between(x, [r["ci95"][0] for r in rows], [r["ci95"][1] for r in rows], alpha=0.2)
        ax.set_xscale("log")
        budgets = sorted({r["n_labels"] for r in rows_of})
        ax.set_xticks(budgets, [str(b) for b in budgets])  # the budgets themselves, not powers of ten
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel(study.get("unit", "labelled training pairs"))
        ax.set_ylabel(f"{METHOD_METRICS.get(method, study.get('metric', 'xView2 score'))} (test)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def change_intro(study: dict[str, Any]) -> list[str]:
    """The design paragraph of a change study's study.md."""
    where = f"leave-one-disaster-out (held out: {study['holdout']})" if study["split"] == "disaster" else "by image"
    return [f"Split {where}; {study['n_pool']} labelled pairs in the pool, {study['n_test_pairs']} test pairs. "
            "Every encoder of a (budget, seed) finetunes on the same labelled pairs with the same seed; the "
            "differences to random init are paired by seed. CIs: two-sided 95 % Student t over seeds.", ""]


def write_study(study: dict[str, Any], study_dir: Path) -> Path:
    """``study.json``, ``study.md`` (headed by the study's ``intro`` lines) and ``study.png`` in ``study_dir``;
    returns study.md."""
    (study_dir / "study.json").write_text(json.dumps(study, indent=1))
    plot_study(study, study_dir / "study.png")
    lines = ["# Label-efficiency study", "", *study.get("intro", []), *study_table(study), "",
             "![score against labels](study.png)", ""]
    for method, probe in study.get("probes", {}).items():
        n_test = probe["results"][0]["n_test"]
        lines += [f"## Frozen encoder, {method} probe: damage class of the buildings of the same labelled pairs", "",
                  f"{n_test} test buildings (of the test pairs); the probe trains on the buildings of each cell's "
                  "labelled pairs.", "", *study_table(probe), ""]
    (study_dir / "study.md").write_text("\n".join(lines))
    return study_dir / "study.md"
