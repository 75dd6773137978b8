"""Explore: why each image was flagged — the score per class, how the model's view changed in training, one image at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from pages._common import (REVIEW_PAGE, cached_scored, cached_scores, facts, file_stamp, guard, images_of, md,
                           need_run, page_setup, reliability_warning, scores_of, summary_of, truth_of)
from pages._common import class_text, image_layout
from sei_core.count import COUNT_CAVEAT, ESTIMATOR_TEXT
from sei_core.methods import DEFAULT_METHOD, DEFAULT_RULE, METHODS, PAPER_METHOD, display_name, threshold_text
from sei_core import dynamics, metrics, plots, workspace
from sei_core.gallery import ImageAccessError, fit
from sei_core.review import request_review
from sei_core.runs import Run, State
from sei_core.score_cache import sample_values

ALL = -1
PAGE_ROWS = 100  # rows of the image table sent to the browser at a time
MAX_MATCHES = 50  # images listed for a name search
SCROLL_CLASSES = 12  # more classes than this: the per-class grid scrolls in a box of its own
CHART = dict(width="stretch", config={"displayModeBar": False})

page_setup("Explore")

HELP = """
**What this page shows.** A model was trained on your labels. For every image it was then asked how much it
believes the image's label. Images it does not believe are **flagged** for your review (red); the others are
**kept** (blue). A flag is a question for you, not a verdict: the Review page shows each flagged image with the
class the model suggests instead.

**The score** (lower = more suspicious) says how strongly the model believed the image's label during training.

**The dashed line** in each class is where flagging starts: images to its left are flagged. The model sets it
itself, from images it was deliberately given a wrong label during training: an image whose label it believes no
more than those is flagged. For a class rarer than those images the line is lower, so that a class is not flagged
just for being rare.

**The groups in the curves:**
- **Flagged**: below the line: the label may be wrong.
- **Easy for the model**: kept, and the model agreed with the label early in training and from then on.
- **Hard for the model**: kept, but the model agreed with the label only late in training, or still not at the
  end. The model found these images difficult; that alone does not mean their label is wrong.
"""

METHOD_HELP = """
**Signed entropy (SE).** After every training epoch the model gives each image a probability for every class.
Their *entropy* (in nats; 0 = certain) measures how unsure the model is. It gets a **plus** sign when the model's
guess equals the image's given label and a **minus** sign when it disagrees.

**SEI (Signed Entropy Integral)**, the paper's score, adds up the signed entropy over all epochs. Correctly
labelled images end high; mislabeled images spend many epochs disagreeing with their label and end **strongly
negative**.

**Auxiliary images and the threshold.** During training a random set of images is relabeled to an extra
"something else" class (the *auxiliary* class): they are known to be mislabeled, and their mean score is the
threshold. With two complementary runs each image is scored by the runs in which it kept its label (the mean of
their scores and thresholds), so the few images that were one run's auxiliary images are judged by the other
run's threshold alone.

**Groups.** *Easy clean* (here "easy for the model"): from some epoch in the first half of training on, the model
always predicted the given label; *hard clean* ("hard for the model"): learned only in the second half, or never.
Bands around the mean curves show ± one standard deviation. *Alignment* is the share of a group whose prediction
equals the given label at each epoch.
"""


def method_help(s) -> None:
    """The method's own words: what the scores, thresholds and estimate are (one click away)."""
    st.markdown(METHOD_HELP)
    if DEFAULT_METHOD != PAPER_METHOD:
        m = METHODS[DEFAULT_METHOD]
        st.markdown(f"**{display_name(DEFAULT_METHOD)}**, the score this app ranks and flags by unless you choose "
                    f"SEI above: {md(m.computed_on)}; flagged by {md(threshold_text(DEFAULT_METHOD, DEFAULT_RULE))}. "
                    "It was chosen because it found injected label noise best in this project's benchmark "
                    "(the Benchmark page and docs/benchmarks.md show the numbers, SEI beside it).")
    st.markdown(f"This view: {md(display_name(s.method))} flagged by {md(threshold_text(s.method, s.rule))}; "
                "before any per-class scaling the threshold of each training run is "
                + ", ".join(f"{t:.3g}" for t in s.run_thresholds) + ".")
    if s.count is not None:
        st.markdown(f"The estimate of wrong labels comes from {md(ESTIMATOR_TEXT[s.count.estimator])}.")


