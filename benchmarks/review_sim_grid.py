"""`sei review-sim` over every finished cell of one or more `sei bench` folders: the count from
the decisions (issue 22) measured against the truth, cell by cell.

For each cell (``cells/<data>/<noise>/rate<r>/seed<s>/`` with ``run/``, ``truth.csv`` and a
``results.csv``, i.e. finished) it plays ``--repeats`` truthful reviews of ``--share-of-n`` x N
decisions through the app's queue, store (on a copy of the label file) and estimator, and prints
per cell: the ranking's AUROC, the share of checkpoints whose 90 % interval held the true count,
the mean |relative error| and the share of replays within 15 % at the last checkpoint, and the
wrong labels found as a share of the static order's at the worst checkpoint.

    python benchmarks/review_sim_grid.py bench/ham-cpu bench/retina-cpu \\
        [--repeats 10] [--share-of-n 0.2] [--audit-share 0.3] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sei_core.review_sim import simulate, summary, truth_of
from sei_core.runs import Run
from sei_core.score_cache import scored


def auroc(score: np.ndarray, wrong: np.ndarray) -> float:
    """AUROC of ``-score`` (lower = more suspicious) for the wrong labels (ties count half)."""
    s = np.nan_to_num(-np.asarray(score, dtype=float), nan=-np.inf)
    r = pd.Series(s).rank().to_numpy()
    pos = wrong.sum()
    neg = wrong.size - pos
    return float((r[wrong].sum() - pos * (pos + 1) / 2) / (pos * neg)) if pos and neg else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--share-of-n", type=float, default=0.2, help="decisions as a share of the data set")
    ap.add_argument("--audit-share", type=float, default=None, help="default: the app's")
    ap.add_argument("--audit-boost", type=float, default=None, help="default: the app's")
    ap.add_argument("--csv", type=Path, help="write every replay row here")
    ap.add_argument("--cells", default="", help="only cells whose path contains one of these comma-separated parts")
    a = ap.parse_args()
    rows, cells = [], []
    for bench in a.bench:
        for cell in sorted((bench / "cells").glob("*/*/rate*/seed*")):
            if not (cell / "results.csv").is_file():
                continue
            if a.cells and not any(part in str(cell) for part in a.cells.split(",")):
                continue
            t0 = time.perf_counter()
            s = scored(Run(cell / "run"), write=False).scores
            n = len(s.ids)
            truth = truth_of(cell / "truth.csv", list(s.ids))
            given = pd.read_csv(cell / "truth.csv", dtype=str).set_index("path")["given_label"].reindex(s.ids)
            wrong = given.to_numpy(dtype=object) != truth
            kw = {k: v for k, v in (("audit_share", a.audit_share), ("audit_boost", a.audit_boost)) if v is not None}
            df = simulate(cell / "run", cell / "truth.csv", int(round(a.share_of_n * n)), repeats=a.repeats,
                          scores=s, **kw)
            name = "/".join(cell.parts[-4:])
            df.insert(0, "cell", name)
            rows.append(df)
            sm = summary(df, n, a.share_of_n)
            cells.append(dict(cell=name, n=n, wrong=int(wrong.sum()), auroc=auroc(s.score, wrong), **sm,
                              seconds=time.perf_counter() - t0))
            c = cells[-1]
            print(f"{name:45s} AUROC {c['auroc']:.3f}  coverage {100 * c['coverage']:5.1f} % of {c['checkpoints']:3d}  "
                  f"|rel err| {c['rel_error']:.3f}  within 15 % {100 * c['within15']:3.0f} %  "
                  f"found/static >= {c['min_found_ratio']:.2f}  ({c['seconds']:.0f} s)", flush=True)
    if not cells:
        raise SystemExit("no finished cell (cells/*/*/rate*/seed*/results.csv) in " + ", ".join(map(str, a.bench)))
    t = pd.DataFrame(cells)
    print(f"\n{len(t)} cells, {a.repeats} replays each, {a.share_of_n:.0%} of N decisions: coverage "
          f"{100 * t['coverage'].min():.0f}-{100 * t['coverage'].max():.0f} % (cells in 85-95 %: "
          f"{int(t['coverage'].between(0.85, 0.95).sum())}), mean |rel err| {t['rel_error'].mean():.3f}, "
          f"found/static min {t['min_found_ratio'].min():.2f}")
    if a.csv:
        pd.concat(rows).to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
