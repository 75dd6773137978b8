"""Benchmark: how well each method finds mislabeled images — on the selected run (if its data
has a truth file) and in the grids written by ``sei bench``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pages._common import current_run, facts, file_stamp, guard, md, page_setup, short_path
from sei_core import access, bench, workspace
from sei_core.methods import DEFAULT_METHOD, PAPER_METHOD, describe_methods
from sei_core.ranking import load_run
from sei_core.runs import Run

page_setup("Benchmark")

PAPER = PAPER_METHOD
METRIC_NAMES = {m: t.replace(" (%)", "") for m, t in bench.METRIC_TITLES.items()}
PERCENT = tuple(m for m, t in bench.METRIC_TITLES.items() if t.endswith("(%)"))

st.caption(
    f"F1, precision and recall are of the flagged set; AUROC and average precision of the ranking "
    f"(lower score = more suspicious). The app ranks by **{DEFAULT_METHOD}**; the paper's SEI "
    f"(**{PAPER}**) is always shown beside it.")


@st.cache_data(show_spinner="Scoring the run with every method…", max_entries=8)
def _run_table(run_path: str, stamp: tuple, truth_stamp: tuple) -> pd.DataFrame | None:
    run = Run(run_path)
    loaded = load_run(run)
    truth = workspace.load_truth(run.config().get("data", ""), loaded.ids)
    return None if truth is None else bench.evaluate_run(loaded, truth)


@st.cache_data(show_spinner="Reading the benchmark…", max_entries=8)
def _results(folder: str, stamp: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    return bench.load_results(folder), bench.load_counts(folder)


def _mark(method: str) -> str:
    tags = [t for t, m in (("app default", DEFAULT_METHOD), ("paper's SEI", PAPER)) if m == method]
    return f"{method} ({', '.join(tags)})" if tags else method


def this_run() -> None:
    st.subheader("The selected run against its truth file", anchor=False)
    run = current_run()
    if run is None:
        st.info("No run is selected. Train one on the Train page.", icon=":material/info:")
        return
    data = run.config().get("data", "")
    truth_file = workspace.truth_file(data)
    if truth_file is None:
        st.info("The run's data set has no truth file, so the flags cannot be scored here. A data set with "
                "known noise has a `truth.csv` (columns `path`, `is_noisy`) beside its label file: the sample "
                "data has one, and `sei bench` writes one for every noisy copy it makes.",
                icon=":material/info:")
        return
    table = _run_table(str(run.path), workspace.run_stamp(run), file_stamp(truth_file))
    if table is None:
        st.warning(f"The truth file {md(short_path(str(truth_file), 3))} does not cover every image of this run "
                   "(or lacks the columns `path` and `is_noisy`), so the flags cannot be scored.",
                   icon=":material/warning:")
        return
    by = table.set_index("method")
    first = table.iloc[0]
    cols = st.columns(4)
    for col, m in zip(cols, dict.fromkeys([DEFAULT_METHOD, PAPER])):
        r = by.loc[m]
        col.metric(f"F1 of the {_mark(m)} flags", f"{100 * r['f1']:.1f}%",
                   help=f"{int(r['flagged'])} flagged: precision {100 * r['precision']:.1f}%, "
                        f"recall {100 * r['recall']:.1f}%; AUROC {r['auroc']:.3f}.")
    cols[2].metric("Truly mislabeled", f"{int(first['n_noisy'])} of {int(first['n_samples'])}")
    cols[3].metric("Best F1 on this run", f"{100 * first['f1']:.1f}%", help=f"by {first['method']}")
    shown = table.assign(method=table["method"].map(_mark))
    for c in PERCENT:
        shown[c] = 100 * shown[c]
    st.dataframe(
        shown[["method", "f1", "precision", "recall", "auroc", "ap", "flagged", "threshold_rule"]],
        hide_index=True, width="stretch",
        column_config={c: st.column_config.NumberColumn(METRIC_NAMES[c] + " (%)", format="%.1f") for c in PERCENT}
        | {"auroc": st.column_config.NumberColumn("AUROC", format="%.3f"),
           "threshold_rule": st.column_config.TextColumn("flag rule", width="large")})
    st.caption(f"Truth: {md(short_path(str(truth_file), 3))}. Every method scores the same recorded run; "
               "confident learning needs its own cross-validation and is measured only by `sei bench`.")


def grids() -> None:
    st.subheader("Benchmark grids (`sei bench`)", anchor=False)
    root = workspace.bench_root()
    found = workspace.bench_dirs(root)
    options = [str(d) for d in found] + ["Another folder…"]
    choice = st.selectbox("Benchmark", options, key="bench_dir",
                          format_func=lambda p: p if p == options[-1] else short_path(p, 2),
                          help=f"Folders written by `sei bench` under {root} (set SEI_BENCH_DIR to look elsewhere).")
    if choice == options[-1]:
        choice = st.text_input("Benchmark folder", key="bench_other", placeholder="/path/to/bench/NAME").strip()
        if not choice:
            st.info("Give the folder that `sei bench --out` wrote. How to run one: see docs/benchmarks.md, e.g.\n\n"
                    "`sei bench --data labels.csv --rates 0.1 0.2 0.3 --seeds 0 1 2 --out bench/mydata`",
                    icon=":material/info:")
            return
    folder = Path(choice).expanduser()
    access.check(folder, "the benchmark folder")  # inside the data roots or the app's folders, where roots are set
    if not folder.is_dir():
        st.error(f"{md(folder)} is not a folder.", icon=":material/error:")
        return
    results, counts = _results(str(folder), bench.stamp(folder))
    if results.empty:
        st.info(f"{md(short_path(str(folder), 2))} holds no results yet: no cell has finished.", icon=":material/info:")
        return
    settings = bench.settings(folder)
    t = settings.get("train", {})
    if t:
        facts([("Model", f"{t.get('model')}, weights {t.get('weights') or 'none (random init)'}"),
               ("Training", f"{t.get('epochs')} epochs, {t.get('image_size')} px, batch {t.get('batch_size')}, "
                            f"lr {t.get('lr')}"),
               ("Images", f"a stratified subset of {settings['max_samples']} per data set"
                if settings.get("max_samples") else "all of each data set"),
               ("Confident learning", f"{settings.get('folds')}-fold cross-validation")])
    c = st.columns(3)
    dataset = c[0].selectbox("Data set", sorted(results["dataset"].unique()), key="bench_dataset")
    part = results[results["dataset"] == dataset]
    noise = c[1].selectbox("Noise", sorted(part["noise"].unique()), key="bench_noise")
    metric = c[2].selectbox("Metric", list(METRIC_NAMES), format_func=METRIC_NAMES.get, key="bench_metric")
    part = part[part["noise"] == noise]
    summary = bench.summarize(part)
    seeds = int(summary["seeds"].max())
    table = bench.metric_table(summary, metric)
    table.index = table.index.map(_mark)
    st.markdown(f"**{METRIC_NAMES[metric]}{' (%)' if metric in PERCENT else ''}**, mean ± std over "
                f"{seeds} seed{'s' if seeds != 1 else ''}; {len(part)} result rows")
    st.dataframe(table.reset_index(), hide_index=True, width="stretch")
    wins = bench.wins(part, DEFAULT_METHOD, metric)
    if not wins.empty:
        lost = wins[~wins["at_or_above_all"]]
        st.markdown(f"**{DEFAULT_METHOD}** is at or above every other method's mean {METRIC_NAMES[metric]} "
                    f"at {len(wins) - len(lost)} of {len(wins)} noise rates"
                    + ("" if lost.empty else "; below the best at " + ", ".join(
                        f"{r:.0%} ({b})" for r, b in zip(lost["rate"], lost["best_other"]))) + ".")
    with st.expander(f"All cells of this benchmark: each method's mean {METRIC_NAMES[metric]}"):
        allc = bench.overall(results, metric)
        allc["method"] = allc["method"].map(_mark)
        scale = 100 if metric in PERCENT else 1
        allc["mean"] *= scale
        allc["worst_gap"] *= scale
        st.dataframe(allc, hide_index=True, width="stretch",
                     column_config={"mean": st.column_config.NumberColumn(format="%.3f" if scale == 1 else "%.1f"),
                                    "worst_gap": st.column_config.NumberColumn(
                                        "worst gap", format="%.3f" if scale == 1 else "%.1f",
                                        help="Largest shortfall to the best method of a cell"),
                                    "best_in": st.column_config.NumberColumn(
                                        "best in", help="Cells (data set, noise, rate) where it is at or above "
                                                        "every other method")})
        st.caption("Over every data set, noise type and rate of this benchmark (a cell = the mean over its seeds). "
                   "The app's default ranking was chosen this way on the project's own benchmark.")
    fig = bench.figures(part, metrics=(metric,)).get(metric)
    if fig is not None:
        fig.update_layout(height=460, title=None)
        st.plotly_chart(fig, width="stretch", config={"displayModeBar": False})
    st.download_button("Download results.csv", results.to_csv(index=False).encode("utf-8"),
                       file_name=f"{folder.name}-results.csv", mime="text/csv", icon=":material/download:")
    if not counts.empty:
        with st.expander("How many labels are wrong: each error-count estimate against the truth"):
            errs = bench.count_errors_table(counts)
            st.dataframe(errs, hide_index=True, width="stretch",
                         column_config={"mare": st.column_config.NumberColumn("mean |error|", format="%.3f",
                                                                              help="Mean of |estimate − true| / true"),
                                        "bias": st.column_config.NumberColumn(
                                            "mean error", format="%+.3f", help="Mean of (estimate − true) / true"),
                                        "within_15": st.column_config.NumberColumn("cells within 15 %"),
                                        "covered": st.column_config.NumberColumn("interval holds the truth")})
            st.caption("Over every cell of this benchmark. `bbe`: Best Bin Estimation with the auxiliary samples as "
                       "the mislabeled distribution; `mixture`: a 2-component Gaussian mixture on the score; "
                       "`cleanlab`: cleanlab's calibrated count on the run's or on cross-validated probabilities.")
    with st.expander("What each method is computed on"):
        desc = describe_methods(bench.BENCH_RULES)
        st.dataframe(pd.DataFrame({"method": [_mark(m) for m in desc], "computed on": list(desc.values())}),
                     hide_index=True, width="stretch")


with guard("the Benchmark page"):
    this_run()
with guard("the Benchmark page"):
    grids()
