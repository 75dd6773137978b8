"""What the cleaning bought, on the pages: train again on the reviewed labels (Review page),
evaluate a run on a held-out test set and show where a run came from (Train page).

UI glue only; the method lives in ``sei_core.retrain`` and ``sei_core.evaluate``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._common import md, select_run, show_error, short_path
from sei_core import jobs
from sei_core.dataset import DataError
from sei_core.evaluate import EvaluationError, evaluate, evaluation
from sei_core.retrain import default_out, lineage, prepare_retrain, read_reviewed
from sei_core.review import ReviewError, review_columns, review_label_file
from sei_core.runs import Run, RunError, State

COMPARE_PAGE = "pages/compare.py"
METRIC_LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
                 "macro_auroc": "macro AUROC"}


def lineage_caption(run: Run) -> None:
    """One line saying what the run was retrained from (nothing for a run trained on data)."""
    lin = lineage(run)
    if not lin:
        return
    st.caption(f"Retrained from **{md(lin.get('parent_name', ''))}** on the reviewed label file "
               f"{md(short_path(lin.get('label_file', ''), 3))} (version sha256 {lin.get('label_file_sha256', '')[:12]}…, "
               f"{lin.get('label_file_modified', '')[:19].replace('T', ' ')} UTC): {lin.get('decisions', 0)} decisions — "
               f"{lin.get('relabeled', 0)} relabeled, {lin.get('discarded', 0)} discarded (left out), "
               f"{lin.get('confirmed', 0)} confirmed.")
    st.page_link(COMPARE_PAGE, label="Compare with the parent run", icon=":material/compare_arrows:")


def retrain_section(run: Run) -> None:
    """Review page: "Train again on the reviewed labels" (a background run, parent's settings)."""
    with st.container(border=True):
        st.subheader("Train again on the reviewed labels", anchor=False)
        try:
            cols = review_columns(run)
            state = read_reviewed(review_label_file(run), cols["path_column"], cols["label_column"]).counts()
        except (RunError, ReviewError, OSError) as e:
            show_error(e)
            return
        st.caption(f"A new run with this run's settings on the label file as the review left it: "
                   f"{state['relabeled']} relabeled image(s) with their new label, {state['discarded']} discarded "
                   f"image(s) left out, the other {state['rows'] - state['relabeled'] - state['discarded']} as they "
                   f"are. The label file is only read. Review the new run again: its queue shows what this review "
                   f"decided as decided, so a second round covers only images not decided yet (in this project's "
                   f"benchmark on HAM10000 a second round had nothing new at 20 % noise and 5–16 new images at 40 %, "
                   f"most of them mislabeled: docs/benchmarks.md).")
        c = st.columns([4, 1], vertical_alignment="bottom")
        out = c[0].text_input("New run", value=default_out(run).name, key="retrain_name",
                              help="a folder name in the runs folder")
        if c[1].button("Train again", icon=":material/replay:", key="retrain", width="stretch",
                       disabled=state["decisions"] == 0,
                       help=None if state["decisions"] else "no decision yet: the labels are those of this run"):
            target = run.path.parent / out.strip()
            try:
                config = prepare_retrain(run, target)
                new = jobs.start(config, target)
            except (RunError, DataError, ValueError, OSError) as e:
                show_error(e)
                return
            select_run(new.name)
            st.success(f"Training {new.name} in the background on {state['rows'] - state['discarded']} images. "
                       "Watch it on the Train page; evaluate and compare it when it is done.",
                       icon=":material/check_circle:")
            st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")


def metrics_table(ev: dict) -> pd.DataFrame:
    rows = [{"measure": METRIC_LABELS[m], "value": ev[m]} for m in METRIC_LABELS]
    rows += [{"measure": f"recall: {c}", "value": v["recall"]} for c, v in ev["per_class"].items() if v["n"]]
    return pd.DataFrame(rows)


def evaluate_section(run: Run) -> None:
    """Train page: "Evaluate on a test set" (held-out images; a leak is refused)."""
    with st.container(border=True):
        st.subheader("Evaluate on a test set", anchor=False)
        st.caption("Accuracy, balanced accuracy, macro-F1 and recall per class of this run's final model on "
                   "labelled images it never trained on. A test image that is also a training image (same path "
                   "or same file content) is refused.")
        cfg = run.config()
        c = st.columns([4, 2, 2, 1], vertical_alignment="bottom")
        test = c[0].text_input("Test label file", key="eval_test", placeholder="/path/to/test.csv")
        pc = c[1].text_input("Path column", value=cfg.get("path_column") or "path", key="eval_path_column")
        lc = c[2].text_input("Label column", value=cfg.get("label_column") or "label", key="eval_label_column")
        if c[3].button("Evaluate", icon=":material/fact_check:", key="evaluate", width="stretch",
                       disabled=run.state() != State.FINISHED or not test.strip()):
            try:
                with st.spinner("Decoding and predicting the test images…"):
                    evaluate(run, test.strip(), path_column=pc.strip() or None, label_column=lc.strip() or None)
            except (EvaluationError, DataError, RunError, ValueError, OSError) as e:
                show_error(e)
        ev = evaluation(run)
        if ev:
            st.caption(f"Last evaluated on {md(short_path(ev['test_file'], 3))} ({ev['n_images']} images, "
                       f"{ev['evaluated_at'][:19].replace('T', ' ')} UTC, {ev['seconds']:.1f} s):")
            st.dataframe(metrics_table(ev), hide_index=True, key="eval_table",
                         column_config={"value": st.column_config.NumberColumn(format="%.3f")})


def parent_of(run: Run) -> Run | None:
    lin = lineage(run) or {}
    p = lin.get("parent_run")
    return Run(p) if p and Run(p).exists() else None
