"""Rare classes: flag rates on un-noised data and mean F1 on bench grids, per threshold rule.

Usage: python benchmarks/rare_classes.py --run RUN [RUN ...] --grid BENCH_DIR [BENCH_DIR ...]
       [--method confidence] [--rules own balanced count balanced:1]

Trains nothing: replays the recorded runs.

- ``--run``: runs trained on labels believed correct (e.g. the HAM10000 subset of
  ``benchmarks/ham_unnoised_subset.py``): how many images each rule flags, in all and per
  class — a false-flag rate, since the labels carry no injected noise.
- ``--grid``: every finished cell of ``sei bench`` grids: F1 of each rule against the cell's
  truth file, per cell and averaged over the cells (each cell = a data set, noise, rate and
  seed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sei_core import bench  # noqa: E402
from sei_core.methods import DEFAULT_METHOD, METHODS  # noqa: E402
from sei_core.ranking import count_errors, load_run, score_records  # noqa: E402
from sei_core.runs import Run, State  # noqa: E402
from sei_core.scores import combine_runs, frequency_scaled_thresholds  # noqa: E402


def md(df: pd.DataFrame, index: bool = True) -> str:
    """A DataFrame as a Markdown table (floats to one decimal)."""
    d = df.reset_index() if index else df
    cell = lambda v: f"{v:.1f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, d.columns)) + " |", "|" + "---|" * len(d.columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in d.itertuples(index=False)])


def f1(flagged: np.ndarray, noisy: np.ndarray) -> float:
    tp = (flagged & noisy).sum()
    d = flagged.sum() + noisy.sum()
    return float(2 * tp / d) if d else 0.0


def flags(loaded, method: str, rule: str) -> np.ndarray:
    """The flags of ``method`` by ``rule``: a rule of sei_core.methods.RULES, or ``balanced:A``
    (the balanced rule with exponent A instead of sei_core.scores.BALANCED_POWER)."""
    if rule.startswith("balanced:"):
        power = float(rule.split(":", 1)[1])
        m = METHODS[method]
        k = len(loaded.classes)
        scores, thr = [], []
        for rec, aux in zip(loaded.records, loaded.is_aux):
            s = np.asarray(m(rec), dtype=np.float64)
            scores.append(s)
            thr.append(frequency_scaled_thresholds(m.threshold(s, aux), np.where(aux, k, loaded.labels), k, power))
        score, t, src = combine_runs(np.stack(scores), np.stack(thr), loaded.is_aux)
        return (src >= 0) & (score < np.nan_to_num(t, nan=-np.inf))
    count = count_errors(loaded.records, loaded.is_aux) if rule == "count" else None
    return score_records(loaded.records, loaded.is_aux, method, rule, count=count).flagged


def flag_rates(run_dir: Path, method: str, rules: list[str]) -> pd.DataFrame:
    loaded = load_run(Run(run_dir))
    rows = []
    for rule in rules:
        f = flags(loaded, method, rule)
        row = {"rule": rule, "all": f"{int(f.sum())}/{len(f)} ({100 * f.mean():.1f} %)"}
        for c, name in enumerate(loaded.classes):
            m = loaded.labels == c
            row[name] = f"{int(f[m].sum())}/{int(m.sum())} ({100 * f[m].mean():.0f} %)"
        rows.append(row)
    return pd.DataFrame(rows).set_index("rule").T


def grid_f1(bench_dirs: list[Path], method: str, rules: list[str]) -> pd.DataFrame:
    rows = []
    for d in bench_dirs:
        for cell in sorted(Path(d).glob(bench.CELL_GLOB)):
            run = cell / "run"
            if not (run / "status.json").is_file() or Run(run).state() != State.FINISHED:
                continue
            loaded = load_run(Run(run))
            truth = pd.read_csv(cell / "truth.csv", dtype=str, keep_default_na=False)
            noisy_of = dict(zip(truth["path"], truth["is_noisy"].str.lower() == "true"))
            noisy = np.array([noisy_of[i] for i in loaded.ids])
            row = {"cell": "/".join(cell.parts[-4:])}
            for rule in rules:
                row[rule] = 100 * f1(flags(loaded, method, rule), noisy)
            rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", nargs="*", default=[], type=Path)
    ap.add_argument("--grid", nargs="*", default=[], type=Path)
    ap.add_argument("--method", default=DEFAULT_METHOD)
    ap.add_argument("--rules", nargs="+", default=["own", "balanced"])
    a = ap.parse_args(argv)
    for r in a.run:
        print(f"\n## Flagged on {r} ({a.method})\n")
        print(md(flag_rates(r, a.method, a.rules).rename_axis("class")))
    if a.grid:
        df = grid_f1(a.grid, a.method, a.rules)
        if df.empty:
            print("no finished cell found")
            return 1
        print(f"\n## F1 (%) of {a.method} per cell and rule ({len(df)} cells)\n")
        print(md(df, index=False))
        print("\nmean: " + ", ".join(f"{r} {df[r].mean():.2f}" for r in a.rules))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
