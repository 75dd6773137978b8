"""The count from the decisions: today's estimator beside two that borrow strength from the
ranking, on the same simulated reviews (issue 22, item 2: the estimator chosen by measurement).

Every replay is a truthful simulated review through the app's own queue, store and estimator
(:func:`sei_core.review_sim.simulate`); at each checkpoint the decisions in effect are handed to
each estimator, so all three see exactly the same decisions:

- ``bands`` — today's (:func:`sei_core.review_count.count_from_decisions`): only the audit
  picks inform the wrong labels not reviewed yet (Hájek shares in rank bands, Jeffreys
  posterior). Design-based: nothing is assumed about the model.
- ``platt`` — a logistic recalibration of the model's probability, fitted on *every* decision
  (in order and audits): ``P(wrong) = σ(a + b · logit(1 − confidence))``, summed over the
  unreviewed images; interval from the fit's Laplace posterior and binomial draws. Decisions in
  order were selected on the score only, so the fit is unbiased *if the form is right*.
- ``isotonic`` — a non-increasing fit of P(wrong) against rank on every decision (the issue's
  prototype); a point estimate only.

    python benchmarks/count_estimators.py CELL [CELL …] --repeats 40

``CELL``: a finished ``sei bench`` cell (``run/`` and ``truth.csv``) ranked by ``confidence``
(``platt`` needs a probability as the score). Prints, per cell and estimator: the share of
checkpoints whose 90 % interval held the true count, the mean |relative error|, its mean sign
(bias) and the share of replays within 15 % after ``--share`` × N decisions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression

from sei_core.review_count import DEFAULT_AUDIT_SHARE, LEVEL, count_from_decisions
from sei_core.review_sim import simulate
from sei_core.runs import Run
from sei_core.score_cache import scored


def logistic_fit(x: np.ndarray, y: np.ndarray, prior_sd: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """MAP of ``y ~ Bernoulli(σ(a + b x))`` with N(0, prior_sd²) priors (Newton); its Laplace covariance."""
    X = np.column_stack([np.ones_like(x), x])
    beta, prior = np.zeros(2), np.eye(2) / prior_sd ** 2
    for _ in range(50):
        p = 1 / (1 + np.exp(-X @ beta))
        h = (X * (p * (1 - p))[:, None]).T @ X + prior
        step = np.linalg.solve(h, X.T @ (y - p) - prior @ beta)
        beta += step
        if np.abs(step).max() < 1e-9:
            break
    return beta, np.linalg.inv(h)


def platt(x_by_rank: np.ndarray, rank: np.ndarray, wrong: np.ndarray, *, bins: int = 200, draws: int = 2000,
          seed: int = 0) -> tuple[float, float, float]:
    """Found + Σ over unreviewed images of the recalibrated P(wrong): (median, low, high) of draws."""
    n, y = x_by_rank.size, wrong.astype(float)
    beta, cov = logistic_fit(x_by_rank[rank], y)
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    bin_of = np.searchsorted(edges, np.arange(n), side="right") - 1
    left = np.bincount(bin_of, minlength=bins) - np.bincount(bin_of[rank], minlength=bins)
    sx = np.bincount(bin_of, weights=x_by_rank, minlength=bins) - np.bincount(bin_of[rank], weights=x_by_rank[rank],
                                                                                minlength=bins)
    xm = np.where(left > 0, sx / np.maximum(left, 1), 0.0)
    rng = np.random.default_rng(seed)
    b = rng.multivariate_normal(beta, cov, size=draws)
    d = rng.binomial(left, 1 / (1 + np.exp(-(b[:, :1] + b[:, 1:] * xm)))).sum(axis=1)
    lo, mid, hi = np.quantile(d, ((1 - LEVEL) / 2, 0.5, (1 + LEVEL) / 2))
    return y.sum() + mid, y.sum() + lo, y.sum() + hi


def isotonic(n: int, rank: np.ndarray, wrong: np.ndarray) -> float:
    """Found + Σ over unreviewed ranks of a non-increasing fit of P(wrong | rank)."""
    fit = IsotonicRegression(increasing=False, y_min=0, y_max=1, out_of_bounds="clip").fit(rank, wrong.astype(float))
    return float(wrong.sum() + fit.predict(np.setdiff1d(np.arange(n), rank)).sum())


def measure(cell: Path, repeats: int, share: float, audit_share: float) -> dict[str, list[tuple]]:
    """Per estimator: ``(decisions, estimate, low, high, true)`` at every checkpoint of every replay."""
    s = scored(Run(cell / "run"), write=False).scores
    n = len(s.ids)
    conf = np.clip(np.nan_to_num(np.asarray(s.score, dtype=float), nan=1.0), 1e-4, 1 - 1e-4)
    out: dict[str, list[tuple]] = {"bands": [], "platt": [], "isotonic": []}

    def at_checkpoint(row: dict, queue, store) -> None:
        a = queue.audit(store)
        _, rank, wrong, weight = a.log_view(store)
        order = a.order
        t, d = row["true_count"], row["decisions"]
        c = count_from_decisions(np.asarray(s.labels)[order], rank, wrong, weight > 0, weight, seed=row["replay"])
        if c.source == "decisions":
            out["bands"].append((d, c.count, c.low, c.high, t))
        x = np.log((1 - conf) / conf)[order]
        out["platt"].append((d, *platt(x, rank, wrong, seed=row["replay"]), t))
        out["isotonic"].append((d, isotonic(n, rank, wrong), np.nan, np.nan, t))

    simulate(cell / "run", cell / "truth.csv", max(1, round(share * n)), repeats=repeats, audit_share=audit_share,
             scores=s, on_checkpoint=at_checkpoint)
    return out


def summary(rows: list[tuple]) -> str:
    a = np.array(rows, dtype=float)
    if not len(a):
        return "no checkpoint counted from the decisions"
    d, est, lo, hi, t = a.T
    cov = np.mean((lo <= t) & (t <= hi)) if np.isfinite(lo).all() else np.nan
    last = d == d.max()
    rel = (est[last] - t[last]) / np.maximum(t[last], 1)
    return (f"coverage {100 * cov:5.1f} % of {len(a):3d} | mean |rel. error| {np.abs(rel).mean():.3f} | "
            f"bias {rel.mean():+.3f} | within 15 % {100 * np.mean(np.abs(rel) <= 0.15):3.0f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cells", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--share", type=float, default=0.2, help="decisions as a share of N (default 0.2)")
    ap.add_argument("--audit-share", type=float, default=DEFAULT_AUDIT_SHARE)
    args = ap.parse_args()
    for cell in args.cells:
        print(cell)
        for name, rows in measure(cell, args.repeats, args.share, args.audit_share).items():
            print(f"  {name:9s} {summary(rows)}")


if __name__ == "__main__":
    main()
