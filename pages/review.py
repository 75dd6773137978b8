"""Review: confirm, relabel or discard the flagged images; every decision is saved at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages._common import (anonymous_sign_in, cached_scored, cached_scores, facts, file_stamp, guard, images_of,
                           md, need_run, page_setup, reliability_of, reliability_warning, reviewer_name, scores_of,
                           signed_in_name)
from pages._common import class_names_of, class_text, image_layout
from sei_core import dynamics, plots, workspace
from sei_core.review_count import DEFAULT_AUDIT_SHARE, calibration_points
from sei_core.gallery import ImageAccessError, fit, zoom
from sei_core.methods import DEFAULT_METHOD, PAPER_METHOD, display_name
from sei_core.review import (REVIEW_REQUESTS_FILE, STATE_FILTERS, ReviewError, ReviewQueue, ReviewSession,
                             ReviewStore, review_columns, review_label_file, review_requests)
from sei_core.runs import Run, State
from sei_core.score_cache import sample_values

STATUS_WORDS = {"": "not reviewed yet", "confirmed": "confirmed", "relabeled": "relabeled", "discarded": "discarded"}
MAX_KEY_CLASSES = 9
TABLE_ROWS = 500  # rows of the queue table sent to the browser
CHART = dict(width="stretch", config={"displayModeBar": False})

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


# -- callbacks: they never raise; outcomes go to session state and are shown on the next run -------------

def _say(kind: str, text: str) -> None:
    st.session_state["review_msg"] = (kind, text)


def act(store: ReviewStore, queue: ReviewQueue, action: str, path: str, shown_label: str, shown_status: str,
        sei: float | None, new_label: str | None = None, force: bool = False) -> None:
    out = ReviewSession(store, queue).decide(reviewer_name(), action, path, shown_label, shown_status, sei,
                                             new_label, force)
    if out.conflict is not None:
        st.session_state["review_conflict"] = out.conflict
        st.session_state["review_current"] = path
    elif not out.saved:
        _say("error", out.error)
    else:
        st.session_state.pop("review_conflict", None)
        _say("success", "Saved: " + out.decision.summary())
        st.session_state["review_advance_from"] = path


def skip(path: str) -> None:
    st.session_state["review_advance_from"] = path
    st.session_state.pop("review_conflict", None)


def previous(path: str) -> None:
    st.session_state["review_back_from"] = path
    st.session_state.pop("review_conflict", None)


def undo(store: ReviewStore, queue: ReviewQueue, force: bool = False, decision_id: int | None = None) -> None:
    out = ReviewSession(store, queue).undo(reviewer_name(), decision_id, force)
    if out.conflict is not None:
        st.session_state["review_undo_conflict"] = out.conflict
    elif not out.saved:
        _say("error", out.error)
    else:
        st.session_state.pop("review_undo_conflict", None)
        st.session_state["review_current"] = out.decision.path
        _say("success", "Undone: " + out.decision.summary())


def keep_theirs() -> None:
    st.session_state.pop("review_conflict", None)


def on_filter_change() -> None:
    st.session_state["review_current"] = None


def remember_reviewer() -> None:
    name = st.session_state.get("reviewer", "").strip()
    st.session_state["_reviewer"] = name
    st.session_state["_reviewer_cleared"] = not name
    if name:
        st.query_params["reviewer"] = name
    elif "reviewer" in st.query_params:
        del st.query_params["reviewer"]


def jump() -> None:
    rows = st.session_state.get("review_queue_table", {}).get("selection", {}).get("rows", [])
    ids = st.session_state.get("_review_filtered", [])
    if rows and rows[0] < len(ids):
        st.session_state["review_current"] = ids[rows[0]]


# -- drawing ---------------------------------------------------------------------------------------

def header(run, label_file: Path, store: ReviewStore) -> None:
    cfg = run.config()
    with st.expander("Where your decisions go", icon=":material/save:"):
        if workspace.is_csv_data(run) and Path(label_file) != Path(cfg.get("data", "")):
            st.markdown("The label file this run was trained on is **read-only**, so it is left untouched. "
                        "Decisions are written at once to a working copy of it (same rows, same paths, plus the "
                        "review columns); use that copy, or the cleaned export, in place of the original.")
        elif workspace.is_csv_data(run):
            st.markdown("Every decision is written **at once** to the label file below, in its label column "
                        f"`{md(store.label_column)}` (the original label is kept in the column `original_label`, the "
                        "decision in `review_status`; discarded rows stay in the file, marked; nothing else changes). "
                        "Before the first change a backup of the untouched file is made.")
        else:
            st.markdown("This run was trained on an image folder or a .npz file, which have no label file to "
                        "write to. Decisions go to a label file made for this run (path, label, and the review "
                        "columns); use it, or the cleaned export, for retraining.")
        st.caption("Label file")
        st.code(str(label_file), language=None)
        st.caption("Backup of the original (made at the first decision)")
        st.code(str(store.backup_path), language=None)
        st.caption("Decision log (SQLite: reviewer, time, image, action, old and new label, the paper's SEI)")
        st.code(str(store.db_path), language=None)
        st.caption("Data the run was trained on")
        st.code(str(cfg.get("data")), language=None)


def controls(classes: list[str]) -> tuple[str, int]:
    if "reviewer" not in st.session_state:  # widget state is dropped while another page is shown
        st.session_state["reviewer"] = st.session_state.get("_reviewer") or st.query_params.get("reviewer", "")
    signed_in = signed_in_name()  # with a login, decisions carry the signed-in identity, not a typed name
    if signed_in:
        st.session_state["reviewer"] = signed_in
    c = st.columns([2, 2, 2])
    c[0].text_input("Your name", key="reviewer", on_change=remember_reviewer, placeholder="e.g. Dr. Ana Silva",
                    disabled=bool(signed_in),
                    help="Your signed-in identity, recorded with every decision." if signed_in else
                    "Recorded with every decision. Kept in the page address and in this browser, so a "
                    "reload or a new visit keeps it. Press Enter, then use the keyboard shortcuts.")
    if not signed_in:
        if anonymous_sign_in():
            c[0].caption("Signed in with the shared token, which names nobody: decisions are recorded "
                         "under the name typed here.")
        reviewer_script(st.session_state.get("reviewer", "").strip())
    k = c[1].selectbox("Given class", [-1] + list(range(len(classes))), key="review_class", on_change=on_filter_change,
                       format_func=lambda j: "All classes" if j < 0 else classes[j],
                       help="The label the image had when the model was trained.")
    state = c[2].selectbox("Show", list(STATE_FILTERS), key="review_state", on_change=on_filter_change,
                           help="Which images of the queue to step through.")
    return state, k


#: In the browser: Enter in the name field leaves the field (so the next key is a shortcut), and the
#: name is kept in the browser's localStorage and brought back (as ?reviewer=…) on a new visit.
_REVIEWER_SCRIPT = """<script>
(() => {
  const KEY = "sei-review.reviewer", name = %s, cleared = %s;
  const hook = (tries) => {
    const input = document.querySelector('input[aria-label="Your name"]');
    if (!input) { if (tries > 0) setTimeout(() => hook(tries - 1), 100); return; }
    if (!input.dataset.seiBlur) {
      input.dataset.seiBlur = "1";
      input.addEventListener("keydown", (e) => { if (e.key === "Enter") setTimeout(() => input.blur(), 0); });
    }
  };
  hook(50);
  try {
    if (name) { localStorage.setItem(KEY, name); return; }
    if (cleared) { localStorage.removeItem(KEY); return; }
    const saved = localStorage.getItem(KEY), url = new URL(window.location.href);
    if (saved && !url.searchParams.get("reviewer")) {
      url.searchParams.set("reviewer", saved);
      window.location.replace(url.toString());
    }
  } catch (e) { /* storage blocked: the name is still kept in the page address */ }
})();
</script>"""


def reviewer_script(name: str) -> None:
    """Adds :data:`_REVIEWER_SCRIPT` to the page (the name JSON-encoded, ``<`` escaped)."""
    import json

    def js(v) -> str:
        return json.dumps(v).replace("<", "\\u003c")

    st.html(_REVIEWER_SCRIPT % (js(name), js(bool(st.session_state.get("_reviewer_cleared")))),
            unsafe_allow_javascript=True, width="content")


def show_messages() -> None:
    msg = st.session_state.pop("review_msg", None)
    if msg:
        kind, text = msg
        (st.success if kind == "success" else st.error)(md(text), icon=":material/check_circle:" if kind == "success"
                                                        else ":material/error:")


def conflict_box(store: ReviewStore, queue: ReviewQueue) -> None:
    c = st.session_state.get("review_conflict")
    if not c:
        return
    with st.container(border=True):
        st.warning("Someone else decided on this image after you opened it. Nothing was overwritten.",
                   icon=":material/group:")
        st.markdown("**Their decision:** " + md(c.theirs))
        st.markdown("**It is now:** label " + md(repr(c.label)) + ", " + md(STATUS_WORDS.get(c.status, c.status)))
        mine = {"confirm": "confirm the label", "discard": "discard the image",
                "relabel": f"relabel it as {c.new_label!r}"}[c.action]
        st.markdown("**Your decision:** " + md(mine))
        b = st.columns(2)
        b[0].button("Apply mine anyway (overwrite)", type="primary", icon=":material/edit:", key="force_conflict",
                    on_click=act, args=(store, queue, c.action, c.path, c.label, c.status, c.sei, c.new_label, True))
        b[1].button("Keep theirs", icon=":material/undo:", key="keep_theirs", on_click=keep_theirs)


def undo_conflict_box(store: ReviewStore, queue: ReviewQueue) -> None:
    c = st.session_state.get("review_undo_conflict")
    if not c:
        return
    with st.container(border=True):
        st.warning("Someone else decided on this image after your decision, so undoing it would overwrite "
                   "their work.", icon=":material/group:")
        st.markdown(md(c.message))
        b = st.columns(2)
        b[0].button("Undo anyway (overwrite theirs)", key="force_undo", type="primary", icon=":material/edit:",
                    on_click=undo, args=(store, queue, True, c.decision_id))
        b[1].button("Keep theirs", key="leave_undo", icon=":material/undo:",
                    on_click=lambda: st.session_state.pop("review_undo_conflict", None))


def image_view(src, sid: str) -> None:
    try:
        im = src.open(sid, max_side=2048)
    except ImageAccessError as e:
        st.warning(md(e), icon=":material/hide_image:")
        return
    z, cx, cy = st.session_state.get("review_zoom", 1.0), 0.5, 0.5
    if z > 1:
        cx = st.session_state.get("review_pan_x", 50) / 100
        cy = st.session_state.get("review_pan_y", 50) / 100
    st.image(zoom(im, z, cx, cy, side=720), width="stretch")
    c = st.columns([3, 2], vertical_alignment="center")
    c[0].caption(f"{im.size[0]} × {im.size[1]} pixels" + (f", zoomed {z:g}×" if z > 1 else "")
                 + ". Hover the image for full screen.")
    with c[1].popover("Zoom", icon=":material/zoom_in:", width="stretch"):
        st.select_slider("Magnification", [1.0, 1.5, 2.0, 3.0, 4.0, 6.0], key="review_zoom",
                         format_func=lambda v: f"{v:g}×")
        st.slider("Left ↔ right", 0, 100, 50, key="review_pan_x")
        st.slider("Top ↕ bottom", 0, 100, 50, key="review_pan_y")


@st.cache_resource(max_entries=256, show_spinner=False)
def thumbnail(data: str, split: str, sid: str, side: int, stamp: tuple, layout: tuple = ()) -> np.ndarray | None:
    """A small copy of an example image (the same examples come back for every image of a class);
    ``layout``: the label file's image folders and extension (``image_layout(cfg)``'s values)."""
    try:
        return np.asarray(fit(images_of(data, split, *layout).open(sid, max_side=4 * side), side))
    except ImageAccessError:
        return None


def strip(cfg: dict, s, idx: np.ndarray, title: str, stamp: tuple) -> None:
    """Six example thumbnails; ``stamp``: the run's version (:func:`thumbnail_stamp`)."""
    st.markdown(title)
    if not len(idx):
        st.caption("No confidently clean examples of this class in the run.")
        return
    cols = st.columns(6)
    for j, i in enumerate(idx[:6]):
        with cols[j]:
            th = thumbnail(cfg["data"], cfg.get("split", "train"), s.ids[i], 160, stamp,
                           tuple(image_layout(cfg).values()))
            if th is None:
                st.caption("(not shown)")
            else:
                st.image(th, width="stretch", caption=f"{100 * s.suggested_probability[i]:.0f}%")


