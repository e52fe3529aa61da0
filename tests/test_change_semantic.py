"""Semantic change detection (SECOND): colour-coded land cover, the code mask, SeK / mIoU against a hand
computation, the two-decoder model and its loss, and finetune → predict → score end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ssl_siam.change.datasets import detect_format, find_change_pairs
from ssl_siam.change.losses import SemanticChangeLoss
from ssl_siam.change.metrics.semantic import SemanticAccumulator, SemanticScore, semantic_maps
from ssl_siam.change.models.siamese import build_change_net
from ssl_siam.change.sliding import output_probs
from ssl_siam.cli import main
from ssl_siam.core.errors import DataError
from ssl_siam.data.semantic import PALETTE, landcover_rgb, pair_code, read_landcover, split_code
from ssl_siam.tools.scenes import make_second_split

TINY = ["model.backbone=resnet18", "data.crop_size=64", "train.batch_size=2", "train.device=cpu",
        "data.num_workers=0", "train.progress=false", "data.stats_samples=4", "model.decoder_channels=[16,16,8,8,8]",
        "optim.warmup_steps=0", "data.val_window=64"]


def test_scores_against_a_hand_computation() -> None:
    hist = np.zeros((7, 7), np.int64)  # hist[target, prediction]
    hist[0, 0], hist[0, 1], hist[1, 0], hist[1, 1], hist[1, 2], hist[2, 2] = 50, 5, 10, 20, 5, 10
    score = SemanticScore(hist)
    # unchanged: 50 / (55 + 60 − 50); changed: (20 + 5 + 10) / (100 − 50)
    assert score.iou_unchanged == pytest.approx(50 / 65) and score.iou_changed == pytest.approx(0.7)
    assert score.miou == pytest.approx((50 / 65 + 0.7) / 2)
    # without the 0-0 cell: n = 50, p_o = 30/50, p_e = (5·10 + 35·25 + 10·15) / 50²
    kappa = (0.6 - 1075 / 2500) / (1 - 1075 / 2500)
    assert score.sek == pytest.approx(kappa * np.exp(0.7 - 1))
    assert score.score == pytest.approx(0.3 * score.miou + 0.7 * score.sek)
    assert score.fscd == pytest.approx(2 * 30 / (40 + 45)) and score.oa == pytest.approx(0.8)
    metrics = pytest.importorskip("sklearn.metrics")  # κ of the separated matrix = Cohen's κ of its pixels
    separated = hist.copy()
    separated[0, 0] = 0
    t, p = np.nonzero(separated)
    counts = separated[t, p]
    assert _kappa_of(metrics, np.repeat(t, counts), np.repeat(p, counts)) == pytest.approx(kappa)
    assert SemanticScore(np.zeros((7, 7))).sek == 0.0


def _kappa_of(metrics: object, y: np.ndarray, p: np.ndarray) -> float:
    return metrics.cohen_kappa_score(y, p)  # type: ignore[attr-defined]


def test_accumulator_sums_both_dates_and_skips_ignored() -> None:
    rng = np.random.default_rng(0)
    t1 = rng.integers(0, 7, (20, 30))
    t2 = np.where(t1 > 0, rng.integers(1, 7, t1.shape), 0)
    p1, p2 = rng.integers(0, 7, t1.shape), rng.integers(0, 7, t1.shape)
    t1[0, :4] = t2[0, :4] = 255
    acc = SemanticAccumulator()
    acc.update(p1, p2, t1, t2)
    expected = np.zeros((7, 7), np.int64)
    for p, t in ((p1, t1), (p2, t2)):
        for a, b in zip(t.ravel(), p.ravel()):
            if a != 255:
                expected[a, b] += 1
    assert np.array_equal(acc.hist, expected) and acc.hist.sum() == 2 * (600 - 4)


def test_semantic_maps_put_classes_only_where_change_is_predicted() -> None:
    probs = torch.zeros(2 + 12, 1, 3)
    probs[1, 0, :2] = 1.0  # change at x = 0, 1
    probs[0, 0, 2] = 1.0
    probs[2 + 4, 0] = 1.0  # pre: class 5 (logit 4)
    probs[8 + 0, 0] = 1.0  # post: class 1
    change, label1, label2 = semantic_maps(probs)
    assert change.tolist() == [[1, 1, 0]] and label1.tolist() == [[5, 5, 0]] and label2.tolist() == [[1, 1, 0]]


def test_colour_maps_codes_and_bad_labels(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 2, 3], [4, 5, 6, 0]], np.uint8)
    path = tmp_path / "l.png"
    Image.fromarray(landcover_rgb(ids)).save(path)
    assert np.array_equal(read_landcover(path), ids)
    other = np.where(ids > 0, (ids % 6) + 1, 0).astype(np.uint8)
    code = pair_code(ids, other, path)
    l1, l2 = split_code(np.where(np.arange(8).reshape(2, 4) == 7, 255, code), 255)
    assert np.array_equal(l1[ids > 0], ids[ids > 0]) and np.array_equal(l2[ids > 0], other[ids > 0])
    assert l1[1, 3] == 255 and l2[1, 3] == 255
    t1, _ = split_code(torch.from_numpy(code.astype(np.int64)), 255)  # the same on tensors (the loss)
    assert torch.equal(t1, torch.from_numpy(ids.astype(np.int64)))
    with pytest.raises(DataError, match="disagree on which pixels changed"):
        pair_code(ids, np.zeros_like(ids), path)
    rgb = landcover_rgb(ids)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    with pytest.raises(DataError, match=r"l.png: colour \(1, 2, 3\) is not a SECOND class"):
        read_landcover(path)
    assert len(PALETTE) == 7


def test_model_semantic_head_is_shared_by_both_dates() -> None:
    torch.manual_seed(0)
    model = build_change_net("resnet18", 3, num_classes=2, semantic_classes=6,
                             decoder_channels=(16, 16, 8, 8, 8)).eval()
    pre, post = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, swapped = model(pre, post), model(post, pre)
    assert out["logits"].shape == (2, 2, 64, 64) and out["semantic"].shape == (2, 2, 6, 64, 64)
    torch.testing.assert_close(out["semantic"][:, 0], swapped["semantic"][:, 1])  # one decoder for either date
    probs = output_probs(out)
    assert probs.shape == (2, 14, 64, 64)
    torch.testing.assert_close(probs[:, :2].sum(1), torch.ones(2, 64, 64))
    torch.testing.assert_close(probs[:, 8:].sum(1), torch.ones(2, 64, 64))


def test_semantic_loss_by_hand_and_ignored_pixels_count_nowhere() -> None:
    torch.manual_seed(0)
    label1 = torch.tensor([[[0, 1, 3], [6, 0, 2]]])
    label2 = torch.tensor([[[0, 4, 3], [1, 0, 5]]])
    code = label1 * 7 + label2
    code[0, 1, 2] = 255
    outputs = {"logits": torch.randn(1, 2, 2, 3), "aux": [], "semantic": torch.randn(1, 2, 6, 2, 3)}

    def change(out: dict, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return F.cross_entropy(out["logits"], target, ignore_index=255), {}

    total, parts = SemanticChangeLoss(change, semantic_weight=0.5)(outputs, code)
    changed = torch.tensor([[[0, 1, 1], [1, 0, 255]]])
    want_change = F.cross_entropy(outputs["logits"], changed, ignore_index=255)
    valid = torch.tensor([[False, True, True], [True, False, False]])
    sem1 = F.cross_entropy(outputs["semantic"][0, 0].permute(1, 2, 0)[valid], label1[0][valid] - 1)
    sem2 = F.cross_entropy(outputs["semantic"][0, 1].permute(1, 2, 0)[valid], label2[0][valid] - 1)
    torch.testing.assert_close(parts["semantic1"], sem1)
    torch.testing.assert_close(total, want_change + 0.5 * (sem1 + sem2))
    moved = {**outputs, "semantic": outputs["semantic"].clone()}
    moved["semantic"][..., 1, 2] += 10.0  # the ignored pixel
    moved["semantic"][..., 0, 0] += 10.0  # an unchanged pixel: no land-cover label
    torch.testing.assert_close(SemanticChangeLoss(change, 0.5)(moved, code)[0], total)


def test_second_finetune_learns_then_predict_and_score(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train, val = tmp_path / "train", tmp_path / "val"
    make_second_split(train, 8, size=64, seed=0)
    make_second_split(val, 3, size=64, seed=1)
    assert detect_format(train) == "second"
    run = tmp_path / "run"
    assert main(["finetune", "--config", "finetune/second_resnet50", f"data.root={train}", f"data.val_root={val}",
                 *TINY, "train.batch_size=4", "train.max_steps=60", "data.samples_per_epoch=120", "train.log_every=1",
                 "train.freeze_encoder_epochs=0", "train.encoder_lr_scale=1", "optim.lr=1e-3",
                 "model.decoder_channels=[64,32,32,16,16]",
                 f"run_dir={run}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    semantic = [h["semantic1"] for h in metrics["history"] if h["semantic1"] > 0]  # 0: no changed pixel in the batch
    assert np.mean(semantic[-10:]) < 0.85 * np.mean(semantic[:10])
    first, last = metrics["val_history"][0], metrics["val"]
    assert {"sek", "miou", "score", "fscd", "oa"} <= set(last)
    assert last["sek"] > first["sek"] and last["sek"] > 0.02 and last["iou_changed"] > 0.3
    out, scores = tmp_path / "out", tmp_path / "score.json"
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "last.pt"), "--data", str(val), "--out", str(out),
                 "--device", "cpu"]) == 0
    for stem in (p.stem for p in (val / "im1").iterdir()):
        change = np.asarray(Image.open(out / f"{stem}_change_mask.png"))
        label1 = read_landcover(out / f"{stem}_label1.png")
        assert change.shape == (64, 64) and np.array_equal(label1 > 0, change > 0)
    assert main(["score", "--task", "semantic", "--pred", str(out), "--targ", str(val), "--json", str(scores)]) == 0
    scored = json.loads(scores.read_text())
    assert scored["sek"] == pytest.approx(metrics["val"]["sek"]) and scored["miou"] == pytest.approx(
        metrics["val"]["miou"])  # validation and predict + score agree
    assert np.asarray(scored["confusion"]).sum() == 2 * 3 * 64 * 64
    capsys.readouterr()
    bad = Image.open(val / "label2" / f"{stem}.png").convert("RGB")
    bad.putpixel((0, 0), (9, 9, 9))
    bad.save(val / "label2" / f"{stem}.png")
    assert main(["score", "--task", "semantic", "--pred", str(out), "--targ", str(val)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "colour (9, 9, 9) is not a SECOND class" in err


def test_second_layout_errors(tmp_path: Path) -> None:
    make_second_split(tmp_path / "s", 2, size=32, seed=0)
    records = find_change_pairs([tmp_path / "s"], "second", tmp_path / "cache")
    assert len(records) == 2 and all(r.damage_target.is_file() for r in records)
    again = find_change_pairs([tmp_path / "s"], "second", tmp_path / "cache")
    assert [r.damage_target for r in again] == [r.damage_target for r in records]  # cached
    (tmp_path / "s" / "label2" / f"{records[0].id}.png").unlink()
    with pytest.raises(DataError, match="label2.*missing, expected the land-cover map"):
        find_change_pairs([tmp_path / "s"], "second", tmp_path / "cache")
    assert len(find_change_pairs([tmp_path / "s"], "second", tmp_path / "c2", masks="none")) == 2
