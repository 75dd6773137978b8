"""sei_core.ranking: merging the complementary runs' scores into one verdict per sample."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sei_core.ranking import score_records


def _rec(se, margin, labels, n_outputs=3):
    se = np.asarray(se, float)
    t, n = se.shape
    return {"signed_entropy": se, "entropy": np.abs(se), "margin": np.asarray(margin, float),
            "p_label": np.full((t, n), 0.5), "prediction": np.where(se >= 0, labels, (labels + 1) % 2),
            "probs_last": np.full((n, n_outputs), 1.0 / n_outputs), "labels": labels}


def test_score_records_merges_runs_like_the_paper():
    labels = np.array([0, 1, 0, 1])
    aux = np.array([[True, False, False, False], [False, True, False, False]])
    r1 = _rec([[1.0, -1.0, -0.5, 0.2], [1.0, -1.0, -0.5, 0.2]], np.zeros((2, 4)), labels)
    r2 = _rec([[0.3, 2.0, 0.1, 0.1], [0.3, 2.0, 0.1, 0.1]], np.zeros((2, 4)), labels)
    ms = score_records([r1, r2], aux, "sei", how="first")
    # run 1: SEI [2, -2, -1, .4], threshold = mean over aux {0} = 2
    # run 2: SEI [.6, 4, .2, .2], threshold = mean over aux {1} = 4
    np.testing.assert_allclose(ms.score, [0.6, -2.0, -1.0, 0.4])
    np.testing.assert_allclose(ms.threshold, [4.0, 2.0, 2.0, 2.0])
    assert ms.flagged.tolist() == [True, True, True, True]
    assert ms.source_run.tolist() == [1, 0, 0, 0] and ms.run_thresholds == [2.0, 4.0]
    # the released code's merge (the default): samples 2 and 3 kept their label in both runs
    ms = score_records([r1, r2], aux, "sei")
    np.testing.assert_allclose(ms.score, [0.6, -2.0, -0.4, 0.3])
    np.testing.assert_allclose(ms.threshold, [4.0, 2.0, 3.0, 3.0])
    # a method with its own threshold rule: AUM's 99th percentile of the aux samples
    r1["margin"] = np.array([[3.0, -1.0, 0.5, 2.0], [1.0, -1.0, 0.5, 2.0]])
    r2["margin"] = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    ms = score_records([r1, r2], aux, "aum_p99", how="first")
    np.testing.assert_allclose(ms.score, [0.0, -1.0, 0.5, 2.0])
    assert ms.run_thresholds == pytest.approx([2.0, 1.0])
    assert ms.flagged.tolist() == [True, True, True, False]


def test_score_records_single_run_leaves_aux_unscored():
    labels = np.array([0, 1, 0])
    r = _rec([[1.0, -1.0, 0.5]], np.zeros((1, 3)), labels)
    ms = score_records([r], np.array([[False, True, False]]), "sei")
    assert math.isnan(ms.score[1]) and not ms.flagged[1] and ms.source_run.tolist() == [0, -1, 0]
    with pytest.raises(ValueError, match="unknown method"):
        score_records([r], np.array([[False, True, False]]), "nope")
