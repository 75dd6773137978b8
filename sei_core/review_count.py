"""How many labels are wrong, from the expert's decisions: the count with its interval, and
when to stop reviewing.

Pure functions in the style of ``cleanlab.count``. The model's own estimate
(:mod:`sei_core.count`) overcounts (it counts hard clean images too); the decisions do not
depend on the model. The review queue (:class:`sei_core.review.ReviewQueue`) shows the images
in a **static order** (rank 0 = most suspicious: the flagged images by score, then the rest by
score) and, with probability ``share`` at each step, an **audit pick** instead: one image drawn
at random from every image not reviewed yet, likelier just after the reviewer's position.
Every decision is logged with its rank, whether it was an audit pick and its draw weight
(:class:`sei_core.review.Sampling`), so everything here is computed from the decision log on
disk.

Model and formula
-----------------
Let ``y_i = 1`` if image ``i``'s given label is wrong. A decision reveals ``y_i``: **confirm =
correct (0); relabel = wrong (1); discard = wrong (1)** — a discarded image (unusable: not the
kind of image the data set is about, unreadable, a duplicate) does not belong under its label,
so it counts as one label to fix. A skip reveals nothing and counts as nothing.

The total is ``W = F + W_U``: ``F`` the wrong labels found (decided wrong, known exactly) and
``W_U`` the wrong labels among the ``U`` images not reviewed yet. An audit pick ``j`` is drawn
from the images unreviewed at its time with probability proportional to a **draw weight**
``w_j > 0`` that the queue logs with it (:func:`audit_weights`: larger just after the
reviewer's position in the order, where wrong labels are likelier, so the picks fall where the
count is most uncertain and find more wrong labels; 1 everywhere = uniform). ``W_U`` is
estimated by post-stratification on rank: the picks ranked among the unreviewed images are cut
into ``B`` bands of equal numbers of picks (``B`` grows with them, one band per
``audits_per_band`` picks: 10 where the model's recalibrated share below anchors each band, 20
where Jeffreys' prior alone would, as its half pick overstates a thin band with a share of a
few per cent), and band ``b``'s share wrong is the **Hájek** estimate

    p̂_b = Σ_j y_j / w_j  /  Σ_j 1 / w_j        (picks j in band b),

which is consistent whatever the weights, even when they changed between picks: given that it
landed in the band, pick ``j`` was drawn with probability ``w_j / Σ_{i in band} w_i``, so each
term ``(y_j − p_b) / w_j`` has expectation 0 at the band's true share ``p_b``. Then
``Ŵ_U = Σ_b n_b · p̂_b`` with ``n_b`` the unreviewed images of the band. Audit picks ranked
before the first unreviewed image (overtaken by the review in order) are not used. Decisions
in order (not audit picks) only add to ``F``: they are not random, so they do not inform the
rates.

The interval is Bayesian: each band's share has the posterior ``Beta(m_b p̂_b + κ q_b + ½,
m_b (1 − p̂_b) + κ (1 − q_b) + ½)`` (Kish's effective sample size ``m_b = (Σ 1/w_j)² / Σ
1/w_j²`` of the band's picks, ``m_b = a_b`` when the weights are equal), the band's unreviewed
wrong labels are ``Binomial(n_b, p_b)`` given it, and the ``level`` interval of ``W`` is the
central quantiles of ``F + Σ_b Binomial(n_b, p_b)`` over ``n_draws`` Monte-Carlo draws.

The prior ``κ q_b`` (``κ = prior_picks`` pseudo-picks; Jeffreys alone when ``κ = 0`` or the
model gives no probability) lends the band the model's view, **recalibrated on the
decisions**: ``q_b`` is the mean over the band's unreviewed images of ``σ(α + β x_i)``, with
``x_i = logit(1 − confidence_i)`` the model's log-odds that image ``i``'s label is wrong and
``(α, β)`` a logistic fit (:func:`recalibration`) to *every* decision in effect, in order and
audit picks alike. The images in order were chosen by their score alone, so they say what a
score means without bias if the logistic form holds; where it does not (a weak ranking: it
underestimated by 26 % on RetinaMNIST at 10 % noise, measured), the band's own picks outweigh
the ``κ`` pseudo-picks as they accumulate, and the prior only shrinks the estimate towards the
fit. Measured on the seed-0 grid (``benchmarks/count_estimators.py``, docs/benchmarks.md): at
20 % of N it lowered the mean |relative error| with the interval's coverage kept. Where the
logistic form does not hold (a weak model), the prior's pull can leave the truth outside its
interval (coverage down to 79–82 % in the weakest RetinaMNIST cells, measured), so the interval
shown is the **hull** of the two: the ``level`` interval with the prior and the one from the
audit picks alone (κ = 0). The estimate keeps the prior; the interval is never narrower than
the picks alone support (coverage at least 87 % in every cell of two seeds, measured). The
estimate shown is the posterior median: the plain ratio says 0 whenever no pick was wrong,
the posterior mean overcounts when the picks are few (+17 % on the HAM10000 cells at 20 % of
N, measured), the median lies between. Per given class ``k`` the same with one band: ``Ŵ_k =
F_k + U_k · r_k`` with ``r_k`` the Hájek share wrong among class ``k``'s usable picks, shrunk
to the pooled share ``r`` by ``prior_weight`` pseudo-picks: ``r_k = (m_k r̂_k + prior_weight ·
r) / (m_k + prior_weight)``.

Assumptions (what the coverage rests on): audit picks are decided like any other image (an
audit pick skipped and decided later counts as a decision in order); the expert's answer is
the truth; each pick was drawn from the unreviewed images at its time with probability
proportional to its logged weight (true of the queue's draw). Nothing is assumed about the
model: a weak ranking only makes the interval wider.

With fewer than ``min_audits`` usable picks the estimate is the model's own
(:class:`sei_core.count.CountEstimate`, raised to at least ``F``) and says so.

Shapes: ``given_by_rank`` ``(N,)`` (the given label index of the image at each rank);
``rank``, ``wrong``, ``audit``, ``weight`` ``(D,)`` over the decisions in effect (one per image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Default share of queue positions that are audit picks (docs/benchmarks.md, issue 22: chosen
#: by measurement on the grid with ``sei review-sim``).
DEFAULT_AUDIT_SHARE = 0.3
#: Fewer usable audit picks than this: the model's estimate is shown instead.
MIN_AUDITS = 10
#: One rank band per this many usable audit picks (up to :data:`MAX_BANDS`) when each band's
#: share has only Jeffreys' prior (thinner bands overstate a tail of a few per cent: +14 wrong
#: labels of 72 with 10, +3.6 with 20, in ``tests/test_review_count.py``'s weighted review) …
AUDITS_PER_BAND = 20
#: … and when the model's recalibrated share anchors each band (``prior_picks``): 10 rather than
#: 20 lowered the mean |relative error| at 20 % of N from 0.140 to 0.129 on the 10 seed-0
#: symmetric cells it was chosen on, and from 0.156 to 0.139 on 6 confusion cells that were not
#: used to choose it, the interval's coverage kept (``benchmarks/audit_sweep.py``,
#: docs/benchmarks.md); 5 under-covered (73 % in one cell).
AUDITS_PER_BAND_PRIOR = 10
MAX_BANDS = 4
LEVEL = 0.9
#: The weight, in audit picks, of the model's recalibrated share in each band's posterior
#: (:func:`count_from_decisions`; docs/benchmarks.md, issue 22).
PRIOR_PICKS = 10.0
#: The model's share is evaluated on at most this many unreviewed ranks (evenly spaced), so an
#: update costs the same at a million images.
PRIOR_SAMPLE = 20_000


@dataclass(frozen=True)
class DecisionCount:
    """The number of wrong labels estimated from the decisions (see the module docstring).

    ``count``/``low``/``high``: the whole data set (``level`` interval); ``unreviewed*``: among
    the images not reviewed yet; ``found``: wrong labels found (relabeled or discarded);
    ``per_class_*``: ``(K,)`` over the given labels. ``source`` is ``"decisions"``, or
    ``"model"`` when there were too few audit picks (then ``message`` says so).
    """

    source: str
    n_samples: int
    decisions: int
    found: int
    audits: int  # audit picks among the decisions in effect
    audits_used: int  # of them, ranked among the unreviewed images (the ones the estimate uses)
    count: float
    low: float
    high: float
    unreviewed: int
    unreviewed_count: float
    unreviewed_low: float
    unreviewed_high: float
    level: float
    per_class_count: np.ndarray = field(default_factory=lambda: np.zeros(0))
    per_class_low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    per_class_high: np.ndarray = field(default_factory=lambda: np.zeros(0))
    per_class_found: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    bands: tuple = ()  # (first rank, last rank, n unreviewed, picks, wrong picks) per band
    prior_picks: float = 0.0  # weight of the model's recalibrated share per band (0: not used)
    message: str = ""

    def sentence(self) -> str:
        """"N wrong labels found in M decisions; about X in the whole data set (90 % interval a–b),
        about Y still unreviewed"."""
        head = f"{self.found} wrong labels found in {self.decisions} decisions"
        pct = f"{100 * self.level:.0f} %"
        if self.source != "decisions":
            return f"{head}. {self.message}"
        return (f"{head}; about {self.count:.0f} in the whole data set ({pct} interval "
                f"{self.low:.0f}–{self.high:.0f}), about {self.unreviewed_count:.0f} still unreviewed "
                f"(from {self.audits_used} images picked at random for checking"
                + (", and the model's scores recalibrated on your decisions" if self.prior_picks else "") + ").")

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in (
            "source", "n_samples", "decisions", "found", "audits", "audits_used", "count", "low", "high",
            "unreviewed", "unreviewed_count", "unreviewed_low", "unreviewed_high", "level", "prior_picks", "message")}
        for k in ("per_class_count", "per_class_low", "per_class_high", "per_class_found"):
            out[k] = np.asarray(getattr(self, k)).tolist()
        out["bands"] = [list(map(int, b)) for b in self.bands]
        return out