def score_choice() -> str:
    """Which score the page shows: the app's ranking or the paper's SEI (the same when they agree)."""
    options = list(dict.fromkeys([DEFAULT_METHOD, PAPER_METHOD]))
    if len(options) == 1:
        return options[0]
    return st.radio("Score", options, key="explore_method", horizontal=True,
                    format_func=lambda m: f"{display_name(m)} (the app's ranking)" if m == DEFAULT_METHOD
                    else f"{display_name(m)} (the paper's)",
                    help="The app ranks and flags by its default score, chosen on the benchmark (see the Benchmark "
                         "page); the paper's SEI is always available here. Curves of signed entropy are the same "
                         "for both; only the ranking, threshold and flags change.")


def class_filter(labels: list[str]) -> int:
    return st.selectbox("Class", [ALL] + list(range(len(labels))), key="explore_class",
                        format_func=lambda k: "All classes" if k == ALL else labels[k],
                        help="Show only images whose given label (at training time) is this class.")


def summary(s, truth, mask, status: dict) -> None:
    scored = mask & np.isfinite(s.score)
    c = st.columns(5)
    c[0].metric("Images", f"{int(mask.sum()):,}")
    n_flag = int((s.flagged & mask).sum())
    c[1].metric("Flagged", f"{n_flag:,}",
                help="The model doubts their label: review them on the Review page.")
    c[2].metric("Share flagged", f"{100 * n_flag / max(1, int(mask.sum())):.1f}%")
    c[3].metric("Epochs recorded", s.epochs)
    # -- error count (sei_core.count) --
    if s.count is not None:
        st.caption(f"Estimated mislabeled images in the whole data set: **{s.count.describe()}**. {COUNT_CAVEAT}")
    # -- end error count --
    if truth is not None and scored.any():
        rep = metrics.precision_recall_f1(s.flagged[scored], truth[scored])
        c[4].metric("Flags that are truly wrong", f"{100 * rep['precision']:.0f}%",
                    help=f"From the data set's truth file: {100 * rep['precision']:.0f}% of the flagged images are "
                         f"truly mislabeled, and {100 * rep['recall']:.0f}% of the truly mislabeled images are flagged.")
    if status["state"] != State.FINISHED:
        st.info(f"This run is {md(status['state'])}: the scores use the {s.epochs} epoch(s) recorded so far and "
                "will change until training finishes.", icon=":material/hourglass_top:")


# -- the count from the review decisions (issue 22; sei_core.review_count) -------------------------

@st.cache_resource(max_entries=4, show_spinner=False)
def _decision_count(run_path: str, stamp: tuple, log_stamp: tuple):
    from sei_core.review import run_count

    return run_count(Run(run_path))


def decision_count(run) -> None:
    """What the review decisions so far say: found, the estimate with its interval, what is still
    unreviewed, the stopping suggestion (shown once the run has a decision log)."""
    from sei_core.review import review_label_file

    label_file = review_label_file(run)
    db = label_file.parent / ".sei_review" / f"{label_file.stem}.decisions.sqlite"
    if not db.is_file():
        return
    c, stop, _ = _decision_count(str(run.path), workspace.run_stamp(run),
                                 (file_stamp(db), file_stamp(Path(str(db) + "-wal"))))
    if c.decisions:
        st.caption("**From the review so far:** " + md(c.sentence()) + " " + md(stop.sentence()))


@st.cache_resource(max_entries=4, show_spinner=False)
def file_names(run_path: str, stamp: tuple, method: str) -> pd.Series:
    """The file name of every sample, for the name search (built on the first search only)."""
    ids = pd.Series(cached_scores(run_path, stamp, method).ids, dtype=object)
    return ids.str.rsplit("/", n=1).str[-1]


