"""Error counts, the count rule and run averaging, measured on the recorded runs of bench grids.

Usage: python benchmarks/count_grid.py bench/retina-cpu bench/ham-cpu [--out FILE.csv]

Trains nothing: for every cell whose SEI run has finished it reads the run's records and
truth file (and the cross-validation probabilities where they are complete) and measures

- every error-count estimate (:func:`sei_core.bench.cell_counts`) against the true count;
- every record-based method's F1 with its own rule and with the count rule (the ``k̂``
  lowest, globally or per given class, ``k̂`` from each record-based estimate), with the
  complementary runs merged by the first run (``first``) or averaged (``mean``);
- the best F1 any threshold on the same ranking could reach (an upper bound, from the truth);
- the auxiliary samples' bias: where they score against the truly mislabeled ones.

Prints the tables in docs/benchmarks.md and writes every row to ``--out`` (CSV).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sei_core import bench  # noqa: E402
from sei_core.methods import COUNT_ESTIMATOR, COUNT_METHOD, DEFAULT_METHOD, METHODS, PAPER_METHOD  # noqa: E402
from sei_core.metrics import detection_report  # noqa: E402
from sei_core.ranking import count_errors, load_run, score_records  # noqa: E402
from sei_core.runs import Run, State  # noqa: E402


def best_f1(score: np.ndarray, noisy: np.ndarray) -> float:
    """The highest F1 of flagging the ``k`` lowest scores, over every ``k``."""
    ok = np.isfinite(score)
    s, y = score[ok], noisy[ok]
    tp = np.cumsum(y[np.argsort(s, kind="stable")])
    k = np.arange(1, len(s) + 1)
    return float((2 * tp / (k + y.sum())).max())


def f1(flagged: np.ndarray, noisy: np.ndarray) -> float:
    tp = (flagged & noisy).sum()
    return float(2 * tp / (flagged.sum() + noisy.sum())) if flagged.sum() + noisy.sum() else 0.0


def measure_cell(folder: Path) -> tuple[list[dict], pd.DataFrame]:
    parts = folder.parts
    base = {"dataset": parts[-4], "noise": parts[-3], "rate": float(parts[-2][4:]), "seed": int(parts[-1][4:])}
    loaded = load_run(Run(folder / "run"))
    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
    noisy_of = dict(zip(truth["path"], truth["is_noisy"].str.lower() == "true"))
    noisy = np.array([noisy_of[i] for i in loaded.ids])
    counts = bench.cell_counts(folder, base)
    ests = {(e, s): count_errors(loaded.records, loaded.is_aux, estimator=e, method=s)
            for e, s in bench.COUNT_ESTIMATES if e != "cleanlab"}
    ests[("cleanlab", "run probabilities")] = count_errors(loaded.records, loaded.is_aux, estimator="cleanlab",
                                                          probs=loaded.probs)
    rows = []
    for m in METHODS:
        for how in ("first", "mean"):
            own = score_records(loaded.records, loaded.is_aux, m, "own", how=how)
            rows.append({**base, "method": m, "how": how, "rule": "own", "count_from": "",
                         "f1": f1(own.flagged, noisy), "flagged": int(own.flagged.sum()),
                         "best_f1": best_f1(own.score, noisy),
                         "auroc": detection_report(own.score, own.flagged, noisy)["auroc"]})
            for (e, s), est in ests.items():
                for per_class in (False, True):
                    ms = score_records(loaded.records, loaded.is_aux, m, "count", how=how, count=est,
                                       per_class=per_class)
                    rows.append({**base, "method": m, "how": how,
                                 "rule": "count per class" if per_class else "count",
                                 "count_from": f"{e}/{s}", "f1": f1(ms.flagged, noisy),
                                 "flagged": int(ms.flagged.sum()), "best_f1": rows[-1]["best_f1"],
                                 "auroc": rows[-1]["auroc"]})
    # the bias of the auxiliary samples, on the default's scores (per run, before merging)
    m = METHODS[DEFAULT_METHOD]
    aux_s, nat_s = [], []
    for rec, aux in zip(loaded.records, loaded.is_aux):
        s = np.asarray(m(rec), float)
        aux_s.append(s[aux])
        nat_s.append(s[~aux & noisy])
    counts["aux_median"] = float(np.median(np.concatenate(aux_s)))
    counts["noisy_median"] = float(np.median(np.concatenate(nat_s)))
    return rows, counts


def md(df: pd.DataFrame, index: bool = True, digits: int = 1) -> str:
    """A DataFrame as a Markdown table (numbers rounded to ``digits``)."""
    d = df.reset_index() if index else df
    d.columns = [" ".join(str(x) for x in c if str(x)) if isinstance(c, tuple) else str(c) for c in d.columns]

    def cell(v):
        if isinstance(v, float):
            return "–" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(d.columns) + " |", "|" + "---|" * len(d.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_dirs", nargs="*")
    ap.add_argument("--out", default=None, help="write every F1 row here (CSV)")
    ap.add_argument("--methods", nargs="+", default=[DEFAULT_METHOD, PAPER_METHOD, "aum"],
                    help="methods of the per-cell table")
    ap.add_argument("--count-from", default=f"{COUNT_ESTIMATOR}/{COUNT_METHOD}",
                    help="the estimate behind the count rule in the per-cell table (estimator/scores)")
    ap.add_argument("--from-csv", default=None, help="re-print the tables from an --out file instead of measuring")
    a = ap.parse_args(argv)
    rows, counts = [], []
    if a.from_csv:
        rows = pd.read_csv(a.from_csv, keep_default_na=False).to_dict("records")
        counts = [pd.read_csv(Path(a.from_csv).with_suffix(".counts.csv"))]
        a.bench_dirs = []
    for d in a.bench_dirs:
        for cell in sorted(Path(d).glob(bench.CELL_GLOB)):
            if not (cell / "run" / "status.json").is_file() or Run(cell / "run").state() != State.FINISHED:
                continue
            r, c = measure_cell(cell)
            rows += r
            counts.append(c)
    if not rows:
        print("no finished cell found")
        return 1
    df = pd.DataFrame(rows)
    cnt = pd.concat(counts, ignore_index=True)
    if a.out:
        df.to_csv(a.out, index=False)
        cnt.to_csv(Path(a.out).with_suffix(".counts.csv"), index=False)
    cells = df[["dataset", "noise", "rate", "seed"]].drop_duplicates()
    print(f"{len(cells)} cells: " + ", ".join(f"{r.dataset} {r.noise} {r.rate:.0%} s{r.seed}"
                                             for r in cells.itertuples()))
    print("\n## Error counts (estimate vs true number of mislabeled samples)\n")
    t = cnt.assign(rel=(cnt["count"] - cnt["n_noisy"]) / cnt["n_noisy"], rate=cnt["rate"].map("{:.0%}".format))
    wide = t.pivot_table(index=["dataset", "noise", "rate"], columns=["estimator", "scores"], values="count")
    wide.columns = [f"{e} {s}" for e, s in wide.columns]
    wide.insert(0, "true", t.groupby(["dataset", "noise", "rate"])["n_noisy"].first())
    print(md(wide, digits=0))
    print()
    print(md(bench.count_errors_table(cnt), index=False, digits=3))
    print("\nAuxiliary vs truly mislabeled samples, median "
          f"{DEFAULT_METHOD} score (per run, before merging):\n")
    print(md(t.groupby(["dataset", "noise", "rate"])[["aux_median", "noisy_median"]].first(), digits=3))

    print("\n## Mean F1 over cells by method, rule and merge (%)\n")
    g = (df.groupby(["method", "rule", "count_from", "how"], sort=False)["f1"].mean() * 100).unstack("how")
    print(md(g))
    print("\n## Per cell: methods with the old rule (own rule, first run) and the new ones (runs averaged; "
          f"own rule, count rule with k̂ from {a.count_from}), and the best F1 any threshold could give (F1 %)\n")
    key = ["dataset", "noise", "rate"]
    out = []
    for (d, n, r), part in df.groupby(key):
        row = {"cell": f"{d} {n} {r:.0%}"}
        for m in a.methods:
            old = part[(part["method"] == m) & (part["how"] == "first") & (part["rule"] == "own")]
            row[f"{m} old"] = 100 * old["f1"].mean()
            pm = part[(part["method"] == m) & (part["how"] == "mean")]
            row[f"{m} own"] = 100 * pm[pm["rule"] == "own"]["f1"].mean()
            for rule in ("count", "count per class"):
                sel = pm[(pm["rule"] == rule) & (pm["count_from"] == a.count_from)]
                row[f"{m} {rule}"] = 100 * sel["f1"].mean()
            row[f"{m} best"] = 100 * pm["best_f1"].mean()
        out.append(row)
    print(md(pd.DataFrame(out), index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
