"""Reports across runs: pretraining curves, finetune scores, metric-learning verification and probe tables as
markdown + matplotlib PNGs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ssl_siam.change.metrics.xview2 import DAMAGE_NAMES
from ssl_siam.core.errors import DataError
from ssl_siam.probe.run import probe_table
from ssl_siam.study.summary import plot_study, study_table


def plot_history(history: Sequence[dict[str, float]], keys: Sequence[str], path: Path) -> Path:
    """One panel per metric key against ``step``; keys missing from the history are skipped."""
    return plot_runs({"": history}, keys, path)


def plot_runs(histories: dict[str, Sequence[dict[str, float]]], keys: Sequence[str], path: Path) -> Path:
    """One panel per metric key, one line per run (legend when named)."""
    keys = [k for k in keys if any(k in h for hist in histories.values() for h in hist)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, history in histories.items():
            points = [(h["step"], h[key]) for h in history if key in h]
            if points:
                ax.plot(*zip(*points), label=name or None)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if any(histories):
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_run(run_dir: Path) -> dict[str, Any]:
    """What a run directory holds: its config, metrics and, where present, probe rows and a hold-out score."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a run directory")
    run: dict[str, Any] = {"name": run_dir.name, "dir": run_dir}
    for key, name in (("metrics", "metrics.json"), ("probe", "probe.json"), ("hold", "hold_score.json"),
                      ("verify", "verify.json"), ("study", "study.json")):
        if (run_dir / name).is_file():
            try:
                run[key] = json.loads((run_dir / name).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise DataError(f"{run_dir / name} is not valid JSON") from None
            _check_shape(run[key], key, run_dir / name)
    if (run_dir / "config.yaml").is_file():
        try:
            run["config"] = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError):
            raise DataError(f"{run_dir / 'config.yaml'} is not valid YAML") from None
        if not isinstance(run["config"], dict):
            raise DataError(f"{run_dir / 'config.yaml'}: expected a mapping of config keys")
    if not {"metrics", "probe", "verify", "study"} & run.keys():
        raise DataError(f"{run_dir}: expected metrics.json (a pretrain/finetune/metric-train run), probe.json, "
                        "verify.json or study.json")
    return run


_SHAPES = {"metrics": "an object", "probe": "a list of row objects", "hold": "an object", "verify": "an object",
           "study": 'an object with a "rows" list of row objects'}


def _check_shape(data: Any, key: str, path: Path) -> None:
    """DataError naming ``path`` unless ``data`` has the shape ssl-siam writes for ``key``."""
    rows = data if key == "probe" else data.get("rows") if key == "study" and isinstance(data, dict) else None
    ok = isinstance(data, list if key == "probe" else dict) and (
        key not in ("probe", "study") or (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)))
    if not ok:
        raise DataError(f"{path}: expected {_SHAPES[key]}, as ssl-siam writes it; got {type(data).__name__}")


def run_kind(run: dict[str, Any]) -> str | None:
    """``pretrain``, ``finetune`` or ``metric`` for a training run (from its config), None otherwise."""
    if "metrics" not in run:
        return None
    config = run.get("config", {})
    if "objective" in config:
        return "pretrain"
    if "score" in run["metrics"].get("val", {}) or "siamese" in config.get("model", {}):
        return "finetune"
    return "metric"


