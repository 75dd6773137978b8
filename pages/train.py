"""Train: start a training run in the background, watch it, stop and resume it."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from pages._common import (page_setup, DATA_PAGE, EXPLORE_PAGE, REVIEW_PAGE, current_data, current_run, data_options,
                           data_set, guard, md, scores_of, select_run, short_path, show_problems)
from sei_core import jobs, plots, workspace
from sei_core.dataset import DataError
from sei_core.labels import LABEL_COL, PATH_COL
from sei_core.errors import said
from sei_core.runs import Run, RunError, State, duration_text, list_runs, status_error
from sei_core.config import PRESETS, TrainConfig, choose_preset, device_choices

POLL_SECONDS = 2.0
#: the presets offered here (from the one table, sei_core.config.PRESETS)
PAGE_PRESETS = ["cpu", "paper"]
WEIGHT_MODES = ["none", "local checkpoint", "pretrained tag"]
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")

page_setup("Train")
st.caption("Training runs in its own background process: it keeps going if you reload the page, close the "
           "browser or restart the app. Come back any time to watch it, stop it or resume it.")


@st.cache_resource(show_spinner="Listing models…")
def model_names() -> list[str]:
    from sei_core.models import available_models

    return available_models()


@st.cache_resource
def pretrained_tags(model: str) -> list[str]:
    from sei_core.models import known_weights

    try:
        return known_weights(model)
    except Exception:
        return []


@st.cache_resource
def machine_choice():
    """The preset :func:`sei_core.config.choose_preset` picks for this machine (and why)."""
    return choose_preset("auto")


@st.cache_resource
def devices() -> list[str]:
    return device_choices()


def apply_preset() -> None:
    """Fill the form's fields from the chosen preset's settings."""
    p = PRESETS[st.session_state["tr_preset"]].settings
    for k in ("model", "image_size", "epochs", "batch_size", "lr"):
        st.session_state[f"tr_{k}"] = p[k]
    st.session_state["tr_weights_mode"] = "pretrained tag" if p.get("weights") else "none"
    if p.get("weights"):
        st.session_state["tr_weights_tag"] = p["weights"]


def init_defaults() -> None:
    if "tr_preset" not in st.session_state:
        st.session_state["tr_preset"] = machine_choice().preset
        apply_preset()


def parse_milestones(text: str) -> list[int] | None:
    text = text.strip().lower()
    if text in ("", "auto"):
        return None
    try:
        return sorted(int(x) for x in re.split(r"[,\s]+", text) if x)
    except ValueError:
        raise ValueError(f"milestones must be epoch numbers separated by commas (e.g. 75, 115), or 'auto'; got {text!r}")


def retry_name(data: dict) -> str | None:
    """The selected run's name where it failed before training anything on this data: the
    new run replaces it (as its failure message says), instead of starting beside it."""
    run = current_run()
    if run is None or not run.trained_nothing():
        return None
    return run.name if workspace.trained_on(run, data["path"]) else None


def new_run_form(data: dict) -> None:
    init_defaults()
    with st.container(border=True):
        st.subheader("New run", anchor=False)
        try:
            ds = data_set(data)
        except DataError as e:
            st.error("The chosen data set has problems; fix them first (see the Data page).", icon=":material/error:")
            show_problems(e.problems)
            return
        columns = ("" if (ds.path_column, ds.label_column) == (PATH_COL, LABEL_COL) else
                   f" (image paths from column “{md(ds.path_column)}”, labels from “{md(ds.label_column)}”)")
        st.caption(f"On {len(ds):,} images of {len(ds.classes)} classes{columns} from")
        st.text(data["path"])
        choice = machine_choice()
        st.radio("Settings", PAGE_PRESETS, key="tr_preset", format_func=lambda k: PRESETS[k].title,
                 on_change=apply_preset, horizontal=True,
                 help=f"Fills in the fields below; you can still change each of them. Chosen for this machine: "
                      f"{choice.preset} ({choice.reason}).")
        names = model_names()
        c = st.columns(3)
        model = c[0].selectbox("Model", names, key="tr_model",
                               help="open_clip models (ViT-B-16, RN50 …), SEI-Tiny-RN / SEI-Tiny-ViT for a CPU, "
                                    "or torchvision resnet18/resnet50/vit_b_16.")
        mode = c[1].selectbox("Weights", WEIGHT_MODES, key="tr_weights_mode",
                              help="none: start from random weights. local checkpoint: a file on this machine. "
                                   "pretrained tag: published weights, downloaded once into the weights folder "
                                   "(`sei weights MODEL` says where; offline, copy the file there).")
        weights = None
        if mode == "local checkpoint":
            weights = c[2].text_input("Checkpoint file", key="tr_weights_file", placeholder="/models/clip_vit_b16.bin")
        elif mode == "pretrained tag":
            tags = pretrained_tags(model)
            if st.session_state.get("tr_weights_tag") not in tags:
                st.session_state.pop("tr_weights_tag", None)
            if tags:
                first = {} if "tr_weights_tag" in st.session_state else {
                    "index": tags.index("openai") if "openai" in tags else 0}
                weights = c[2].selectbox("Pretrained tag", tags, key="tr_weights_tag", **first)
            else:
                c[2].warning(f"There are no pretrained tags for {md(model)}; pick “none” or a local checkpoint.")
        c = st.columns(4)
        epochs = c[0].number_input("Epochs", 1, 2000, key="tr_epochs")
        batch = c[1].number_input("Batch size", 2, 4096, key="tr_batch_size")
        size = c[2].number_input("Image size (pixels)", 8, 1024, key="tr_image_size")
        device = c[3].selectbox("Device", devices(), key="tr_device",
                                help="auto picks a CUDA GPU, then Apple MPS, then the CPU.")
        c = st.columns(4)
        lr = c[0].number_input("Learning rate", 1e-6, 10.0, key="tr_lr", format="%.4g")
        milestones = c[1].text_input("LR drops at epochs", value="auto", key="tr_milestones",
                                     help="Epochs after which the learning rate is multiplied by the factor; "
                                          "auto = 50% and 77% of the epochs, as in the paper (75 and 115 of 150).")
        gamma = c[2].number_input("LR drop factor", 0.0001, 1.0, value=0.1, key="tr_gamma")
        seed = c[3].number_input("Seed", 0, 2**31 - 1, value=0, key="tr_seed")
        c = st.columns(2)
        runs = c[0].radio("Runs", [2, 1], key="tr_runs", horizontal=True,
                          format_func=lambda n: "two complementary runs (every image gets a score)" if n == 2
                          else "single run (faster; its auxiliary images get no score)",
                          help="Each run relabels a random set of images to an extra “something else” class to "
                               "find the threshold. With two runs those sets are disjoint, so every image is "
                               "scored by a run in which it kept its label.")
        skip = c[1].checkbox("Leave out unreadable images", value=bool(ds.problems), key="tr_skip",
                             help="Otherwise a missing or corrupt image stops the run with a report.")
        with st.expander("More settings"):
            c = st.columns(4)
            momentum = c[0].number_input("Momentum", 0.0, 0.999, value=0.9, key="tr_momentum")
            wd = c[1].number_input("Weight decay", 0.0, 1.0, value=1e-4, key="tr_wd", format="%.2g")
            augment = c[2].selectbox("Augmentation", ["paper", "flip", "none"], key="tr_augment",
                                     help="paper: random resized crop and flips; flip: flips only.")
            record = c[3].selectbox("Record from", ["train", "eval"], key="tr_record",
                                    help="train: the training pass (free); eval: an extra pass without augmentation.")
        suggested = retry_name(data) or workspace.new_run_name(data["path"], model)
        name = st.text_input("Run name", key="tr_name", placeholder=suggested,
                             help="Letters, digits, '.', '_' and '-'. Empty: the suggested name.").strip() or suggested
        if ds.problems and not skip:
            st.warning(f"{len(ds.problems)} image(s) cannot be read; tick “Leave out unreadable images” or fix them.",
                       icon=":material/warning:")
        if st.button("Start training", type="primary", icon=":material/play_arrow:"):
            if not RUN_NAME.match(name):
                st.error("The run name may only use letters, digits, '.', '_' and '-' (up to 80 characters).",
                         icon=":material/error:")
                return
            if mode == "local checkpoint" and not (weights or "").strip():
                st.error("Enter the checkpoint file, or choose weights “none”.", icon=":material/error:")
                return
            config = TrainConfig(
                data=data["path"], split=data.get("split", "train"), model=model,
                weights=(weights or None) if mode != "none" else None, image_size=int(size), epochs=int(epochs),
                lr=float(lr), momentum=float(momentum), weight_decay=float(wd), batch_size=int(batch),
                milestones=parse_milestones(milestones), gamma=float(gamma), seed=int(seed), device=device,
                runs=int(runs), record=record, augment=augment, skip_unreadable=bool(skip),
                workers=2, **data_options(data),
            )
            out = workspace.runs_dir() / name
            if (Run(out).exists() and not Run(out).trained_nothing()) or (out.exists() and not Run(out).exists()):
                st.error(f"A run called {md(name)} exists already; choose another name.", icon=":material/error:")
                return
            jobs.start(config, out)
            st.session_state.pop("tr_name", None)
            select_run(name)
            st.toast(f"Started {md(name)} in the background.", icon=":material/play_arrow:")
            st.rerun()


def flagged_count(run: Run) -> int | None:
    """Flags of a finished run by the app's current method and rule: the live scoring Explore
    and Review show (cached per run), not the scores.csv frozen at the end of training."""
    try:
        if run.state() != State.FINISHED:
            return None
        return int(scores_of(run).flagged.sum())
    except Exception:
        return None


def progress(run_path: str) -> None:
    """Live progress of a run: polled every few seconds while it trains, static otherwise."""
    active = Run(run_path).state().active
    st.fragment(run_every=POLL_SECONDS if active else None)(_progress)(run_path)


def _progress(run_path: str) -> None:
    with guard("the training progress"):
        _draw_progress(run_path)


def _control(action, run: Run) -> None:
    """Stop or resume ``run`` from a button's callback; a refusal is shown, not raised."""
    try:
        action(run)
    except RunError as e:
        st.session_state["_train_control_error"] = said(e, app=True)


