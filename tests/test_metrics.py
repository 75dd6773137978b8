import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from sei_core.metrics import auroc, average_precision, detection_report, precision_recall_f1


def test_precision_recall_f1_hand_case():
    flagged = np.array([1, 1, 1, 0, 0, 0], bool)
    noisy = np.array([1, 1, 0, 1, 0, 0], bool)
    r = precision_recall_f1(flagged, noisy)
    assert r == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})


def test_precision_recall_f1_zero_division_is_zero():
    noisy = np.array([1, 0, 0], bool)
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert precision_recall_f1(np.zeros(3, bool), noisy) == zero
    r = precision_recall_f1(np.array([1, 0, 0], bool), np.zeros(3, bool))
    assert r == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    r = precision_recall_f1(np.array([0, 1, 0], bool), noisy)
    assert r == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_auroc_hand_cases():
    noisy = np.array([1, 1, 0, 0], bool)
    assert auroc([0.1, 0.2, 0.3, 0.4], noisy) == 1.0  # noisy score lowest: perfect
    assert auroc([0.4, 0.3, 0.2, 0.1], noisy) == 0.0
    assert auroc([1, 1, 1, 1], noisy) == 0.5  # all tied
    # pairs (noisy, clean): (0.1,0.2)✓ (0.1,0.5)✓ (0.3,0.2)✗ (0.3,0.5)✓ → 3/4
    assert auroc([0.1, 0.2, 0.3, 0.5], [1, 0, 1, 0]) == 0.75
    # one tie between a noisy and a clean sample counts ½: (0.1,0.2)✓ (0.2,0.2)½ → 3/4
    assert auroc([0.1, 0.2, 0.2], [1, 1, 0]) == 0.75


def test_average_precision_hand_case():
    # ranked by low score: noisy (P=1, R=½), clean, noisy (P=⅔, R=1) → ½·1 + ½·⅔
    assert average_precision([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # a tie enters as one threshold: {noisy, clean} at 0.1 → P=½, R=1
    assert average_precision([0.1, 0.1, 0.9], [1, 0, 0]) == pytest.approx(0.5)


def test_undefined_cases_are_nan():
    assert np.isnan(auroc([0.1, 0.2], [0, 0]))
    assert np.isnan(auroc([0.1, 0.2], [1, 1]))
    assert np.isnan(average_precision([0.1, 0.2], [0, 0]))
    assert average_precision([0.1, 0.2], [1, 1]) == 1.0


def test_nonfinite_scores_rejected():
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="entries"):
        average_precision([0.1, 0.2], [0, 1, 0])


@pytest.mark.parametrize("seed", range(5))
def test_ranking_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 300
    noisy = rng.random(n) < 0.2
    scores = rng.normal(size=n) - noisy * rng.uniform(0, 2)
    if seed % 2:
        scores = np.round(scores, 1)  # many ties
    assert auroc(scores, noisy) == pytest.approx(roc_auc_score(noisy, -scores), abs=1e-12)
    assert average_precision(scores, noisy) == pytest.approx(
        average_precision_score(noisy, -scores), abs=1e-12
    )
    flagged = scores < np.quantile(scores, 0.25)
    r = precision_recall_f1(flagged, noisy)
    assert r["precision"] == pytest.approx(precision_score(noisy, flagged))
    assert r["recall"] == pytest.approx(recall_score(noisy, flagged))
    assert r["f1"] == pytest.approx(f1_score(noisy, flagged))


def test_detection_report():
    report = detection_report([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0], [1, 0, 1, 0])
    assert report == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "auroc": 0.75, "average_precision": 5 / 6}
    )
