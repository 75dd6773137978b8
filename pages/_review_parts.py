"""The Review page's parts around its main flow: the callbacks of its buttons, where decisions
go, the name and filters, conflicts, the count from the decisions, the example thumbnails,
the queue table and decision log, and the export.

UI glue only: what to show and in which words comes from ``sei_core.review`` (its session
module); the page (``pages/review.py``) draws the image and its decision in this order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import streamlit as st

from pages._common import (anonymous_sign_in, class_text, file_stamp, image_layout, images_of, md, reviewer_name,
                           signed_in_name)
from sei_core import gallery, plots, workspace
from sei_core.methods import display_name
from sei_core.review import STATE_FILTERS, ReviewError, ReviewQueue, ReviewSession, ReviewStore
from sei_core.review.session import STATUS_WORDS, decision_lines, decision_log_table, queue_table
from sei_core.review_count import DEFAULT_AUDIT_SHARE, calibration_points

TABLE_ROWS = 500  # rows of the queue table sent to the browser
CHART = dict(width="stretch", config={"displayModeBar": False})


# -- callbacks: they never raise; outcomes go to session state and are shown on the next run -------------

def say(kind: str, text: str) -> None:
    st.session_state["review_msg"] = (kind, text)


def act(store: ReviewStore, queue: ReviewQueue, action: str, path: str, shown_label: str, shown_status: str,
        sei: float | None, new_label: str | None = None, force: bool = False) -> None:
    out = ReviewSession(store, queue).decide(reviewer_name(), action, path, shown_label, shown_status, sei,
                                             new_label, force)
    if out.conflict is not None:
        st.session_state["review_conflict"] = out.conflict
        st.session_state["review_current"] = path
    elif not out.saved:
        say("error", out.error)
    else:
        st.session_state.pop("review_conflict", None)
        say("success", "Saved: " + out.decision.summary())
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
        say("error", out.error)
    else:
        st.session_state.pop("review_undo_conflict", None)
        st.session_state["review_current"] = out.decision.path
        say("success", "Undone: " + out.decision.summary())


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


# -- the top of the page ---------------------------------------------------------------------------

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
        for caption, path in (("Label file", label_file),
                              ("Backup of the original (made at the first decision)", store.backup_path),
                              ("Decision log (SQLite: reviewer, time, image, action, old and new label, the paper's "
                               "SEI)", store.db_path), ("Data the run was trained on", cfg.get("data"))):
            st.caption(caption)
            st.code(str(path), language=None)


def controls(cfg: dict, classes: list[str]) -> tuple[str, int]:
    """The reviewer's name and the filters: ``(state filter, given class or -1)``."""
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
                       format_func=lambda j: "All classes" if j < 0 else class_text(cfg, classes[j]),
                       help="The label the image had when the model was trained.")
    state = c[2].selectbox("Show", list(STATE_FILTERS), key="review_state", on_change=on_filter_change,
                           help="Which images of the queue to step through.")
    return state, k