def count_from_decisions(given_by_rank: np.ndarray, rank: np.ndarray, wrong: np.ndarray, audit: np.ndarray,
                         weight: np.ndarray | None = None, *, n_classes: int | None = None, level: float = LEVEL, min_audits: int = MIN_AUDITS,
                         audits_per_band: int | None = None, max_bands: int = MAX_BANDS,
                         prior_weight: float = 2.0, n_draws: int = 2000, seed: int = 0,
                         model=None, x_by_rank: np.ndarray | None = None,
                         prior_picks: float = PRIOR_PICKS) -> DecisionCount:
    """The number of wrong labels in the data set, per given class and still unreviewed.

    Parameters
    ----------
    given_by_rank : (N,) int, the given label of the image at each rank of the static order.
    rank : (D,) int, the rank of each decided image (decisions in effect, one per image).
    wrong : (D,) bool, the decision said the label was wrong (relabeled or discarded).
    audit : (D,) bool, the image was an audit pick.
    weight : (D,) float, an audit pick's draw weight (:func:`audit_weights`; None, NaN or
        ≤ 0: 1, a uniform draw); ignored for decisions in order.
    model : the model's :class:`sei_core.count.CountEstimate`, used when there are fewer than
        ``min_audits`` usable picks (None: the count is then only what was found).
    x_by_rank : (N,) float, the model's log-odds that the label at each rank is wrong
        (:func:`wrong_log_odds`); with ``prior_picks > 0`` each band's share is shrunk towards
        its recalibration (module docstring). None: the audit picks alone.
    audits_per_band : one rank band per this many usable picks; None: :data:`AUDITS_PER_BAND_PRIOR`
        where the recalibration is lent, else :data:`AUDITS_PER_BAND`.

    Returns a :class:`DecisionCount`; formula and assumptions in the module docstring.
    """
    given_by_rank = np.asarray(given_by_rank)
    n = int(given_by_rank.size)
    k = int(n_classes if n_classes is not None else (given_by_rank.max() + 1 if n else 0))
    rank = np.asarray(rank, dtype=np.int64)
    wrong = np.asarray(wrong, dtype=bool)
    audit = np.asarray(audit, dtype=bool)
    # O(D log D) apart from one bincount over N: the unreviewed ranks are never listed
    done = np.unique(rank)
    u = n - int(done.size)
    gaps = done - np.arange(done.size)  # unreviewed ranks before each decided one

    def unreviewed_rank(m: np.ndarray) -> np.ndarray:
        """The m-th (0-based) unreviewed rank."""
        m = np.asarray(m, dtype=np.int64)
        return m + np.searchsorted(gaps, m, side="right")

    found = int(wrong.sum())
    found_k = np.bincount(given_by_rank[rank[wrong]], minlength=k)[:k] if k else np.zeros(0, np.int64)
    first = int(unreviewed_rank(0)) if u else n
    use = audit & (rank > first)
    a = int(use.sum())
    common = dict(n_samples=n, decisions=int(rank.size), found=found, audits=int(audit.sum()), audits_used=a,
                  unreviewed=u, level=level, per_class_found=found_k)
    if a < min_audits or u == 0:
        if u == 0:
            return DecisionCount("decisions", count=found, low=found, high=found, unreviewed_count=0.0,
                                 unreviewed_low=0.0, unreviewed_high=0.0, per_class_count=found_k.astype(float),
                                 per_class_low=found_k.astype(float), per_class_high=found_k.astype(float),
                                 message="Every image is reviewed: the count is exact.", **common)
        need = f"{min_audits - a} more" if a else f"{min_audits}"
        if model is not None:
            c, lo, hi = max(model.count, found), max(model.low, found), max(model.high, found)
            msg = (f"Too few images picked at random are decided yet ({a}; {need} needed) to count from the "
                   f"decisions: the model's own estimate is shown, about {c:.0f} ({lo:.0f}–{hi:.0f}), "
                   "which counts hard images too (read it as an upper bound).")
            pk = np.maximum(np.nan_to_num(np.asarray(model.per_class_count, dtype=float)), found_k) \
                if np.size(model.per_class_count) == k else np.full(k, np.nan)
        else:
            c = lo = hi = float(found)
            msg = (f"Too few images picked at random are decided yet ({a}; {need} needed) to estimate the "
                   "wrong labels not reviewed yet.")
            pk = np.full(k, np.nan)
        return DecisionCount("model", count=float(c), low=float(lo), high=float(hi),
                             unreviewed_count=float(c - found), unreviewed_low=float(lo - found),
                             unreviewed_high=float(hi - found), per_class_count=pk,
                             per_class_low=np.full(k, np.nan), per_class_high=np.full(k, np.nan),
                             message=msg, **common)
    rng = np.random.default_rng(seed)
    q = ((1 - level) / 2, (1 + level) / 2)
    ar, aw = rank[use], wrong[use].astype(float)
    wt = np.ones(rank.size) if weight is None else np.asarray(weight, dtype=float).reshape(rank.shape)
    inv = 1.0 / np.where(np.isfinite(wt) & (wt > 0), wt, 1.0)[use]
    pooled = float((inv * aw).sum() / inv.sum())
    coef = recalibration(x_by_rank[rank], wrong) if x_by_rank is not None and prior_picks > 0 else None
    if audits_per_band is None:
        audits_per_band = AUDITS_PER_BAND if coef is None else AUDITS_PER_BAND_PRIOR
    b = int(np.clip(a // max(audits_per_band, 1), 1, max_bands))
    cuts = np.sort(ar)[(np.arange(1, b) * a) // b]  # first rank of bands 2..B: equal numbers of picks
    band_of_pick = np.searchsorted(cuts, ar, side="right")
    # unreviewed images per band: the ranks at or after each cut, less the decided ones there
    at_or_after = (n - cuts) - (done.size - np.searchsorted(done, cuts, side="left"))
    edges = np.concatenate([[u], at_or_after, [0]])
    n_b = edges[:-1] - edges[1:]
    a_b = np.bincount(band_of_pick, minlength=b)
    p_b, m_b = _hajek(band_of_pick, aw, inv, b)
    q_b = _recalibrated_shares(coef, x_by_rank, done, first, cuts, b) if coef is not None else np.full(b, np.nan)
    kappa = np.where(np.isfinite(q_b), float(prior_picks), 0.0)  # no prior where the model says nothing
    q_b = np.nan_to_num(q_b)
    p = rng.beta(m_b * p_b + kappa * q_b + 0.5, m_b * (1 - p_b) + kappa * (1 - q_b) + 0.5, size=(n_draws, b))
    draws = rng.binomial(n_b, p).sum(axis=1)
    lo_u, est_u, hi_u = (float(v) for v in np.quantile(draws, (q[0], 0.5, q[1])))  # the posterior median
    if kappa.any():  # the interval also holds the picks' own (module docstring: a model that misleads)
        alone = rng.binomial(n_b, rng.beta(m_b * p_b + 0.5, m_b * (1 - p_b) + 0.5, size=(n_draws, b))).sum(axis=1)
        lo_a, hi_a = np.quantile(alone, q)
        lo_u, hi_u = min(lo_u, float(lo_a)), max(hi_u, float(hi_a))
    lows = np.concatenate([[first], cuts])
    highs = np.concatenate([cuts - 1, [n - 1]])
    w_b = np.bincount(band_of_pick, weights=aw, minlength=b)
    bands = tuple((int(lows[j]), int(highs[j]), int(n_b[j]), int(a_b[j]), int(w_b[j])) for j in range(b) if n_b[j])
    # per class: one band, shrunk to the pooled share
    pc, pl, ph = (np.zeros(k) for _ in range(3))
    if k:
        u_k = np.bincount(given_by_rank, minlength=k)[:k] - np.bincount(given_by_rank[done], minlength=k)[:k]
        r_hat, m_k = _hajek(given_by_rank[ar], aw, inv, k)
        r_k = (m_k * r_hat + prior_weight * pooled) / (m_k + prior_weight)
        pc = found_k + u_k * r_k
        alpha = m_k * r_hat + prior_weight * pooled + 0.5
        beta = m_k * (1 - r_hat) + prior_weight * (1 - pooled) + 0.5
        dk = rng.binomial(u_k, rng.beta(alpha, beta, size=(n_draws, k)))
        lo_k, hi_k = np.quantile(dk, q, axis=0)
        pl, ph = found_k + lo_k, found_k + hi_k
    return DecisionCount("decisions", count=found + est_u, low=found + float(lo_u), high=found + float(hi_u),
                         unreviewed_count=est_u, unreviewed_low=float(lo_u), unreviewed_high=float(hi_u),
                         per_class_count=pc, per_class_low=pl, per_class_high=ph, bands=bands,
                         prior_picks=float(kappa.max(initial=0.0)), **common)


def _hajek(group: np.ndarray, y: np.ndarray, inv_w: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group (``(k,)``): the Hájek share ``Σ y/w / Σ 1/w`` (0 where a group has no pick) and
    Kish's effective sample size ``(Σ 1/w)² / Σ 1/w²``."""
    s1 = np.bincount(group, weights=inv_w, minlength=k)[:k]
    s2 = np.bincount(group, weights=inv_w ** 2, minlength=k)[:k]
    sy = np.bincount(group, weights=inv_w * y, minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(s1 > 0, sy / np.where(s1 > 0, s1, 1), 0.0)
        ess = np.where(s2 > 0, s1 ** 2 / np.where(s2 > 0, s2, 1), 0.0)
    return np.clip(share, 0.0, 1.0), ess


def wrong_log_odds(confidence: np.ndarray) -> np.ndarray | None:
    """``logit(1 − confidence)``: the model's log-odds that each label is wrong, from the mean
    probability it gave the label (``(N,)``, the ``confidence`` score); NaN (unscored) gets the
    median. None when the scores are not probabilities (another ranking method)."""
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.isfinite(c)
    if not ok.any() or c[ok].min() < 0 or c[ok].max() > 1:
        return None
    c = np.clip(np.where(ok, c, np.median(c[ok])), 1e-6, 1 - 1e-6)
    return np.log1p(-c) - np.log(c)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # σ(z), without overflow for large |z|


def recalibration(x: np.ndarray, wrong: np.ndarray, prior_sd: float = 10.0, iters: int = 50) -> np.ndarray | None:
    """``(α, β)`` of ``P(wrong) = σ(α + β x)`` fitted to decisions (``(D,)`` log-odds ``x`` and
    outcomes), the maximum a posteriori under N(0, prior_sd²) priors (Newton's method); None
    without both a wrong and a correct label among them."""
    y = np.asarray(wrong, dtype=np.float64)
    if y.size == 0 or y.min() == y.max():
        return None
    X = np.column_stack([np.ones(y.size), np.asarray(x, dtype=np.float64)])
    coef, ridge = np.zeros(2), np.eye(2) / prior_sd ** 2
    for _ in range(iters):
        p = _sigmoid(X @ coef)
        h = (X * (p * (1 - p))[:, None]).T @ X + ridge
        step = np.linalg.solve(h, X.T @ (y - p) - ridge @ coef)
        coef += step
        if np.abs(step).max() < 1e-9:
            break
    return coef


def _recalibrated_shares(coef: np.ndarray, x_by_rank: np.ndarray, done: np.ndarray, first: int,
                         cuts: np.ndarray, bands: int) -> np.ndarray:
    """``(bands,)``: the mean of ``σ(α + β x)`` (``coef`` = ``(α, β)``, :func:`recalibration`)
    over each band's unreviewed images (on at most :data:`PRIOR_SAMPLE` evenly spaced ranks);
    NaN for a band none of them falls in."""
    n = x_by_rank.size
    r = np.arange(first, n, max(1, (n - first) // PRIOR_SAMPLE))
    at = np.searchsorted(done, r)
    r = r[(at >= done.size) | (done[np.minimum(at, done.size - 1)] != r)]  # unreviewed only
    p = _sigmoid(coef[0] + coef[1] * x_by_rank[r])
    band = np.searchsorted(cuts, r, side="right")
    cnt = np.bincount(band, minlength=bands)[:bands]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(band, weights=p, minlength=bands)[:bands] / np.where(cnt > 0, cnt, np.nan)


def audit_weights(rank: np.ndarray, next_rank: int, scale: float, boost: float) -> np.ndarray:
    """The draw weight of an audit pick at each of ``rank`` (``(M,)`` ranks of the static order):
    ``1 + boost`` up to ``next_rank`` (the next image in order, and any unreviewed one the
    order passed), then ``1 + boost · exp(−(rank − next_rank) / scale)``: picks fall mostly
    just after the reviewer's position, where the share wrong is highest and least known, and
    some everywhere (``boost = 0``: uniform). The weight is logged with each pick; the count
    (:func:`count_from_decisions`) is consistent whatever weights were used."""
    r = np.asarray(rank, dtype=np.float64)
    return 1.0 + boost * np.exp(-np.maximum(r - next_rank, 0.0) / max(float(scale), 1e-9))


# --------------------------------------------------------------------------- when to stop


def selfclean_run_length(p_chance: float = 0.05, p_plus: float = 0.05) -> int:
    """The SelfClean stopping rule's run length ``n = ⌊ln p_chance / ln(1 − p₊)⌋`` (58 for
    0.05/0.05): if at least a share ``p₊`` of the next images were wrong, ``n`` correct labels
    in a row would happen by chance with probability at most about ``p_chance``."""
    return int(math.floor(math.log(p_chance) / math.log(1 - p_plus)))


@dataclass(frozen=True)
class StopAdvice:
    """When to stop: the share wrong expected among the next images in order, the wrong labels
    still to find, the run of correct labels in order so far and the rule's run length."""

    next_share: float  # share wrong among the next images of the static order (estimate)
    next_share_from: str  # what it is estimated from
    still_to_find: float  # expected wrong labels among the unreviewed images
    streak: int  # consecutive confirmed labels at the end of the decisions in order
    run_length: int  # the SelfClean rule's n
    p_chance: float
    p_plus: float
    stop: bool

    def sentence(self) -> str:
        share = (f"About {100 * self.next_share:.0f} % of the next images in the queue are expected to be wrong "
                 f"({self.next_share_from}); about {self.still_to_find:.0f} wrong labels are still to find. "
                 if np.isfinite(self.next_share) else "")
        rule = (f"Stopping rule: stop after {self.run_length} correct labels in a row in queue order "
                f"(now {self.streak}). Its guarantee: if {100 * self.p_plus:.0f} % or more of the next images "
                f"were wrong, that many correct ones in a row would happen by chance less than "
                f"{100 * self.p_chance:.0f} % of the time.")
        return share + rule + (" You can stop now." if self.stop else "")


def stop_advice(rank: np.ndarray, wrong: np.ndarray, audit: np.ndarray, order: np.ndarray | None = None,
                count: DecisionCount | None = None, *, window: int = 50, p_chance: float = 0.05,
                p_plus: float = 0.05) -> StopAdvice:
    """When to stop, from the decisions in effect.

    ``rank``, ``wrong``, ``audit``: (D,) as in :func:`count_from_decisions`; ``order``: (D,)
    the order they were made in (e.g. decision ids; None: as given). The share wrong among
    the next images is the share among the last ``window`` decisions in order (the images
    just before the next ones), or the first band's audit rate of ``count`` when that band has
    more picks; the streak counts the confirmed labels at the end of the decisions in order.
    """
    rank, wrong, audit = np.asarray(rank), np.asarray(wrong, dtype=bool), np.asarray(audit, dtype=bool)
    o = np.arange(rank.size) if order is None else np.argsort(np.asarray(order), kind="stable")
    seq = ~audit[o]
    w_seq = wrong[o][seq]
    recent = w_seq[-window:]
    streak = int(np.argmax(w_seq[::-1])) if w_seq.any() else int(w_seq.size)
    share, src = (float(recent.mean()), f"{recent.size} latest decisions in queue order") if recent.size \
        else (float("nan"), "")
    if count is not None and count.bands and count.bands[0][3] > recent.size:
        _, _, _, picks, bad = count.bands[0]
        share, src = bad / picks, f"{picks} random picks among the next ranks"
    still = count.unreviewed_count if count is not None else float("nan")
    n = selfclean_run_length(p_chance, p_plus)
    return StopAdvice(share, src, still, streak, n, p_chance, p_plus, streak >= n)


def calibration_points(rank: np.ndarray, wrong: np.ndarray, audit: np.ndarray, n: int, bins: int = 20) -> dict:
    """The calibration curve: the share wrong against rank. ``bins`` equal rank bins over
    ``[0, n)``: ``(bins,)`` arrays ``mid`` (bin centre rank), ``share`` (wrong among the
    decisions there, NaN where none), ``decided``; and the decisions themselves as points
    (``rank``, ``wrong``, ``audit``)."""
    rank = np.asarray(rank, dtype=np.int64)
    edges = np.linspace(0, max(n, 1), bins + 1)
    at = np.clip(np.searchsorted(edges, rank, side="right") - 1, 0, bins - 1)
    d = np.bincount(at, minlength=bins)
    w = np.bincount(at, weights=np.asarray(wrong, dtype=float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(d > 0, w / np.maximum(d, 1), np.nan)
    return dict(mid=(edges[:-1] + edges[1:]) / 2, share=share, decided=d, rank=rank,
                wrong=np.asarray(wrong, dtype=bool), audit=np.asarray(audit, dtype=bool))