def thumbnail_stamp(run, cfg: dict) -> tuple:
    """The thumbnails' cache key: the run's version, and an image folder's own stamp. Not the
    label file's: the review rewrites it with every decision (and undo), which would decode
    every example image again on each key (issue 18 item 7)."""
    data = Path(cfg["data"])
    return (*workspace.run_stamp(run), *(file_stamp(data) if data.is_dir() else ()))


def action_bar(store: ReviewStore, queue: ReviewQueue, classes: list[str], path: str, label: str, status: str,
               sei: float, suggested: str | None, disabled: bool) -> None:
    args = dict(store=store, queue=queue, path=path, shown_label=label, shown_status=status, sei=sei)
    b = st.columns(3)
    b[0].button("Confirm label", type="primary", icon=":material/check:", shortcut="Y", key="act_confirm",
                on_click=act, kwargs=dict(action="confirm", **args), disabled=disabled, width="stretch",
                help="The given label is right.")
    b[1].button("Discard image", icon=":material/delete:", shortcut="D", key="act_discard", on_click=act,
                kwargs=dict(action="discard", **args), disabled=disabled, width="stretch",
                help="Unusable (wrong kind of image, unreadable, duplicate…). The row stays in the file, marked "
                     "discarded, and is left out of the cleaned export.")
    b[2].button("Skip", icon=":material/skip_next:", shortcut="S", key="act_skip", on_click=skip, args=(path,),
                width="stretch", help="Decide later; nothing is written.")
    st.markdown("**Relabel as**")
    n_keys = min(len(classes), MAX_KEY_CLASSES)
    cols = st.columns(2 if n_keys > 1 else 1)
    for k in range(n_keys):
        mine = classes[k] == label  # its own class: the key confirms the label
        cols[k % len(cols)].button(
            md(classes[k]) + (" (keep: confirm)" if mine else ""), key=f"relabel_to_{k}", shortcut=str(k + 1),
            width="stretch", icon=":material/star:" if classes[k] == suggested else None,
            type="secondary", disabled=disabled, on_click=act,
            kwargs=dict(action="confirm", **args) if mine else dict(action="relabel", new_label=classes[k], **args),
            help=("The label it has: this confirms it. " if mine else "")
            + ("The model's suggestion" if classes[k] == suggested else ""))
    others = [c for c in classes if c != label]
    if len(classes) > MAX_KEY_CLASSES:
        c = st.columns([3, 2], vertical_alignment="bottom")
        default = others.index(suggested) if suggested in others else 0
        pick = c[0].selectbox("Any class", others, index=default, key=f"relabel_pick::{path}")
        c[1].button("Relabel", icon=":material/edit:", shortcut="L", key="act_relabel", disabled=disabled,
                    on_click=act, kwargs=dict(action="relabel", new_label=pick, **args), width="stretch")


