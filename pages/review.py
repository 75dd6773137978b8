"""Review: confirm, relabel or discard the flagged images; every decision is saved at once.

The main flow: the run's store and queue, then the decision panel (one image, its facts and
buttons; a fragment, so a decision reruns only it), then the queue table, export and
retraining. The parts around it are in ``pages/_review_parts.py``; navigation and the words
shown come from ``sei_core.review`` (``ReviewSession`` and its module).
"""

from __future__ import annotations

import io
from pathlib import Path

import streamlit as st

import pages._review_parts as parts
from pages._common import (cached_scored, cached_scores, class_names_of, class_text, facts, file_stamp, guard,
                           image_layout, images_of, md, need_run, page_setup, reliability_of, reliability_warning,
                           reviewer_name, scores_of)
from pages._outcome import retrain_section
from sei_core import dynamics, gallery, plots, workspace
from sei_core.methods import DEFAULT_METHOD
from sei_core.review import (REVIEW_REQUESTS_FILE, ReviewQueue, ReviewSession, ReviewStore, review_columns,
                             review_label_file, review_requests)
from sei_core.review.session import MAX_KEY_CLASSES, image_facts, keys_text, suggested_class
from sei_core.runs import Run, State
from sei_core.score_cache import sample_values

page_setup("Review")


@st.cache_resource(max_entries=8)
def review_store(label_file: str, classes: tuple, path_column: str, label_column: str) -> ReviewStore:
    return ReviewStore(label_file, classes=list(classes), path_column=path_column, label_column=label_column)


@st.cache_resource(max_entries=4, show_spinner="Building the review queue…")
def review_queue(run_path: str, stamp: tuple, label_file: str, requests_stamp: tuple) -> ReviewQueue:
    """The run's queue, built once per run version and request list; decisions update it in place
    (shared by every tab on this server, like the label file)."""
    s = cached_scores(run_path, stamp, DEFAULT_METHOD)
    return ReviewQueue(s.ids, s.labels, s.score, s.flagged, review_requests(Run(run_path)))


@st.cache_resource(max_entries=4, show_spinner=False)
def run_context(run_path: str, stamp: tuple) -> dict:
    """Per run version: the groups' mean signed-entropy curves (for the comparison curve) and the
    most confidently clean examples of each class, so a decision recomputes nothing over all samples."""
    sc = cached_scored(run_path, stamp, DEFAULT_METHOD)
    s = sc.scores
    mean, _, _ = sc.summary.group_curves(-1)
    clean = [dynamics.clean_examples(s.labels, s.flagged, s.suggested, s.suggested_probability, k, n=7)
             for k in range(len(s.classes))]
    return dict(group_means=dict(zip(dynamics.GROUP_NAMES, mean)), clean=clean)


@st.cache_resource(max_entries=64, show_spinner=False)
def curve(run_path: str, stamp: tuple, i: int) -> str:
    """Sample ``i``'s signed-entropy curve as SVG (light for the browser at every decision; kept
    per image: "Previous" and undo show it again)."""
    s = cached_scores(run_path, stamp, DEFAULT_METHOD)
    se = sample_values(s, "signed_entropy", i)
    return plots.signed_entropy_svg(se, dynamics.cumulative_sei(se),
                                    group_means=run_context(run_path, stamp)["group_means"])


@st.cache_resource(max_entries=32, show_spinner=False)
def view(data: str, split: str, layout: tuple, sid: str, z: float, cx: float, cy: float) -> tuple[bytes, tuple]:
    """The image on screen as JPEG bytes (at most 720 pixels) and its own size, per image and zoom
    ("Previous" and undo show it again). Raises ``ImageAccessError``."""
    im = images_of(data, split, *layout).open(sid, max_side=2048)
    buf = io.BytesIO()
    gallery.zoom(im, z, cx, cy, side=720).convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue(), im.size


def body() -> None:
    run = need_run()
    if run is None:
        return
    s, cfg = scores_of(run), run.config()
    label_file, columns = review_label_file(run), review_columns(run)
    store = review_store(str(label_file), tuple(s.classes), columns["path_column"], columns["label_column"])
    parts.header(run, label_file, store)
    state_filter, k = parts.controls(cfg, s.classes)
    reliability_warning(run, k=k)
    reviewer = reviewer_name()
    if not reviewer:
        st.warning("Enter your name to start reviewing; it is saved with every decision.", icon=":material/badge:")
    if run.state() != State.FINISHED:
        st.info("This run has not finished training: the queue uses the epochs recorded so far and may change.",
                icon=":material/hourglass_top:")
    queue = review_queue(str(run.path), workspace.run_stamp(run), str(label_file),
                         file_stamp(run.path / REVIEW_REQUESTS_FILE))
    queue.follow(store)  # decisions since the last run (this tab's, others', other programs')
    if not len(queue):
        st.success("Nothing to review: the model flagged no image in this run.", icon=":material/check_circle:")
        parts.export(store, label_file, class_names_of(cfg))
        return
    focus = st.session_state.pop("review_focus", None)
    if focus in queue.position:
        st.session_state["review_current"] = focus
    decision_panel(run, store, queue, state_filter, k)
    parts.review_log(cfg, store, s, queue, state_filter, k)
    parts.export(store, label_file, class_names_of(cfg))
    retrain_section(run)


