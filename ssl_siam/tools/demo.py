"""``ssl-siam demo``: the real regime on generated data — plenty of unlabeled imagery (of the held-out disaster
too), few labels — through every stage: pretraining, probes, a label-efficiency study with seeds and CIs,
metric learning, "find tiles like this one" (embed + search), object tracking (SiamFC from the SSL encoder and from
random init), and ``report.md``."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_siam.core.config import load_config
from ssl_siam.metric_learning.config import MetricConfig
from ssl_siam.metric_learning.run import run_metric_train
from ssl_siam.metric_learning.verify import verify
from ssl_siam.probe.run import ProbeRow, probe_table, run_probe
from ssl_siam.search.embed import embed_archive
from ssl_siam.search.index import load_index
from ssl_siam.search.run import SHEET, run_search
from ssl_siam.ssl.config import PretrainConfig
from ssl_siam.ssl.run import run_pretrain
from ssl_siam.study.config import StudyConfig
from ssl_siam.study.run import run_study
from ssl_siam.study.summary import study_table
from ssl_siam.tools.report import plot_history
from ssl_siam.tools.synthetic import make_xbd_split
from ssl_siam.track.config import TrackConfig
from ssl_siam.track.evaluate import evaluate_tracker
from ssl_siam.track.predict import track_files
from ssl_siam.track.run import run_track_train
from ssl_siam.track.sequences import read_sequence
from ssl_siam.track.synthetic import generate_sequences
from ssl_siam.train.rundir import last_checkpoint_path

log = logging.getLogger(__name__)
LABELLED, HELD_OUT = "synthetic-storm", "synthetic-tornado"
# `--quick` (tests): a few steps, fewer cells
QUICK_PRETRAIN = ["train.max_steps=3", "train.batch_size=8", "data.stats_samples=8"]
QUICK_STUDY = ["budgets=[2]", "seeds=[0,1]", "finetune.train.max_steps=2", "finetune.train.batch_size=2",
               "finetune.data.stats_samples=8"]
SEARCH_TILE = 64
QUICK_METRIC = ["train.max_steps=2", "train.val_every=2", "train.batch_size=8", "data.crop_size=32",
                "data.num_workers=0", "data.stats_samples=4"]
QUICK_TRACK = ["train.max_steps=2", "train.batch_size=4", "data.num_workers=0", "data.stats_frames=2"]


def make_demo_data(data: Path, quick: bool) -> dict[str, Path]:
    """Synthetic xBD-format data (skipped where present): a small labelled pool of one disaster (``train``), the
    labelled test pairs of another (``hold``, whose labels only score), and unlabeled images of both."""
    n = {"train": 4, "hold": 3, "storm": 4, "tornado": 4} if quick else {"train": 8, "hold": 6, "storm": 40,
                                                                           "tornado": 24}
    paths = {}
    for name, seed, disaster in (("train", 0, LABELLED), ("hold", 1, HELD_OUT)):
        paths[name] = data / "xbd" / name
        if not (paths[name] / "labels").is_dir():
            make_xbd_split(paths[name], n[name], size=256, seed=seed, disaster=disaster)
    for name, seed, disaster in (("storm", 10, LABELLED), ("tornado", 11, HELD_OUT)):
        paths[f"unlabeled_{name}"] = folder = data / "unlabeled" / name
        if not (folder / "images").is_dir():
            make_xbd_split(folder, n[name], size=256, seed=seed, disaster=f"{disaster}-area2")
            shutil.rmtree(folder / "labels")  # unlabeled: only the images are kept
    return paths


def count_images(*folders: Path) -> int:
    return sum(len(list((f / "images").glob("*.png"))) for f in folders)


def pretrain_stage(paths: dict[str, Path], runs: Path, quick: bool, device: str) -> dict[str, object]:
    """SimSiam on every image, labels unused: the unlabeled archive of both disasters and the images of the
    labelled pool and of the test pairs (what a user has for a new event)."""
    roots = [paths[k] / "images" for k in ("unlabeled_storm", "unlabeled_tornado", "train", "hold")]
    overrides = [f"data.root=[{','.join(map(str, roots))}]", f"run_dir={runs / 'pretrain'}", f"train.device={device}"]
    cfg = load_config(PretrainConfig, "demo/pretrain_simsiam_resnet18", overrides + (QUICK_PRETRAIN if quick else []))
    start = time.perf_counter()
    run_dir = run_pretrain(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    plot_history(metrics["history"], ["loss", "collapse_std_relative"], run_dir / "pretrain_curves.png")
    return {"run_dir": run_dir, "seconds": time.perf_counter() - start, **metrics}


def study_stage(paths: dict[str, Path], runs: Path, quick: bool, device: str, encoder: Path) -> dict[str, Any]:
    """The SSL encoder against random init, paired, on few labels of one disaster, tested on the other."""
    overrides = [f"data.root=[{paths['train']},{paths['hold']}]", f"encoders=[{encoder},random:resnet18]",
                 f"run_dir={runs / 'study'}", f"finetune.train.device={device}"]
    cfg = load_config(StudyConfig, "demo/study_resnet18", overrides + (QUICK_STUDY if quick else []))
    start = time.perf_counter()
    study_dir = run_study(cfg)
    return {"dir": study_dir, "seconds": time.perf_counter() - start,
            **json.loads((study_dir / "study.json").read_text())}


def metric_stage(name: str, paths: dict[str, Path], runs: Path, quick: bool, device: str,
                 encoder: Path | None) -> dict[str, Any]:
    """Siamese metric learning on the labelled pool's building pairs; ``ssl-siam verify`` on the held-out ones."""
    overrides = [f"data.root={paths['train']}", f"data.val_root={paths['hold']}", f"run_dir={runs / name}",
                 f"train.device={device}", f"model.encoder_weights={encoder or 'null'}"]
    start = time.perf_counter()
    run_dir = run_metric_train(load_config(MetricConfig, "demo/metric_resnet18",
                                           overrides + (QUICK_METRIC if quick else [])))
    seconds = time.perf_counter() - start
    result = verify(run_dir / "checkpoints" / "best.pt", [str(paths["hold"])], run_dir / "verify", device=device)
    return {"run_dir": run_dir, "seconds": seconds, "verify": result,
            **json.loads((run_dir / "metrics.json").read_text())}