def body() -> None:
    run = need_run()
    if run is None:
        return
    s = scores_of(run)
    stamp = workspace.run_stamp(run)
    label_file = review_label_file(run)
    columns = review_columns(run)
    store = review_store(str(label_file), tuple(s.classes), columns["path_column"], columns["label_column"])
    header(run, label_file, store)
    state_filter, k = controls(s.classes)
    reliability_warning(run, k=k)
    reviewer = reviewer_name()
    if not reviewer:
        st.warning("Enter your name to start reviewing; it is saved with every decision.", icon=":material/badge:")
    if run.state() != State.FINISHED:
        st.info("This run has not finished training: the queue uses the epochs recorded so far and may change.",
                icon=":material/hourglass_top:")
    queue = review_queue(str(run.path), stamp, str(label_file), file_stamp(run.path / REVIEW_REQUESTS_FILE))
    queue.follow(store)  # decisions since the last run (this tab's, others', other programs')
    if not len(queue):
        st.success("Nothing to review: the model flagged no image in this run.", icon=":material/check_circle:")
        export(store, label_file, class_names_of(run.config()))
        return
    focus = st.session_state.pop("review_focus", None)
    if focus in queue.position:
        st.session_state["review_current"] = focus
    decision_panel(run, store, queue, state_filter, k, reviewer)
    review_log(store, s, queue, state_filter, k)
    export(store, label_file, class_names_of(run.config()))
    retrain_section(run)