#: In the browser: Enter in the name field leaves the field (so the next key is a shortcut), and the
#: name is kept in the browser's localStorage and brought back (as ?reviewer=…) on a new visit.
REVIEWER_SCRIPT = """<script>
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
    """Adds :data:`REVIEWER_SCRIPT` to the page (the name JSON-encoded, ``<`` escaped)."""
    def js(v) -> str:
        return json.dumps(v).replace("<", "\\u003c")

    st.html(REVIEWER_SCRIPT % (js(name), js(bool(st.session_state.get("_reviewer_cleared")))),
            unsafe_allow_javascript=True, width="content")


# -- inside the decision panel ---------------------------------------------------------------------

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


def history(cfg: dict, store: ReviewStore, path: str) -> None:
    """The image's decisions, one line each (a few lines of text, not a table widget: it is
    drawn with every decision)."""
    hist = store.decisions(path)
    if hist:
        with st.expander(f"History of this image ({len(hist)})"):
            st.markdown("  \n".join(md(line) for line in decision_lines(hist, lambda c: class_text(cfg, c))))


def count_panel(store: ReviewStore, queue: ReviewQueue, s) -> None:
    """"N wrong labels found in M decisions; about X in the whole data set …", the stopping
    suggestion, the random-check setting and, on request, the share-wrong-by-rank curve (a
    chart at every decision would cost more than the count itself)."""
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
        if st.toggle("Show the share of wrong labels by rank", key="review_calibration_on"):
            st.plotly_chart(plots.calibration_curve(calibration_points(*pts, n=c.n_samples), c.n_samples),
                            key="review_calibration", **CHART)


@st.cache_resource(max_entries=256, show_spinner=False)
def thumbnail(data: str, split: str, sid: str, side: int, stamp: tuple, layout: tuple = ()):
    """A small copy of an example image, a PIL image (the same examples come back for every image
    of a class); None if it cannot be opened. ``layout``: the label file's image folders and
    extension (``image_layout(cfg)``'s values)."""
    try:
        return gallery.fit(images_of(data, split, *layout).open(sid, max_side=4 * side), side).convert("RGB")
    except gallery.ImageAccessError:
        return None


@st.cache_resource(max_entries=64, show_spinner=False)
def strip_image(data: str, split: str, ids: tuple, side: int, stamp: tuple, layout: tuple = ()) -> tuple:
    """``ids``' thumbnails side by side in one JPEG (one element for the browser instead of six;
    the same strip comes back for every image of a class) and which of them are in it."""
    import io

    from PIL import Image

    ths = [(sid, thumbnail(data, split, sid, side, stamp, layout)) for sid in ids]
    ths = [(sid, th) for sid, th in ths if th is not None]
    if not ths:
        return None, ()
    gap = side // 20
    out = Image.new("RGB", (len(ths) * (side + gap) - gap, side), "white")
    for j, (_, th) in enumerate(ths):
        out.paste(th, (j * (side + gap) + (side - th.size[0]) // 2, (side - th.size[1]) // 2))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), tuple(sid for sid, _ in ths)


def thumbnail_stamp(run, cfg: dict) -> tuple:
    """The thumbnails' cache key: the run's version, and an image folder's own stamp. Not the
    label file's: the review rewrites it with every decision (and undo), which would decode
    every example image again on each key (issue 18 item 7)."""
    data = Path(cfg["data"])
    return (*workspace.run_stamp(run), *(file_stamp(data) if data.is_dir() else ()))


def strip(cfg: dict, s, idx: np.ndarray, title: str, stamp: tuple) -> None:
    """Up to six example thumbnails in one image, with the model's certainty of each;
    ``stamp``: the run's version (:func:`thumbnail_stamp`)."""
    st.markdown(title)
    if not len(idx):
        st.caption("No confidently clean examples of this class in the run.")
        return
    ids = tuple(s.ids[i] for i in idx[:6])
    data, shown = strip_image(cfg["data"], cfg.get("split", "train"), ids, 160, stamp,
                              tuple(image_layout(cfg).values()))
    if data is not None:
        st.image(data, width="stretch")
    sure = {sid: s.suggested_probability[i] for sid, i in zip(ids, idx)}
    st.caption(("Left to right: " + " · ".join(f"{100 * sure[sid]:.0f}%" for sid in shown) if shown else "")
               + (f" ({len(ids) - len(shown)} could not be opened)" if len(shown) < len(ids) else ""))


# -- below the decision panel ----------------------------------------------------------------------

def review_log(cfg: dict, store: ReviewStore, s, queue: ReviewQueue, state_filter: str, k: int) -> None:
    """The queue (a table; a click on a row opens its image) and everyone's decisions."""
    with st.expander(f"The queue ({len(queue)} images) — click a row to open it"):
        selected = queue.select(STATE_FILTERS[state_filter], k)
        shown = selected[:TABLE_ROWS]
        st.session_state["_review_filtered"] = [queue.ids[q] for q in shown]
        if len(selected) > TABLE_ROWS:
            st.caption(f"The first {TABLE_ROWS} of this selection, most suspicious first (as of opening the page).")
        df = queue_table(queue, s, shown, lambda c: class_text(cfg, c))
        st.dataframe(df, hide_index=True, width="stretch", key="review_queue_table", on_select=jump,
                     selection_mode="single-row", column_config={c: st.column_config.NumberColumn(format="%.3g")
                                                                 for c in (display_name(s.method), "SEI")})
    with st.expander("Decision log (everyone, newest first)"):
        st.dataframe(decision_log_table(store.recent_decisions(500)), hide_index=True, width="stretch")


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
