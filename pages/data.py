"""Data: choose the label file, image folder or MedMNIST file; check it; edit the prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages._common import (choose_data, current_data, data_columns, data_set, file_stamp, guard, image_check,
                           images_of, md, opened_data, page_setup, show_problems)
from sei_core import plots, workspace
from sei_core.dataset import DataError, Prompts
from sei_core.gallery import ImageAccessError, fit
from sei_core.labels import LABEL_COL, PATH_COL, TableError, column_choices, in_words, source_kind

THUMBS_PER_CLASS = 12
THUMB_SIDE = 128

page_setup("Data")
st.caption("Choose the images and labels to check. Nothing here changes your files, except the "
           "prompts, which are saved to prompts.json beside the data when you press Save.")


def open_data(path: str, split: str) -> None:
    path = path.strip()
    if not path:
        st.session_state["_data_msg"] = "Type the path of a label file, an image folder or a .npz file first."
        return
    p = Path(workspace.normalise_data_path(path))
    if not p.exists():
        st.session_state["_data_msg"] = (f"Nothing found at {p}. Check the spelling; relative paths start at "
                                         f"the folder the app was started from ({Path.cwd()}).")
        return
    choose_data(str(p), split)
    st.session_state.pop("data_path_input", None)


def open_sample() -> None:
    choose_data(str(workspace.ensure_sample_data()), "train")
    st.session_state.pop("data_path_input", None)


@st.cache_data(max_entries=64, show_spinner=False)
def thumbnails(path: str, split: str, ids: tuple, side: int, stamp: tuple) -> list:
    """Thumbnails (or the reason one cannot be shown) for a few samples."""
    src = images_of(path, split)
    out = []
    for sid in ids:
        try:
            out.append(np.asarray(fit(src.open(sid, max_side=4 * side), side)))
        except ImageAccessError as e:
            out.append(str(e))
    return out


def recent_label(entry: dict) -> str:
    """A recently opened data set as the menu shows it: path, split, and chosen columns."""
    text = entry["path"] + ("" if entry["split"] == "train" else f" [{entry['split']}]")
    columns = data_columns(entry)
    if tuple(columns.values()) != (PATH_COL, LABEL_COL):
        text += f" (paths: {columns['path_column']}, labels: {columns['label_column']})"
    return text


def chooser(data: dict) -> None:
    with st.container(border=True):
        st.subheader("Choose the data", anchor=False)
        with st.expander("What can I open?"):
            st.markdown(
                "- **A label file (CSV)** with a header, a column with each image's file (relative to the "
                "CSV's folder) and a column with its label: named `path` and `label`, or any others, which you "
                "pick after opening it (e.g. `image_id` and `diagnosis`). Other columns are kept. Review "
                "decisions are written back to the label column (a backup of the original is made first).\n"
                "- **An image folder** with one sub-folder per class, named after the class.\n"
                "- **A MedMNIST `.npz` file** as downloaded (choose the split).\n\n"
                "Paths are on the machine that runs the app. Only images inside the data set's folder are shown.")
        c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
        path = c1.text_input("Label file, image folder or MedMNIST .npz", value=data["path"], key="data_path_input",
                             placeholder="/data/skin/labels.csv")
        split = "train"
        if path.strip().lower().endswith(".npz"):
            split = c2.selectbox("Split", ["train", "val", "test"],
                                 index=["train", "val", "test"].index(data.get("split", "train"))
                                 if data.get("split") in ("train", "val", "test") else 0)
        st.button("Open", type="primary", on_click=open_data, args=(path, split), icon=":material/folder_open:")
        msg = st.session_state.pop("_data_msg", None)
        if msg:
            st.error(md(msg), icon=":material/error:")
        recent = [it for it in workspace.recent_data() if it["path"] != data["path"]]
        c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
        if recent:
            pick = c1.selectbox("Recently opened", range(len(recent)), format_func=lambda k: recent_label(recent[k]))
            c2.button("Open recent", on_click=open_data, args=(recent[pick]["path"], recent[pick]["split"]),
                      width="stretch")
        st.button("Use the bundled sample data", on_click=open_sample, icon=":material/science:",
                  help="Synthetic skin-lesion images with 15% known wrong labels (truth.csv); "
                       "generated on first use.")


@st.cache_data(max_entries=16, show_spinner=False)
def table_columns(path: str, stamp: tuple) -> tuple[list[str], list[str], list[str]]:
    """A label file's columns, and the same ordered as likely path and likely label column."""
    return column_choices(path)


def use_columns(data: dict) -> None:
    path_column = st.session_state.get("pick_path_column")
    label_column = st.session_state.get("pick_label_column")
    if path_column == label_column:
        st.session_state["_columns_msg"] = (f"The image paths and the labels must come from two different columns; "
                                            f"both are “{path_column}” now.")
        return
    choose_data(data["path"], data.get("split", "train"),
                {"path_column": path_column, "label_column": label_column})