def search_stage(paths: dict[str, Path], out: Path, quick: bool, device: str, encoder: Path) -> dict[str, Any]:
    """``ssl-siam embed`` of the held-out disaster's images (pre and post, 64² tiles) with the SSL encoder, then
    ``ssl-siam search`` for the tiles most like the centre tile of its first post-disaster image."""
    start = time.perf_counter()
    index = out / "index"
    embed_archive(str(encoder), [paths["hold"] / "images"], index, tile=SEARCH_TILE, device=device, workers=0)
    table = load_index(index)[2].select(["id", "scene", "row", "col"]).to_pylist()
    query = next(r for r in sorted(table, key=lambda r: r["scene"]) if r["scene"].endswith("_post_disaster.png")
                 and r["row"] == r["col"] == 2 * SEARCH_TILE)
    result = run_search(index, out / "hits", [("--id", str(query["id"]), "id")], k=6 if quick else 12,
                        device=device)
    before = Path(query["scene"]).name.replace("_post_disaster", "_pre_disaster")
    same_place = next((h["rank"] for h in result.hits if Path(h["scene"]).name == before
                       and (h["row"], h["col"]) == (query["row"], query["col"])), None)
    return {"dir": out, "tiles": len(table), "query": query, "hits": result.hits, "same_place": same_place,
            "seconds": time.perf_counter() - start}


