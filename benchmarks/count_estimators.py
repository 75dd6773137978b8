"""The count from the decisions: estimators side by side on the same simulated reviews (issue
22, item 2: the estimator chosen by measurement).

Every replay is a truthful simulated review through the app's own queue, store and estimator
(:func:`sei_core.review_sim.simulate`); at each checkpoint the decisions in effect are handed to
each estimator, so all of them see exactly the same decisions:

- ``bands κ=K`` — :func:`sei_core.review_count.count_from_decisions`: Hájek shares of the audit
  picks in rank bands, each band's share shrunk towards the model's share recalibrated on every
  decision with the weight of ``K`` picks (``κ=0``: the audit picks alone, design-based; the
  app's default is ``review_count.PRIOR_PICKS``).
- ``platt`` — the recalibration alone: ``P(wrong) = σ(α + β · logit(1 − confidence))`` fitted
  on *every* decision (in order and audits), summed over the unreviewed images; interval from
  the fit's Laplace posterior and binomial draws. Unbiased only if the logistic form holds.
- ``isotonic`` — a non-increasing fit of P(wrong) against rank on every decision (the issue's
  prototype); a point estimate only.

    python benchmarks/count_estimators.py CELL [CELL …] --repeats 40 --prior-picks 0 5 10 20

``CELL``: a finished ``sei bench`` cell (``run/`` and ``truth.csv``) ranked by ``confidence``
(the recalibration needs a probability as the score). Prints, per cell and estimator: the share
of checkpoints whose 90 % interval held the true count, the mean |relative error|, its mean
sign (bias) and the share of replays within 15 % after ``--share`` × N decisions; then the
same over all cells.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression

from sei_core.review_count import (DEFAULT_AUDIT_SHARE, LEVEL, PRIOR_PICKS, count_from_decisions, recalibration,
                                  wrong_log_odds)
from sei_core.review_sim import simulate
from sei_core.runs import Run
from sei_core.score_cache import scored


def platt(x_by_rank: np.ndarray, rank: np.ndarray, wrong: np.ndarray, *, bins: int = 200, draws: int = 2000,
          seed: int = 0) -> tuple[float, float, float] | None:
    """Found + Σ over unreviewed images of the recalibrated P(wrong): (median, low, high) of draws;
    None before the decisions hold both a wrong and a correct label."""
    n, y = x_by_rank.size, wrong.astype(float)
    x = x_by_rank[rank]
    beta = recalibration(x, y)
    if beta is None:
        return None
    p = 1 / (1 + np.exp(-(beta[0] + beta[1] * x)))
    cov = np.linalg.inv((np.column_stack([np.ones_like(x), x]) * (p * (1 - p))[:, None]).T
                        @ np.column_stack([np.ones_like(x), x]) + np.eye(2) / 100)
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    bin_of = np.searchsorted(edges, np.arange(n), side="right") - 1
    left = np.bincount(bin_of, minlength=bins) - np.bincount(bin_of[rank], minlength=bins)
    sx = np.bincount(bin_of, weights=x_by_rank, minlength=bins) - np.bincount(bin_of[rank], weights=x,
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


def measure(cell: Path, repeats: int, share: float, audit_share: float,
            prior_picks: list[float]) -> dict[str, list[tuple]]:
    """Per estimator: ``(decisions, estimate, low, high, true)`` at every checkpoint of every replay
    (the band estimators only where they counted from the decisions, not the model's fallback)."""
    s = scored(Run(cell / "run"), write=False).scores
    n = len(s.ids)
    x = wrong_log_odds(s.score)
    if x is None:
        raise SystemExit(f"{cell}: its scores are not probabilities (rank by confidence)")
    out: dict[str, list[tuple]] = {f"bands κ={k:g}": [] for k in prior_picks}
    out.update(platt=[], isotonic=[])

    def at_checkpoint(row: dict, queue, store) -> None:
        a = queue.audit(store)
        _, rank, wrong, weight = a.log_view(store)
        t, d, xr = row["true_count"], row["decisions"], x[a.order]
        for k in prior_picks:
            c = count_from_decisions(np.asarray(s.labels)[a.order], rank, wrong, weight > 0, weight,
                                     seed=row["replay"], x_by_rank=xr, prior_picks=k)
            if c.source == "decisions":
                out[f"bands κ={k:g}"].append((d, c.count, c.low, c.high, t))
        fit = platt(xr, rank, wrong, seed=row["replay"])
        if fit is not None:
            out["platt"].append((d, *fit, t))
        out["isotonic"].append((d, isotonic(n, rank, wrong), np.nan, np.nan, t))

    simulate(cell / "run", cell / "truth.csv", max(1, round(share * n)), repeats=repeats, audit_share=audit_share,
             scores=s, on_checkpoint=at_checkpoint)
    return out


def summary(rows: list[tuple]) -> dict:
    """Coverage over the checkpoints; |relative error|, bias and within 15 % at the last one."""
    a = np.array(rows, dtype=float).reshape(-1, 5)
    d, est, lo, hi, t = a.T
    last = d == d.max() if len(a) else d.astype(bool)
    rel = (est[last] - t[last]) / np.maximum(t[last], 1)
    return dict(coverage=float(np.mean((lo <= t) & (t <= hi))) if len(a) and np.isfinite(lo).all() else np.nan,
                checkpoints=len(a), error=float(np.abs(rel).mean()) if rel.size else np.nan,
                bias=float(rel.mean()) if rel.size else np.nan,
                within15=float(np.mean(np.abs(rel) <= 0.15)) if rel.size else np.nan)


def line(r: dict) -> str:
    return (f"coverage {100 * r['coverage']:5.1f} % of {r['checkpoints']:4d} | mean |rel. error| {r['error']:.3f} | "
            f"bias {r['bias']:+.3f} | within 15 % {100 * r['within15']:3.0f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cells", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--share", type=float, default=0.2, help="decisions as a share of N (default 0.2)")
    ap.add_argument("--audit-share", type=float, default=DEFAULT_AUDIT_SHARE)
    ap.add_argument("--prior-picks", type=float, nargs="+", default=[0.0, PRIOR_PICKS],
                    help="κ values of the band estimator to compare (default: 0 and the app's)")
    args = ap.parse_args()
    per: dict[str, list[dict]] = {}
    for cell in args.cells:
        print(cell, flush=True)
        for name, rows in measure(cell, args.repeats, args.share, args.audit_share, args.prior_picks).items():
            r = summary(rows)
            per.setdefault(name, []).append(r)
            print(f"  {name:11s} {line(r)}", flush=True)
    if len(args.cells) > 1:
        print(f"all {len(args.cells)} cells (coverage: range over cells; error: mean; within 15 %: range)")
        for name, rs in per.items():
            cov = [r["coverage"] for r in rs if np.isfinite(r["coverage"])]
            err = np.nanmean([r["error"] for r in rs])
            w = [r["within15"] for r in rs]
            inside = sum(0.85 <= c <= 0.95 for c in cov)
            print(f"  {name:11s} coverage " + (f"{100 * min(cov):.1f}–{100 * max(cov):.1f} % ({inside} of {len(cov)} "
                  f"cells in 85–95 %)" if cov else "—") + f" | mean |rel. error| {err:.3f} | within 15 % "
                  f"{100 * np.nanmin(w):.0f}–{100 * np.nanmax(w):.0f} %")


if __name__ == "__main__":
    main()
