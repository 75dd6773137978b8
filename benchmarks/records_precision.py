"""What the compact records' float16 does to every method's scores, on a real run.

Takes a run directory whose records are in the old full-precision format (float32 fields in
one ``epoch_XXXX.npz`` per epoch, as written before the columnar store), copies it (without
the image cache and checkpoints), converts the copy's records to the columnar layout with
:meth:`sei_core.records.RecordStore.convert`, scores both with every method of
:data:`sei_core.methods.METHODS` (:func:`sei_core.ranking.score_method`) and prints, per
method: the largest absolute score difference (and relative to the score's range), the
Spearman rank correlation, and how many flags changed.

    python benchmarks/records_precision.py runs/old-run
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from sei_core.methods import METHODS
from sei_core.ranking import load_run, score_method
from sei_core.runs import Run


def compare(full: Run, compact: Run) -> pd.DataFrame:
    a, b = load_run(full), load_run(compact)
    rows = []
    for name in METHODS:
        x, y = score_method(a, name), score_method(b, name)
        ok = np.isfinite(x.score) & np.isfinite(y.score)
        diff = np.abs(x.score[ok] - y.score[ok])
        span = np.ptp(x.score[ok]) or 1.0
        rho = pd.Series(x.score[ok]).rank().corr(pd.Series(y.score[ok]).rank())
        rows.append({"method": name, "max_abs_diff": diff.max(), "max_diff_of_range": diff.max() / span,
                     "spearman": rho, "flagged_full": int(x.flagged.sum()),
                     "flags_changed": int((x.flagged != y.flagged).sum())})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run directory with old-format (float32 .npz) records")
    a = ap.parse_args(argv)
    full = Run(a.run)
    runs = range(1, full.n_sub_runs() + 1)
    if not all(full.records(r).is_legacy() for r in runs if full.records(r).epochs()):
        raise SystemExit(f"{a.run}: its records are not in the old full-precision format")
    work = Path(tempfile.mkdtemp(prefix="sei-precision-"))
    try:
        shutil.copytree(a.run, work / "full", ignore=shutil.ignore_patterns("cache", "checkpoint.pt", ".lock"))
        shutil.copytree(work / "full", work / "compact")
        compact = Run(work / "compact")
        for r in runs:
            compact.records(r).convert()
        df = compare(Run(work / "full"), compact)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(full.samples()[0])
    epochs = [len(full.records(r).epochs()) for r in runs]
    print(f"\n{a.run}: {n} samples, epochs per run {epochs}; full-precision (float32) records vs compact\n")
    print("| method | max abs diff | of the score's range | Spearman ρ | flagged (full) | flags changed |")
    print("|---|---|---|---|---|---|")
    for r in df.itertuples():
        print(f"| {r.method} | {r.max_abs_diff:.2e} | {r.max_diff_of_range:.1e} | {r.spearman:.6f} | "
              f"{r.flagged_full} | {r.flags_changed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