@st.fragment
def decision_panel(run, store: ReviewStore, queue: ReviewQueue, state_filter: str, k: int, reviewer: str) -> None:
    """One image and its decision buttons. A decision reruns only this part of the page; what it
    needs over all samples was computed once per run (``review_queue``, ``run_context``)."""
    s = scores_of(run)
    cfg = run.config()
    ctx = run_context(str(run.path), workspace.run_stamp(run))
    reviewer = reviewer_name()
    session = ReviewSession(store, queue)
    shown = session.shown(state_filter, k)
    st.progress(queue.reviewed() / len(queue), text=f"Reviewed {queue.reviewed()} of {len(queue)} images in the queue "
                f"({int(s.flagged.sum())} flagged by the model, {queue.requested} sent from Explore)")
    count_panel(store, queue, s)  # the count from the decisions and when to stop (issue 22)
    show_messages()
    undo_conflict_box(store, queue)

    adv = st.session_state.pop("review_advance_from", None)
    back = st.session_state.pop("review_back_from", None)
    if adv is not None:
        current = session.advance(adv, state_filter, k)
    elif back is not None:
        current = session.back(back, reviewer)
    else:
        current = session.current(st.session_state.get("review_current"), state_filter, k)
    st.session_state["review_current"] = current
    if current is None:
        st.success(f"Nothing left to show with “{md(state_filter)}”"
                   + ("" if k < 0 else f" in {md(s.classes[k])}") + ". Choose “all” to see every image of the queue.",
                   icon=":material/task_alt:")
        return
    q = queue.position[current]
    i = int(queue.index[q])
    row = queue.row(current)
    if row is None:
        st.error(f"{md(current)} is no longer in the label file; it cannot be reviewed here. Press Skip to go on.",
                 icon=":material/error:")
        st.button("Skip", shortcut="S", key="act_skip_missing", on_click=skip, args=(current,))
        return
    label, status, by, orig = row
    suggested = s.classes[s.suggested[i]] if 0 <= s.suggested[i] < len(s.classes) else None
    src = images_of(cfg["data"], cfg.get("split", "train"), **image_layout(cfg))

    at = np.searchsorted(shown, q)
    inside = at < len(shown) and shown[at] == q
    st.caption(f"Image {at + 1} of {len(shown)} shown with “{state_filter}”" if inside else
               f"This image is not (or no longer) in the “{state_filter}” selection; it stays on screen until you "
               "move on (Skip).")
    conflict_box(store, queue)
    left, right = st.columns([4, 5], gap="large")
    with left:
        image_view(src, current)
    with right:
        st.subheader(md(Path(current).name), anchor=False)
        rows = [("Label now", class_text(cfg, label))]
        if orig and orig != label:
            rows.append(("Original label", class_text(cfg, orig)))
        rows += [("Model suggests", f"{class_text(cfg, suggested)} · {100 * s.suggested_probability[i]:.0f}%"
                  if suggested else "—"),
                 (display_name(s.method), f"{s.score[i]:.3g}  (threshold {s.threshold[i]:.3g})"
                  if np.isfinite(s.score[i]) else "no score")]
        if s.method != PAPER_METHOD:
            rows.append(("Paper's SEI", f"{s.sei[i]:.3g}  (threshold {s.sei_threshold[i]:.3g}, "
                         f"{'flagged' if s.sei_flagged[i] else 'not flagged'})" if np.isfinite(s.sei[i]) else "no score"))
        rows.append(("Status", STATUS_WORDS.get(status, status) + (f" by {by}" if by else "")))
        trust = reliability_of(run)[int(s.labels[i])]
        if not trust.reliable:  # the model has not learnt this image's class: say so beside its flag
            rows.append(("Flags of this class", f"unreliable: the model agrees with {100 * trust.agreement:.0f}% "
                                                f"of its {trust.images:,} labels"))
        facts(rows)
        if status == "discarded":
            st.info("This image is discarded: it is left out of the cleaned export.", icon=":material/delete:")
        action_bar(store, queue, s.classes, current, label, status, float(s.sei[i]), suggested, disabled=not reviewer)
        b = st.columns(2)
        b[0].button("Undo my last decision", icon=":material/undo:", shortcut="U", key="act_undo", on_click=undo,
                    args=(store, queue), disabled=not reviewer, width="stretch",
                    help="Restores the previous label and status in the label file and logs the undo.")
        b[1].button("Previous image", icon=":material/skip_previous:", shortcut="left", key="act_previous",
                    on_click=previous, args=(current,), width="stretch",
                    help="Back through the images you decided, latest first; nothing is written.")
        st.caption("Keyboard: Y confirm · 1–%d relabel as that class (the image's own class confirms) · D discard · "
                   "S skip · ← previous · U undo%s. The star marks the model's suggestion: the class it predicted "
                   "most often over the last epochs, with its average probability."
                   % (min(len(s.classes), MAX_KEY_CLASSES), " · L relabel as picked" if len(s.classes) > MAX_KEY_CLASSES else ""))
        hist = store.decisions(current)
        if hist:
            with st.expander(f"History of this image ({len(hist)})"):
                st.dataframe(pd.DataFrame([{"when": d.time[:19].replace("T", " "), "who": d.reviewer,
                                            "action": d.action + (" (undone)" if d.undone else ""),
                                            "from": d.old_label, "to": d.new_label} for d in hist]),
                             hide_index=True, width="stretch")

    c1, c2 = st.columns([1, 1], gap="large")
    with c1:
        st.markdown("**The model's view of this label during training**")
        st.caption("Above zero: the model agreed with the label at that epoch, below zero: it disagreed; the further "
                   "from zero, the surer it was (the signed entropy). Dotted: the average of each group (see "
                   "Explore); purple: the running sum (the paper's SEI).")
        se = sample_values(s, "signed_entropy", i)
        st.plotly_chart(plots.signed_entropy_curve(se, dynamics.cumulative_sei(se), group_means=ctx["group_means"]),
                        key="review_curve", **CHART)
    with c2:
        given_k, stamp = int(s.labels[i]), thumbnail_stamp(run, cfg)
        strip(cfg, s, _without(ctx["clean"][given_k], i),
              f"Confidently clean examples of **{md(s.classes[given_k])}** (the label it was given)", stamp)
        if suggested is not None and s.suggested[i] != given_k:
            strip(cfg, s, _without(ctx["clean"][int(s.suggested[i])], i),
                  f"Confidently clean examples of **{md(suggested)}** (the model's suggestion)", stamp)
        st.caption("Percentages: how sure the model is of each example's label over the last epochs.")


