"""Compare: a run and its retrained child side by side — held-out test scores, flags per class,
what became of the parent's flags, and the signed-entropy groups of both."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._common import guard, md, need_run, page_setup, scores_of, summary_of
from pages._outcome import METRIC_LABELS, parent_of
from sei_core import plots, retrain, workspace
from sei_core.dynamics import GROUP_NAMES
from sei_core.evaluate import evaluation
from sei_core.runs import Run, list_runs

page_setup("Compare")
st.caption("A run and a run retrained from its review (or any two runs of the same classes), side by side. "
           "Test scores appear once a run was evaluated on a held-out test set (Train page, or "
           "`sei evaluate RUN --test TEST.csv`).")


def pair(run: Run) -> tuple[Run, Run] | None:
    """(parent, child): the selected run and the run chosen to compare it with."""
    parent = parent_of(run)
    others = [r for r in list_runs(workspace.runs_dir()) if r.name != run.name]
    kids = [r.name for r in retrain.children(run, workspace.runs_dir())]
    names = [r.name for r in others]
    if not names:
        st.info("There is no other run to compare with. Retrain this run from its review on the Review page.",
                icon=":material/info:")
        return None
    default = parent.name if parent is not None and parent.name in names else (kids[0] if kids else names[0])
    other = st.selectbox("Compare with", names, index=names.index(default), key="compare_with",
                         help="the selected run's parent or a run retrained from it come first as the default")
    o = Run(workspace.runs_dir() / other)
    if (retrain.lineage(run) or {}).get("parent_run") == str(o.path.resolve()):
        return o, run
    return (run, o)


def test_scores(a: Run, b: Run) -> None:
    ea, eb = evaluation(a), evaluation(b)
    st.subheader("Held-out test scores", anchor=False)
    if not ea and not eb:
        st.caption("Neither run was evaluated on a test set yet.")
        return
    rows = []
    for m, label in METRIC_LABELS.items():
        rows.append({"measure": label, a.name: (ea or {}).get(m), b.name: (eb or {}).get(m)})
    classes = list(((ea or eb)["per_class"]).keys())
    for c in classes:
        ra = ((ea or {}).get("per_class") or {}).get(c, {})
        rb = ((eb or {}).get("per_class") or {}).get(c, {})
        rows.append({"measure": f"recall: {c}", a.name: ra.get("recall"), b.name: rb.get("recall")})
    df = pd.DataFrame(rows)
    df["change"] = df[b.name] - df[a.name] if ea and eb else None
    same = ea and eb and ea["test_file"] == eb["test_file"]
    if ea and eb and not same:
        st.warning("The two runs were evaluated on different test files: the numbers are not comparable.",
                   icon=":material/warning:")
    st.dataframe(df, hide_index=True, key="compare_test",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in (a.name, b.name, "change")})


def body() -> None:
    run = need_run()
    if run is None:
        return
    chosen = pair(run)
    if chosen is None:
        return
    a, b = chosen
    lin = retrain.lineage(b) or {}
    if lin.get("parent_run") == str(a.path.resolve()):
        st.markdown(f"**{md(b.name)}** was retrained from **{md(a.name)}**'s review: {lin.get('decisions', 0)} "
                    f"decisions, {lin.get('relabeled', 0)} relabeled, {lin.get('discarded', 0)} discarded.")
    else:
        st.markdown(f"**{md(a.name)}** and **{md(b.name)}** (not parent and child).")
    sa, sb = scores_of(a), scores_of(b)
    if list(sa.classes) != list(sb.classes):
        st.error("The two runs have different classes; they cannot be compared.", icon=":material/error:")
        return
    test_scores(a, b)
    oa, ob = summary_of(a), summary_of(b)
    cmp = retrain.compare(sa, sb, oa.groups, ob.groups)
    c = st.columns(2)
    with c[0]:
        st.subheader("Flags per class", anchor=False)
        st.dataframe(cmp["classes"].rename(columns=lambda x: x.replace("parent", a.name).replace("child", b.name)),
                     hide_index=True, key="compare_classes")
    with c[1]:
        st.subheader(f"What became of {a.name}'s flags", anchor=False)
        st.dataframe(cmp["parent_flags"], hide_index=True, key="compare_fate")
    st.subheader("Signed-entropy groups", anchor=False)
    st.dataframe(cmp["groups"].rename(columns={"parent": a.name, "child": b.name}), hide_index=True,
                 key="compare_groups")
    c = st.columns(2)
    for col, r, o in ((c[0], a, oa), (c[1], b, ob)):
        mean, std, count = o.group_curves(-1)
        with col:
            st.caption(f"{md(r.name)}: mean signed entropy per group (band: ± one standard deviation)")
            st.plotly_chart(plots.group_curves(mean, std, count, GROUP_NAMES, "signed entropy"),
                            key=f"compare_curves_{r.name}")


with guard("the Compare page"):
    body()