def column_picker(data: dict) -> bool:
    """For a label file: which column holds the image path and which the label. Returns False
    (after asking the user to pick) when the file lacks the columns chosen now."""
    if source_kind(data["path"]) != "csv":
        return True
    try:
        names, path_order, label_order = table_columns(data["path"], file_stamp(data["path"]))
    except TableError:
        return True  # the data set's report says what is wrong with the file
    chosen = data_columns(data)
    missing = [c for c in chosen.values() if c not in names]
    shown_for = (data["path"], *chosen.values())
    if st.session_state.get("_columns_for") != shown_for:  # another file or choice: start from it
        st.session_state["_columns_for"] = shown_for
        st.session_state["pick_path_column"] = chosen["path_column"] if not missing else path_order[0]
        st.session_state["pick_label_column"] = chosen["label_column"] if not missing else label_order[0]
    if missing:
        box = st.container(border=True)
        box.info(f"This label file has no column {md(in_words(missing, 'or'))}. Its columns are "
                 f"{md(in_words(names))}: pick the one that names each image's file and the one that holds "
                 "its label (our guesses are selected). Your file is not changed; review decisions will be "
                 "written to the label column you pick.", icon=":material/view_column:")
    else:
        box = st.expander(f"Columns: image paths from “{chosen['path_column']}”, labels from "
                          f"“{chosen['label_column']}”", icon=":material/view_column:")
    with box:
        c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
        c1.selectbox("Column with the image path", path_order, key="pick_path_column",
                     help="The image file of each row, relative to the label file's folder (or absolute).")
        c2.selectbox("Column with the label", label_order, key="pick_label_column",
                     help="The class of each row; review decisions are written back to this column.")
        c3.button("Use these columns", type="primary" if missing else "secondary", on_click=use_columns,
                  args=(data,), key="use_columns", width="stretch")
        msg = st.session_state.pop("_columns_msg", None)
        if msg:
            st.error(md(msg), icon=":material/error:")
    return not missing


def summary(ds, data: dict) -> None:
    counts = ds.class_counts()
    c = st.columns(4)
    c[0].metric("Images", f"{len(ds):,}")
    c[1].metric("Classes", len(ds.classes))
    c[2].metric("Kind", {"csv": "label file", "folder": "image folder", "npz": "MedMNIST .npz"}[ds.kind])
    c[3].metric("Problems", len(ds.problems) + (0 if ds.kind == "npz" else len(image_check(data).problems)))
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(plots.class_counts(counts), width="stretch", config={"displayModeBar": False})
    with right:
        st.dataframe(pd.DataFrame({"class": list(counts), "images": list(counts.values()),
                                   "share": [f"{100 * n / max(1, len(ds)):.1f}%" for n in counts.values()]}),
                     hide_index=True, width="stretch")
        truth = workspace.truth_file(ds.source)
        if truth is not None:
            st.caption("A truth file was found beside the labels; Explore will mark the truly mislabeled images:")
            st.text(truth.name)


def report(ds, data: dict) -> None:
    st.subheader("Validation report", anchor=False)
    if ds.warnings:
        st.warning(f"{len(ds.warnings)} thing(s) in the labels look wrong but do not stop training:",
                   icon=":material/warning:")
        show_problems(ds.warnings)
    files = "" if ds.kind == "npz" else " every image file exists,"
    if not ds.problems:
        st.success(f"Checked: every row has a path and a label,{files} and every class has images.",
                   icon=":material/check_circle:")
    else:
        st.warning(f"{len(ds.problems)} image file(s) are missing and will be left out of training unless fixed "
                   "(tick “Leave out unreadable images” on the Train page, or fix them and press Open again).",
                   icon=":material/warning:")
        show_problems(ds.problems)
    if ds.kind != "npz":
        ck = image_check(data)
        running = ck.started and not ck.finished  # polled only while the check runs
        st.fragment(run_every=CHECK_POLL_SECONDS if running else None)(opens)(data)


CHECK_POLL_SECONDS = 2.0


