"""Error-count estimators, the count rule and the review projection (sei_core.count)."""

import math

import numpy as np
import pytest

from sei_core import count as C
from sei_core.ranking import count_errors, score_records


def _two_runs(n=2000, alpha=0.3, seed=0, aux_mean=-1.0):
    """Scores of two complementary runs: mislabeled ~ N(-1, .5), clean ~ N(1, .5), the
    auxiliary samples of each run ~ N(aux_mean, .5)."""
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < alpha
    labels = rng.integers(0, 4, n)
    aux = np.zeros((2, n), bool)
    perm = rng.permutation(n)
    aux[0, perm[: n // 5]] = True
    aux[1, perm[n // 5: 2 * n // 5]] = True
    s = np.where(noisy, rng.normal(-1, 0.5, n), rng.normal(1, 0.5, n))
    scores = np.stack([s + rng.normal(0, 0.1, n), s + rng.normal(0, 0.1, n)])
    scores[aux] = rng.normal(aux_mean, 0.5, aux.sum())
    return scores, aux, labels, noisy


def test_bbe_proportion_hand_case():
    # mixture: 2 of 4 scores sit where all the reference does -> alpha = 0.5 at t = 0
    mix = np.array([0.0, 0.0, 5.0, 6.0])
    ref = np.array([0.0, 0.0, 0.0])
    a, lo, hi = C.bbe_proportion(mix, ref, delta=0.1, gamma=0.0)
    assert a == pytest.approx(0.5)
    eps = math.sqrt(math.log(40) / 8) + math.sqrt(math.log(40) / 6)
    assert lo == 0.0 and hi == pytest.approx(min(1.0, 0.5 + eps))


@pytest.mark.parametrize("estimator", [C.bbe_count, C.mixture_count])
def test_estimators_recover_a_separable_mixture(estimator):
    scores, aux, labels, noisy = _two_runs()
    est = estimator(scores, aux, labels)
    assert abs(est.count - noisy.sum()) / noisy.sum() < 0.05
    assert est.low <= noisy.sum() <= est.high
    truth_c = np.bincount(labels[noisy], minlength=4)
    np.testing.assert_allclose(est.per_class_count, truth_c, rtol=0.15)
    assert est.class_sizes.tolist() == np.bincount(labels, minlength=4).tolist()
    assert est.share == pytest.approx(est.count / len(labels))


def test_bbe_underestimates_when_auxiliary_samples_are_easier():
    # the bias the benchmark measures: auxiliary samples scoring lower than natural errors
    scores, aux, labels, noisy = _two_runs(aux_mean=-2.0)
    assert C.bbe_count(scores, aux).count < 0.8 * noisy.sum()


def test_estimators_check_inputs():
    with pytest.raises(ValueError, match="auxiliary"):
        C.bbe_count(np.zeros((1, 3)), np.zeros((1, 3), bool))
    with pytest.raises(ValueError, match="shape"):
        C.mixture_count(np.zeros((2, 3)), np.ones((1, 3), bool))


def test_cleanlab_count_matches_cleanlab_and_splits_by_class():
    from cleanlab.count import num_label_issues

    rng = np.random.default_rng(1)
    n, k = 600, 3
    true = rng.integers(0, k, n)
    given = np.where(rng.random(n) < 0.2, (true + 1) % k, true)
    p = np.full((n, k), 0.1)
    p[np.arange(n), true] = 0.8
    p += rng.random((n, k)) * 0.05
    p /= p.sum(axis=1, keepdims=True)
    est = C.cleanlab_count(given, p, n_boot=30)
    assert round(est.count) == num_label_issues(given, p, estimation_method="off_diagonal_calibrated")
    assert abs(est.count - (given != true).sum()) < 0.1 * (given != true).sum()
    assert est.per_class_count.sum() == pytest.approx(est.count)
    assert est.low <= est.count <= est.high and est.high > est.low


def test_run_probabilities_average_the_ordinary_runs_without_the_aux_column():
    probs = [np.array([[[0.5, 0.3, 0.2], [0.0, 0.0, 1.0]]]), np.array([[[0.1, 0.1, 0.8], [0.2, 0.6, 0.2]]])]
    aux = np.array([[False, True], [True, False]])
    p = C.run_probabilities(probs, aux, 2)
    np.testing.assert_allclose(p, [[0.5 / 0.8, 0.3 / 0.8], [0.25, 0.75]])


def test_flag_lowest_global_per_class_and_nan():
    s = np.array([3.0, 1.0, np.nan, 0.0, 2.0, 5.0])
    flagged, thr = C.flag_lowest(s, 2)
    assert flagged.tolist() == [False, True, False, True, False, False]
    assert np.all(thr[[0, 1, 3, 4, 5]] == 2.0) and math.isnan(thr[2])  # unscored: no threshold
    labels = np.array([0, 0, 0, 1, 1, 1])
    flagged, thr = C.flag_lowest(s, 0, labels, np.array([1, 3]))
    assert flagged.tolist() == [False, True, False, True, True, True]
    assert thr[0] == 3.0 and np.isinf(thr[3])
    assert C.flag_lowest(s, 0)[0].sum() == 0


def test_count_rule_in_score_records_flags_the_k_lowest():
    scores, aux, labels, noisy = _two_runs(n=500)
    recs = [{"p_label": s[None, :], "labels": np.where(a, 4, labels), "probs_last": np.zeros((500, 5))}
            for s, a in zip(scores, aux)]
    est = count_errors(recs, aux, method="confidence")
    ms = score_records(recs, aux, "confidence@count", count=est, per_class=False)
    assert ms.rule == "count" and ms.method == "confidence" and ms.count is est
    assert ms.flagged.sum() == est.k
    assert ms.score[ms.flagged].max() < ms.score[~ms.flagged].min()
    per = score_records(recs, aux, "confidence", "count", count=est, per_class=True)
    assert per.flagged.sum() == est.per_class_k().sum()
    own = score_records(recs, aux, "confidence")
    assert own.rule == "own" and own.count is None
