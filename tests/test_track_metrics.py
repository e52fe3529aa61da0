"""OTB one-pass evaluation against hand computations, and the success / precision plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_siam.core.errors import DataError
from ssl_siam.track.metrics import (
    IOU_THRESHOLDS,
    box_iou,
    centre_error,
    normalised_centre_error,
    score_sequence,
    summarise,
)
from ssl_siam.track.plots import plot_curves

NAN = [np.nan] * 4


def test_box_iou_hand_made_boxes() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2], [0, 0, 2, 1], [0, 0, 4, 4], [0, 0, 2, 2]], float)
    b = np.array([[0, 0, 10, 10], [5, 5, 2, 2], [1, 0, 2, 1], [1, 1, 2, 2], [2, 0, 2, 2]], float)
    # identical, disjoint, two 2x1 boxes shifted by one (overlap 1, union 3), contained (4 / 16), touching edges
    np.testing.assert_allclose(box_iou(a, b), [1, 0, 1 / 3, 0.25, 0])
    np.testing.assert_allclose(box_iou(b, a), box_iou(a, b))


def test_centre_errors() -> None:
    a, b = np.array([[0, 0, 2, 2]], float), np.array([[3, 4, 2, 2]], float)
    np.testing.assert_allclose(centre_error(a, b), [5.0])  # centres (1, 1) and (4, 5)
    gt, pred = np.array([[0, 0, 10, 20]], float), np.array([[5, 10, 10, 20]], float)
    np.testing.assert_allclose(normalised_centre_error(pred, gt), [np.sqrt(0.5)])  # offsets 5/10, 10/20


def four_frames() -> tuple[np.ndarray, np.ndarray]:
    """Frame 0 (the initialisation) is wrong on purpose; then IoU 1, 1/3 and 0 with centre errors 0, 5 and 30 px."""
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (4, 1))
    pred = np.array([[50, 50, 10, 10], [0, 0, 10, 10], [5, 0, 10, 10], [30, 0, 10, 10]], float)
    return pred, gt


def test_four_frame_sequence_by_hand() -> None:
    pred, gt = four_frames()
    s = score_sequence("four", pred, gt)
    assert s.frames == 3
    # IoU > t: {1, 1/3} for t <= 0.30 (7 thresholds), {1} for 0.35..0.95 (13), none at t = 1
    expected = np.array([2 / 3] * 7 + [1 / 3] * 13 + [0.0])
    np.testing.assert_allclose(s.success, expected)
    assert s.success_auc == pytest.approx(3 / 7)  # (7 * 2/3 + 13 * 1/3) / 21
    assert s.precision_at == pytest.approx(2 / 3)  # errors 0, 5, 30 px: two within 20
    assert score_sequence("four", pred, gt, precision_px=4).precision_at == pytest.approx(1 / 3)
    assert s.precision[0] == pytest.approx(1 / 3) and s.precision[5] == pytest.approx(2 / 3)
    assert s.precision[29] == pytest.approx(2 / 3) and s.precision[30] == pytest.approx(1)
    # normalised errors 0, 0.5, 3: 1/3 below every threshold, 2/3 at exactly 0.5
    assert s.norm_precision_auc == pytest.approx((50 / 3 + 2 / 3) / 51)


def test_absent_ground_truth_is_excluded_and_missing_predictions_fail() -> None:
    pred, gt = four_frames()
    s = score_sequence("four", pred, gt)
    with_absent = score_sequence("four", np.vstack([pred, [[0, 0, 99, 99]]]), np.vstack([gt, [NAN]]))
    np.testing.assert_allclose(with_absent.success, s.success)
    assert with_absent.frames == 3

    pred[1] = np.nan  # the tracker lost the target on the perfect frame: now IoU 0, 1/3, 0
    lost = score_sequence("four", pred, gt)
    assert lost.success[0] == pytest.approx(1 / 3) and lost.success[-2] == 0
    assert lost.precision_at == pytest.approx(1 / 3)
    pred[1] = [0, 0, 0, 10]  # a zero-size box is no prediction either
    assert score_sequence("four", pred, gt).precision_at == pytest.approx(1 / 3)


def test_bad_inputs_give_one_line_errors() -> None:
    pred, gt = four_frames()
    with pytest.raises(DataError, match=r"four: predicted boxes of shape \(3, 4\) for ground truth of shape \(4, 4\)"):
        score_sequence("four", pred[:3], gt)
    gt[1:] = np.nan
    with pytest.raises(DataError, match="no frame to score"):
        score_sequence("four", pred, gt)


def test_summarise_averages_the_per_sequence_curves() -> None:
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (3, 1))
    perfect = score_sequence("a", gt.copy(), gt)  # 2 scored frames, IoU 1: success 1 below t = 1
    failed = score_sequence("b", np.array([[0, 0, 10, 10], NAN]), gt[:2])  # 1 scored frame, lost
    summary = summarise([perfect, failed])
    assert summary["success_auc"] == pytest.approx(10 / 21)  # (20/21 + 0) / 2, not frame-weighted (40/63)
    assert summary["precision"] == pytest.approx(0.5)
    assert summary["sequences"] == 2 and summary["frames"] == 3
    np.testing.assert_allclose(summary["success_curve"], (perfect.success + failed.success) / 2)
    assert summary["per_sequence"]["a"]["success_auc"] == pytest.approx(20 / 21)
    assert summary["per_sequence"]["b"]["precision"] == 0
    assert json.loads(json.dumps(summary)) == summary
    with pytest.raises(ValueError, match="another precision threshold"):
        summarise([perfect], precision_px=5)


def test_plot_curves_writes_one_png(tmp_path: Path) -> None:
    pred, gt = four_frames()
    summaries = {"siamfc": summarise([score_sequence("four", pred, gt)]),
                 "oracle": summarise([score_sequence("four", gt, gt)])}
    out = plot_curves(summaries, tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > img.height > 300
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # the temp file was renamed
    assert len(IOU_THRESHOLDS) == len(summaries["oracle"]["success_curve"])
