"""Scores against hand-computed values."""

import math

import numpy as np
import pytest

from sei_core import scores as S

LN2 = math.log(2)


def test_entropy_of_uniform_and_one_hot():
    assert S.entropy(np.array([[0.5, 0.5], [1.0, 0.0]])) == pytest.approx([LN2, 0.0])
    assert S.entropy(np.full(4, 0.25)) == pytest.approx(math.log(4))


def test_signed_entropy_sign_follows_agreement():
    p = np.array([[0.8, 0.2], [0.8, 0.2], [0.3, 0.7]])
    y = np.array([0, 1, 1])
    h = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    h3 = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    assert S.signed_entropy(p, y) == pytest.approx([h, -h, h3])


def test_epoch_statistics_matches_hand_values():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    y = np.array([0, 1])
    st = S.epoch_statistics(logits, y)
    p0 = np.exp([2, 0, 0]) / np.exp([2, 0, 0]).sum()
    assert st.prediction.tolist() == [0, 2]
    assert st.p_label[0] == pytest.approx(p0[0], rel=1e-6)
    assert st.margin.tolist() == pytest.approx([2.0, -2.0])
    assert st.signed_entropy[0] > 0 > st.signed_entropy[1]
    assert st.entropy[1] == pytest.approx(-st.signed_entropy[1])


def test_sei_and_windows():
    se = np.array([[1.0, -1.0], [2.0, -0.5], [0.5, 0.5], [1.0, -2.0]])  # T=4, N=2
    assert S.signed_entropy_integral(se).tolist() == [4.5, -3.0]
    assert S.early_sei(se).tolist() == [3.0, -1.5]
    assert S.late_sei(se).tolist() == [1.5, -1.5]
    assert S.windowed_sei(se, 1, 3).tolist() == [2.5, 0.0]
    assert S.se_last_epoch(se).tolist() == [1.0, -2.0]
    assert S.se_middle_epoch(se).tolist() == [0.5, 0.5]
    assert S.unsigned_entropy_integral(np.abs(se)).tolist() == [-4.5, -4.0]
    with pytest.raises(ValueError):
        S.windowed_sei(se, 3, 3)


def test_aux_threshold_and_flag():
    s = np.array([5.0, -4.0, -1.0, -3.0, 2.0])
    aux = np.array([False, True, False, True, False])
    assert S.aux_threshold(s, aux) == -3.5
    assert S.flag(s, -3.5).tolist() == [False, True, False, False, False]
    with pytest.raises(ValueError):
        S.aux_threshold(s, np.zeros(5, bool))


def test_aux_sets_are_disjoint_and_sized():
    sets = S.choose_aux_sets(100, 4, n_runs=2, seed=3)
    assert [len(s) for s in sets] == [20, 20]
    assert not set(sets[0]) & set(sets[1])
    assert S.choose_aux_sets(100, 4, 2, seed=3)[0].tolist() == sets[0].tolist()


def test_combine_runs_scores_every_sample_from_a_run_where_it_kept_its_label():
    scores = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    aux = np.array([[True, False, False], [False, True, False]])
    score, thr, src = S.combine_runs(scores, np.array([-1.0, -2.0]), aux, how="first")
    assert score.tolist() == [10.0, 2.0, 3.0]
    assert thr.tolist() == [-2.0, -1.0, -1.0]
    assert src.tolist() == [1, 0, 0]
    score, _, src = S.combine_runs(scores[:1], np.array([-1.0]), aux[:1])
    assert math.isnan(score[0]) and src[0] == -1
    with pytest.raises(ValueError, match="how"):
        S.combine_runs(scores, np.array([-1.0, -2.0]), aux, how="max")


def test_combine_runs_averages_the_runs_where_a_sample_kept_its_label():
    # the released code's merge: a sample ordinary in both runs gets the mean of its two
    # scores and of the two runs' thresholds; one auxiliary in a run takes the other's
    scores = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    aux = np.array([[True, False, False], [False, True, False]])
    score, thr, src = S.combine_runs(scores, np.array([-1.0, -2.0]), aux)
    assert score.tolist() == [10.0, 2.0, 16.5]
    assert thr.tolist() == [-2.0, -1.0, -1.5]
    assert src.tolist() == [1, 0, 0]


def test_suggested_label_is_most_frequent_recent_prediction():
    preds = np.array([[1, 0], [1, 2], [0, 2]])  # L=3 epochs, N=2 (2 is the aux class)
    probs = np.zeros((3, 2, 3))
    probs[:, 0] = [0.3, 0.6, 0.1]
    probs[:, 1] = [0.2, 0.1, 0.7]
    label, p = S.suggested_labels(preds, probs, n_classes=2)
    assert label.tolist() == [1, 0]  # sample 1: aux predictions ignored, one vote for class 0
    assert p.tolist() == pytest.approx([0.6, 0.2])


def test_agreement_is_plus_minus_one():
    pred = np.array([[0, 1, 2], [1, 1, 0]])  # T=2, N=3
    labels = np.array([0, 1, 1])
    assert S.agreement(pred, labels).tolist() == [[1, 1, -1], [-1, 1, -1]]


def test_signed_certainty_integral_hand_values():
    # K' = 4 outputs: log K' = ln 4. Sample 0 agrees confidently twice (H = 0);
    # sample 1 disagrees confidently (H = 0) then agrees while unsure (H = ln 4);
    # sample 2 disagrees twice with H = ln 2.
    ln4 = math.log(4)
    sign = np.array([[1.0, -1.0, -1.0], [1.0, 1.0, -1.0]])
    h = np.array([[0.0, 0.0, LN2], [0.0, ln4, LN2]])
    sci = S.signed_certainty_integral(sign, h, 4)
    assert sci == pytest.approx([2 * ln4, -ln4, -2 * (ln4 - LN2)])
    # SEI of the same epochs: [0, ln4, -2 ln2]; SEI + SCI = ln K' · Σ_t s_t
    sei = S.signed_entropy_integral(sign * h)
    assert sei + sci == pytest.approx(ln4 * sign.sum(axis=0))


def test_signed_certainty_integral_ranks_confidently_wrong_below_unsure_wrong():
    # the case SEI gets backwards: a mislabeled sample whose true class is learned
    # confidently has SE ≈ 0 (looks clean); SCI puts it at the bottom
    sign = np.array([[-1.0, -1.0, 1.0]] * 3)
    h = np.array([[0.01, 1.2, 0.01]] * 3)
    sei = S.signed_entropy_integral(sign * h)
    sci = S.signed_certainty_integral(sign, h, 5)
    assert sei[0] > sei[1] and sci[0] < sci[1] < sci[2]


def test_signed_certainty_integral_checks_inputs():
    with pytest.raises(ValueError):
        S.signed_certainty_integral(np.ones((2, 3)), np.ones((2, 2)), 4)
    with pytest.raises(ValueError):
        S.signed_certainty_integral(np.ones((2, 3)), np.ones((2, 3)), 1)


def test_label_confidence_is_mean_label_probability():
    p = np.array([[0.9, 0.1, 0.5], [0.7, 0.3, 0.5]])
    assert S.label_confidence(p) == pytest.approx([0.8, 0.2, 0.5])
