"""Reading and reporting benchmark results: the rows of a bench directory, tables and plots.

What the app's Benchmark page and ``benchmarks/grid_report.py`` need, without knowing how a
bench directory is laid out (:mod:`sei_core.bench.grid` writes it): :func:`load_results`,
:func:`load_counts`, :func:`settings`, :func:`stamp`, and the summaries :func:`summarize`,
:func:`metric_table`, :func:`markdown_report`, :func:`wins`, :func:`overall`,
:func:`figures`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..files import atomic_write, atomic_write_csv
from ..methods import method_order

#: Metrics of a result row: of the flagged set (F1 first: the primary one), then of the ranking.
METRICS = ("f1", "precision", "recall", "auroc", "ap")
RESULT_COLUMNS = [
    "dataset", "noise", "rate", "seed", "method", "f1", "precision", "recall", "auroc", "ap",
    "flagged", "wall_seconds", "n_samples", "n_noisy", "train_seconds", "score_seconds",
    "threshold_rule",
]
#: Columns of a cell's ``counts.csv``: every error-count estimate beside the true count.
COUNT_COLUMNS = ["dataset", "noise", "rate", "seed", "estimator", "scores", "count", "low", "high",
                 "n_noisy", "n_samples"]
#: Where a cell's files lie below a bench directory: cells/<dataset>/<noise>/rate<R>/seed<S>/.
CELL_GLOB = "cells/*/*/*/*"


def cell_folder(bench_dir: str | Path, dataset: str, noise: str, rate: float, seed: int) -> Path:
    """The folder of one cell of a bench directory."""
    return Path(bench_dir) / "cells" / dataset / noise / f"rate{rate:.2f}" / f"seed{seed}"


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a table atomically (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(path, frame)


def settings(bench_dir: str | Path) -> dict:
    """The bench directory's recorded settings (``bench.json``: ``train``, ``folds``,
    ``max_samples``), or ``{}``."""
    info = Path(bench_dir) / "bench.json"
    return json.loads(info.read_text()) if info.is_file() else {}


def stamp(bench_dir: str | Path) -> tuple:
    """Changes whenever a cell finishes or the gathered results are rewritten (for caches)."""
    folder = Path(bench_dir)
    cells = sorted(folder.glob(CELL_GLOB + "/results.csv"))
    gathered = folder / "results.csv"
    st = gathered.stat() if gathered.is_file() else None
    return ((st.st_size, st.st_mtime_ns) if st else (0, 0), len(cells),
            max((c.stat().st_mtime_ns for c in cells), default=0))


def load_counts(bench_dir: str | Path) -> pd.DataFrame:
    """Every error-count estimate of a bench directory (the cells' ``counts.csv``), one row
    per cell and estimator; columns :data:`COUNT_COLUMNS`."""
    parts = sorted(Path(bench_dir).glob(CELL_GLOB + "/counts.csv"))
    if not parts:
        return pd.DataFrame(columns=COUNT_COLUMNS)
    return pd.concat([pd.read_csv(f) for f in parts], ignore_index=True).reindex(columns=COUNT_COLUMNS)


def count_errors_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Per estimator (and the scores it read): mean absolute relative error
    ``|n̂ − n| / n`` over cells, mean signed relative error (the bias), cells within 15 %,
    and how often the interval holds the true count."""
    if counts.empty:
        return pd.DataFrame(columns=["estimator", "scores", "cells", "mare", "bias", "within_15", "covered"])
    c = counts.assign(rel=(counts["count"] - counts["n_noisy"]) / counts["n_noisy"])
    c["covered"] = (c["low"] <= c["n_noisy"]) & (c["n_noisy"] <= c["high"])
    g = c.groupby(["estimator", "scores"], sort=False)
    out = pd.DataFrame({"cells": g.size(), "mare": g["rel"].apply(lambda r: r.abs().mean()),
                        "bias": g["rel"].mean(), "within_15": g["rel"].apply(lambda r: int((r.abs() <= 0.15).sum())),
                        "covered": g["covered"].sum().astype(int)})
    return out.reset_index().sort_values("mare", kind="stable").reset_index(drop=True)


def load_results(bench_dir: str | Path) -> pd.DataFrame:
    """Every result row of a bench directory, one per data set, noise, rate, seed, method.

    Gathers the cells' ``results.csv`` files (the source of truth while a benchmark runs);
    a folder holding only a gathered ``results.csv`` (or that file itself) works too.
    Columns: :data:`RESULT_COLUMNS`.
    """
    p = Path(bench_dir)
    if p.is_file():
        return _typed(pd.read_csv(p))
    parts = sorted(p.glob(CELL_GLOB + "/results.csv"))
    if parts:
        frames = [pd.read_csv(f) for f in parts]
        return _typed(pd.concat(frames, ignore_index=True))
    if (p / "results.csv").is_file():
        return _typed(pd.read_csv(p / "results.csv"))
    return pd.DataFrame(columns=RESULT_COLUMNS)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reindex(columns=RESULT_COLUMNS)
    df["rate"] = df["rate"].astype(float)
    df["seed"] = df["seed"].astype(int)
    order = {m: i for i, m in enumerate(method_order(df["method"].unique()))}
    df = df.assign(_o=df["method"].map(order))
    return (df.sort_values(["dataset", "noise", "rate", "seed", "_o"], kind="stable")
              .drop(columns="_o").reset_index(drop=True))


def write_results(bench_dir: str | Path) -> pd.DataFrame:
    """Gather the cells' rows into ``results.csv`` (atomically) and return them."""
    bench_dir = Path(bench_dir)
    df = load_results(bench_dir)
    write_csv(df, bench_dir / "results.csv")
    return df


def summarize(results: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and (sample) standard deviation over seeds per data set, noise, rate and method.

    Columns ``<metric>_mean``, ``<metric>_std`` (NaN for a single seed) for each metric and
    for ``wall_seconds``, and ``seeds`` (how many seeds the mean is over).
    """
    cols = list(metrics) + ["wall_seconds"]
    if results.empty:
        return pd.DataFrame(columns=["dataset", "noise", "rate", "method", "seeds"]
                            + [f"{c}_{s}" for c in cols for s in ("mean", "std")])
    g = results.groupby(["dataset", "noise", "rate", "method"], sort=False)
    out = g[cols].agg(["mean", "std"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    out["seeds"] = g.size()
    return out.reset_index()


def _fmt(mean: float, std: float, metric: str) -> str:
    if pd.isna(mean):
        return "–"
    scale, digits = (1, 3) if metric == "auroc" else (100, 1)
    text = f"{mean * scale:.{digits}f}"
    if not pd.isna(std):
        text += f" ± {std * scale:.{digits}f}"
    return text


#: How tables and plots name each metric (F1, precision, recall and AP are shown in %).
METRIC_TITLES = {"f1": "F1 (%)", "precision": "Precision (%)", "recall": "Recall (%)",
                  "auroc": "AUROC", "ap": "Average precision (%)"}


def metric_table(summary: pd.DataFrame, metric: str, *, bold_best: bool = False) -> pd.DataFrame:
    """One metric of a :func:`summarize` result (one data set and noise type) as text:
    a row per method, a column per noise rate ("20%"), "mean ± std" (F1/precision/recall/AP
    in %, AUROC as a fraction); ``bold_best`` wraps the best mean of each rate in ``**``."""
    rates = sorted(summary["rate"].unique())
    order = method_order(summary["method"])
    out = pd.DataFrame("", index=pd.Index(order, name="method"), columns=[f"{r:.0%}" for r in rates])
    for r in rates:
        part = summary[summary["rate"] == r]
        best = part[f"{metric}_mean"].max()
        for _, row in part.iterrows():
            mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
            text = _fmt(mean, std, metric)
            if bold_best and not pd.isna(mean) and mean == best:
                text = f"**{text}**"
            out.loc[row["method"], f"{r:.0%}"] = text
    return out


def markdown_report(results: pd.DataFrame, metrics: Sequence[str] = METRICS, note: str = "") -> str:
    """Markdown tables, mean ± std over seeds: per data set and noise type, one table per
    metric with a row per method and a column per noise rate (best mean in bold)."""
    lines = ["# Benchmark results", ""]
    if note:
        lines += [note, ""]
    if results.empty:
        return "\n".join(lines + ["No results yet.", ""])
    summary = summarize(results, metrics)
    lines += ["F1, precision and recall are of the flagged set; AUROC and average precision of "
              "the ranking. Mean ± standard deviation over seeds (no ± for a single seed).", ""]
    for (dataset, noise), part in summary.groupby(["dataset", "noise"], sort=False):
        seeds = int(part["seeds"].max())
        lines += [f"## {dataset}, {noise} noise ({seeds} seed{'s' if seeds != 1 else ''})", ""]
        for metric in metrics:
            table = metric_table(part, metric, bold_best=True)
            lines += [f"### {METRIC_TITLES.get(metric, metric)}", "",
                      "| method | " + " | ".join(table.columns) + " |",
                      "|---|" + "---:|" * len(table.columns)]
            lines += [f"| {m} | " + " | ".join(row) + " |" for m, row in table.iterrows()]
            lines.append("")
    order = method_order(results["method"])
    wall = results.groupby("method", sort=False)["wall_seconds"].mean()
    lines += ["## Wall time per cell (mean over all cells, seconds)", "",
              "Record-based methods share one SEI run: their time is that run's training time "
              "(sum of epoch times) plus their own scoring. Confident learning's is its k "
              "cross-validation trainings plus cleanlab.", "",
              "| method | seconds |", "|---|---:|"]
    lines += [f"| {m} | {wall[m]:.1f} |" for m in order if m in wall.index]
    return "\n".join(lines) + "\n"


def wins(results: pd.DataFrame, method: str, metric: str = "f1") -> pd.DataFrame:
    """Where ``method`` stands against the best *other* method, per data set, noise and rate
    (means over seeds). Columns: ``dataset, noise, rate, mean, best_other, best_other_mean,
    gap`` (``mean − best_other_mean``) and ``at_or_above_all`` (``gap >= 0``)."""
    cols = ["dataset", "noise", "rate", "mean", "best_other", "best_other_mean", "gap", "at_or_above_all"]
    summary = summarize(results, [metric])
    rows = []
    for (d, n, r), part in summary.groupby(["dataset", "noise", "rate"], sort=True):
        mine = part[part["method"] == method]
        others = part[(part["method"] != method) & part[f"{metric}_mean"].notna()]
        if mine.empty or others.empty:
            continue
        best = others.loc[others[f"{metric}_mean"].idxmax()]
        mean = float(mine[f"{metric}_mean"].iloc[0])
        gap = mean - float(best[f"{metric}_mean"])
        rows.append([d, n, r, mean, best["method"], float(best[f"{metric}_mean"]), gap, gap >= -1e-12])
    return pd.DataFrame(rows, columns=cols)


def overall(results: pd.DataFrame, metric: str = "f1") -> pd.DataFrame:
    """Each method over every cell of the grid (data set × noise × rate), best first.

    A cell's value is the method's mean over seeds. Columns: ``method``, ``mean`` (over
    cells), ``cells`` (how many it was measured in), ``best_in`` (cells where it is at or
    above every other method), ``worst_gap`` (its largest shortfall to the best method of a
    cell, ≤ 0) and ``rank`` (1 = highest mean). This is how the app's default ranking is chosen.
    """
    cols = ["method", "mean", "cells", "best_in", "worst_gap", "rank"]
    summary = summarize(results, [metric])
    if summary.empty:
        return pd.DataFrame(columns=cols)
    wide = summary.pivot_table(index="method", columns=["dataset", "noise", "rate"], values=f"{metric}_mean")
    best = wide.max(axis=0)
    out = pd.DataFrame({
        "mean": wide.mean(axis=1),
        "cells": wide.notna().sum(axis=1),
        "best_in": wide.ge(best - 1e-12, axis=1).sum(axis=1),
        "worst_gap": wide.sub(best, axis=1).min(axis=1),
    }).sort_values("mean", ascending=False, kind="stable")
    out["rank"] = np.arange(1, len(out) + 1)
    return out.rename_axis("method").reset_index()[cols]


def figures(results: pd.DataFrame, metrics: Sequence[str] = ("f1", "auroc", "ap")) -> dict:
    """Plotly figures, one per metric: mean ± std over seeds against the noise rate, a line
    per method, a panel per data set (rows) and noise type (columns)."""
    import plotly.express as px

    summary = summarize(results)
    if summary.empty:
        return {}
    order = method_order(summary["method"])
    figs = {}
    for metric in metrics:
        fig = px.line(summary, x="rate", y=f"{metric}_mean", error_y=f"{metric}_std", color="method",
                      facet_row="dataset", facet_col="noise", markers=True,
                      category_orders={"method": order},
                      labels={"rate": "noise rate", f"{metric}_mean": METRIC_TITLES.get(metric, metric)},
                      title=f"{METRIC_TITLES.get(metric, metric).replace(' (%)', '')} of mislabeled-sample "
                            "detection (mean ± std over seeds)")
        fig.update_xaxes(tickformat=".0%")
        figs[metric] = fig
    return figs


def write_report(bench_dir: str | Path, results: pd.DataFrame | None = None) -> list[Path]:
    """Write ``results.md`` and ``plots/<metric>.html`` (plus PNGs if kaleido is installed)."""
    bench_dir = Path(bench_dir)
    results = load_results(bench_dir) if results is None else results
    plots = bench_dir / "plots"
    written = []
    figs = figures(results)
    png_note = ""
    if figs:
        plots.mkdir(parents=True, exist_ok=True)
        have_kaleido = importlib.util.find_spec("kaleido") is not None
        if not have_kaleido:
            png_note = "PNG plots were skipped: kaleido is not installed (the HTML plots are complete)."
        for metric, fig in figs.items():
            html = plots / f"{metric}.html"
            fig.write_html(html, include_plotlyjs="directory")
            written.append(html)
            if have_kaleido:
                try:
                    fig.write_image(plots / f"{metric}.png", width=1200, height=800)
                    written.append(plots / f"{metric}.png")
                except Exception as e:  # kaleido present but no browser for it
                    png_note = f"PNG plots were skipped: {type(e).__name__}: {e}"
    info = settings(bench_dir)
    note = ""
    if info:
        t = info.get("train", {})
        note = (f"Training: model {t.get('model', '?')}, {t.get('epochs', '?')} epochs, "
                f"{t.get('image_size', '?')} px, lr {t.get('lr', '?')}, batch {t.get('batch_size', '?')}; "
                f"confident learning on {info.get('folds')}-fold cross-validation.")
        if info.get("max_samples"):
            note += (f" Each data set is a stratified random subset of {info['max_samples']} "
                     "images (seed 0).")
    if png_note:
        note = (note + "\n\n" + png_note).strip()
    md = bench_dir / "results.md"
    text = markdown_report(results, note=note)
    atomic_write(md, lambda f: f.write(text.encode("utf-8")))
    return [md] + written