def _draw_progress(run_path: str) -> None:
    run = Run(run_path)
    st_ = run.status()
    if (refused := st.session_state.pop("_train_control_error", None)) is not None:
        st.error(md(refused), icon=":material/error:")
    state = State(st_["state"])
    # a state change (e.g. finished) refreshes the whole page: sidebar, run list, buttons
    key = f"_last_state::{run_path}"
    if st.session_state.get(key) not in (None, state):
        st.session_state[key] = state.value
        st.rerun(scope="app")
    st.session_state[key] = state.value
    cfg = run.config()
    epochs, n_runs = int(st_.get("epochs") or cfg.get("epochs", 1)), int(st_.get("n_runs") or cfg.get("runs", 1))
    index, epoch = int(st_.get("run_index") or 1), int(st_.get("epoch") or 0)
    done = ((index - 1) * epochs + epoch) / max(1, epochs * n_runs)
    if state == State.FINISHED:
        done = 1.0
    phase = st_.get("phase") or ""
    where = f"epoch {epoch} of {epochs}" if "run" in phase else f"run {index} of {n_runs}, epoch {epoch} of {epochs}"
    st.progress(min(1.0, max(0.0, done)),
                text=md(" · ".join(x for x in (state, phase if phase != state else "", where) if x)))
    c = st.columns(4)
    c[0].metric("Epoch", f"{epoch} / {epochs}", help=f"of complementary run {index} of {n_runs}")
    c[1].metric("Loss", "—" if st_.get("loss") is None else f"{st_['loss']:.3f}")
    c[2].metric("Accuracy", "—" if st_.get("accuracy") is None else f"{100 * st_['accuracy']:.1f}%",
                help="On the training labels (noisy ones and the extra class included), so it stays below 100%.")
    c[3].metric("Time left", duration_text(st_.get("eta_seconds")) if state == State.RUNNING else "—",
                help="Estimated from the first batches until an epoch has finished, then from the last epochs.")
    if st_.get("history") or state.active:  # a failed or stopped run without epochs: no chart
        st.plotly_chart(plots.training_curves(st_.get("history") or [], epochs), width="stretch",
                        config={"displayModeBar": False}, key=f"curve::{run_path}")
    if state == State.RUNNING:
        # a callback runs before any part of the page reruns, whichever rerun the click starts
        st.button("Stop", icon=":material/stop:", key="stop_run", on_click=_control, args=(jobs.stop, run),
                  help="Stops at once; the run keeps its last complete epoch and can be resumed.")
    elif state == State.CREATED:
        st.info("Starting… (loading the data and the model)", icon=":material/hourglass_top:")
    elif state.resumable:
        if state == State.FAILED:
            st.error("Training failed: " + md(status_error(st_, app=True) or
                                              "no reason was recorded; see the log below."),
                     icon=":material/error:")
            if run.trained_nothing():
                st.info(f"Nothing was trained yet. Fix the cause (the data on the Data page, or the settings under "
                        f"“New run” below), then start again: a new run named {md(run.name)} replaces this one "
                        "(“New run” suggests that name for the same data). Resume retries with the same settings.",
                        icon=":material/info:")
                st.page_link(DATA_PAGE, label="Go to Data", icon=":material/folder_open:")
        elif state == State.INTERRUPTED:
            st.warning(md(status_error(st_, app=True) or "The training process ended without finishing."),
                       icon=":material/warning:")
        else:
            st.info("Stopped. Resume continues from the last complete epoch.", icon=":material/pause:")
        st.button("Resume", type="primary", icon=":material/play_arrow:", key="resume_run", on_click=_control,
                  args=(jobs.resume, run))
    elif state == State.FINISHED:
        n = flagged_count(run)
        total = cfg.get("n_samples")
        st.success(f"Finished: {n if n is not None else '?'} of {total or '?'} images flagged as likely mislabeled.",
                   icon=":material/check_circle:")
        c = st.columns(4)
        c[0].page_link(EXPLORE_PAGE, label="See why in Explore", icon=":material/insights:")
        c[1].page_link(REVIEW_PAGE, label="Review the flagged images", icon=":material/rule:")
    with st.expander("Log"):
        try:
            lines = run.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
        except OSError:
            lines = []
        st.code("\n".join(lines) or "(empty)", language=None)


