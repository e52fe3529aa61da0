"""``ssl-siam search --eval``: how well frozen encoders retrieve tiles of the same class, on a labelled folder.

Every image of ``FOLDER/<class>/*`` is embedded (:mod:`ssl_siam.eval.features`: resized, centre-cropped to
``crop_size``, the encoder's own band statistics or the folder's; cached), L2-normalised, as the index stores it.
Per seed, a stratified ``query_fraction`` of each class (:func:`ssl_siam.eval.splits.stratified_split`) are the
queries; each ranks all other images by cosine similarity (itself left out) and an image of its class is a hit:
precision@k and average precision (over the full ranking) per query, averaged per class and over all queries
(mAP). ``random:`` encoders draw their weights with the seed, so their spread covers initialisations too. Across
seeds: mean and 95 % t-interval, and each encoder's paired difference to the first ``random:`` encoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl_siam.core.errors import ConfigError
from ssl_siam.eval.datasets import FolderDataset, combine_views
from ssl_siam.eval.features import encoder_features, encoder_names, parse_encoder_spec
from ssl_siam.eval.scores import average_precision, precision_at_k
from ssl_siam.eval.splits import stratified_split
from ssl_siam.study.stats import paired_difference, summarize
from ssl_siam.train.runtime import resolve_device

_CHUNK = 256  # queries ranked at once: [chunk, N] similarities in memory


@dataclass
class EvalRun:
    """One encoder × seed: mean precision@k and mAP over the queries, and per class (``{class: [P@k, AP]}``)."""

    encoder: str
    seed: int
    queries: int
    precision: float
    map: float
    per_class: dict[str, list[float]]


def retrieval(features: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(precision@k [Q], average precision [Q]) of the ``queries`` (indices into ``features`` [N, D]), each
    ranking the N − 1 other items by cosine similarity (stable: ties by index); relevant = same label."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    precision, ap = [], []
    for start in range(0, len(queries), _CHUNK):
        q = queries[start:start + _CHUNK]
        sims = unit[q] @ unit.T  # [q, N]
        sims[np.arange(len(q)), q] = -np.inf  # itself last, then dropped
        order = np.argsort(-sims, axis=1, kind="stable")[:, :-1]
        relevant = labels[order] == labels[q][:, None]  # [q, N - 1]
        precision.append(precision_at_k(relevant, k))
        ap.append(average_precision(relevant))
    return np.concatenate(precision), np.concatenate(ap)


def run_search_eval(
    folder: str | Path, encoders: Sequence[str], out: str | Path, *, k: int = 10, seeds: Sequence[int] = (0, 1, 2),
    query_fraction: float = 0.25, crop_size: int = 64, batch_size: int = 64, device: str = "cpu",
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate every encoder on ``folder`` for every seed; writes ``out/search_eval.json`` (the runs and the
    summary) and ``out/search_eval.md`` (tables); returns the summary."""
    if not encoders:
        raise ConfigError("--encoder: expected at least one encoder to evaluate")
    if k < 1 or not seeds or not 0.0 < query_fraction < 1.0:
        raise ConfigError(f"--k {k}, --seeds {list(seeds)}, --query-fraction {query_fraction}: expected k >= 1, "
                          "one or more seeds and a fraction in (0, 1)")
    specs = [parse_encoder_spec(str(e)) for e in encoders]
    names = encoder_names(specs)
    dataset = FolderDataset(folder, None, crop_size, 0)
    out, dev = Path(out), resolve_device(device, "--device")
    runs = []
    for spec, name in zip(specs, names):
        for seed in seeds:
            draw = seed if spec.arch is not None and spec.weights is None else 0  # random: weights by seed
            features = combine_views(encoder_features(spec, dataset, cache_dir or out / "cache", dev, batch_size,
                                                      draw)).numpy()
            queries = np.flatnonzero(stratified_split(dataset.labels, query_fraction, seed))
            precision, ap = retrieval(features, dataset.labels, queries, k)
            per_class = {c: [float(precision[m].mean()), float(ap[m].mean())] for i, c in enumerate(dataset.classes)
                         if (m := dataset.labels[queries] == i).any()}
            runs.append(EvalRun(name, seed, len(queries), float(precision.mean()), float(ap.mean()), per_class))
    baseline = next((n for s, n in zip(specs, names) if s.arch is not None and s.weights is None), None)
    summary = {"folder": str(Path(folder).resolve()), "images": len(dataset.ids), "classes": dataset.classes,
               "k": k, "seeds": list(seeds), "query_fraction": query_fraction, "crop_size": crop_size,
               "baseline": baseline, "encoders": [_summarize(runs, n, baseline, dataset.classes) for n in names]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "search_eval.json").write_text(json.dumps({**summary, "runs": [asdict(r) for r in runs]}, indent=1))
    (out / "search_eval.md").write_text("\n".join(eval_tables(summary)) + "\n")
    return summary


def _summarize(runs: list[EvalRun], name: str, baseline: str | None, classes: list[str]) -> dict[str, Any]:
    mine = [r for r in runs if r.encoder == name]
    row: dict[str, Any] = {"encoder": name, "precision": summarize([r.precision for r in mine]),
                           "map": summarize([r.map for r in mine]),
                           "per_class": {c: {"precision": summarize([r.per_class[c][0] for r in mine]),
                                             "ap": summarize([r.per_class[c][1] for r in mine])}
                                         for c in classes if all(c in r.per_class for r in mine)}}
    if baseline is not None and name != baseline:
        base = {r.seed: r for r in runs if r.encoder == baseline}
        row["precision_diff"] = paired_difference({r.seed: r.precision for r in mine},
                                                  {s: r.precision for s, r in base.items()})
        row["map_diff"] = paired_difference({r.seed: r.map for r in mine}, {s: r.map for s, r in base.items()})
    return row


def _cell(stat: dict[str, Any] | None, signed: bool = False) -> str:
    if not stat or stat["mean"] is None:
        return "—"
    f = "{:+.3f}" if signed else "{:.3f}"
    ci = stat["ci95"]
    return f.format(stat["mean"]) + ("" if ci is None else f" [{f.format(ci[0])}, {f.format(ci[1])}]")


def eval_tables(summary: dict[str, Any]) -> list[str]:
    """Markdown: the overall table (mean [95 % CI] over seeds, paired Δ vs the random baseline), then mAP per
    class."""
    k, base = summary["k"], summary["baseline"] or "random"
    lines = [f"Retrieval on {summary['folder']} ({summary['images']} images, {len(summary['classes'])} classes), "
             f"{summary['query_fraction']:g} of each class as queries, seeds {summary['seeds']}, "
             f"{summary['crop_size']} px; mean [95 % CI]", "",
             f"| encoder | P@{k} | mAP | Δ P@{k} vs {base} | Δ mAP vs {base} |", "|---|---|---|---|---|"]
    lines += [f"| {e['encoder']} | {_cell(e['precision'])} | {_cell(e['map'])} | "
              f"{_cell(e.get('precision_diff'), True)} | {_cell(e.get('map_diff'), True)} |"
              for e in summary["encoders"]]
    lines += ["", "mAP per class (mean over seeds)", "", "| class | " + " | ".join(
        e["encoder"] for e in summary["encoders"]) + " |", "|---" * (len(summary["encoders"]) + 1) + "|"]
    for c in summary["classes"]:
        cells = [e["per_class"].get(c, {}).get("ap", {}).get("mean") for e in summary["encoders"]]
        lines.append(f"| {c} | " + " | ".join("—" if v is None else f"{v:.3f}" for v in cells) + " |")
    return lines