# -- the count from the decisions and when to stop (issue 22; sei_core.review_count) ---------------

def count_panel(store: ReviewStore, queue: ReviewQueue, s) -> None:
    """"N wrong labels found in M decisions; about X in the whole data set …", the stopping
    suggestion, the share-wrong-by-rank curve and the random-check setting."""
    if "review_audit_share" not in st.session_state:
        st.session_state["review_audit_share"] = DEFAULT_AUDIT_SHARE
    queue.audit_share = float(st.session_state["review_audit_share"])
    c, stop, pts = queue.count(store, model=s.count)
    st.caption(md(c.sentence()) + " " + md(stop.sentence()))
    with st.expander("How the count is made, and random checks", icon=":material/query_stats:"):
        st.markdown("Some of the images shown are **picked at random** from all images not reviewed yet (flagged "
                    "or not; more often from just after your place in the order), looking like any other. Their "
                    "decisions say how many wrong labels are left among the images nobody has looked at; the "
                    "images in order add what you found. Confirm counts as "
                    "a correct label; relabel and discard as a wrong one; skip counts as nothing.")
        st.slider("Share of random checks (at most)", 0.0, 0.5, step=0.05, key="review_audit_share",
                  help="0 turns them off (the count then stays the model's estimate). The share used is lower "
                       "while the images in order are mostly wrong, so checks cost few finds (never below a third "
                       "of it).")
        st.plotly_chart(plots.calibration_curve(calibration_points(*pts, n=c.n_samples), c.n_samples),
                        key="review_calibration", **CHART)