@st.cache_resource(max_entries=16, show_spinner="Preparing the view…")
def class_view(run_path: str, stamp: tuple, method: str, k: int, truth_stamp: tuple | None,
               labels: tuple[str, ...]) -> dict:
    """The arrays and figures for one class (or all): built once per run version, method, class,
    truth-file version and class names (``labels``, as the page shows each class) from the run's
    scored summary (``sei_core.score_cache``), so neither a first view nor a rerun reads the
    per-epoch records (figures are shared: read only)."""
    sc = cached_scored(run_path, stamp, method)
    s, o = sc.scores, sc.summary
    truth = truth_of(Run(run_path)) if truth_stamp is not None else None
    name = display_name(s.method)
    order = np.asarray(o.order)
    if k == ALL:
        mask = np.ones(len(s.ids), dtype=bool)
    else:
        mask = np.asarray(s.labels) == k
        order = order[mask[order]]
    mean, std, count = o.group_curves(k)
    scored = np.isfinite(s.score)
    m = mask & scored
    signed, unsigned = np.asarray(o.integral_signed), np.asarray(o.integral_unsigned)
    auroc = None
    if truth is not None and truth[m].any() and (~truth[m]).any():
        auroc = {"signed": metrics.auroc(signed[m], truth[m]), "unsigned": metrics.auroc(unsigned[m], truth[m])}
    figures = dict(
        hist=plots.score_histograms(s.score, s.flagged, s.labels, list(labels), s.threshold, truth,
                                  show_classes=None if k == ALL else [k], score_name=name),
        group_curves=plots.group_curves(mean, std, count, dynamics.GROUP_NAMES, plots.AGREEMENT_AXIS),
        alignment=plots.alignment_plot(o.alignment(k), dynamics.GROUP_NAMES, count),
        entropy=o.entropy_figure(k),
        integrals=plots.integral_comparison(signed[m], unsigned[m], np.asarray(s.sei_flagged)[m],
                                            None if truth is None else truth[m],
                                            thresholds=s.sei_run_thresholds, auroc=auroc))
    flagged = np.asarray(s.flagged)
    return dict(mask=mask, se_mean=mean, count=count, order=order, flagged_order=order[flagged[order]],
                figures=figures)