def track_stage(paths: dict[str, Path], out: Path, quick: bool, device: str, encoder: Path) -> dict[str, Any]:
    """SiamFC (``siamfc_resnet18``) trained from the SSL encoder and from random init on sequences of small moving
    objects over the unlabeled storm images, evaluated (one-pass, success AUC) on sequences over the held-out
    disaster's images; one test sequence tracked by ``ssl-siam track`` for its overlay GIF."""
    start = time.perf_counter()
    count, frames = (2, 8) if quick else (16, 40)
    seqs = {}
    for split, background, seed, n in (("train", paths["unlabeled_storm"], 0, count),
                                       ("test", paths["hold"], 1000, max(1, count // 2))):
        seqs[split] = out / "sequences" / split
        if not seqs[split].is_dir():
            generate_sequences(seqs[split], n, num_frames=frames, size=128, background=background / "images",
                               seed=seed)
    arms = {}
    for name, weights in (("ssl", encoder), ("random", None)):
        overrides = [f"data.root={seqs['train']}", f"run_dir={out / name}", f"train.device={device}",
                     f"model.encoder_weights={weights or 'null'}", "train.max_steps=300"]
        run_dir = run_track_train(load_config(TrackConfig, "siamfc_resnet18",
                                              overrides + (QUICK_TRACK if quick else [])))
        arms[name] = evaluate_tracker(last_checkpoint_path(run_dir), seqs["test"], out / name / "eval",
                                      device=device)
    first = read_sequence(sorted(seqs["test"].iterdir())[0])  # the generator never hides a first frame
    shown = track_files(last_checkpoint_path(out / "ssl"), seqs["test"] / first.name / "img",
                        [first.boxes[0]], out / "ssl" / "track", device=device)
    return {"dir": out, "arms": arms, "shown": shown, "train_sequences": count, "test_sequences": max(1, count // 2),
            "seconds": time.perf_counter() - start}


def track_section(track: dict[str, Any], rel: Callable[[Path], str]) -> list[str]:
    """Section 6 of the report: SSL-initialised vs random SiamFC, and one tracked sequence."""
    rows = [f"| {name} | **{r['success_auc']:.3f}** | {r['precision']:.3f} | {r['norm_precision']:.3f} | "
            f"{r['frames']} | {r['fps']:.0f} |" for name, r in (("SSL (SimSiam) encoder", track["arms"]["ssl"]),
                                                                ("random init", track["arms"]["random"]))]
    return [
        "## 6. Following small moving objects (`ssl-siam track-train`, `track-eval`, `track`)", "",
        f"SiamFC (`siamfc_resnet18`: resnet18 cut at stride 4, 32 / 64 px crops) trained from the SSL encoder and from "
        f"random init on {track['train_sequences']} generated sequences of cars and ships moving over the unlabeled "
        f"storm images, then tracked one pass through {track['test_sequences']} sequences over the held-out "
        f"disaster's images (success AUC: IoU thresholds 0..1; precision: centre within 20 px). One seed each: "
        "docs/tracking.md has the multi-seed comparison.", "",
        "| encoder | success AUC | precision @ 20 px | normalised precision | frames scored | frames/s |",
        "|---|---|---|---|---|---|", *rows, "",
        f"![tracked boxes]({rel(track['dir'])}/ssl/track/overlay.gif)", "",
        f"Time: {track['seconds']:.0f} s.",
    ]


def search_section(search: dict[str, Any], rel: Callable[[Path], str]) -> list[str]:
    """Section 5 of the report: the query, the hits as a table, the contact sheet."""
    query, hits = search["query"], search["hits"]
    others = [h for h in hits if h["id"] != query["id"]]
    post = sum(h["scene"].endswith("_post_disaster.png") for h in others)
    place = (f"the same place before the disaster (its pre-disaster tile) ranks #{search['same_place']}"
             if search["same_place"] else "the same place before the disaster is not among them")
    return [
        "## 5. Find tiles like this one (`ssl-siam embed`, `ssl-siam search`)", "",
        f"The SSL encoder embeds every {SEARCH_TILE}² tile of the {HELD_OUT} images, before and after "
        f"({search['tiles']} tiles; `{rel(search['dir'])}/index`), and the index is searched for the tiles most like "
        f"tile {query['id']} (`{Path(query['scene']).name}`, row {query['row']}, col {query['col']}) by cosine "
        f"similarity. Of the {len(others)} other hits, {post} are post-disaster tiles; {place}. The PNG images "
        f"have no georeferencing, so `hits.geojson` holds null geometries. Time: {search['seconds']:.0f} s.", "",
        "| rank | tile id | image | row, col | score |", "|---|---|---|---|---|",
        *[f"| {h['rank']} | {h['id']} | {Path(h['scene']).name} | {h['row']}, {h['col']} | {h['score']:.3f} |"
          for h in hits], "",
        f"![query and hits]({rel(search['dir'])}/hits/{SHEET})", "",
        f"Hits as files: [`hits.csv`]({rel(search['dir'])}/hits/hits.csv), "
        f"[`hits.geojson`]({rel(search['dir'])}/hits/hits.geojson).",
    ]


def metric_row(name: str, result: dict[str, Any]) -> str:
    v = result["verify"]
    return (f"| {name} | **{v['roc_auc']:.3f}** | {v['eer']:.3f} | {v['best_accuracy']:.3f} | {v['n_pairs']} "
            f"({v['n_positive']} unchanged) | {result['step']} | {result['seconds']:.0f} s |")


def run_demo(out: Path, quick: bool = False, device: str = "cpu") -> Path:
    """Run the pipeline end to end under ``out``; returns the path of ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    log.info("generating sample data in %s", out / "data")
    paths = make_demo_data(out / "data", quick)
    log.info("pretraining (SimSiam, resnet18) on the unlabeled images ...")
    pre = pretrain_stage(paths, out / "runs", quick, device)
    log.info("probing frozen encoders (linear + kNN on building crops) ...")
    probe_rows = run_probe([str(pre["run_dir"]), "random:resnet18"], paths["train"], "xbd-crops", out / "probe",
                           val_data=paths["hold"], device=device, crop_size=48)
    log.info("label-efficiency study (SSL vs random init, paired seeds) ...")
    study = study_stage(paths, out / "runs", quick, device, pre["run_dir"])
    metric = {}
    for name, encoder in (("metric_ssl", pre["run_dir"]), ("metric_random", None)):
        log.info("metric learning %s ...", name)
        metric[name] = metric_stage(name, paths, out / "runs", quick, device, encoder)
    log.info("embedding the held-out disaster's tiles and searching them ...")
    search = search_stage(paths, out / "search", quick, device, pre["run_dir"])
    log.info("object tracking: SiamFC from the SSL encoder and from random init ...")
    track = track_stage(paths, out / "track", quick, device, pre["run_dir"])
    report = out / "report.md"
    report.write_text(render_report(out, paths, pre, probe_rows, study, metric, search, track))
    return report


def study_summary(study: dict[str, Any]) -> list[str]:
    """One sentence per budget: SSL − random, paired, as measured."""
    lines = []
    for row in (r for r in study["rows"] if "diff_vs_random" in r):
        d = row["diff_vs_random"]
        ci = f"95 % CI [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d["ci95"] else "no CI (one seed)"
        verdict = ("the interval excludes 0: SSL is better" if d["ci95"] and d["ci95"][0] > 0 else
                   "the interval excludes 0: SSL is worse" if d["ci95"] and d["ci95"][1] < 0 else
                   "the interval includes 0: no difference shown at this scale")
        lines.append(f"- {row['n_labels']} labelled pairs: SSL − random = {d['mean']:+.3f} over {d['n']} paired "
                     f"seeds, {ci}; {verdict}.")
    return lines


def render_report(out: Path, paths: dict[str, Path], pre: dict[str, Any], probe_rows: list[ProbeRow],
                  study: dict[str, Any], metric: dict[str, dict[str, Any]], search: dict[str, Any],
                  track: dict[str, Any]) -> str:
    def rel(path: Path) -> str:
        return str(Path(path).resolve().relative_to(out.resolve()))

    history = pre["history"]
    unlabeled = count_images(paths["unlabeled_storm"], paths["unlabeled_tornado"], paths["train"], paths["hold"])
    labelled = count_images(paths["train"]) // 2
    cell = next(iter(sorted((Path(study["dir"]) / "cells").glob("*/n*/seed0"))), None)
    overlays = sorted((cell / "test" / "predictions").glob("*_overlay.png"))[:3] if cell else []
    lines = [
        "# ssl-siam demo report", "",
        f"Data (generated, xBD format): {labelled} labelled pairs of `{LABELLED}` (`{rel(paths['train'])}`), "
        f"{count_images(paths['hold']) // 2} test pairs of `{HELD_OUT}` (`{rel(paths['hold'])}`, labels used only "
        f"to score), and {unlabeled} images for pretraining, labels unused: an unlabeled archive of both disasters "
        f"(`{rel(paths['unlabeled_storm'])}`, `{rel(paths['unlabeled_tornado'])}`) plus the labelled and test "
        f"images — {unlabeled / max(labelled, 1):.0f}× as many images as labelled pairs. Each disaster has its own "
        "look (sensor colour balance, haze, land cover).", "",
        "## 1. Self-supervised pretraining (SimSiam, resnet18, every image, no labels)", "",
        "| images | steps | first loss | final loss | collapse std·√d | samples/s | time |",
        "|---|---|---|---|---|---|---|",
        f"| {unlabeled} | {pre['step']} | {history[0]['loss']:.4f} | {pre['loss']:.4f} "
        f"| {pre['collapse_std_relative']:.3f} | {pre['samples_per_s']:.1f} | {pre['seconds']:.0f} s |", "",
        "Loss −1 is perfect agreement of the two views; a healthy embedding keeps std·√d near 1 (0 = collapse).",
        "", f"![pretraining curves]({rel(pre['run_dir'])}/pretrain_curves.png)", "",
        "## 2. Frozen-encoder probes: damage class of each building from its pre/post crops", "",
        f"Linear probe and weighted kNN on frozen features [f_pre, f_post, |f_pre − f_post|] of 48² crops; train "
        f"buildings of `{LABELLED}`, test buildings of `{HELD_OUT}` (`ssl-siam probe`). One split, no seeds: "
        "a difference of a few points is within the noise of a few hundred test buildings.", "",
        *probe_table([dataclasses.asdict(r) for r in probe_rows]), "",
        "## 3. Does pretraining pay off with few labels? (`ssl-siam study`)", "",
        f"The Siamese UNet (`configs/demo/study_resnet18.yaml`) finetuned from the SSL encoder and from random init "
        f"on nested subsets of the {labelled} labelled pairs — for each budget and seed both encoders get the same "
        f"pairs and seed — and scored (xView2: 0.3·localization F1 + 0.7·damage F1) on the {HELD_OUT} pairs, "
        "a disaster never labelled in training. Mean and 95 % CI over seeds; Δ is the paired difference.", "",
        *study_table(study), "", *study_summary(study), "",
        f"![score against labelled pairs]({rel(study['dir'])}/study.png)", "",
        f"This is the demo's scale (80 finetuning steps per cell, {study['n_test_pairs']} test pairs): it shows the "
        "machinery and the size of the uncertainty, not the answer for real imagery; see docs/study.md for a longer "
        f"study. Study time: {study['seconds']:.0f} s.", "",
        "### Predictions on the held-out disaster (green no-damage, yellow minor, orange major, red destroyed)", "",
        *[f"![{p.stem}]({rel(p)})" for p in overlays], "",
        "## 4. Siamese metric learning: has this building changed?", "",
        "A Siamese resnet18 embeds the pre and post 48² crop of every labelled building (contrastive loss, label 1 = "
        "no-damage) (`ssl-siam metric-train`); `best.pt` is verified on the held-out buildings (`ssl-siam verify`): "
        "score = −distance of the two embeddings. One seed each.", "",
        "| encoder | ROC AUC | EER | best accuracy | held-out pairs | steps | time |", "|---|---|---|---|---|---|---|",
        metric_row("SSL (SimSiam)", metric["metric_ssl"]), metric_row("random init", metric["metric_random"]), "",
        f"![ROC, SSL]({rel(metric['metric_ssl']['run_dir'])}/verify/roc.png)", "",
        *search_section(search, rel), "",
        *track_section(track, rel),
    ]
    return "\n".join(lines) + "\n"

