"""A simulated reviewer on the product's own code path (``sei review-sim``).

A truthful expert (who answers every image with its true label) reviews a finished run through
the same :class:`~sei_core.review.ReviewQueue` (audit sampling included),
:class:`~sei_core.review.ReviewStore` (on a copy of the label file in a temporary folder,
never the user's file) and estimator (:meth:`ReviewQueue.count`) the app uses, and the
estimate is recorded at checkpoints (every 10 % of the decisions and at the end).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .labels import read_table
from .review import AUDIT_BOOST, AUDIT_FLOOR, ReviewQueue, ReviewStore, review_columns
from .review_count import DEFAULT_AUDIT_SHARE
from .runs import Run

COLUMNS = ("replay", "decisions", "found", "estimate", "low", "high", "true_count", "static_found",
           "unreviewed_estimate", "unreviewed_low", "unreviewed_high", "true_unreviewed", "audits", "source")


def truth_of(truth_csv: str | Path, ids: list[str]) -> np.ndarray:
    """The true label of each of ``ids`` from a truth file (``path`` and ``true_label`` columns,
    as ``sei bench`` writes them). Raises ValueError naming the file and the ids it lacks."""
    t = pd.read_csv(truth_csv, dtype=str, keep_default_na=False)
    for col in ("path", "true_label"):
        if col not in t.columns:
            raise ValueError(f"{truth_csv}: no column {col!r} (columns: {', '.join(t.columns)}). "
                             "A truth file has 'path' and 'true_label' columns.")
    m = pd.Series(t["true_label"].str.strip().to_numpy(), index=t["path"].str.strip())
    m = m[~m.index.duplicated()]
    got = m.reindex(ids)
    missing = got.isna()
    if missing.any():
        miss = [ids[i] for i in np.flatnonzero(missing.to_numpy())[:3]]
        raise ValueError(f"{truth_csv} has no true label for {int(missing.sum())} sample(s) of the run "
                         f"(e.g. {', '.join(map(repr, miss))}). Use the truth file of this run's data.")
    return got.to_numpy(dtype=object)


def checkpoints(decisions: int) -> list[int]:
    """Every 10 % of ``decisions`` and ``decisions`` itself (distinct, ascending, > 0)."""
    return sorted({max(1, int(round(decisions * f / 10))) for f in range(1, 11)})


def simulate(run_path: str | Path, truth_csv: str | Path, decisions: int, *, repeats: int = 10,
             audit_share: float = DEFAULT_AUDIT_SHARE, audit_boost: float = AUDIT_BOOST,
             audit_floor: float = AUDIT_FLOOR, seed: int = 0, scores=None, workdir: str | Path | None = None,
             on_checkpoint=None) -> pd.DataFrame:
    """Play ``repeats`` truthful reviews of ``decisions`` decisions each; one row per replay and
    checkpoint with the columns :data:`COLUMNS` (``static_found``: wrong labels among the first
    ``decisions`` images of the static order, without audits). ``scores``: the run's
    :class:`~sei_core.ranking.RunScores` if already loaded; ``audit_share``, ``audit_boost`` and
    ``audit_floor`` as in :class:`~sei_core.review.ReviewQueue`. ``on_checkpoint(row, queue,
    store)``, if given, is called at each checkpoint with the row just recorded (to compare other
    estimators on the same decisions, ``benchmarks/count_estimators.py``)."""
    run = Run(run_path)
    if scores is None:
        from .score_cache import scored
        scores = scored(run, write=False).scores
    s = scores
    cfg = run.config()
    data = Path(cfg.get("data", ""))
    cols = review_columns(run)
    table = read_table(data, path_column=cols["path_column"], label_column=cols["label_column"])
    file_label = pd.Series(table.frame[table.label_column].astype(str).str.strip().to_numpy(),
                           index=table.paths().to_numpy())
    ids = list(s.ids)
    truth = truth_of(truth_csv, ids)
    given = file_label.reindex(ids).fillna("").to_numpy(dtype=object)
    wrong = given != truth
    true_count = int(wrong.sum())
    base = Path(workdir) if workdir else Path("/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir())
    rows = []
    marks = checkpoints(decisions)
    static = ReviewQueue(ids, s.labels, s.score, s.flagged)
    static_wrong = np.cumsum(wrong[static.audit(_NoStore(len(ids))).order])
    for rep in range(repeats):
        tmp = Path(tempfile.mkdtemp(prefix="sei-review-sim-", dir=base))
        try:
            copy = tmp / data.name
            shutil.copyfile(data, copy)
            store = ReviewStore(copy, classes=list(s.classes), **cols)
            q = ReviewQueue(ids, s.labels, s.score, s.flagged, audit_share=audit_share, audit_boost=audit_boost,
                            audit_floor=audit_floor, seed=seed * 1000 + rep)
            q.follow(store)
            current = q.next_image(None, store)
            found = 0
            for d in range(1, decisions + 1):
                if current is None:
                    break
                label, status, _, _ = q.row(current)
                i = int(q.index[q.position[current]])
                smp = q.sampling(current, store)
                if truth[i] == label:
                    dec = store.confirm(current, "simulated expert", label, sampling=smp)
                else:
                    dec = store.relabel(current, truth[i], "simulated expert", label, sampling=smp)
                    found += 1
                q.apply(dec.path, dec.new_label, dec.new_status, dec.reviewer)
                if d in marks:
                    c, _, _ = q.count(store, model=s.count, seed=rep)
                    decided = q.audit(store).decided
                    rows.append(dict(replay=rep, decisions=d, found=found, estimate=c.count, low=c.low, high=c.high,
                                     true_count=true_count,
                                     static_found=int(static_wrong[min(d, len(ids)) - 1]),
                                     unreviewed_estimate=c.unreviewed_count, unreviewed_low=c.unreviewed_low,
                                     unreviewed_high=c.unreviewed_high,
                                     true_unreviewed=int((wrong & ~decided).sum()), audits=c.audits_used,
                                     source=c.source))
                    if on_checkpoint is not None:
                        on_checkpoint(rows[-1], q, store)
                current = q.next_image(current, store)
            store.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return pd.DataFrame(rows, columns=list(COLUMNS))


class _NoStore:
    """Nothing reviewed: the static order alone (for ``static_found``)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def statuses(self, ids):
        return np.full(len(ids), "", dtype=object)


def summary(df: pd.DataFrame, n: int, at_share: float = 0.2) -> dict:
    """Coverage of the interval, |relative error| at ``at_share`` of ``n`` decisions (the
    nearest checkpoint) and found / static_found, over a review-sim table."""
    d = df[df["source"] == "decisions"]
    cov = float(((d["low"] <= d["true_count"]) & (d["true_count"] <= d["high"])).mean()) if len(d) else float("nan")
    target = int(round(at_share * n))
    last = df[df["decisions"] == df["decisions"].iloc[(df["decisions"] - target).abs().argmin()]] if len(df) else df
    rel = ((last["estimate"] - last["true_count"]).abs() / last["true_count"].clip(lower=1))
    ratio = (df.groupby("decisions")["found"].mean() / df.groupby("decisions")["static_found"].mean().clip(lower=1))
    return dict(coverage=cov, checkpoints=len(d), rel_error=float(rel.mean()) if len(rel) else float("nan"),
                within15=float((rel <= 0.15).mean()) if len(rel) else float("nan"),
                min_found_ratio=float(ratio.min()) if len(ratio) else float("nan"),
                at=int(last["decisions"].iloc[0]) if len(last) else 0)
