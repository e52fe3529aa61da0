"""Binary change detection beyond xBD: LEVIR-CD, S2Looking, OSCD and pairs-csv layouts, the binary metrics, and
finetune → predict → score end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_siam.change.datasets import detect_format, find_change_pairs
from ssl_siam.change.metrics.binary import BinaryAccumulator, BinaryScore, score_binary_dirs
from ssl_siam.cli import main
from ssl_siam.core.errors import DataError
from ssl_siam.tools.scenes import make_levir_split

TINY = ["model.backbone=resnet18", "data.crop_size=64", "train.batch_size=2", "train.max_steps=2",
        "train.device=cpu", "data.num_workers=0", "train.progress=false", "data.stats_samples=4",
        "model.decoder_channels=[16,16,8,8,8]", "optim.warmup_steps=0", "data.val_window=128"]


def test_binary_metrics_by_hand_and_against_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    target = (rng.random((2, 40, 50)) < 0.3).astype(np.uint8)
    prediction = np.where(rng.random(target.shape) < 0.8, target, 1 - target).astype(np.uint8)
    target[0, :3] = 255  # ignored
    acc = BinaryAccumulator()
    for p, t in zip(prediction, target):
        acc.update(p, t)
    score = acc.result()
    valid = target != 255
    tp = int(((prediction == 1) & (target == 1)).sum())
    fp = int(((prediction == 1) & (target == 0)).sum())
    fn = int(((prediction == 0) & (target == 1)).sum())
    tn = int(((prediction == 0) & (target == 0)).sum())
    assert (score.tp, score.fp, score.fn, score.tn) == (tp, fp, fn, tn) and tp + fp + fn + tn == valid.sum()
    assert score.precision == pytest.approx(tp / (tp + fp)) and score.recall == pytest.approx(tp / (tp + fn))
    assert score.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn)) and score.iou == pytest.approx(tp / (tp + fp + fn))
    metrics = pytest.importorskip("sklearn.metrics")
    y, p = target[valid], prediction[valid]
    assert score.f1 == pytest.approx(metrics.f1_score(y, p))
    assert score.precision == pytest.approx(metrics.precision_score(y, p))
    assert score.recall == pytest.approx(metrics.recall_score(y, p))
    assert score.iou == pytest.approx(metrics.jaccard_score(y, p))
    assert score.oa == pytest.approx(metrics.accuracy_score(y, p))
    assert score.kappa == pytest.approx(metrics.cohen_kappa_score(y, p))
    assert BinaryScore(0, 0, 0, 10).f1 == 0.0 and BinaryScore(0, 0, 0, 0).kappa == 0.0


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def levir(root: Path, n: int = 3, size: int = 64, seed: int = 0, folders: tuple[str, str, str] = ("A", "B", "label")
          ) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        pre = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        post, mask = pre.copy(), np.zeros((size, size), np.uint8)
        mask[10:30, 10:30] = 255
        post[10:30, 10:30] = 255 - post[10:30, 10:30]  # a change you can see
        for folder, array in zip(folders, (pre, post, mask)):
            write_png(root / folder / f"chip_{seed}_{i}.png", array)
    return root


def test_layouts_are_detected_and_paired(tmp_path: Path) -> None:
    assert detect_format(levir(tmp_path / "levir")) == "levir"
    assert detect_format(levir(tmp_path / "s2", folders=("Image1", "Image2", "label"))) == "s2looking"
    records = find_change_pairs([tmp_path / "levir"], "levir", tmp_path / "cache")
    assert [r.id for r in records] == ["chip_0_0", "chip_0_1", "chip_0_2"]
    assert records[0].pre_image.parent.name == "A" and records[0].damage_target.parent.name == "label"
    csv = tmp_path / "levir" / "pairs.csv"
    csv.write_text("pre,post,mask\nA/chip_0_0.png,B/chip_0_0.png,label/chip_0_0.png\n")
    assert detect_format(csv) == "pairs-csv" and len(find_change_pairs([csv], "pairs-csv", tmp_path)) == 1


def test_mask_policy_required_if_present_none(tmp_path: Path) -> None:
    root = levir(tmp_path / "levir")
    write_png(root / "label" / "chip_0_1.png", np.full((32, 32), 255, np.uint8))  # a bad mask (another size)
    (root / "label" / "chip_0_2.png").unlink()  # and a missing one
    csv = root / "pairs.csv"
    csv.write_text("pre,post,mask\nA/chip_0_0.png,B/chip_0_0.png,label/chip_0_0.png\n"
                   "A/chip_0_1.png,B/chip_0_1.png,\nA/chip_0_2.png,B/chip_0_2.png,label/chip_0_2.png\n")
    for source, fmt in ((root, "levir"), (csv, "pairs-csv")):
        for masks in ("required", "if_present"):
            with pytest.raises(DataError, match=r"chip_0_[12]|pairs.csv:3"):
                find_change_pairs([source], fmt, tmp_path, masks=masks)
        records = find_change_pairs([source], fmt, tmp_path, masks="none")  # prediction: masks never looked at
        assert [r.id.rpartition("chip_")[2] for r in records] == ["0_0", "0_1", "0_2"]
        assert all(r.damage_target is None for r in records)
    csv.write_text("pre,post,mask\nA/chip_0_0.png,B/chip_0_0.png,label/chip_0_0.png\nA/chip_0_2.png,B/chip_0_2.png,\n")
    present = find_change_pairs([csv], "pairs-csv", tmp_path, masks="if_present")  # scoring: the labelled rows
    assert [r.damage_target is not None for r in present] == [True, False]
    with pytest.raises(DataError, match="pairs.csv:3: no mask, expected one in every row for training"):
        find_change_pairs([csv], "pairs-csv", tmp_path)


def test_bad_change_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = levir(tmp_path / "bad")
    write_png(root / "label" / "chip_0_1.png", np.full((32, 32), 255, np.uint8))  # another size
    with pytest.raises(DataError, match=r"chip_0_1.png: size 32x32, expected 64x64"):
        find_change_pairs([root], "levir", tmp_path)
    values = levir(tmp_path / "values")
    write_png(values / "label" / "chip_0_0.png", np.full((64, 64), 7, np.uint8))
    code = main(["finetune", "task=binary", f"data.root={values}", f"run_dir={tmp_path / 'run'}", *TINY,
                 "data.val_fraction=0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "mask value 7, expected classes 0..1" in err, err
    escape = tmp_path / "values" / "escape.csv"
    escape.write_text("pre,post,mask\n../bad/A/chip_0_0.png,B/chip_0_0.png,label/chip_0_0.png\n")
    with pytest.raises(DataError, match="must be a file inside"):
        find_change_pairs([escape], "pairs-csv", tmp_path)
    code = main(["finetune", f"data.root={values}", f"run_dir={tmp_path / 'run2'}", *TINY])  # task=damage
    assert code == 2 and "data.format=levir does not fit task=damage" in capsys.readouterr().err


def test_levir_finetune_predict_score_contract(tmp_path: Path) -> None:
    """The command-line contract of the issue, on a synthetic LEVIR-style split."""
    make_levir_split(tmp_path / "train", 4, size=128, seed=0)
    make_levir_split(tmp_path / "val", 2, size=128, seed=1)
    run = tmp_path / "run"
    assert main(["finetune", "--config", "levir_resnet50", f"data.root={tmp_path / 'train'}",
                 f"data.val_root={tmp_path / 'val'}", f"run_dir={run}", *TINY, "train.val_every=2"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"f1", "precision", "recall", "iou", "oa", "kappa"} <= metrics["val"].keys() and "best_f1" in metrics
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "last.pt"), "--data", str(tmp_path / "val"),
                 "--out", str(out), "--device", "cpu", "--window", "128"]) == 0
    for stem in ("synthetic-storm_00000000", "synthetic-storm_00000001"):
        mask = np.asarray(Image.open(out / f"{stem}_change_mask.png"))
        assert mask.shape == (128, 128) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert (out / f"{stem}_change_probability.png").is_file() and (out / f"{stem}_overlay.png").is_file()
    report = tmp_path / "score.json"
    assert main(["score", "--task", "binary", "--pred", str(out), "--targ", str(tmp_path / "val" / "label"),
                 "--json", str(report)]) == 0
    score = json.loads(report.read_text())
    assert {"precision", "recall", "f1", "iou", "oa", "kappa"} <= score.keys() and 0 <= score["f1"] <= 1
    direct = score_binary_dirs(out, tmp_path / "val" / "label")
    assert direct.f1 == score["f1"]


def test_s2looking_and_pairs_csv_finetune_predict_score(tmp_path: Path) -> None:
    root = levir(tmp_path / "s2", n=4, folders=("Image1", "Image2", "label"))
    run = tmp_path / "run"
    assert main(["finetune", "task=binary", f"data.root={root}", f"run_dir={run}", *TINY,
                 "data.val_fraction=0.25"]) == 0
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "last.pt"), "--data", str(root), "--out", str(out),
                 "--device", "cpu", "--window", "64"]) == 0
    assert len(list(out.glob("chip_0_*_change_mask.png"))) == 4
    assert main(["score", "--task", "binary", "--pred", str(out), "--targ", str(root / "label"),
                 "--json", str(tmp_path / "s.json")]) == 0
    assert 0 <= json.loads((tmp_path / "s.json").read_text())["f1"] <= 1
    csv = root / "pairs.csv"
    csv.write_text("pre,post,mask\n" + "".join(f"Image1/chip_0_{i}.png,Image2/chip_0_{i}.png,label/chip_0_{i}.png\n"
                                               for i in range(4)))
    run2 = tmp_path / "run2"
    assert main(["finetune", "task=binary", f"data.root={csv}", f"run_dir={run2}", *TINY,
                 "data.val_fraction=0.25"]) == 0
    metrics = json.loads((run2 / "metrics.json").read_text())
    assert metrics["step"] == 2 and "f1" in metrics["val"]
    unlabelled = root / "predict.csv"  # prediction needs no mask column; a LEVIR-trained model maps a CSV too
    unlabelled.write_text("pre,post\n" + "".join(f"Image1/chip_0_{i}.png,Image2/chip_0_{i}.png\n" for i in range(4)))
    for ckpt in (run2, run):
        out2 = tmp_path / f"out_{ckpt.name}"
        assert main(["predict", "--ckpt", str(ckpt / "checkpoints" / "last.pt"), "--data", str(unlabelled),
                     "--out", str(out2), "--device", "cpu", "--window", "64"]) == 0
        assert sorted(p.name for p in out2.glob("*_change_mask.png")) == [f"chip_0_{i}_change_mask.png"
                                                                        for i in range(4)]
        assert main(["score", "--task", "binary", "--pred", str(out2), "--targ", str(root / "label"),
                     "--json", str(tmp_path / "s2.json")]) == 0
        scores = json.loads((tmp_path / "s2.json").read_text())
        assert set(scores) >= {"precision", "recall", "f1", "iou", "oa", "kappa"}
    same = tmp_path / "out_run"  # the first model on the CSV maps exactly what it mapped from the folder
    for i in range(4):
        a, b = (np.asarray(Image.open(d / f"chip_0_{i}_change_mask.png")) for d in (out, same))
        assert np.array_equal(a, b)


@pytest.mark.parametrize("fmt", ["levir", "second", "xbd"])
def test_synthetic_command_writes_each_layout(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / fmt
    assert main(["synthetic", str(out), "--format", fmt, "--pairs", "3", "--size", "64", "--seed", "1"]) == 0
    assert detect_format(out) == fmt
    if fmt != "xbd":
        records = find_change_pairs([out], fmt, tmp_path / "cache")
        assert len(records) == 3 and all(r.damage_target is not None for r in records)
        mask = np.asarray(Image.open(records[0].damage_target)) if fmt == "levir" else None
        assert mask is None or set(np.unique(mask)) <= {0, 255}