def selected_run() -> None:
    run = current_run()
    if run is None:
        return
    with st.container(border=True):
        st.subheader("Selected run", anchor=False)
        st.text(run.name)
        lineage_caption(run)
        with st.expander("Settings of this run"):
            cfg = {k: v for k, v in run.config().items() if k not in ("prompts",)}
            st.json(cfg, expanded=False)
        try:
            progress(str(run.path))
        except RunError as e:
            st.error(md(e.said(app=True)), icon=":material/error:")
    if run.state() == State.FINISHED:
        evaluate_section(run)


def on_pick_run() -> None:
    sel = st.session_state.get("runs_table", {}).get("selection", {}).get("rows", [])
    names = st.session_state.get("_runs_table_names", [])
    if sel and sel[0] < len(names):
        select_run(names[sel[0]])


def all_runs() -> None:
    st.subheader("All runs", anchor=False)
    rows = []
    runs = list_runs(workspace.runs_dir())
    for r in runs:
        try:
            cfg, s = r.config(), r.status()
        except Exception:
            continue
        epochs = int(s.get("epochs") or cfg.get("epochs", 0))
        rows.append({
            "run": r.name, "state": s["state"],
            "progress": f"run {s.get('run_index') or 1}/{s.get('n_runs') or cfg.get('runs', 1)}, "
                        f"epoch {s.get('epoch') or 0}/{epochs}",
            "flagged": flagged_count(r), "images": cfg.get("n_samples"),
            "model": cfg.get("model"), "data": short_path(str(cfg.get("data", ""))),
            "started": (s.get("started_at") or cfg.get("created_at") or "")[:19].replace("T", " "),
            "error": status_error(s, app=True) or "",
        })
    if not rows:
        st.caption("No runs yet.")
        return
    st.session_state["_runs_table_names"] = [r["run"] for r in rows]
    st.caption(f"In {workspace.runs_dir()} — click a row to select that run.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="runs_table", on_select=on_pick_run,
                 selection_mode="single-row",
                 column_config={"flagged": st.column_config.NumberColumn(format="%d"),
                                "images": st.column_config.NumberColumn(format="%d")})


from pages._outcome import evaluate_section, lineage_caption  # noqa: E402  (issue 19)

with guard("the Train page"):
    data = current_data()
    selected_run()
    new_run_form(data)
    all_runs()