def _without(idx: np.ndarray, i: int, n: int = 6) -> np.ndarray:
    return idx[idx != i][:n]


def review_log(store: ReviewStore, s, queue: ReviewQueue, state_filter: str, k: int) -> None:
    name = display_name(s.method)
    with st.expander(f"The queue ({len(queue)} images) — click a row to open it"):
        shown = queue.select(STATE_FILTERS[state_filter], k)[:TABLE_ROWS]
        idx = queue.index[shown]
        ids = [queue.ids[q] for q in shown]
        st.session_state["_review_filtered"] = ids
        if len(queue.select(STATE_FILTERS[state_filter], k)) > TABLE_ROWS:
            st.caption(f"The first {TABLE_ROWS} of this selection, most suspicious first (as of opening the page).")
        df = pd.DataFrame({"image": [Path(sid).name for sid in ids],
                           "given label": [s.classes[j] for j in s.labels[idx]],
                           name: s.score[idx], "SEI": s.sei[idx],
                           "label now": queue.label[shown],
                           "status": [STATUS_WORDS.get(("", "confirmed", "relabeled", "discarded")[c], "?")
                                      if c >= 0 else "not in the label file" for c in queue.status[shown]]})
        df = df[list(dict.fromkeys(["image", "given label", name, "SEI", "label now", "status"]))]
        st.dataframe(df, hide_index=True, width="stretch", key="review_queue_table", on_select=jump,
                     selection_mode="single-row", column_config={c: st.column_config.NumberColumn(format="%.3g")
                                                                 for c in (name, "SEI")})
    with st.expander("Decision log (everyone, newest first)"):
        ds = store.recent_decisions(500)
        st.dataframe(pd.DataFrame([{"#": d.id, "when (UTC)": d.time[:19].replace("T", " "), "reviewer": d.reviewer,
                                    "image": d.path, "action": d.action + (" (undone)" if d.undone else ""),
                                    "old label": d.old_label, "new label": d.new_label,
                                    "SEI": d.sei} for d in ds],
                                  columns=["#", "when (UTC)", "reviewer", "image", "action", "old label",
                                           "new label", "SEI"]),
                     hide_index=True, width="stretch")


def export(store: ReviewStore, label_file: Path, class_names: dict | None = None) -> None:
    with st.container(border=True):
        st.subheader("Export a cleaned label file", anchor=False)
        st.caption("All rows with their current labels, without the discarded ones; the review columns are kept. "
                   "The live label file is not changed.")
        default = str(label_file.with_name(label_file.stem + ".clean.csv"))
        c = st.columns([4, 1], vertical_alignment="bottom")
        out = c[0].text_input("Write to", value=default, key="export_path")
        if c[1].button("Export", icon=":material/download:", key="export", width="stretch"):
            try:
                n = store.export_clean(out, class_names=class_names)
            except (ReviewError, PermissionError) as e:  # PermissionError: sei_core.access refused the folder
                st.error(md(e), icon=":material/error:")
                return
            st.success(f"Wrote {n} rows.", icon=":material/check_circle:")
            st.code(str(Path(out).absolute()), language=None)
            st.download_button("Download it", Path(out).read_bytes(), file_name=Path(out).name, mime="text/csv",
                               icon=":material/download:")


from pages._outcome import retrain_section  # noqa: E402  (the retrain section, issue 19)

with guard("the Review page"):
    body()
