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


def test_balanced_power_is_full_while_few_images_are_flagged_and_none_when_many_are():
    from sei_core.scores import BALANCED_POWER, balanced_power

    assert balanced_power(0.1) == balanced_power(0.25) == BALANCED_POWER
    assert balanced_power(0.3) == pytest.approx(BALANCED_POWER / 2)
    assert balanced_power(0.35) == balanced_power(0.8) == 0.0
    assert balanced_power(float("nan")) == BALANCED_POWER


def test_balanced_rule_lowers_the_threshold_of_classes_rarer_than_the_auxiliary_class():
    from sei_core.scores import frequency_scaled_thresholds

    # 6 samples trained on: class 0 ×3, class 1 ×1, auxiliary (label 2) ×2
    trained = np.array([0, 0, 0, 1, 2, 2])
    np.testing.assert_allclose(frequency_scaled_thresholds(0.4, trained, 2, power=1), [0.4, 0.4, 0.4, 0.2, 0.4, 0.4])
    np.testing.assert_allclose(frequency_scaled_thresholds(0.4, trained, 2, power=0.5),
                               [0.4] * 3 + [0.4 * 0.5 ** 0.5] + [0.4] * 2)
    with pytest.raises(ValueError, match="auxiliary"):
        frequency_scaled_thresholds(0.4, np.array([0, 1]), 2)
    # two complementary runs; p_label per run: the rare class 1 (samples 3, 4) gets little probability
    labels = np.array([0, 0, 0, 0, 1, 1, 0, 0])
    aux = np.zeros((2, 8), bool)
    aux[0, [6, 7]] = True
    aux[1, [0, 1]] = True
    recs = []
    for r in range(2):
        rec = _rec(np.ones((2, 8)), np.zeros((2, 8)), np.where(aux[r], 2, labels))
        rec["p_label"] = np.tile([0.3, 0.3, 0.8, 0.1, 0.25, 0.12, 0.3, 0.3], (2, 1))
        recs.append(rec)
    own = score_records(recs, aux, "confidence", "own")
    bal = score_records(recs, aux, "confidence@balanced")
    assert bal.rule == "balanced" and bal.run_thresholds == own.run_thresholds
    # τ = mean p of the aux samples = 0.3 in both runs
    np.testing.assert_allclose(own.threshold, 0.3)
    # sample 3 (class 0, p 0.1) is flagged by both; the class-1 samples: 2 of 8 vs 2 aux → unchanged
    assert own.flagged.tolist() == bal.flagged.tolist()
    # class 1 rarer than the auxiliary class (one sample against two), but the own rule flags half
    # of each run's images (3 of 6): heavy noise, where a rare class's flags are mostly real, so
    # the threshold is not lowered (balanced_power 0)
    labels2 = labels.copy()
    labels2[5] = 0
    recs2 = [dict(r, labels=np.where(a, 2, labels2)) for r, a in zip(recs, aux)]
    bal2 = score_records(recs2, aux, "confidence", "balanced")
    np.testing.assert_allclose(bal2.threshold, score_records(recs2, aux, "confidence", "own").threshold)
    # the same class where the own rule flags one image in six (labels mostly right): its
    # threshold is 0.5 · ½^¾ = 0.297, so sample 4 (p 0.45) is kept, flagged by the plain rule
    recs3 = [dict(r, p_label=np.tile([0.5, 0.5, 0.9, 0.9, 0.45, 0.9, 0.5, 0.5], (2, 1))) for r in recs2]
    bal3, own3 = score_records(recs3, aux, "confidence", "balanced"), score_records(recs3, aux, "confidence", "own")
    assert bal3.threshold[4] == pytest.approx(0.5 * 0.5 ** 0.75)
    assert not bal3.flagged[4] and own3.flagged[4] and own3.flagged.sum() == 1
    with pytest.raises(ValueError, match="probability scores"):
        score_records(recs, aux, "sei", "balanced")
