"""Audit designs side by side, fast: the review queue's draw re-played in numpy over finished
``sei bench`` cells, to sweep settings that ``sei review-sim`` (the product's own path, one
SQLite store per replay) would take hours to cover (issue 22).

Each replay is a truthful review of ``--share-n`` × N decisions: the next image is an audit
pick with the queue's chance (``share · max(1 − p̂, floor)``, ``p̂`` the share wrong among the
last 20 decisions in order), drawn from every unreviewed image with the queue's weights
(:func:`sei_core.review_count.audit_weights`, ``boost``) or, with ``draw=sqrt``, in proportion
to ``√(1 − confidence) + its mean`` (a defensive mixture); else the next image of the static
order (:class:`sei_core.review.ReviewQueue`'s). At every 10 % of the decisions the count is
estimated by

- ``est=bands`` — the app's :func:`sei_core.review_count.count_from_decisions` (``kappa`` =
  ``prior_picks``);
- ``est=bands_lin`` — the same with each band's effective sample size from the Hájek
  estimate's linearised variance ``Σ v²(y − p̂)² / (Σ v)²`` (``v = 1/w``) instead of Kish's,
  which ignores that the weights go with the outcome;
- ``est=ht`` — a model-assisted Hansen–Hurwitz estimate over the ranks after the first
  unreviewed one, ``Σ q̃ + mean_j (y_j − q̃_j)/π_j`` with ``q̃`` the recalibrated model, and a
  normal interval (for ``draw=sqrt``, whose weights are fixed per image).

``per_band`` and ``max_bands`` set the bands (``per_band=0``: the app's rule,
:data:`sei_core.review_count.AUDITS_PER_BAND_PRIOR` picks a band where the model's share is
lent, else :data:`~sei_core.review_count.AUDITS_PER_BAND`). ``budget=B`` draws audits only while their expected cost in wrong labels found (the in-order
share wrong less the picks' share wrong) stays within ``B`` × the wrong labels found.

Checked against the product's path on derm-ham10000/symmetric/rate0.10/seed0, 30 replays:
``benchmarks/count_estimators.py`` (κ = 10) 0.110 mean |rel. error|, 83 % within 15 %, coverage
93.3 %; this re-play 0.113, 77 %, 97.6 %.

    python benchmarks/audit_sweep.py bench/ham/cells/*/symmetric/*/seed0 --reps 100 \\
        --configs "boost=4;boost=100;boost=4,kappa=20;boost=4,est=bands_lin" [--csv out.csv]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

import sei_core.review_count as rc
from sei_core.metrics import auroc
from sei_core.review import ReviewQueue
from sei_core.review_sim import truth_of
from sei_core.runs import Run
from sei_core.score_cache import scored

DEFAULTS = dict(draw="rank", est="bands", kappa=rc.PRIOR_PICKS, share=rc.DEFAULT_AUDIT_SHARE, boost=4.0,
                floor=1 / 3, budget=0.0, per_band=0, max_bands=rc.MAX_BANDS)  # per_band 0: the app's rule


class _Unreviewed:
    """A store in which nothing is reviewed (the static order alone)."""

    def statuses(self, ids):
        return np.full(len(ids), "", dtype=object)


def load(cell: Path) -> dict:
    """A finished cell in the static order: wrong (truth), the model's log-odds, given labels."""
    s = scored(Run(cell / "run"), write=False).scores
    ids = list(s.ids)
    wrong = np.asarray(s.classes, dtype=object)[np.asarray(s.labels)] != truth_of(cell / "truth.csv", ids)
    a = ReviewQueue(ids, s.labels, s.score, s.flagged).audit(_Unreviewed())
    x = rc.wrong_log_odds(s.score)
    if x is None:
        raise SystemExit(f"{cell}: its scores are not probabilities (rank by confidence)")
    return dict(n=len(ids), y=wrong[a.order], x=x[a.order], given=np.asarray(s.labels)[a.order], scale=a.scale,
                auroc=auroc(-x, wrong))


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def _hajek_linearised(group, y, inv_w, k):
    """As ``review_count._hajek``, the effective sample size from the linearised variance
    (between Kish's and the number of picks)."""
    s1 = np.bincount(group, weights=inv_w, minlength=k)[:k]
    s2 = np.bincount(group, weights=inv_w ** 2, minlength=k)[:k]
    sy = np.bincount(group, weights=inv_w * y, minlength=k)[:k]
    picks = np.bincount(group, minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(s1 > 0, sy / np.where(s1 > 0, s1, 1), 0.0)
        kish = np.where(s2 > 0, s1 ** 2 / np.where(s2 > 0, s2, 1), 0.0)
        v = np.bincount(group, weights=inv_w ** 2 * (y - share[group]) ** 2, minlength=k)[:k] / np.where(
            s1 > 0, s1, 1) ** 2
        ess = np.clip(np.where(v > 0, share * (1 - share) / np.where(v > 0, v, 1), kish), kish, picks)
    return np.clip(share, 0.0, 1.0), ess


def _ht(c, rank, y, audit, w_fixed):
    """Model-assisted Hansen–Hurwitz: (estimate, low, high), None under 10 usable picks."""
    n = c["n"]
    done = np.zeros(n, bool)
    done[rank] = True
    first = int(np.argmax(~done)) if (~done).any() else n
    use = audit & (rank > first)
    if use.sum() < 10:
        return None
    coef = rc.recalibration(c["x"][rank], y)
    q = _sigmoid(coef[0] + coef[1] * c["x"]) if coef is not None else np.zeros(n)
    j = rank[use]
    z = q[first:].sum() + (y[use] - q[j]) * w_fixed[first:].sum() / w_fixed[j]
    mid, se = z.mean() - y[rank > first].sum(), z.std(ddof=1) / math.sqrt(use.sum())
    f = y.sum()
    return f + max(mid, 0), f + max(mid - 1.645 * se, 0), f + max(mid + 1.645 * se, 0)


def replay(c: dict, rep: int, decisions: int, cfg: dict) -> list[tuple[int, int, tuple | None]]:
    """One truthful review: ``(decisions, found, (estimate, low, high) or None)`` per checkpoint."""
    rng = np.random.default_rng(1000 + rep)
    n, y = c["n"], c["y"]
    decided = np.zeros(n, bool)
    cursor, recent, spent = -1, [], 0.0
    ranks, ys, audits, weights = [], [], [], []
    w_fixed = np.sqrt(_sigmoid(c["x"]))
    w_fixed = w_fixed + w_fixed.mean()
    marks = {max(1, int(round(decisions * f / 10))) for f in range(1, 11)}
    out = []
    for d in range(1, decisions + 1):
        free = np.flatnonzero(~decided)
        if not free.size:
            break
        p_in = (sum(recent[-20:]) + 1) / (len(recent[-20:]) + 1)
        chance = cfg["share"] * max(1 - p_in, cfg["floor"]) if recent else 0.0
        cost = 0.0
        if cfg["budget"] and recent:
            na = sum(audits)
            cost = max(p_in - (sum(v for v, a in zip(ys, audits) if a) + 0.5) / (na + 1), 0.0)
            chance = cfg["share"] if spent + cost <= cfg["budget"] * (sum(ys) + 1) else 0.0
        pick, w = None, 0.0
        if chance > 0 and rng.random() < chance:
            wt = (rc.audit_weights(free, min(max(cursor + 1, free[0]), n), c["scale"], cfg["boost"])
                  if cfg["draw"] == "rank" else w_fixed[free])
            i = rng.choice(free.size, p=wt / wt.sum())
            pick, w = int(free[i]), float(wt[i] * free.size / wt.sum())
            spent += cost
        if pick is None:
            ahead = free[free > cursor]
            pick = int(ahead[0] if ahead.size else free[0])
            cursor = max(cursor, pick)
            recent.append(bool(y[pick]))
        decided[pick] = True
        ranks.append(pick), ys.append(bool(y[pick])), audits.append(w > 0), weights.append(w)
        if d in marks:
            r, yy, aa, ww = (np.array(v) for v in (ranks, ys, audits, weights))
            if cfg["est"] == "ht":
                est = _ht(c, r, yy, aa, w_fixed)
            else:
                hajek = rc._hajek
                if cfg["est"] == "bands_lin":
                    rc._hajek = _hajek_linearised
                try:
                    res = rc.count_from_decisions(c["given"], r, yy, aa, ww, x_by_rank=c["x"],
                                                  prior_picks=cfg["kappa"], seed=rep,
                                                  audits_per_band=int(cfg["per_band"]) or None,
                                                  max_bands=int(cfg["max_bands"]))
                finally:
                    rc._hajek = hajek
                est = (res.count, res.low, res.high) if res.source == "decisions" else None
            out.append((d, int(yy.sum()), est))
    return out


def measure(c: dict, reps: int, share_n: float, cfg: dict) -> dict:
    """Coverage over the checkpoints counted from the decisions; |relative error| and within
    15 % at the last (a replay still on the model's estimate there counts as not within); the
    worst checkpoint's mean found / static order's."""
    decisions = int(round(share_n * c["n"]))
    static, true = np.cumsum(c["y"]), int(c["y"].sum())
    held, errors, ratio = [], [], {}
    for rep in range(reps):
        for d, found, est in replay(c, rep, decisions, cfg):
            ratio.setdefault(d, []).append(found / max(static[d - 1], 1))
            if est is not None:
                held.append(est[1] <= true <= est[2])
            if d == decisions:
                errors.append(abs(est[0] - true) / true if est else np.nan)
    e = np.array(errors)
    return dict(coverage=float(np.mean(held)) if held else np.nan, checkpoints=len(held), error=float(np.nanmean(e)),
                within15=float(np.mean(e <= 0.15)), found=float(min(np.mean(v) for v in ratio.values())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cells", nargs="+", type=Path)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--share-n", type=float, default=0.2, help="decisions as a share of N")
    ap.add_argument("--configs", default="boost=4", help="';'-separated settings, each 'key=value,…' of "
                    + ", ".join(f"{k} (default {v if isinstance(v, str) else round(v, 3)})" for k, v in DEFAULTS.items()))
    ap.add_argument("--csv", type=Path)
    a = ap.parse_args()
    configs = {}
    for text in a.configs.split(";"):
        cfg = dict(DEFAULTS)
        for part in filter(None, text.split(",")):
            k, v = part.split("=")
            cfg[k] = v if k in ("draw", "est") else float(v)
        configs[text] = cfg
    rows = []
    for cell in a.cells:
        if not (cell / "results.csv").is_file():
            continue
        c = load(cell)
        print(f"{cell}  N {c['n']}  wrong {int(c['y'].sum())}  AUROC {c['auroc']:.3f}", flush=True)
        for name, cfg in configs.items():
            r = measure(c, a.reps, a.share_n, cfg)
            rows.append(dict(cell=str(cell), auroc=c["auroc"], config=name, **r))
            print(f"  {name:32s} coverage {100 * r['coverage']:5.1f} % of {r['checkpoints']:4d} | |rel. error| "
                  f"{r['error']:.3f} | within 15 % {100 * r['within15']:3.0f} % | found/static >= {r['found']:.3f}",
                  flush=True)
    df = pd.DataFrame(rows)
    if df.empty:
        raise SystemExit("no finished cell (results.csv) among the folders given")
    print(f"\n{df['cell'].nunique()} cells, {a.reps} replays each, {a.share_n:.0%} of N decisions:")
    for name, g in df.groupby("config", sort=False):
        inside = int(((g["coverage"] >= 0.85) & (g["coverage"] <= 0.95)).sum())
        print(f"  {name:32s} coverage {100 * g['coverage'].min():.1f}–{100 * g['coverage'].max():.1f} % ({inside} cells "
              f"in 85–95 %) | mean |rel. error| {g['error'].mean():.3f} | within 15 % {100 * g['within15'].min():.0f}–"
              f"{100 * g['within15'].max():.0f} % | found/static >= {g['found'].min():.3f}")
    if a.csv:
        df.to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
