"""Markdown for docs/benchmarks.md from one or more `sei bench` directories.

    python benchmarks/grid_report.py bench/retina-cpu bench/ham-cpu [--metrics f1 auroc] > report.md

Prints, for every data set and noise type: a table per metric (mean ± std over seeds, best in
bold); then every method over all cells (:func:`sei_core.bench.overall`), where the app's
default ranking and the paper's SEI stand against the best other method in each cell
(:func:`sei_core.bench.wins`), and the wall time of the runs behind each cell.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sei_core import bench  # noqa: E402
from sei_core.methods import DEFAULT_METHOD, PAPER_METHOD  # noqa: E402

TITLES = bench.METRIC_TITLES


def _md_table(df: pd.DataFrame, index_name: str) -> list[str]:
    lines = [f"| {index_name} | " + " | ".join(map(str, df.columns)) + " |",
             "|---|" + "---:|" * len(df.columns)]
    lines += [f"| {i} | " + " | ".join(map(str, row)) + " |" for i, row in df.astype(object).iterrows()]
    return lines + [""]


def report(dirs: list[str], metrics: list[str]) -> str:
    results = pd.concat([bench.load_results(d) for d in dirs], ignore_index=True)
    out = []
    for d in dirs:
        info = Path(d) / "bench.json"
        if info.is_file():
            s = json.loads(info.read_text())
            t = s["train"]
            out.append(f"- `{d}`: {t['model']}, weights {t.get('weights') or 'none'}, {t['epochs']} epochs, "
                       f"{t['image_size']} px, batch {t['batch_size']}, lr {t['lr']}, {s['folds']}-fold CV"
                       + (f", a stratified subset of {s['max_samples']} images" if s.get("max_samples") else ""))
    out.append("")
    summary = bench.summarize(results, metrics)
    for (dataset, noise), part in summary.groupby(["dataset", "noise"], sort=True):
        seeds = int(part["seeds"].min()), int(part["seeds"].max())
        seed_text = f"{seeds[0]} seeds" if seeds[0] == seeds[1] else f"{seeds[0]}–{seeds[1]} seeds"
        out += [f"#### {dataset}, {noise} noise ({seed_text})", ""]
        for metric in metrics:
            out += [f"{TITLES[metric]}", ""] + _md_table(bench.metric_table(part, metric, bold_best=True), "method")
    out += ["#### Every method over all cells (F1)", ""]
    allc = bench.overall(results, "f1").set_index("method")
    allc["mean"] = (100 * allc["mean"]).round(1)
    allc["worst_gap"] = (100 * allc["worst_gap"]).round(1)
    allc[["rank", "best_in", "cells"]] = allc[["rank", "best_in", "cells"]].astype(int)
    out += _md_table(allc[["rank", "mean", "best_in", "cells", "worst_gap"]], "method")
    for m in dict.fromkeys([DEFAULT_METHOD, PAPER_METHOD]):
        w = bench.wins(results, m, "f1")
        lost = w[~w["at_or_above_all"]]
        out += [f"`{m}` is at or above every other method's mean F1 in {len(w) - len(lost)} of {len(w)} cells."
                + ("" if lost.empty else " Below the best in:"), ""]
        if not lost.empty:
            t = lost.assign(cell=lost["dataset"] + " " + lost["noise"] + " " + lost["rate"].map("{:.0%}".format),
                            mean=(100 * lost["mean"]).round(1), best=(100 * lost["best_other_mean"]).round(1),
                            gap=(100 * lost["gap"]).round(1))
            out += _md_table(t.set_index("cell")[["mean", "best_other", "best", "gap"]], "cell")
    out += ["#### Wall time per cell (seconds, mean over seeds)", "",
            "`SEI run`: both complementary runs, the training time every record-based method shares; "
            "`CV`: the k fold trainings of confident learning.", ""]
    rows = results[results["method"].isin([PAPER_METHOD, "confident_learning"])]
    wall = rows.pivot_table(index=["dataset", "noise", "rate"], columns="method", values="train_seconds",
                            aggfunc="mean").round(0)
    wall = wall.rename(columns={PAPER_METHOD: "SEI run", "confident_learning": "CV"})
    wall.index = [f"{d} {n} {r:.0%}" for d, n, r in wall.index]
    out += _md_table(wall, "cell")
    total = results.drop_duplicates(["dataset", "noise", "rate", "seed", "method"])
    sei_s = total.loc[total["method"] == PAPER_METHOD, "train_seconds"].sum()
    cv_s = total.loc[total["method"] == "confident_learning", "train_seconds"].sum()
    out += [f"Total: {sei_s / 3600:.2f} h of SEI runs and {cv_s / 3600:.2f} h of CV folds over "
            f"{len(total[total['method'] == PAPER_METHOD])} cell-seeds.", ""]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+")
    p.add_argument("--metrics", nargs="+", default=["f1", "auroc"], choices=list(TITLES))
    a = p.parse_args()
    print(report(a.dirs, a.metrics))


if __name__ == "__main__":
    main()