def _pretrain_section(runs: list[dict[str, Any]], out: Path) -> list[str]:
    lines = ["## Pretraining", "", "| run | objective | backbone | steps | final loss | collapse std·√d | samples/s "
             "| best kNN top-1 |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m, c = r["metrics"], r.get("config", {})
        knn = f"{m['best_knn_top1']:.3f}" if "best_knn_top1" in m else "–"
        lines.append(f"| {r['name']} | {c.get('objective', '?')} | {c.get('model', {}).get('backbone', '?')} "
                     f"| {m.get('step')} | {m.get('loss', float('nan')):.4f} "
                     f"| {m.get('collapse_std_relative', float('nan')):.3f} | {m.get('samples_per_s', 0):.1f} "
                     f"| {knn} |")
    plot_runs({r["name"]: r["metrics"].get("history", []) for r in runs}, ["loss", "collapse_std_relative"],
              out / "pretrain_curves.png")
    return [*lines, "", "![pretraining curves](pretrain_curves.png)", ""]


def _finetune_section(runs: list[dict[str, Any]], out: Path) -> list[str]:
    lines = ["## Finetuning (xView2 score)", "",
             "| run | backbone | encoder weights | best val score | last val score | loc F1 | damage F1 | "
             + " | ".join(DAMAGE_NAMES) + " | hold-out score |", "|" + "---|" * (8 + len(DAMAGE_NAMES))]
    for r in runs:
        m, model = r["metrics"], r.get("config", {}).get("model", {})
        val = m["val"]
        per_class = " | ".join(f"{val.get(f'f1_{c}', float('nan')):.3f}" for c in DAMAGE_NAMES)
        hold = f"{r['hold']['score']:.3f}" if "hold" in r else "–"
        lines.append(f"| {r['name']} | {model.get('backbone', '?')} | {model.get('encoder_weights') or 'random'} "
                     f"| {m.get('best_score', float('nan')):.3f} | {val['score']:.3f} | {val['localization_f1']:.3f} "
                     f"| {val['damage_f1']:.3f} | {per_class} | {hold} |")
    plot_runs({r["name"]: r["metrics"]["val_history"] for r in runs}, ["score", "localization_f1", "damage_f1"],
              out / "finetune_curves.png")
    return [*lines, "", "![validation curves](finetune_curves.png)", ""]


def _metric_section(runs: list[dict[str, Any]], out: Path) -> list[str]:
    lines = ["## Metric learning (held-out verification)", "",
             "| run | dataset | backbone | variant | loss | mining | steps | final loss | best ROC AUC | last ROC AUC "
             "| EER | best accuracy |", "|" + "---|" * 12]
    for r in runs:
        m, c = r["metrics"], r.get("config", {})
        val = m.get("val", {})

        def number(value: float | None) -> str:
            return "–" if value is None else f"{value:.3f}"

        lines.append(f"| {r['name']} | {c.get('data', {}).get('dataset', '?')} | {c.get('model', {}).get('backbone')} "
                     f"| {c.get('model', {}).get('variant')} | {c.get('loss', {}).get('name')} "
                     f"| {c.get('loss', {}).get('mining')} | {m.get('step')} | {m.get('loss', float('nan')):.4f} "
                     f"| {number(m.get('best_roc_auc'))} | {number(val.get('roc_auc'))} | {number(val.get('eer'))} "
                     f"| {number(val.get('best_accuracy'))} |")
    histories = {r["name"]: r["metrics"].get("val_history", []) for r in runs}
    if any(histories.values()):
        plot_runs(histories, ["roc_auc", "eer", "best_accuracy"], out / "metric_curves.png")
        lines += ["", "![verification curves](metric_curves.png)"]
    return [*lines, ""]


def verify_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| checkpoint | data | pairs | ROC AUC | EER | best accuracy | one-shot |", "|" + "---|" * 7]
    for r in rows:
        oneshot = f"{r['oneshot_accuracy']:.3f} ({r['oneshot_n_way']}-way)" if "oneshot_accuracy" in r else "–"
        lines.append(f"| {r['checkpoint']} | {' '.join(r['data'])} | {r['n_pairs']} | {r['roc_auc']:.3f} "
                     f"| {r['eer']:.3f} | {r['best_accuracy']:.3f} | {oneshot} |")
    return lines


def write_report(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """``out/report.md`` (+ PNGs) comparing the given pretraining, finetuning, metric-learning, ``verify`` and
    probe directories."""
    runs = [read_run(Path(d)) for d in run_dirs]
    out = Path(out)
    existed = out.exists()
    try:
        return _write_report(runs, out)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        names = ", ".join(str(r["dir"]) for r in runs)
        raise DataError(f"{names}: a result file does not hold what ssl-siam writes ({type(exc).__name__}: {exc})"
                        ) from None


def _write_report(runs: list[dict[str, Any]], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    pretrain, finetune, metric = ([r for r in runs if run_kind(r) == k] for k in ("pretrain", "finetune", "metric"))
    probes = [row for r in runs for row in r.get("probe", [])]
    verified = [r["verify"] for r in runs if "verify" in r]
    studies = [r for r in runs if "study" in r]
    lines = ["# ssl-siam report", "", "Runs: " + ", ".join(f"`{r['dir']}`" for r in runs), ""]
    if pretrain:
        lines += _pretrain_section(pretrain, out)
    if finetune:
        lines += _finetune_section(finetune, out)
    if metric:
        lines += _metric_section(metric, out)
    if verified:
        lines += ["## Verification (`ssl-siam verify`)", "", *verify_table(verified), ""]
    if probes:
        lines += ["## Frozen-feature probes", "", *probe_table(probes), ""]
    for r in studies:
        plot_study(r["study"], out / f"study_{r['name']}.png")
        lines += [f"## Study `{r['name']}`", "", *study_table(r["study"]), "",
                  f"![score against labelled pairs](study_{r['name']}.png)", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
