"""How many labels are wrong: estimates of the number of mislabeled samples, with an interval.

Pure functions over scores, auxiliary masks, labels and probabilities (as in
``cleanlab.count``). Conventions as in :mod:`sei_core.scores`: scores are **lower = more
likely mislabeled**; per-run arrays are ``(R, N)`` for ``R`` complementary runs, with
``is_aux`` True where the sample was relabeled to the auxiliary class in that run.

Three estimators, compared on the benchmark (docs/benchmarks.md):

- :func:`bbe_count` — mixture-proportion estimation (Best Bin Estimation, Garg et al. 2021):
  the auxiliary samples are a sample of the *mislabeled* distribution, the ordinary samples a
  mixture of it (share ``α``) and the clean one.
- :func:`mixture_count` — a 2-component Gaussian mixture on the score of the ordinary samples.
- :func:`cleanlab_count` — cleanlab's calibrated confident-joint count on class probabilities
  (out-of-sample ones from cross-validation in the benchmark; the run's own recorded
  probabilities in the app, see :func:`run_probabilities`).

Auxiliary samples are *easier* to spot than natural confusions (their label is a class no
image belongs to), so an estimator that takes them as the mislabeled distribution is biased:
the benchmark measures that bias.

:func:`flag_lowest` turns a count into flags (the ``count`` threshold rule of
:data:`sei_core.methods.RULES`). What an expert's decisions say about the count is
:mod:`sei_core.review_count`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

#: Estimators by name, with how the app explains them (see the module docstring).
ESTIMATOR_TEXT = {
    "bbe": "how many ordinary images score like the auxiliary (known-mislabeled) ones "
           "(Best Bin Estimation, Garg et al. 2021)",
    "mixture": "a two-component mixture fitted to the scores",
    "cleanlab": "cleanlab's calibrated count on the model's probabilities",
}
ESTIMATORS = tuple(ESTIMATOR_TEXT)

#: How to read an estimate (measured: every estimator was above the true number in every cell of
#: the benchmark grid, 1.1–4.1 times for the app's, because images the model finds hard score
#: like mislabeled ones; docs/benchmarks.md).
COUNT_CAVEAT = ("Read it as an upper bound: it also counts images the model finds hard, and on this "
                "project's benchmark it was above the true number in every cell (1.1 to 4.1 times).")


@dataclass(frozen=True)
class CountEstimate:
    """An estimated number of mislabeled samples, overall and per given class.

    ``count`` is in samples (a float: an expectation, not a rounded number); ``low``/``high``
    bound it (the estimator's interval, see each function). ``per_class_*`` are ``(K,)``
    arrays over the given labels (NaN where a class could not be estimated); ``class_sizes``
    is how many samples carry each given label.
    """

    estimator: str
    n_samples: int
    count: float
    low: float
    high: float
    per_class_count: np.ndarray = field(default_factory=lambda: np.zeros(0))
    per_class_low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    per_class_high: np.ndarray = field(default_factory=lambda: np.zeros(0))
    class_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def share(self) -> float:
        """``count / n_samples``: the estimated share of mislabeled samples."""
        return self.count / self.n_samples if self.n_samples else float("nan")

    @property
    def k(self) -> int:
        """The count rounded to a whole number of samples, within ``[0, n_samples]``."""
        return int(np.clip(np.rint(self.count), 0, self.n_samples))

    def per_class_k(self) -> np.ndarray:
        """Per-class counts rounded, within ``[0, class size]`` (0 where not estimated)."""
        c = np.nan_to_num(self.per_class_count, nan=0.0)
        return np.clip(np.rint(c), 0, self.class_sizes).astype(np.int64)

    def describe(self) -> str:
        """One line for people: ``"about 212 (21.2 %), between 180 and 247"``."""
        return (f"about {self.count:.0f} ({100 * self.share:.1f} %), "
                f"between {self.low:.0f} and {self.high:.0f}")


def _per_run(scores: np.ndarray, is_aux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    is_aux = np.atleast_2d(np.asarray(is_aux, dtype=bool))
    if scores.shape != is_aux.shape:
        raise ValueError(f"scores {scores.shape} and is_aux {is_aux.shape} must have the same shape (R, N)")
    if not is_aux.any():
        raise ValueError("no auxiliary samples: the estimate needs at least one")
    if not (~is_aux).any():
        raise ValueError("no ordinary (non-auxiliary) samples to estimate from")
    return scores, is_aux


def _labels(labels: np.ndarray | None, n: int, n_classes: int | None) -> tuple[np.ndarray, int]:
    if labels is None:
        return np.zeros(n, dtype=np.int64), 0
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    k = int(n_classes if n_classes is not None else (labels.max() + 1 if n else 0))
    return labels, k


def bbe_proportion(mixture: np.ndarray, reference: np.ndarray, *, delta: float = 0.1,
                   gamma: float = 0.01) -> tuple[float, float, float]:
    """Best Bin Estimation of the share of the reference distribution in a mixture.

    With ``q_U(t)`` the fraction of ``mixture`` scores ``≤ t`` and ``q_A(t)`` that of the
    ``reference`` (known mislabeled) scores, and ``ε = √(log(4/δ)/(2 n_U)) + √(log(4/δ)/(2 n_A))``
    (the DKW deviation of both empirical CDFs), Garg et al. (2021, "Mixture Proportion
    Estimation and PU Learning: A Modern Approach") choose the "top bin" — here the low scores —

        t̂ = argmin_t  q_U(t)/q_A(t) + (1 + γ) ε / q_A(t)

    and estimate ``α̂ = q_U(t̂)/q_A(t̂)``. If the clean samples put (almost) no mass below
    ``t̂`` and the reference scores like the mislabeled part of the mixture, ``α̂ → α``.
    The interval is ``α̂ ± (1 + γ) ε / q_A(t̂)`` (their bound's deviation term, with
    probability about ``1 − δ``), clipped to ``[0, 1]``.

    Returns ``(α̂, low, high)``.
    """
    u = np.sort(np.asarray(mixture, dtype=np.float64))
    a = np.sort(np.asarray(reference, dtype=np.float64))
    u, a = u[np.isfinite(u)], a[np.isfinite(a)]
    if u.size == 0 or a.size == 0:
        raise ValueError("need at least one mixture and one reference score")
    t = np.unique(a)
    q_u = np.searchsorted(u, t, side="right") / u.size
    q_a = np.searchsorted(a, t, side="right") / a.size
    eps = np.sqrt(np.log(4 / delta) / (2 * u.size)) + np.sqrt(np.log(4 / delta) / (2 * a.size))
    bound = q_u / q_a + (1 + gamma) * eps / q_a
    best = int(np.argmin(bound))
    alpha = float(min(q_u[best] / q_a[best], 1.0))
    dev = float((1 + gamma) * eps / q_a[best])
    return alpha, max(0.0, alpha - dev), min(1.0, alpha + dev)


def bbe_count(scores: np.ndarray, is_aux: np.ndarray, labels: np.ndarray | None = None, *,
              n_classes: int | None = None, delta: float = 0.1, gamma: float = 0.01) -> CountEstimate:
    """Number of mislabeled samples by Best Bin Estimation (:func:`bbe_proportion`).

    The ordinary samples of every run are the mixture, the auxiliary samples of every run
    the reference (pooled over runs: each run's scores are on the same scale). The count is
    ``α̂ · N`` over all ``N`` samples (the auxiliary sets are random, so they hold mislabeled
    samples at the same rate). Per class ``c``: the ordinary samples with given label ``c``
    against all auxiliary samples, ``α̂_c · N_c``.

    Parameters
    ----------
    scores : (R, N) each run's score of every sample (lower = more suspicious).
    is_aux : (R, N) boolean auxiliary masks.
    labels : (N,) given labels, for the per-class counts (optional).
    n_classes : K (default ``labels.max() + 1``).
    delta, gamma : BBE's confidence level and its slack (Garg et al. use 0.1 and 0.01).
    """
    scores, is_aux = _per_run(scores, is_aux)
    n = scores.shape[1]
    ref = scores[is_aux]
    alpha, lo, hi = bbe_proportion(scores[~is_aux], ref, delta=delta, gamma=gamma)
    labels, k = _labels(labels, n, n_classes)
    sizes = np.bincount(labels[labels >= 0], minlength=k)[:k] if k else np.zeros(0, dtype=np.int64)
    pc = np.full((3, k), np.nan)
    lab2 = np.broadcast_to(labels, scores.shape)
    for c in range(k):
        mine = (~is_aux) & (lab2 == c)
        if mine.any():
            pc[:, c] = np.array(bbe_proportion(scores[mine], ref, delta=delta, gamma=gamma)) * sizes[c]
    return CountEstimate("bbe", n, alpha * n, lo * n, hi * n, pc[0], pc[1], pc[2], sizes)


def mixture_count(scores: np.ndarray, is_aux: np.ndarray, labels: np.ndarray | None = None, *,
                  n_classes: int | None = None, seed: int = 0, z: float = 1.96) -> CountEstimate:
    """Number of mislabeled samples from a 2-component Gaussian mixture on the score.

    A 1-D two-component GMM (``sklearn.mixture.GaussianMixture``) is fitted to the ordinary
    samples' scores of every run, started from the auxiliary samples' mean (the mislabeled
    component) and the ordinary samples' upper-half mean. ``π_i`` = the posterior of the
    lower-mean component, averaged over the runs where sample ``i`` kept its label; the count
    is ``Σ_i π_i`` (per class: over the samples of that given label). The interval is
    ``Σ π_i ± z √(Σ π_i (1 − π_i))``, the spread of a sum of independent Bernoulli(π_i) — it
    leaves out the error of the fit itself.
    """
    from sklearn.mixture import GaussianMixture

    scores, is_aux = _per_run(scores, is_aux)
    n = scores.shape[1]
    ordinary = scores[~is_aux]
    ordinary = ordinary[np.isfinite(ordinary)]
    lo_mean = float(np.nanmean(scores[is_aux]))
    hi_mean = float(ordinary[ordinary >= np.median(ordinary)].mean())
    if not np.isfinite(lo_mean) or hi_mean <= lo_mean or np.ptp(ordinary) == 0:
        post = np.zeros(scores.shape)
    else:
        gmm = GaussianMixture(2, means_init=[[lo_mean], [hi_mean]], random_state=seed, reg_covar=1e-6)
        gmm.fit(ordinary[:, None])
        noisy = int(np.argmin(gmm.means_[:, 0]))
        flat = np.nan_to_num(scores, nan=hi_mean).reshape(-1, 1)
        post = gmm.predict_proba(flat)[:, noisy].reshape(scores.shape)
    use = ~is_aux & np.isfinite(scores)
    runs = use.sum(axis=0)
    pi = np.divide(np.where(use, post, 0.0).sum(axis=0), runs, out=np.zeros(n), where=runs > 0)
    labels, k = _labels(labels, n, n_classes)

    def total(mask: np.ndarray) -> tuple[float, float, float]:
        p = pi[mask]
        s, sd = float(p.sum()), float(np.sqrt((p * (1 - p)).sum()))
        return s, max(0.0, s - z * sd), min(float(mask.sum()), s + z * sd)

    count, low, high = total(np.ones(n, dtype=bool))
    sizes = np.bincount(labels[labels >= 0], minlength=k)[:k] if k else np.zeros(0, dtype=np.int64)
    pc = np.array([total(labels == c) for c in range(k)]).T if k else np.zeros((3, 0))
    return CountEstimate("mixture", n, count, low, high, pc[0], pc[1], pc[2], sizes)


def cleanlab_count(labels: np.ndarray, pred_probs: np.ndarray, *, n_boot: int = 0,
                   seed: int = 0, level: float = 0.9) -> CountEstimate:
    """cleanlab's calibrated count (``estimation_method="off_diagonal_calibrated"``).

    ``Q = cleanlab.count.estimate_joint(labels, pred_probs, confident_joint=C)`` with the
    calibrated confident joint ``C`` (rows: given label, columns: the label cleanlab
    believes true; rows sum to the given-label prior). The count is ``N (1 − tr Q)`` — the
    same number as ``cleanlab.count.num_label_issues(..., "off_diagonal_calibrated")``
    before its rounding — and per given class ``c``: ``N (Σ_j Q_cj − Q_cc)``.

    ``pred_probs`` should be out-of-sample (cross-validation); in-sample probabilities of a
    network that memorised its labels make the count too small. The interval is a
    percentile bootstrap over samples (``n_boot`` resamples; none: the point estimate).
    """
    from cleanlab.count import compute_confident_joint, estimate_joint

    labels = np.asarray(labels, dtype=np.int64)
    p = np.asarray(pred_probs, dtype=np.float64)
    if p.ndim != 2 or labels.shape != (p.shape[0],):
        raise ValueError(f"need labels (N,) and pred_probs (N, K), got {labels.shape}, {p.shape}")
    n, k = p.shape

    def joint_counts(lab: np.ndarray, pp: np.ndarray) -> np.ndarray:
        cj = compute_confident_joint(lab, pp, calibrate=True)
        q = estimate_joint(lab, pp, confident_joint=cj)
        return len(lab) * (q.sum(axis=1) - np.diag(q))

    per = joint_counts(labels, p)
    lo_pc, hi_pc = per.copy(), per.copy()
    low = high = float(per.sum())
    if n_boot:
        rng = np.random.default_rng(seed)
        boots = []
        for _ in range(n_boot):
            i = rng.integers(0, n, n)
            if len(np.unique(labels[i])) < k:
                continue
            boots.append(joint_counts(labels[i], p[i]))
        if boots:
            b = np.array(boots)
            q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
            low, high = np.percentile(b.sum(axis=1), q)
            lo_pc, hi_pc = np.percentile(b, q, axis=0)
    return CountEstimate("cleanlab", n, float(per.sum()), float(low), float(high), per, lo_pc, hi_pc,
                         np.bincount(labels[labels >= 0], minlength=k)[:k])


def run_probabilities(probs: Sequence[np.ndarray], is_aux: np.ndarray, n_classes: int) -> np.ndarray:
    """One ``(N, K)`` probability table from a run's recorded probabilities.

    ``probs[r]`` is ``(L, N, K')`` (the last ``L`` recorded epochs of run ``r``, auxiliary
    column included). Each sample's row is the mean over those epochs and over the runs in
    which it kept its given label, restricted to the ``K`` real classes and renormalised.
    These are *in-sample* probabilities (the model trained on the sample).
    """
    is_aux = np.asarray(is_aux, dtype=bool)
    n = is_aux.shape[1]
    total = np.zeros((n, n_classes))
    runs = np.zeros(n)
    for p, aux in zip(probs, is_aux):
        mean = np.asarray(p, dtype=np.float64)[..., :n_classes].mean(axis=0)
        total[~aux] += mean[~aux]
        runs += ~aux
    total /= np.maximum(runs, 1)[:, None]
    s = total.sum(axis=1, keepdims=True)
    return np.divide(total, s, out=np.full_like(total, 1.0 / n_classes), where=s > 0)


def flag_lowest(score: np.ndarray, k: int, labels: np.ndarray | None = None,
                k_per_class: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flag the ``k`` lowest scores (or the ``k_per_class[c]`` lowest of each given class).

    The count rule: where an estimate says ``k`` samples are mislabeled, the ``k`` most
    suspicious are flagged. NaN scores are never flagged. Returns ``(flagged, threshold)``:
    ``threshold`` is ``(N,)``, the first unflagged score of the sample's group (global or its
    class; ``+inf`` where the whole group is flagged), so ``flagged == score < threshold``
    except for ties at the boundary, which are left unflagged.
    """
    s = np.asarray(score, dtype=np.float64)
    n = s.size
    groups = [np.arange(n)] if k_per_class is None else [
        np.flatnonzero(np.asarray(labels) == c) for c in range(len(k_per_class))]
    ks = [int(k)] if k_per_class is None else [int(x) for x in k_per_class]
    thr = np.full(n, np.nan)
    for idx, kk in zip(groups, ks):
        idx = idx[np.isfinite(s[idx])]
        kk = max(0, min(kk, idx.size))
        if kk == idx.size:
            t = np.inf
        else:
            t = np.partition(s[idx], kk)[kk]
        thr[idx] = t
    flagged = np.isfinite(s) & (s < np.nan_to_num(thr, nan=-np.inf))
    return flagged, thr
