import math

import numpy as np
import pytest

from sei_core import scores
from sei_core.baselines import (
    aum,
    aum_threshold,
    confident_learning,
    cross_entropy_loss,
    drop_aux_columns,
    mistakenness,
    small_loss_gmm,
)
from sei_core.methods import METHODS
from sei_core.metrics import auroc
from sei_core.bench.noise import symmetric_noise


def test_aum_hand_case():
    margins = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -0.5]])
    np.testing.assert_allclose(aum(margins), [2.0, -1.0, 0.0])


def test_aum_threshold():
    values = np.r_[np.arange(101.0), [500.0, -3.0]]
    is_thr = np.r_[np.ones(101, bool), [False, False]]
    tau = aum_threshold(values, is_thr)
    assert tau == pytest.approx(99.0)
    np.testing.assert_array_equal(scores.flag(values, tau)[-2:], [False, True])
    assert aum_threshold(values, is_thr, percentile=50) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="no threshold samples"):
        aum_threshold(values, np.zeros(103, bool))


def test_mistakenness_hand_case():
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    labels = np.array([0, 0, 0])
    # row 0: right (tie → class 0), H = ln 2, c = ½ → m = (1 - ½)/2 = ¼
    # row 1: right, H = 0, c = 1 → m = 0
    # row 2: wrong, H = -(0.2 ln 0.2 + 0.8 ln 0.8), c = e^{-H} → m = (1 + c)/2
    h2 = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    expected = [-0.25, 0.0, -(1 + math.exp(-h2)) / 2]
    np.testing.assert_allclose(mistakenness(probs, labels), expected)
    # confidence = max p: row 0 c=½ → ¼; row 1 c=1 → 0; row 2 c=0.8 → 0.9
    np.testing.assert_allclose(mistakenness(probs, labels, "max_prob"), [-0.25, 0.0, -0.9])
    with pytest.raises(ValueError):
        mistakenness(probs, labels, "logits")


def test_cross_entropy_loss():
    np.testing.assert_allclose(
        cross_entropy_loss([1.0, math.exp(-2), 0.0]), [0.0, 2.0, -math.log(1e-12)]
    )


def test_small_loss_gmm_separates_bimodal_losses():
    rng = np.random.default_rng(0)
    losses = np.r_[rng.normal(0.2, 0.05, 180), rng.normal(3.0, 0.3, 20)]
    score, flagged = small_loss_gmm(losses, seed=0)
    np.testing.assert_array_equal(flagged, np.r_[np.zeros(180, bool), np.ones(20, bool)])
    assert score[:180].min() > 0.9 and score[180:].max() < 0.1


def test_small_loss_gmm_degenerate():
    score, flagged = small_loss_gmm(np.full(5, 0.7))
    np.testing.assert_array_equal(score, 1.0)
    assert not flagged.any()


def test_drop_aux_columns():
    p = np.array([[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(drop_aux_columns(p, 2), [[0.4, 0.6], [0.5, 0.5]])


def _synthetic_pred_probs(n=2000, k=4, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += 3.0
    return true, scores.softmax(logits)


def test_confident_learning_finds_planted_errors():
    true, probs = _synthetic_pred_probs()
    given = symmetric_noise(true, 4, 0.05, seed=1)
    is_noisy = given != true
    score, flagged = confident_learning(probs, given)
    assert flagged.dtype == bool and score.shape == (len(true),)
    recall = (flagged & is_noisy).sum() / is_noisy.sum()
    precision = (flagged & is_noisy).sum() / flagged.sum()
    assert recall > 0.8 and precision > 0.5
    assert auroc(score, is_noisy) > 0.95


def test_confident_learning_drops_aux_column():
    true, probs = _synthetic_pred_probs(n=500)
    given = symmetric_noise(true, 4, 0.05, seed=1)
    with_aux = np.c_[probs * 0.9, np.full(len(true), 0.1)]
    s_aux, f_aux = confident_learning(with_aux, given, n_classes=4)
    s, f = confident_learning(probs, given)
    np.testing.assert_allclose(s_aux, s)
    np.testing.assert_array_equal(f_aux, f)
    with pytest.raises(ValueError, match="auxiliary"):
        confident_learning(with_aux, np.r_[given[:-1], 4], n_classes=4)


def _records(t=6, n=40, k=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    stats = [scores.epoch_statistics(rng.normal(0, 2, (n, k + 1)), labels) for _ in range(t)]
    fields = ("signed_entropy", "entropy", "margin", "p_label", "prediction")
    rec = {f: np.stack([getattr(s, f) for s in stats]).astype(np.float64) for f in fields}
    rec["probs_last"] = scores.softmax(rng.normal(0, 2, (n, k + 1)))
    rec["labels"] = labels
    return rec


def test_methods_registry():
    assert set(METHODS) == {
        "sei", "sci", "confidence", "unsigned_entropy_integral", "se_last", "se_middle", "sei_early", "sei_late",
        "aum", "aum_p99", "mistakenness", "small_loss_gmm",
    }
    rec = _records()
    for name, method in METHODS.items():
        out = method(rec)
        assert out.shape == (40,) and np.isfinite(out).all(), name
    np.testing.assert_allclose(METHODS["sei"](rec), rec["signed_entropy"].sum(axis=0), rtol=1e-6)
    early = rec["signed_entropy"][:3].sum(axis=0)
    np.testing.assert_allclose(METHODS["sei_early"](rec), early, rtol=1e-6)
    np.testing.assert_allclose(METHODS["se_middle"](rec), rec["signed_entropy"][3])
    np.testing.assert_allclose(METHODS["aum"](rec), rec["margin"].mean(axis=0), rtol=1e-6)

    sign = np.where(rec["prediction"] == rec["labels"], 1.0, -1.0)
    np.testing.assert_allclose(
        METHODS["sci"](rec), (sign * (np.log(4) - rec["entropy"])).sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(METHODS["confidence"](rec), rec["p_label"].mean(axis=0), rtol=1e-6)


def test_methods_say_what_they_are_computed_on_and_how_they_flag():
    rec = _records()
    aux = np.zeros(40, bool)
    aux[:8] = True
    for name, m in METHODS.items():
        assert m.name == name and m.computed_on and m.threshold_rule
        tau = m.threshold(m(rec), aux)
        assert np.isfinite(tau), name
    s = METHODS["aum_p99"](rec)
    assert METHODS["aum_p99"].threshold(s, aux) == pytest.approx(np.percentile(s[aux], 99))
    assert METHODS["aum"].threshold(s, aux) == pytest.approx(s[aux].mean())
    assert METHODS["small_loss_gmm"].threshold(s, aux) == 0.5


def test_small_loss_gmm_fit_mask_leaves_out_samples():
    rng = np.random.default_rng(0)
    losses = np.r_[rng.normal(0.2, 0.05, 180), rng.normal(3.0, 0.3, 20), np.full(5, 50.0)]
    fit = np.r_[np.ones(200, bool), np.zeros(5, bool)]
    score, flagged = small_loss_gmm(losses, fit_mask=fit)
    assert flagged[:180].sum() == 0 and flagged[180:200].all() and flagged[200:].all()
    # fitted on everything, the five outliers would form their own component
    _, flagged_all = small_loss_gmm(losses)
    assert flagged_all[180:200].sum() < 20