@st.fragment
def decision_panel(run, store: ReviewStore, queue: ReviewQueue, state_filter: str, k: int) -> None:
    """One image and its decision buttons. A decision reruns only this part of the page; what it
    needs over all samples was computed once per run (``review_queue``, ``run_context``). The
    image and its buttons are drawn first, the progress and the count above them last (the
    browser shows each part as it arrives)."""
    s, cfg = scores_of(run), run.config()
    reviewer = reviewer_name()
    session = ReviewSession(store, queue)
    top = st.container()
    parts.show_messages()
    parts.undo_conflict_box(store, queue)
    current = session.navigate(st.session_state.get("review_current"), state_filter, k, reviewer,
                               advance_from=st.session_state.pop("review_advance_from", None),
                               back_from=st.session_state.pop("review_back_from", None))
    st.session_state["review_current"] = current
    if current is not None:
        image_and_decision(run, cfg, s, store, queue, session, current, state_filter, k, reviewer)
    else:
        st.success(f"Nothing left to show with “{md(state_filter)}”"
                   + ("" if k < 0 else f" in {md(class_text(cfg, s.classes[k]))}")
                   + ". Choose “all” to see every image of the queue.", icon=":material/task_alt:")
    with top:
        st.progress(queue.reviewed() / len(queue), text=f"Reviewed {queue.reviewed()} of {len(queue)} images in the "
                    f"queue ({int(s.flagged.sum())} flagged by the model, {queue.requested} sent from Explore)")
        parts.count_panel(store, queue, s)  # the count from the decisions and when to stop (issue 22)


def image_and_decision(run, cfg: dict, s, store: ReviewStore, queue: ReviewQueue, session: ReviewSession,
                       current: str, state_filter: str, k: int, reviewer: str) -> None:
    row = queue.row(current)
    if row is None:
        st.error(f"{md(current)} is no longer in the label file; it cannot be reviewed here. Press Skip to go on.",
                 icon=":material/error:")
        st.button("Skip", shortcut="S", key="act_skip_missing", on_click=parts.skip, args=(current,))
        return
    i = int(queue.index[queue.position[current]])
    label, status = row[:2]
    suggested = suggested_class(s, i)
    place = session.place(current, state_filter, k)
    st.caption(f"Image {place[0]} of {place[1]} shown with “{state_filter}”" if place else
               f"This image is not (or no longer) in the “{state_filter}” selection; it stays on screen until you "
               "move on (Skip).")
    parts.conflict_box(store, queue)
    left, right = st.columns([4, 5], gap="large")
    with left:
        image_view(cfg, current)
    with right:
        st.subheader(md(Path(current).name), anchor=False)
        facts(image_facts(s, i, row, lambda c: class_text(cfg, c), reliability_of(run)[int(s.labels[i])]))
        if status == "discarded":
            st.info("This image is discarded: it is left out of the cleaned export.", icon=":material/delete:")
        action_bar(cfg, store, queue, s.classes, current, label, status, float(s.sei[i]), suggested, not reviewer)
        b = st.columns(2)
        b[0].button("Undo my last decision", icon=":material/undo:", shortcut="U", key="act_undo", on_click=parts.undo,
                    args=(store, queue), disabled=not reviewer, width="stretch",
                    help="Restores the previous label and status in the label file and logs the undo.")
        b[1].button("Previous image", icon=":material/skip_previous:", shortcut="left", key="act_previous",
                    on_click=parts.previous, args=(current,), width="stretch",
                    help="Back through the images you decided, latest first; nothing is written.")
        st.caption(keys_text(len(s.classes)))
        parts.history(cfg, store, current)
    c1, c2 = st.columns([1, 1], gap="large")
    with c1:
        st.markdown("**The model's view of this label during training**")
        st.caption("Above zero: the model agreed with the label at that epoch, below zero: it disagreed; the further "
                   "from zero, the surer it was (the signed entropy). Dotted: the average of each group (see "
                   "Explore); purple: the running sum (the paper's SEI).")
        st.html(curve(str(run.path), workspace.run_stamp(run), i))
    with c2:
        clean = run_context(str(run.path), workspace.run_stamp(run))["clean"]
        given_k, stamp = int(s.labels[i]), parts.thumbnail_stamp(run, cfg)
        strips = [(given_k, "the label it was given")]
        if suggested is not None and int(s.suggested[i]) != given_k:
            strips.append((int(s.suggested[i]), "the model's suggestion"))
        for kk, whose in strips:
            parts.strip(cfg, s, clean[kk][clean[kk] != i][:6],
                        f"Confidently clean examples of **{md(class_text(cfg, s.classes[kk]))}** ({whose})", stamp)
        st.caption("Percentages: how sure the model is of each example's label over the last epochs.")


