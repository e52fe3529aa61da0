"""xView2 metric: hand-computed counts, the official scorer's rules, merging and scoring folders of PNGs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_siam.change.metrics.xview2 import XView2Accumulator, score_dirs
from ssl_siam.core.errors import DataError


def reference_counts(images) -> np.ndarray:
    """The fixed official scorer, per image and per class; returns [3, 5] TP/FP/FN."""
    out = np.zeros((3, 5), np.int64)
    for lp, dp, lt, dt in images:
        lp_b, lt_b = (lp > 0).astype(int), (lt > 0).astype(int)
        dp = (dp * lp_b)[dt > 0]
        dt = dt[dt > 0]
        for col, (pred, targ, c) in enumerate([(lp_b, lt_b, 1)] + [(dp, dt, c) for c in range(1, 5)]):
            tp = ((pred == c) & (targ == c)).sum()
            out[:, col] += [tp, (pred == c).sum() - tp, (targ == c).sum() - tp]
    return out


def stacked(acc: XView2Accumulator) -> np.ndarray:
    return np.stack([acc.counts[k] for k in ("tp", "fp", "fn")])


def random_images(n: int, size: int = 32, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    return [tuple(rng.integers(0, 5, (size, size), dtype=np.uint8) for _ in range(4)) for _ in range(n)]


def test_hand_computed_single_image():
    loc_targ = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    loc_pred = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 0]])
    dmg_targ = np.array([[1, 2, 0], [3, 4, 0], [0, 0, 0]])
    dmg_pred = np.array([[1, 2, 2], [4, 4, 0], [0, 0, 3]])
    acc = XView2Accumulator()
    acc.update(loc_pred, dmg_pred, loc_targ, dmg_targ)
    # Localization over all pixels: TP (0,0) (1,0) (1,1); FP (1,2); FN (0,1).
    # Damage: (0,1) predicts 2 where no building is predicted -> 0 -> FN of class 2; (0,2) predicts 2 on
    # damage-target background -> ignored; (2,2) is masked and background; (1,0) predicts 4 for a 3.
    # Class 3 is never predicted -> F1 0.
    assert acc.counts["tp"].tolist() == [3, 1, 0, 0, 1]
    assert acc.counts["fp"].tolist() == [1, 0, 0, 0, 1]
    assert acc.counts["fn"].tolist() == [1, 0, 1, 1, 0]
    result = acc.result()
    assert result.localization_f1 == pytest.approx(0.75)
    assert result.damage_f1_per_class == pytest.approx(
        {"no-damage": 1.0, "minor-damage": 0.0, "major-damage": 0.0, "destroyed": 2 / 3}
    )
    harmonic = 4 / (1 / (1 + 1e-6) + 2 / 1e-6 + 1 / (2 / 3 + 1e-6))
    assert result.damage_f1 == pytest.approx(harmonic)
    assert result.damage_f1 < 1e-5
    assert result.score == pytest.approx(0.3 * 0.75 + 0.7 * harmonic)
    assert np.array_equal(stacked(acc), reference_counts([(loc_pred, dmg_pred, loc_targ, dmg_targ)]))


def test_false_positives_count_where_class_is_absent():
    ones = np.ones((1, 2), np.uint8)
    acc = XView2Accumulator()
    acc.update(ones, 2 * ones, ones, ones)  # image A: no minor damage in the target, predicted twice
    acc.update(ones, 2 * ones, ones, 2 * ones)  # image B: minor damage predicted correctly
    assert (acc.counts["tp"][2], acc.counts["fp"][2], acc.counts["fn"][2]) == (2, 2, 0)
    assert acc.counts["fn"][1] == 2
    # Pre-fix scorer would skip image A for class 2 and report F1 = 1.
    assert acc.result().damage_f1_per_class["minor-damage"] == pytest.approx(4 / 6)


def test_perfect_prediction_scores_one():
    targ = np.array([[0, 1, 2], [3, 4, 0]])
    acc = XView2Accumulator()
    acc.update(targ > 0, targ, targ > 0, targ)
    result = acc.result()
    assert result.localization_f1 == 1.0
    assert result.score == pytest.approx(1.0, abs=1e-5)
    assert set(result.damage_f1_per_class.values()) == {1.0}


def test_matches_reference_batched_torch_and_merge():
    images = random_images(6)
    whole, first, second, batched = (XView2Accumulator() for _ in range(4))
    for i, image in enumerate(images):
        whole.update(*image)
        (first if i < 3 else second).update(*(torch.from_numpy(a.astype(np.int64)) for a in image))
    batched.update(*(np.stack(arrays) for arrays in zip(*images, strict=True)))
    assert np.array_equal(stacked(whole), reference_counts(images))
    assert np.array_equal(stacked(batched), stacked(whole))
    summed = {k: first.counts[k] + second.counts[k] for k in ("tp", "fp", "fn")}  # e.g. across processes
    assert np.array_equal(stacked(XView2Accumulator(summed)), stacked(whole))
    assert first.merge(second) is first
    assert np.array_equal(stacked(first), stacked(whole))
    assert first.result() == whole.result()


def test_result_dict_and_table():
    acc = XView2Accumulator()
    acc.update(*random_images(1)[0])
    result = acc.result()
    data = result.to_dict()
    assert set(data) == {"score", "localization_f1", "damage_f1", "damage_f1_per_class", "counts"}
    assert list(data["damage_f1_per_class"]) == ["no-damage", "minor-damage", "major-damage", "destroyed"]
    table = result.table()
    assert len(table.splitlines()) == 8
    assert f"{result.score:.4f}" in table
    assert f"{data['counts']['destroyed']['fp']:,}" in table.splitlines()[5]


def test_update_rejects_bad_input():
    acc = XView2Accumulator()
    with pytest.raises(ValueError, match="values 0-4"):
        acc.update(*[np.full((2, 2), 5)] * 4)
    with pytest.raises(ValueError, match="integer"):
        acc.update(*[np.zeros((2, 2), np.float32)] * 4)
    with pytest.raises(ValueError, match="one shape"):
        acc.update(np.zeros((2, 2), int), np.zeros((2, 3), int), np.zeros((2, 2), int), np.zeros((2, 2), int))


def save(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array.astype(np.uint8)).save(path)


def write_dirs(tmp_path: Path, images) -> tuple[Path, Path]:
    pred, targ = tmp_path / "pred", tmp_path / "targ"
    pred.mkdir()
    targ.mkdir()
    for i, (lp, dp, lt, dt) in enumerate(images):
        kinds = ("localization_prediction", "damage_prediction", "localization_target", "damage_target")
        if i % 2:  # challenge style
            names = [f"test_{k.split('_')[0]}_{i:05d}_{k.split('_')[1]}" for k in kinds]
        else:
            names = [f"a_{i}_{k}" for k in kinds]
        for folder, name, array in zip((pred, pred, targ, targ), names, (lp, dp, lt, dt), strict=True):
            save(folder / f"{name}.png", array)
    return pred, targ


@pytest.mark.parametrize("workers", [1, 2])
def test_score_dirs_both_naming_styles(tmp_path, workers):
    images = random_images(4)
    pred, targ = write_dirs(tmp_path, images)
    acc = XView2Accumulator()
    for image in images:
        acc.update(*image)
    assert score_dirs(pred, targ, workers=workers) == acc.result()


def test_score_dirs_errors(tmp_path):
    images = random_images(2, size=8)
    pred, targ = write_dirs(tmp_path, images)
    bad = pred / "a_0_damage_prediction.png"
    save(bad, np.full((8, 8), 7))
    with pytest.raises(DataError, match=r"a_0_damage_prediction.png: expected values 0-4, found \[7\]"):
        score_dirs(pred, targ, workers=1)
    save(bad, np.zeros((8, 9)))
    with pytest.raises(DataError, match=r"a_0_damage_prediction.png: size \(8, 9\), expected \(8, 8\)"):
        score_dirs(pred, targ, workers=1)
    save(bad, np.zeros((8, 8, 3)))
    with pytest.raises(
        DataError, match=re.escape("a_0_damage_prediction.png: expected a single-channel uint8")
    ):
        score_dirs(pred, targ, workers=1)
    bad.write_text("not a png")
    with pytest.raises(DataError, match=re.escape("a_0_damage_prediction.png: unreadable")):
        score_dirs(pred, targ, workers=2)
    bad.unlink()
    with pytest.raises(DataError, match=re.escape("a_0_damage_prediction.png: missing")):
        score_dirs(pred, targ, workers=1)
    with pytest.raises(DataError, match=re.escape("expected <id>_localization_target.png")):
        score_dirs(pred, pred, workers=1)
    with pytest.raises(DataError, match="expected a folder"):
        score_dirs(tmp_path / "nope", targ)
