"""Data: choose the label file, image folder or MedMNIST file; check it; edit the prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages._common import (choose_data, current_data, data_columns, data_report, file_stamp, guard, image_check,
                           image_layout, images_of, md, opened_data, page_setup, show_problems)
from sei_core import plots, workspace
from sei_core.dataset import MAX_LISTED, TRY_EXTENSIONS, Prompts, known_names, table_in_folder
from sei_core.gallery import ImageAccessError, fit
from sei_core.labels import (IMAGE_EXTENSIONS, LABEL_COL, PATH_COL, TableError, column_choices, in_words,
                             source_kind)

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
    if p.is_dir() and (table := table_in_folder(p)) is not None:
        st.session_state["_data_note"] = (f"Opened the label file {table.name} in that folder (its image folders "
                                          "are chosen below).")
        p = table
    elif p.is_dir() and not any(d.is_dir() and not d.name.startswith(".") for d in p.iterdir()):
        images = sum(1 for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        st.session_state["_data_msg"] = (
            f"{p} holds {images:,} image(s) but no sub-folders, so it names no classes. Open the label file "
            "(CSV) that lists these images with their labels, then choose this folder under “Image folders”; "
            "or put the images of each class in a sub-folder named after the class." if images else
            f"{p} holds no images and no sub-folders. Open a label file (CSV), an image folder with one "
            "sub-folder per class, or a MedMNIST .npz file.")
        return
    choose_data(str(p), split)
    st.session_state.pop("data_path_input", None)


def open_sample() -> None:
    choose_data(str(workspace.ensure_sample_data()), "train")
    st.session_state.pop("data_path_input", None)


@st.cache_data(max_entries=64, show_spinner=False)
def thumbnails(path: str, split: str, ids: tuple, side: int, stamp: tuple, image_dirs: tuple = (),
               image_ext: str | None = None) -> list:
    """Thumbnails (or the reason one cannot be shown) for a few samples."""
    src = images_of(path, split, image_dirs, image_ext)
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
                "- **A label file whose images are in other folders**, e.g. the HAM10000 archive: "
                "`HAM10000_metadata.csv` with `image_id` cells such as `ISIC_0027419` (no extension) and the "
                "images in `HAM10000_images_part_1/` and `_part_2/`. Open the CSV or the folder holding it, then "
                "choose the image folders (offered when a folder beside the table holds the images); the "
                "extension is found (`.jpg`, `.jpeg`, `.png` …). Review still writes into your own CSV.\n"
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
        note = st.session_state.pop("_data_note", None)
        if note:
            st.info(md(note), icon=":material/info:")
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


EXT_RULE = "as given, then " + ", ".join(TRY_EXTENSIONS[:3]) + " …"


def use_layout(data: dict, dirs: list[str], ext: str | None) -> None:
    choose_data(data["path"], data.get("split", "train"), {**data_columns(data), "image_dirs": list(dirs),
                                                            "image_ext": ext or None})


def use_picked_layout(data: dict, folder: Path) -> None:
    picked = [str(folder / d) for d in st.session_state.get("pick_image_dirs", [])]
    typed = [workspace.normalise_data_path(t) for t in st.session_state.get("type_image_dirs", "").splitlines()
             if t.strip()]
    bad = [t for t in typed if not Path(t).is_dir()]
    if bad:
        st.session_state["_layout_msg"] = f"Not a folder: {', '.join(bad)}. Check the spelling."
        return
    ext = st.session_state.get("pick_image_ext")
    use_layout(data, list(dict.fromkeys(picked + typed)), None if ext == EXT_RULE else ext)


def layout_picker(data: dict, rep) -> None:
    """For a label file: the folders its images are in and their extension (the HAM10000
    archive's ``image_id`` cells name ``ISIC_0027419.jpg`` in one of two folders)."""
    if source_kind(data["path"]) != "csv":
        return
    folder = Path(data["path"]).parent
    chosen = list(data.get("image_dirs") or [])
    rel = lambda d: md(str(Path(d).relative_to(folder)) if Path(d).is_relative_to(folder) else d)  # noqa: E731
    if rep.suggested_dirs:
        box = st.container(border=True)
        names = ", ".join(f"“{rel(d)}”" for d in rep.suggested_dirs)
        many = len(rep.suggested_dirs) > 1
        box.info(f"{rep.missing:,} {'row names' if rep.missing == 1 else 'rows name'} an image that was not found "
                 f"where the label file says, and the {'folders' if many else 'folder'} {names} beside it "
                 f"{'hold' if many else 'holds'} such images. Use {'them' if many else 'it'} as the image "
                 f"{'folders' if many else 'folder'}? Your label file is not changed.",
                 icon=":material/folder_special:")
        box.button("Use these image folders", type="primary", icon=":material/done:", key="use_guess",
                   on_click=use_layout, args=(data, chosen + rep.suggested_dirs, data.get("image_ext")))
    title = ("Image folders: " + ", ".join(f"“{rel(d)}”" for d in chosen)) if chosen else \
        "Image folders: the label file's folder"
    with st.expander(title, icon=":material/folder:", expanded=bool(rep.missing) and not rep.suggested_dirs):
        st.caption("Where the images named by the label file are, when not relative to its folder: the path "
                   "cells are file names (or ids without an extension) inside these folders, searched in order.")
        try:
            subs = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        except OSError:
            subs = []
        shown_for = (data["path"], tuple(chosen), data.get("image_ext"))
        if st.session_state.get("_layout_for") != shown_for:
            st.session_state["_layout_for"] = shown_for
            st.session_state["pick_image_dirs"] = [Path(d).name for d in chosen if Path(d).parent == folder
                                                   and Path(d).name in subs]
            st.session_state["type_image_dirs"] = "\n".join(d for d in chosen if Path(d).parent != folder)
            st.session_state["pick_image_ext"] = data.get("image_ext") or EXT_RULE
        c1, c2 = st.columns([3, 1])
        c1.multiselect("Folders beside the label file", subs, key="pick_image_dirs")
        exts = [EXT_RULE, *dict.fromkeys(e.lower() for e in TRY_EXTENSIONS)]
        if st.session_state["pick_image_ext"] not in exts:
            exts.append(st.session_state["pick_image_ext"])
        c2.selectbox("Extension", exts, key="pick_image_ext",
                     help="Added to a cell that names an image without its extension (ISIC_0027419).")
        st.text_area("Other folders (one per line)", key="type_image_dirs", height=68,
                     placeholder="/data/HAM10000/HAM10000_images_part_1")
        st.button("Use these image folders", key="use_layout", on_click=use_picked_layout, args=(data, folder))
        msg = st.session_state.pop("_layout_msg", None)
        if msg:
            st.error(md(msg), icon=":material/error:")


def summary(ds, data: dict, rep) -> None:
    counts = ds.class_counts()
    names = ds.prompts().names
    c = st.columns(4)
    c[0].metric("Images", f"{len(ds):,}", help="Rows whose image file was found.")
    c[1].metric("Classes", len(ds.classes))
    c[2].metric("Kind", {"csv": "label file", "folder": "image folder", "npz": "MedMNIST .npz"}[ds.kind])
    c[3].metric("Problems", len(rep.problems) + (0 if ds.kind == "npz" else len(image_check(data).problems)))
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(plots.class_counts(counts), width="stretch", config={"displayModeBar": False})
    with right:
        st.dataframe(pd.DataFrame({"class": list(counts), "name": [names.get(c, "") for c in counts],
                                   "images": list(counts.values()),
                                   "share": [f"{100 * n / max(1, len(ds)):.1f}%" for n in counts.values()]}),
                     hide_index=True, width="stretch")
        truth = workspace.truth_file(ds.source)
        if truth is not None:
            st.caption("A truth file was found beside the labels; Explore will mark the truly mislabeled images:")
            st.text(truth.name)


def report(ds, data: dict, rep) -> None:
    """The data set's report: the one ``sei validate`` prints and ``sei train`` refuses with."""
    st.subheader("Validation report", anchor=False)
    if ds.warnings:
        st.warning(f"{len(ds.warnings)} thing(s) in the labels look wrong but do not stop training:",
                   icon=":material/warning:")
        show_problems(ds.warnings)
    files = "" if ds.kind == "npz" else " every image file exists,"
    if not rep.problems:
        st.success(f"Checked: every row has a path and a label,{files} and every class has images.",
                   icon=":material/check_circle:")
    else:
        text = f"Training refuses this data as it is: {len(rep.problems)} problem(s), listed below with how to fix them."
        if rep.missing:
            listed = f" (the first {MAX_LISTED} are listed with the paths tried)" if rep.missing > MAX_LISTED else ""
            text += (f" {rep.missing:,} row(s) name an image that was not found{listed}: choose the image folders "
                     "above, correct the paths, or tick “Leave out unreadable images” on the Train page to train on "
                     f"the {len(ds):,} image(s) found.")
        st.error(md(text), icon=":material/error:")
        show_problems(rep.problems)
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
            thumbs = thumbnails(data["path"], data.get("split", "train"), ids, THUMB_SIDE, stamp,
                                *image_layout(data).values())
            cols = st.columns(6)
            for j, (sid, th) in enumerate(zip(ids, thumbs)):
                with cols[j % 6]:
                    if isinstance(th, str):
                        st.warning(md(th))
                    else:
                        st.image(th, caption=md(Path(sid).stem), width="stretch")


DERM_TEMPLATE = "A dermoscopic image showing {}."
DERM_AUX = "A dermoscopic image showing other lesions."


def use_known_names(ds, base: Prompts, known: dict) -> None:
    """Save the ISIC diagnosis names (and the dermoscopy prompts where the generic ones are set)."""
    generic = base.template == Prompts().template
    new = Prompts(template=DERM_TEMPLATE if generic else base.template,
                  aux_prompt=DERM_AUX if base.aux_prompt == Prompts().aux_prompt else base.aux_prompt,
                  per_class=dict(base.per_class), names={**known, **base.names})
    st.session_state["_prompts_saved"] = str(workspace.save_prompts(ds, new))
    # Set, not deleted: a browser keeps showing (and later submits) a keyed input's old text
    # unless the server sets its value; the table is redrawn from its new data anyway.
    st.session_state[f"prompt_template::{ds.source}"] = new.template
    st.session_state[f"prompt_aux::{ds.source}"] = new.aux_prompt
    st.session_state.pop(f"prompt_table::{ds.source}", None)


def prompts_editor(ds) -> None:
    st.subheader("Class names and prompts", anchor=False)
    st.caption("Each class code can have a name, shown in the app, used in the prompts and written beside the "
               "code in exports (your label file keeps its codes). The model scores each image against one "
               "sentence per class and against the auxiliary sentence, which describes “something else” (the "
               "extra class that sets the threshold). Use the words a clinician would use. Saved names and "
               "prompts apply to the next training run.")
    base = ds.prompts()
    known = {c: n for c, n in known_names(ds.classes).items() if c not in base.names}
    if known:
        st.info("These look like ISIC diagnosis codes: " + md(", ".join(f"{c} → {n}" for c, n in known.items()))
                + ".", icon=":material/dictionary:")
        st.button("Use these names", icon=":material/done:", key="use_known_names",
                  on_click=use_known_names, args=(ds, base, known))
    if (saved_to := st.session_state.pop("_prompts_saved", None)) is not None:
        st.success("Saved to", icon=":material/check_circle:")
        st.code(saved_to, language=None)
    with st.form("prompts"):
        keys = {f"prompt_template::{ds.source}": base.template, f"prompt_aux::{ds.source}": base.aux_prompt}
        for key, value in keys.items():  # the saved text, unless this tab holds an edit (or use_known_names set it)
            st.session_state.setdefault(key, value)
        template = st.text_input("Template ({} is replaced by the class name)", key=f"prompt_template::{ds.source}")
        aux = st.text_input("Auxiliary prompt", key=f"prompt_aux::{ds.source}")
        table = pd.DataFrame({"class": ds.classes, "name": [base.names.get(c, "") for c in ds.classes],
                              "prompt": [base.per_class.get(c, "") for c in ds.classes]})
        edited = st.data_editor(table, hide_index=True, width="stretch", disabled=["class"], num_rows="fixed",
                                key=f"prompt_table::{ds.source}",
                                column_config={"name": st.column_config.TextColumn(
                                    "name (empty = the code)", width="medium"),
                                    "prompt": st.column_config.TextColumn(
                                    "own prompt (empty = use the template)", width="large")})
        saved = st.form_submit_button("Save names and prompts", type="primary", icon=":material/save:")
    if saved:
        per_class = {str(c): str(p).strip() for c, p in zip(edited["class"], edited["prompt"])
                     if isinstance(p, str) and p.strip()}
        names = {str(c): str(n).strip() for c, n in zip(edited["class"], edited["name"])
                 if isinstance(n, str) and n.strip()}
        new = Prompts(template=template.strip(), aux_prompt=aux.strip(), per_class=per_class, names=names)
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
                               "name": [base.name(c) for c in ds.classes] + [""],
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
    rep = data_report(data)
    if rep.data is None or rep.unskippable:
        opened_data(data, ok=False)
        layout_picker(data, rep)
        st.error(f"This data cannot be used yet: {len(rep.problems)} problem(s), listed below with where they are "
                 "and how to fix them. "
                 + ("Choose the image folders above, or fix the file and press Open again." if rep.suggested_dirs
                    else "Fix the file, then press Open again."), icon=":material/error:")
        show_problems(rep.problems)
        st.stop()
    ds = rep.data
    opened_data(data, ok=True)
    layout_picker(data, rep)
    summary(ds, data, rep)
    report(ds, data, rep)
    gallery(ds, data)
    prompts_editor(ds)
