"""Pair verification metrics: hand-computed ROC / AUC / EER / best accuracy, brute-force AUC, one-shot, ROC plot."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_siam.metric_learning.verification_metrics import (
    best_threshold_accuracy,
    equal_error_rate,
    one_shot_accuracy,
    plot_roc,
    roc_auc,
    roc_curve,
    verification_report,
)

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.4])
LABELS = np.array([1, 1, 0, 1, 0, 0])


def test_roc_curve_hand_computed():
    fpr, tpr, thresholds = roc_curve(SCORES[::-1], LABELS[::-1])  # input order does not matter
    # predicted "same" at each threshold: TP = 0,1,2,2,3,3,3 of 3 positives, FP = 0,0,0,1,1,2,3 of 3 negatives
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.6, 0.55, 0.4])
    np.testing.assert_allclose(tpr, np.array([0, 1, 2, 2, 3, 3, 3]) / 3)
    np.testing.assert_allclose(fpr, np.array([0, 0, 0, 1, 1, 2, 3]) / 3)


def test_roc_curve_groups_tied_scores():
    fpr, tpr, thresholds = roc_curve(np.array([0.5, 0.3, 0.5, 0.3]), np.array([1, 1, 0, 0]))
    np.testing.assert_array_equal(thresholds, [np.inf, 0.5, 0.3])
    np.testing.assert_allclose(tpr, [0, 0.5, 1])
    np.testing.assert_allclose(fpr, [0, 0.5, 1])


def test_auc_hand_computed():
    # (positive, negative) pairs won by the positive, of 3 x 3 = 9:
    # 0.9 > 0.7, 0.55, 0.4 -> 3;  0.8 > 0.7, 0.55, 0.4 -> 3;  0.6 > 0.55, 0.4 -> 2 (loses to 0.7);  total 8 / 9
    assert roc_auc(SCORES, LABELS) == pytest.approx(8 / 9)


def test_auc_counts_ties_as_half():
    # positive 0.5 vs negatives 0.5 (tie: 1/2) and 0.3 (win: 1) -> 1.5 / 2
    assert roc_auc(np.array([0.5, 0.5, 0.3]), np.array([1, 0, 0])) == pytest.approx(0.75)
    # every score tied -> chance
    assert roc_auc(np.full(6, 0.2), np.array([1, 0, 1, 0, 0, 1])) == pytest.approx(0.5)


def test_perfect_and_reversed_separation():
    scores, labels = np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 1, 0, 0])
    assert roc_auc(scores, labels) == 1.0
    assert equal_error_rate(scores, labels) == (0.0, 0.8)
    assert best_threshold_accuracy(scores, labels) == (1.0, 0.8)
    assert roc_auc(scores, 1 - labels) == 0.0
    assert equal_error_rate(scores, 1 - labels)[0] == 1.0


def test_auc_matches_brute_force_mann_whitney():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200) + 0.8 * labels, 1)  # rounding makes ties
    assert np.unique(scores).size < 150
    positive, negative = scores[labels == 1][:, None], scores[labels == 0][None, :]
    mann_whitney = ((positive > negative) + 0.5 * (positive == negative)).mean()
    assert roc_auc(scores, labels) == pytest.approx(mann_whitney, abs=1e-12)


def test_eer_equal_at_a_point():
    # FNR = 1 - TPR = 1, 2/3, 1/3, 1/3, 0, 0, 0 and FPR = 0, 0, 0, 1/3, 1/3, 2/3, 1: equal (1/3) at threshold 0.7
    eer, threshold = equal_error_rate(SCORES, LABELS)
    assert eer == pytest.approx(1 / 3)
    assert threshold == 0.7


def test_eer_interpolated_between_points():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    labels = np.array([1, 1, 0, 0, 0, 1, 0])
    # thresholds inf, .9, .8, .7, .6, .5, .4, .3: FPR = 0, 0, 0, 1/4, 2/4, 3/4, 3/4, 1; FNR = 1, 2/3, 1/3, 1/3, 1/3, ...
    # FPR - FNR = ..., -1/12 at 0.7, +1/6 at 0.6 -> t = (1/12) / (1/12 + 1/6) = 1/3 of the way from 0.7 to 0.6:
    # EER = 1/4 + (1/3)(1/4) = 1/3 (= FNR, constant there), threshold = 0.7 - (1/3)(0.1)
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.7 - 0.1 / 3)


def test_eer_next_to_infinite_threshold_uses_the_finite_one():
    # one distinct score: (FPR, FNR) goes from (0, 1) at +inf to (1, 0) at 0.5 -> crossing halfway, threshold 0.5
    assert equal_error_rate(np.array([0.5, 0.5]), np.array([1, 0])) == (0.5, 0.5)


def test_best_threshold_accuracy_hand_computed():
    # correct of 6 = TP + TN: inf 0+3, .9 1+3, .8 2+3, .7 2+2, .6 3+2, .55 3+1, .4 3+0 -> 5/6, first at 0.8
    assert best_threshold_accuracy(SCORES, LABELS) == (pytest.approx(5 / 6), 0.8)


def test_best_threshold_accuracy_all_same_score():
    scores = np.full(5, 0.3)
    assert best_threshold_accuracy(scores, np.array([1, 1, 1, 0, 0])) == (pytest.approx(0.6), 0.3)  # all "same"
    assert best_threshold_accuracy(scores, np.array([1, 0, 0, 0, 0])) == (pytest.approx(0.8), np.inf)  # all "diff."


def test_verification_report():
    report = verification_report(SCORES, LABELS)
    assert report == {
        "roc_auc": pytest.approx(8 / 9),
        "eer": pytest.approx(1 / 3),
        "eer_threshold": 0.7,
        "best_accuracy": pytest.approx(5 / 6),
        "best_threshold": 0.8,
        "n_pairs": 6,
        "n_positive": 3,
    }


@pytest.mark.parametrize("function", [roc_curve, roc_auc, equal_error_rate, verification_report])
def test_errors(function):
    with pytest.raises(ValueError, match="both classes"):
        function(np.array([0.1, 0.2, 0.3]), np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="shapes"):
        function(np.array([0.1, 0.2]), np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="non-empty"):
        function(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="labels must be"):
        function(np.array([0.1, 0.2]), np.array([2, 0]))


def clusters(n_classes: int, per_class: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, 16))
    labels = np.repeat(np.arange(n_classes), per_class)
    return centers[labels] + noise * rng.normal(size=(labels.size, 16)), labels


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("n_way", [5, 10])
def test_one_shot_separated_clusters(n_way, metric):
    embeddings, labels = clusters(10, 5, noise=1e-3)
    assert one_shot_accuracy(embeddings, labels, n_way, trials=500, metric=metric) == 1.0


def test_one_shot_with_a_similarity_function():
    embeddings, labels = clusters(10, 5, noise=1e-3)
    calls = []

    def negated_cosine(query, supports):  # [T, D], [T, N, D] -> [T, N]
        calls.append((query.shape, supports.shape))
        q = query / np.linalg.norm(query, axis=1, keepdims=True)
        s = supports / np.linalg.norm(supports, axis=2, keepdims=True)
        return -np.einsum("td,tnd->tn", q, s)

    assert one_shot_accuracy(embeddings, labels, 5, trials=300, metric=negated_cosine) == 0.0  # least similar wins
    assert calls == [((300, 16), (300, 5, 16))]
    rng = np.random.default_rng(3)
    noisy = rng.normal(size=(60, 8))
    labels = np.repeat(np.arange(12), 5)
    cosine = one_shot_accuracy(noisy, labels, 5, trials=400, seed=1)
    assert one_shot_accuracy(noisy, labels, 5, trials=400, seed=1,
                             metric=lambda q, s: -negated_cosine(q, s)) == pytest.approx(cosine)


def test_one_shot_random_embeddings_near_chance():
    rng = np.random.default_rng(1)
    embeddings, labels = rng.normal(size=(100, 32)), np.repeat(np.arange(20), 5)
    assert one_shot_accuracy(embeddings, labels, 5, trials=2000) == pytest.approx(0.2, abs=0.06)
    assert one_shot_accuracy(embeddings, labels, 10, trials=2000) == pytest.approx(0.1, abs=0.05)


def test_one_shot_query_is_never_its_own_support():
    # class c = {e_c, -e_c}: the true support has cosine -1, every distractor 0 -> always wrong (1.0 if query = support)
    basis = np.eye(6)
    embeddings, labels = np.concatenate([basis, -basis]), np.tile(np.arange(6), 2)
    assert one_shot_accuracy(embeddings, labels, 3, trials=300) == 0.0


def test_one_shot_singleton_classes_only_as_distractors():
    embeddings, labels = clusters(8, 3, noise=1e-3)
    keep = np.r_[np.arange(6), np.arange(6, 24, 3)]  # classes 0, 1 keep 3 samples, classes 2..7 keep one
    assert one_shot_accuracy(embeddings[keep], labels[keep], 8, trials=200) == 1.0


def test_one_shot_ties_count_as_fraction():
    # every embedding identical: all supports tie -> expected accuracy 1 / n_way under random tie-breaking
    assert one_shot_accuracy(np.ones((12, 4)), np.repeat(np.arange(6), 2), 4, trials=50) == pytest.approx(0.25)


def test_one_shot_deterministic_with_seed():
    rng = np.random.default_rng(2)
    embeddings, labels = rng.normal(size=(60, 8)), np.repeat(np.arange(12), 5)
    first = one_shot_accuracy(embeddings, labels, 5, trials=300, seed=3)
    assert one_shot_accuracy(embeddings, labels, 5, trials=300, seed=3) == first
    assert any(one_shot_accuracy(embeddings, labels, 5, trials=300, seed=s) != first for s in (4, 5, 6))


def test_one_shot_errors():
    embeddings, labels = clusters(3, 2, noise=0.1)
    with pytest.raises(ValueError, match="at least 5 classes"):
        one_shot_accuracy(embeddings, labels, 5)
    with pytest.raises(ValueError, match="at least 2 samples"):
        one_shot_accuracy(embeddings[:3], np.arange(3), 2)
    with pytest.raises(ValueError, match="n_way >= 2"):
        one_shot_accuracy(embeddings, labels, 1)
    with pytest.raises(ValueError, match="metric"):
        one_shot_accuracy(embeddings, labels, 2, metric="manhattan")
    with pytest.raises(ValueError, match="embeddings"):
        one_shot_accuracy(embeddings, labels[:-1], 2)


def test_plot_roc_writes_png(tmp_path):
    fpr, tpr, _ = roc_curve(SCORES, LABELS)
    curves = {"model": (fpr, tpr, roc_auc(SCORES, LABELS)), "chance-ish": (np.array([0, 1]), np.array([0, 1]), 0.5)}
    path = plot_roc(curves, tmp_path / "figures" / "roc.png")
    assert path == tmp_path / "figures" / "roc.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
