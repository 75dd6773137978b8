"""`sei review-sim` over every finished cell of one or more `sei bench` folders: the count from
the decisions (issue 22) measured against the truth, cell by cell, with the audit settings given
(default: the app's), without writing into the cells (`sei bench --review-sim` does that).

For each cell (``cells/<data>/<noise>/rate<r>/seed<s>/`` with ``run/``, ``truth.csv`` and a
``results.csv``, i.e. finished) it plays ``--repeats`` truthful reviews of ``--share-of-n`` x N
decisions through the app's queue, store (on a copy of the label file) and estimator
(:func:`sei_core.bench.count_sim.simulate_cell`), and prints per cell: the ranking's AUROC, the
share of checkpoints whose 90 % interval held the true count, the mean |relative error| and the
share of replays within 15 % at the last checkpoint, and the wrong labels found as a share of
the static order's at the worst checkpoint; then the grid's table.

    python benchmarks/review_sim_grid.py bench/ham-cpu bench/retina-cpu \\
        [--repeats 10] [--share-of-n 0.2] [--audit-share 0.3] [--audit-boost 4] [--audit-floor 0.33] [--cells symmetric] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from sei_core.bench.count_sim import SUMMARY_COLUMNS, simulate_cell, table_markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--share-of-n", type=float, default=0.2, help="decisions as a share of the data set")
    ap.add_argument("--audit-share", type=float, default=None, help="default: the app's")
    ap.add_argument("--audit-boost", type=float, default=None, help="default: the app's")
    ap.add_argument("--audit-floor", type=float, default=None, help="default: the app's")
    ap.add_argument("--cells", default="", help="only cells whose path contains one of these comma-separated parts")
    ap.add_argument("--csv", type=Path, help="write every replay row here")
    a = ap.parse_args()
    kw = {k: v for k, v in (("audit_share", a.audit_share), ("audit_boost", a.audit_boost),
                            ("audit_floor", a.audit_floor)) if v is not None}
    rows, cells = [], []
    for bench in a.bench:
        for cell in sorted((bench / "cells").glob("*/*/rate*/seed*")):
            if not (cell / "results.csv").is_file():
                continue
            if a.cells and not any(part in str(cell) for part in a.cells.split(",")):
                continue
            t0 = time.perf_counter()
            df, c = simulate_cell(cell, a.share_of_n, a.repeats, **kw)
            df.insert(0, "cell", c["cell"])
            rows.append(df)
            cells.append(c)
            print(f"{c['cell']:45s} AUROC {c['auroc']:.3f}  coverage {100 * c['coverage']:5.1f} % of {c['checkpoints']:3d}  "
                  f"|rel err| {c['rel_error']:.3f}  within 15 % {100 * c['within15']:3.0f} %  "
                  f"found/static >= {c['min_found_ratio']:.2f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if not cells:
        raise SystemExit("no finished cell (cells/*/*/rate*/seed*/results.csv) in " + ", ".join(map(str, a.bench)))
    print(f"\n{a.repeats} replays per cell, {a.share_of_n:.0%} of N decisions, {kw or 'the app settings'}:\n")
    print(table_markdown(pd.DataFrame(cells, columns=list(SUMMARY_COLUMNS))))
    if a.csv:
        pd.concat(rows).to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
