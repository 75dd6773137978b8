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
from sei_core.methods import DEFAULT_METHOD, METHODS, PAPER_METHOD  # noqa: E402
from sei_core.metrics import detection_report  # noqa: E402
from sei_core.ranking import count_errors, load_run, score_records  # noqa: E402
from sei_core.runs import Run  # noqa: E402


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_dirs", nargs="+")
    ap.add_argument("--out", default=None, help="write every F1 row here (CSV)")
    a = ap.parse_args(argv)
    rows, counts = [], []
    for d in a.bench_dirs:
        for cell in sorted(Path(d).glob(bench.CELL_GLOB)):
            if not (cell / "run" / "status.json").is_file() or Run(cell / "run").status().get("state") != "finished":
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
    t = cnt.assign(rel=(cnt["count"] - cnt["n_noisy"]) / cnt["n_noisy"])
    wide = t.pivot_table(index=["dataset", "noise", "rate"], columns=["estimator", "scores"], values="count")
    wide.insert(0, "true", t.groupby(["dataset", "noise", "rate"])["n_noisy"].first())
    print(wide.round(0).to_markdown())
    print()
    print(bench.count_errors_table(cnt).round(3).to_markdown(index=False))
    print("\nAuxiliary vs truly mislabeled samples, median "
          f"{DEFAULT_METHOD} score (per run, before merging):\n")
    print(cnt.groupby(["dataset", "noise", "rate"])[["aux_median", "noisy_median"]].first().round(3).to_markdown())

    print("\n## Mean F1 over cells by method, rule and merge (%)\n")
    g = (df.groupby(["method", "rule", "count_from", "how"])["f1"].mean() * 100).unstack("how")
    print(g.round(1).to_markdown())
    print("\n## Per cell: default and paper's SEI, own rule vs count rule (averaged runs, F1 %)\n")
    key = ["dataset", "noise", "rate"]
    mean = df[df["how"] == "mean"]
    out = []
    for (d, n, r), part in mean.groupby(key):
        row = {"cell": f"{d} {n} {r:.0%}"}
        for m in (DEFAULT_METHOD, PAPER_METHOD):
            pm = part[part["method"] == m]
            row[f"{m} own"] = 100 * pm[pm["rule"] == "own"]["f1"].mean()
            for rule in ("count", "count per class"):
                sel = pm[(pm["rule"] == rule) & (pm["count_from"] == "bbe/confidence")]
                row[f"{m} {rule}"] = 100 * sel["f1"].mean()
            row[f"{m} best"] = 100 * pm["best_f1"].mean()
        out.append(row)
    print(pd.DataFrame(out).round(1).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