def image_view(cfg: dict, sid: str) -> None:
    z, cx, cy = st.session_state.get("review_zoom", 1.0), 0.5, 0.5
    if z > 1:
        cx, cy = st.session_state.get("review_pan_x", 50) / 100, st.session_state.get("review_pan_y", 50) / 100
    try:
        data, size = view(cfg["data"], cfg.get("split", "train"), tuple(image_layout(cfg).values()), sid, z, cx, cy)
    except gallery.ImageAccessError as e:
        st.warning(md(e), icon=":material/hide_image:")
        return
    st.image(data, width="stretch")
    c = st.columns([3, 2], vertical_alignment="center")
    c[0].caption(f"{size[0]} × {size[1]} pixels" + (f", zoomed {z:g}×" if z > 1 else "")
                 + ". Hover the image for full screen.")
    with c[1].popover("Zoom", icon=":material/zoom_in:", width="stretch"):
        st.select_slider("Magnification", [1.0, 1.5, 2.0, 3.0, 4.0, 6.0], key="review_zoom",
                         format_func=lambda v: f"{v:g}×")
        st.slider("Left ↔ right", 0, 100, 50, key="review_pan_x")
        st.slider("Top ↕ bottom", 0, 100, 50, key="review_pan_y")


def action_bar(cfg: dict, store: ReviewStore, queue: ReviewQueue, classes: list[str], path: str, label: str,
               status: str, sei: float, suggested: str | None, disabled: bool) -> None:
    """Confirm, discard, skip, and a button per class (its number key; the image's own class
    confirms), showing each class's name with its code; decisions store the code."""
    args = dict(store=store, queue=queue, path=path, shown_label=label, shown_status=status, sei=sei)
    b = st.columns(3)
    b[0].button("Confirm label", type="primary", icon=":material/check:", shortcut="Y", key="act_confirm",
                on_click=parts.act, kwargs=dict(action="confirm", **args), disabled=disabled, width="stretch",
                help="The given label is right.")
    b[1].button("Discard image", icon=":material/delete:", shortcut="D", key="act_discard", on_click=parts.act,
                kwargs=dict(action="discard", **args), disabled=disabled, width="stretch",
                help="Unusable (wrong kind of image, unreadable, duplicate…). The row stays in the file, marked "
                     "discarded, and is left out of the cleaned export.")
    b[2].button("Skip", icon=":material/skip_next:", shortcut="S", key="act_skip", on_click=parts.skip, args=(path,),
                width="stretch", help="Decide later; nothing is written.")
    st.markdown("**Relabel as**")
    n_keys = min(len(classes), MAX_KEY_CLASSES)
    cols = st.columns(2 if n_keys > 1 else 1)
    for k in range(n_keys):
        mine = classes[k] == label  # its own class: the key confirms the label
        cols[k % len(cols)].button(
            md(class_text(cfg, classes[k])) + (" (keep: confirm)" if mine else ""), key=f"relabel_to_{k}",
            shortcut=str(k + 1), width="stretch", icon=":material/star:" if classes[k] == suggested else None,
            type="secondary", disabled=disabled, on_click=parts.act,
            kwargs=dict(action="confirm", **args) if mine else dict(action="relabel", new_label=classes[k], **args),
            help=("The label it has: this confirms it. " if mine else "")
            + ("The model's suggestion" if classes[k] == suggested else ""))
    if len(classes) > MAX_KEY_CLASSES:
        others = [c for c in classes if c != label]
        c = st.columns([3, 2], vertical_alignment="bottom")
        pick = c[0].selectbox("Any class", others, index=others.index(suggested) if suggested in others else 0,
                              key=f"relabel_pick::{path}", format_func=lambda code: class_text(cfg, code))
        c[1].button("Relabel", icon=":material/edit:", shortcut="L", key="act_relabel", disabled=disabled,
                    on_click=parts.act, kwargs=dict(action="relabel", new_label=pick, **args), width="stretch")


with guard("the Review page"):
    body()