def sample_table(s, truth, groups, order, labels: list[str]) -> None:
    """One page of the ranked images (``PAGE_ROWS`` rows reach the browser, not the whole run);
    classes as ``labels`` names them."""
    k = len(s.classes)
    pages = max(1, -(-len(order) // PAGE_ROWS))
    c = st.columns([1, 4], vertical_alignment="bottom")
    page = c[0].number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1, key="explore_page")
    start = (int(page) - 1) * PAGE_ROWS
    rows = order[start:start + PAGE_ROWS]
    c[1].caption(f"Images {start + 1:,}–{start + len(rows):,} of {len(order):,}." if len(rows) else "")
    df = pd.DataFrame({
        "image": [Path(s.ids[i]).name for i in rows],
        "given label": [labels[s.labels[i]] for i in rows],
        display_name(s.method): s.score[rows],
        "flagged": s.flagged[rows],
        "suggested": [labels[s.suggested[i]] if 0 <= s.suggested[i] < k else "" for i in rows],
        "probability": 100 * s.suggested_probability[rows],
        "group": [dynamics.GROUP_NAMES[g] if g >= 0 else "unscored" for g in groups[rows]],
    })
    if truth is not None:
        df["truly mislabeled"] = truth[rows]
    st.session_state["_explore_order"] = [int(i) for i in rows]
    st.dataframe(df, hide_index=True, width="stretch", height=320, key="explore_table", on_select=pick_from_table,
                 selection_mode="single-row",
                 column_config={display_name(s.method): st.column_config.NumberColumn(format="%.3g"),
                                "probability": st.column_config.ProgressColumn(
                                    format="%.0f%%", min_value=0, max_value=100,
                                    help="Average probability of the suggested label over the last epochs")})


def pick_from_table() -> None:
    rows = st.session_state.get("explore_table", {}).get("selection", {}).get("rows", [])
    order = st.session_state.get("_explore_order", [])
    if rows and rows[0] < len(order):
        st.session_state["explore_sample"] = order[rows[0]]


def search(names: pd.Series, query: str, within: np.ndarray) -> np.ndarray:
    """Up to ``MAX_MATCHES`` samples of ``within`` (in its order) whose file name contains ``query``."""
    hit = names.str.contains(query.strip(), case=False, regex=False).to_numpy(dtype=bool)
    return within[hit[within]][:MAX_MATCHES]


def send_to_review(run, sid: str) -> None:
    request_review(run, sid)
    st.session_state["review_focus"] = sid


def sample_panel(run, s, truth, groups, order, means, names: Callable[[], pd.Series], in_view: np.ndarray,
                 labels: list[str]) -> None:
    if not len(order):
        st.caption("No images in this selection.")
        return
    k = len(s.classes)
    c = st.columns([3, 2])
    query = c[1].text_input("Find an image by name", key="explore_search", placeholder="part of a file name",
                            help=f"Lists up to {MAX_MATCHES} matches of this selection, most suspicious first.")
    options = search(names(), query, order) if query.strip() else np.asarray(st.session_state.get("_explore_order", []),
                                                                           dtype=np.int64)
    if query.strip() and not len(options):
        c[1].caption("No image of this selection has that in its name.")
    options = [int(j) for j in options]
    chosen = st.session_state.get("explore_sample")
    if not isinstance(chosen, int) or not (0 <= chosen < len(s.ids)) or not in_view[chosen]:
        chosen = options[0] if options else int(order[0])
    if chosen not in options:
        options = [chosen] + options
    st.session_state["explore_sample"] = chosen
    i = c[0].selectbox("Open an image", options, key="explore_sample",
                       format_func=lambda j: f"{Path(s.ids[j]).name} · {display_name(s.method)} {s.score[j]:.3g}"
                       + (" · flagged" if s.flagged[j] else ""),
                       help="The rows of the table page above, or the matches of a name search. "
                            "Or click a row of the table.")
    sid = s.ids[i]
    cfg = run.config()
    left, mid, right = st.columns([2, 3, 5], gap="medium")
    with left:
        try:
            st.image(fit(images_of(cfg["data"], cfg.get("split", "train"), **image_layout(cfg)).open(
                sid, max_side=1024), 320),
                     width="stretch")
        except ImageAccessError as e:
            st.warning(md(e), icon=":material/hide_image:")
        st.caption(md(sid))
    with mid:
        sug = labels[s.suggested[i]] if 0 <= s.suggested[i] < k else "—"
        rows = [("Given label", labels[s.labels[i]]),
                (display_name(s.method), f"{s.score[i]:.3g}" if np.isfinite(s.score[i])
                 else "no score (a wrong-label reference in every training run)"),
                ("Threshold", f"{s.threshold[i]:.3g}" if np.isfinite(s.threshold[i]) else "—"),
                ("Decision", "flagged: the label may be wrong" if s.flagged[i] else "kept"),
                ("Group", dynamics.GROUP_NAMES[groups[i]] if groups[i] >= 0 else "unscored"),
                ("Model suggests", f"{sug} · {100 * s.suggested_probability[i]:.0f}%"
                 if np.isfinite(s.suggested_probability[i]) else sug)]
        if truth is not None:
            rows.append(("Truth file", "mislabeled" if truth[i] else "label correct"))
        facts(rows)
        if st.button("Send to Review", icon=":material/rule:", type="primary", key="send_to_review",
                     help="Adds this image to the review queue (even if it is not flagged) and opens it there."):
            send_to_review(run, sid)
            st.switch_page(REVIEW_PAGE)
    with right:
        st.caption("Per epoch, whether the model agreed with its label (above zero) or not (below), and how sure "
                   "it was (black); the groups' averages for comparison (dotted); the running SEI (purple, right axis).")
        se = sample_values(s, "signed_entropy", i)
        st.plotly_chart(plots.signed_entropy_curve(
            se, dynamics.cumulative_sei(se),
            group_means=dict(zip(dynamics.GROUP_NAMES, means))), key="sample_curve", **CHART)


def body() -> None:
    run = need_run()
    if run is None:
        return
    status = run.status()
    top = st.columns([2, 3])
    with top[1]:
        method = score_choice()
    stamp = workspace.run_stamp(run)
    s = scores_of(run, method)
    name = display_name(s.method)
    labels = [class_text(run.config(), c) for c in s.classes]  # "melanocytic nevus (nv)" where the data names nv
    with top[0]:
        k = class_filter(labels)
    with st.expander("How to read this page", icon=":material/help:"):
        st.markdown(HELP)
    with st.expander("How this is computed", icon=":material/functions:"):
        method_help(s)
    truth = truth_of(run)
    f = workspace.truth_file(run.config().get("data", ""))
    v = class_view(str(run.path), stamp, method, k, None if f is None else file_stamp(f), tuple(labels))
    groups, mask, fig = summary_of(run, method).groups, v["mask"], v["figures"]
    summary(s, truth, mask, status)
    decision_count(run)  # the count from the review decisions (issue 22)
    reliability_warning(run, method, k)

    st.subheader(f"{name} by class", anchor=False)
    st.caption(f"Each bar counts images with that {name} (lower = the model doubts the label more). Red: flagged "
               "(left of the dashed line), blue: kept."
               + (" Hatched: truly mislabeled according to the truth file." if truth is not None else ""))
    if k == ALL and len(s.classes) > SCROLL_CLASSES:
        st.caption(f"{len(s.classes)} classes: scroll inside the box, or choose one class above.")
        with st.container(height=760):
            st.plotly_chart(fig["hist"], key="hist", **CHART)
    else:
        st.plotly_chart(fig["hist"], key="hist", **CHART)

    st.subheader("Images", anchor=False)
    only_flagged = st.toggle("Only flagged images", value=False, key="explore_only_flagged")
    order = v["flagged_order"] if only_flagged else v["order"]
    st.caption(f"Lowest {name} (most suspicious) first. Click a row to open the image below.")
    sample_table(s, truth, groups, order, labels)
    in_view = mask & (s.flagged if only_flagged else True)
    sample_panel(run, s, truth, groups, order, v["se_mean"], lambda: file_names(str(run.path), stamp, method), in_view,
                 labels)

    st.subheader("How the model's view changed during training", anchor=False)
    c1, c2 = st.columns(2)
    with c1:
        st.caption("Each group's average over training: above zero the model agreed with the label, below zero it "
                   "disagreed (the further from zero, the surer it was; technically the signed entropy, band ± one "
                   "standard deviation). Flagged images stay below zero for many epochs.")
        st.plotly_chart(fig["group_curves"], key="group_curves", **CHART)
    with c2:
        st.caption("The share of each group whose label the model agreed with, per epoch. Images with a wrong "
                   "label are seen as their true class until the model starts to learn the wrong label by heart.")
        st.plotly_chart(fig["alignment"], key="alignment", **CHART)

    c1, c2 = st.columns(2)
    with c1:
        st.subheader("How unsure the model was: kept vs flagged", anchor=False)
        st.caption("The model's uncertainty about each image over training (0 = certain; thin lines: a few "
                   "individual images; thick: the mean, band ± one standard deviation).")
        st.plotly_chart(fig["entropy"], key="entropy", **CHART)
    with c2:
        st.subheader("Agreeing vs only being sure", anchor=False)
        st.caption("Left, the paper's score (SEI): the model's certainty counted for the label when it agreed and "
                   "against it when it disagreed; right, the certainty alone. Being unsure does not tell a difficult "
                   "image from a mislabeled one; agreeing or disagreeing does. Red: flagged by SEI, blue: kept"
                   + ("; hatched: truly mislabeled (truth file). AUROC: how well each score puts the truly "
                      "mislabeled images first (1 = perfectly, 0.5 = chance)." if truth is not None else "."))
        st.plotly_chart(fig["integrals"], key="integrals", **CHART)


with guard("the Explore page"):
    body()