def opens(data: dict) -> None:
    """Whether every image opens: the background check's progress and what it found."""
    ck = image_check(data)
    if not ck.started:
        st.info(f"Not checked yet: whether each of the {ck.total:,} images opens (reading every file takes a while "
                "at this size). Training checks it too when it decodes the images: it reports every image that "
                "does not open and, with “Leave out unreadable images”, trains without it.",
                icon=":material/pending:")
        if st.button("Check that every image opens", icon=":material/image_search:", key="check_images",
                     help="Opens every image's header in the background; you can go on meanwhile."):
            ck.start()
            st.rerun()  # the whole page: its fragment now polls the progress
        return
    problems = ck.problems
    if not ck.finished:
        rate = ck.done / ck.seconds if ck.seconds else 0
        left = f", about {(ck.total - ck.done) / rate:,.0f} s left" if rate else ""
        st.progress(ck.done / max(1, ck.total), text=f"Checking that every image opens: {ck.done:,} of "
                    f"{ck.total:,}{left}" + (f"; {len(problems)} problem(s) so far" if problems else ""))
    elif not problems:
        st.success(f"Every image opens ({ck.total:,} checked).", icon=":material/check_circle:")
        return
    if problems:
        st.warning(f"{len(problems)} image(s) cannot be read and will be left out of training unless fixed "
                   "(tick “Leave out unreadable images” on the Train page, or fix them and press Open again).",
                   icon=":material/warning:")
        show_problems(problems)


def gallery(ds, data: dict) -> None:
    st.subheader("Images per class", anchor=False)
    n = st.slider("Images per class", 4, 48, THUMBS_PER_CLASS, step=4)
    by_class = [np.flatnonzero(ds.labels == k) for k in range(len(ds.classes))]
    rng = np.random.default_rng(0)
    picks = [np.sort(rng.permutation(ix)[:n]) for ix in by_class]
    if len(ds.classes) <= 12:
        containers = st.tabs([f"{md(c)} ({len(ix)})" for c, ix in zip(ds.classes, by_class)])
        shown = range(len(ds.classes))
    else:
        k = st.selectbox("Class", range(len(ds.classes)), format_func=lambda i: ds.classes[i])
        containers, shown = {k: st.container()}, [k]
    stamp = file_stamp(data["path"])
    for k in shown:
        with containers[k]:
            ids = tuple(ds.ids[i] for i in picks[k])
            thumbs = thumbnails(data["path"], data.get("split", "train"), ids, THUMB_SIDE, stamp)
            cols = st.columns(6)
            for j, (sid, th) in enumerate(zip(ids, thumbs)):
                with cols[j % 6]:
                    if isinstance(th, str):
                        st.warning(md(th))
                    else:
                        st.image(th, caption=md(Path(sid).stem), width="stretch")


def prompts_editor(ds) -> None:
    st.subheader("Class prompts", anchor=False)
    st.caption("The model scores each image against one sentence per class and against the auxiliary "
               "sentence, which describes “something else” (the extra class that sets the threshold). "
               "Use the words a clinician would use. Saved prompts apply to the next training run.")
    base = ds.prompts()
    with st.form("prompts"):
        template = st.text_input("Template ({} is replaced by the class name)", value=base.template,
                                 key=f"prompt_template::{ds.source}")
        aux = st.text_input("Auxiliary prompt", value=base.aux_prompt, key=f"prompt_aux::{ds.source}")
        table = pd.DataFrame({"class": ds.classes, "prompt": [base.per_class.get(c, "") for c in ds.classes]})
        edited = st.data_editor(table, hide_index=True, width="stretch", disabled=["class"], num_rows="fixed",
                                column_config={"prompt": st.column_config.TextColumn(
                                    "own prompt (empty = use the template)", width="large")})
        saved = st.form_submit_button("Save prompts", type="primary", icon=":material/save:")
    if saved:
        per_class = {str(c): str(p).strip() for c, p in zip(edited["class"], edited["prompt"])
                     if isinstance(p, str) and p.strip()}
        new = Prompts(template=template.strip(), aux_prompt=aux.strip(), per_class=per_class)
        if "{}" not in new.template:
            st.error("The template needs {} where the class name goes, e.g. “A dermoscopic image showing {}.”",
                     icon=":material/error:")
        elif not new.aux_prompt:
            st.error("The auxiliary prompt cannot be empty.", icon=":material/error:")
        else:
            target = workspace.save_prompts(ds, new)
            st.success("Saved to", icon=":material/check_circle:")
            st.code(str(target), language=None)
            base = new
    st.dataframe(pd.DataFrame({"class": ds.classes + ["(auxiliary)"],
                               "prompt the model sees": base.for_classes(ds.classes)}),
                 hide_index=True, width="stretch")


with guard("the Data page"):
    data = current_data()
    chooser(data)
    st.subheader("Current data set", anchor=False)
    st.code(data["path"] + ("" if data.get("split", "train") == "train" else f"  (split: {data['split']})"),
            language=None)
    if not column_picker(data):
        st.stop()
    try:
        ds = data_set(data)
    except DataError as e:
        opened_data(data, ok=False)
        st.error(f"This data cannot be used yet: {len(e.problems)} problem(s), listed below with where they are "
                 "and how to fix them. Fix the file, then press Open again.", icon=":material/error:")
        show_problems(e.problems)
        st.stop()
    opened_data(data, ok=True)
    summary(ds, data)
    report(ds, data)
    gallery(ds, data)
    prompts_editor(ds)
