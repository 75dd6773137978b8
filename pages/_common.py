"""What every page shares: the sidebar (which data set, which run), cached loaders, safe text
and the error guard that turns any failure into a clear message instead of a traceback.

UI glue only; the method lives in ``sei_core``.
"""

from __future__ import annotations

import contextlib
import re
import logging
import threading
from pathlib import Path

import pandas as pd
import streamlit as st

from sei_core import access, workspace
from sei_core.dataset import DataError, ImageCheck, LabeledImages, Validation, check
from sei_core.errors import SeiError, said
from sei_core.gallery import ImageSource
from sei_core.labels import LABEL_COL, PATH_COL
from sei_core.methods import DEFAULT_METHOD
from sei_core.runs import Run, State

log = logging.getLogger("sei_review.app")

DATA_PAGE = "pages/data.py"
TRAIN_PAGE = "pages/train.py"
EXPLORE_PAGE = "pages/explore.py"
REVIEW_PAGE = "pages/review.py"

#: The app's pages: script, title, icon, URL path (one place; app.py and the sidebar menu use it).
PAGES = (
    (DATA_PAGE, "Data", ":material/folder_open:", "data"),
    (TRAIN_PAGE, "Train", ":material/model_training:", "train"),
    (EXPLORE_PAGE, "Explore", ":material/insights:", "explore"),
    (REVIEW_PAGE, "Review", ":material/rule:", "review"),
    ("pages/compare.py", "Compare", ":material/compare_arrows:", "compare"),
    ("pages/benchmark.py", "Benchmark", ":material/leaderboard:", "benchmark"),
)

PAGE_CONFIG = dict(page_title="SEI review", page_icon="🔎", layout="wide",
                   initial_sidebar_state="expanded")

_MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:&=\"'^@%")


# -- text ----------------------------------------------------------------------------------

def md(value: object) -> str:
    """``value`` escaped so that st.markdown / st.error / labels show it literally.

    Every ASCII punctuation character that Markdown, HTML or Streamlit's directives
    (``:red[...]``, ``:material/...:``, ``$math$``) could interpret gets a backslash; line
    breaks are kept as hard breaks.
    """
    s = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(value))
    return s.replace("\r\n", "\n").replace("\n", "  \n")


def facts(rows) -> None:
    """Label–value lines; the labels are ours, the values are shown literally (escaped)."""
    st.markdown("  \n".join(f"**{label}:** {md(value)}" for label, value in rows))


# -- errors --------------------------------------------------------------------------------

def show_problems(problems) -> None:
    """A data set's problems as a table: where, what, how to fix."""
    st.dataframe(
        pd.DataFrame([{"where": p.where, "problem": p.message, "how to fix": p.fix.said(app=True),
                       "severity": p.severity} for p in problems]),
        hide_index=True, width="stretch",
        column_config={"where": st.column_config.TextColumn(width="medium"),
                       "problem": st.column_config.TextColumn(width="large"),
                       "how to fix": st.column_config.TextColumn(width="large")},
    )


def show_error(e: BaseException) -> None:
    """A known error as a clear message in the app's words (never a traceback)."""
    if isinstance(e, DataError):
        st.error(f"The data cannot be used as it is: {len(e.problems)} problem(s). "
                 "Fix them in the file, then reload it on the Data page.", icon=":material/error:")
        show_problems(e.problems)
    else:
        st.error(md(said(e, app=True)), icon=":material/error:")


@contextlib.contextmanager
def guard(where: str = "this page"):
    """Run a page body; known errors become messages, unknown ones a plain apology + log."""
    known = (SeiError, ValueError, OSError)
    try:
        yield
    except known as e:
        show_error(e)
    except Exception as e:  # never a traceback in the browser
        log.exception("unexpected error on %s", where)
        st.error(
            f"Something unexpected went wrong on {where} ({md(type(e).__name__)}: {md(e)}). "
            "Nothing you entered was lost: decisions are saved the moment you make them. "
            "Reload the page; if it happens again, send the server log to your ML engineer.",
            icon=":material/error:")


# -- cached loaders --------------------------------------------------------------------------

def file_stamp(path: str | Path) -> tuple:
    """Changes when a file or folder (or its class sub-folders) changes: a cache key."""
    p = Path(path)
    try:
        st_ = p.stat()
    except OSError:
        return (str(p), 0, 0)
    stamp = [str(p), st_.st_mtime_ns, st_.st_size]
    if p.is_dir():
        with contextlib.suppress(OSError):
            stamp += sorted(d.stat().st_mtime_ns for d in p.iterdir() if d.is_dir())
    return tuple(stamp)


@st.cache_resource(show_spinner="Reading and checking the data…", max_entries=6)
def load_data(path: str, split: str, stamp: tuple, path_column: str = PATH_COL,
              label_column: str = LABEL_COL, image_dirs: tuple = (), image_ext: str | None = None) -> Validation:
    """The data set's report (:func:`sei_core.dataset.check`, the one ``sei validate`` and
    ``sei train`` give): every row checked, and that every image file exists (one directory
    listing per folder); its ``data`` holds the usable rows, the missing images in its
    ``.problems``. Whether each image opens is :func:`image_check`'s."""
    return check(path, split=split, check_images="exists", path_column=path_column, label_column=label_column,
                 image_dirs=list(image_dirs), image_ext=image_ext)


#: Data sets up to this many images have every image opened when they are opened (a second or
#: two); larger ones on request, in the background (:class:`sei_core.dataset.ImageCheck`).
OPEN_AT_ONCE = 20_000


@st.cache_resource(max_entries=6, show_spinner="Opening every image…")
def _image_check(path: str, split: str, stamp: tuple, path_column: str, label_column: str,
                 image_dirs: tuple = (), image_ext: str | None = None) -> ImageCheck:
    ck = ImageCheck(load_data(path, split, stamp, path_column, label_column, image_dirs, image_ext).data)
    if ck.total <= OPEN_AT_ONCE:
        ck.run()
    return ck


def image_check(data: dict) -> ImageCheck:
    """Whether every image of a data choice (:func:`current_data`) opens: done at once for a
    small data set; for a large one started by :meth:`~sei_core.dataset.ImageCheck.start` and
    shared by every tab."""
    path = data["path"]
    return _image_check(path, data.get("split", "train"), file_stamp(path), *_load_key(data))


def _load_key(data: dict) -> tuple:
    """The arguments of :func:`load_data` after path, split and stamp, for a data choice."""
    opts = data_options(data)
    return (opts["path_column"], opts["label_column"], tuple(opts["image_dirs"]), opts["image_ext"])


def data_report(data: dict) -> Validation:
    """The report of a data choice (:func:`current_data`): what ``sei validate`` and ``sei train``
    say about it, cached per file version."""
    path = data["path"]
    return load_data(path, data.get("split", "train"), file_stamp(path), *_load_key(data))


def data_set(data: dict) -> LabeledImages:
    """The usable rows of a data choice (:func:`current_data`), validated, cached per file
    version (its ``problems``: the images left out); :class:`DataError` with the problems that
    leaving unreadable images out does not cure (bad rows, a class without images)."""
    report = data_report(data)
    if report.data is None or report.unskippable:
        raise DataError(report.unskippable or report.problems, f"{report.source} has problems")
    return report.data


def data_columns(data: dict) -> dict:
    """``{"path_column", "label_column"}`` of a data choice (keyword arguments of the library)."""
    return {"path_column": data.get("path_column") or PATH_COL, "label_column": data.get("label_column") or LABEL_COL}


def data_options(data: dict) -> dict:
    """How a data choice is read: its columns, image folders and image extension (keyword
    arguments of :func:`sei_core.dataset.check` and fields of ``TrainConfig``)."""
    return {**data_columns(data), "image_dirs": list(data.get("image_dirs") or []),
            "image_ext": data.get("image_ext") or None}


@st.cache_data(max_entries=16, show_spinner=False)
def _saved_names(prompts_file: str, stamp: tuple) -> dict:
    from sei_core.dataset import Prompts

    try:
        return Prompts.load(prompts_file).names
    except DataError:
        return {}


def class_names_of(cfg: dict) -> dict:
    """Display names of a run's class codes: those saved beside its data now (prompts.json,
    edited on the Data page), over those it was trained with (``class_names`` of its config)."""
    from sei_core.dataset import PROMPTS_FILE

    data = Path(cfg.get("data", ""))
    f = (data if data.is_dir() else data.parent) / PROMPTS_FILE
    return {**(cfg.get("class_names") or {}), **(_saved_names(str(f), file_stamp(f)) if f.is_file() else {})}


def class_text(cfg: dict, code: str | None) -> str:
    """A class as the pages show it: ``melanocytic nevus (nv)`` where the run's data set names
    its code (:func:`class_names_of`), else the code."""
    name = class_names_of(cfg).get(code) if code else None
    return f"{name} ({code})" if name and name != code else str(code or "")


def image_layout(cfg: dict) -> dict:
    """``{"image_dirs", "image_ext"}`` of a data choice or a run's config (for :func:`images_of`)."""
    return {"image_dirs": tuple(cfg.get("image_dirs") or ()), "image_ext": cfg.get("image_ext") or None}


@st.cache_resource(max_entries=6)
def _image_source(path: str, split: str, image_dirs: tuple = (), image_ext: str | None = None) -> ImageSource:
    return ImageSource(path, split, image_dirs=image_dirs, image_ext=image_ext)


def images_of(path: str, split: str = "train", image_dirs=(), image_ext: str | None = None) -> ImageSource:
    """The images of a data set for display (with the image folders and extension of its label file)."""
    return _image_source(path, split, tuple(image_dirs or ()), image_ext or None)


@st.cache_resource(show_spinner="Scoring the run…", max_entries=4)
def cached_scored(run_path: str, stamp: tuple, method: str):
    """One shared, read-only scored result per run version and method: the run's cache entry
    (``sei_core.score_cache``, written when training finished or by the first scoring), so a
    run is scored once, not once per server. ``cache_resource``: the arrays are handed out as
    they are (memory maps), never pickled per rerun; callers must not modify them."""
    from sei_core.score_cache import scored

    return scored(Run(run_path), method)


def cached_scores(run_path: str, stamp: tuple, method: str):
    """The run's :class:`~sei_core.ranking.RunScores` (see :func:`cached_scored`)."""
    return cached_scored(run_path, stamp, method).scores


def summary_of(run: Run, method: str = DEFAULT_METHOD):
    """The run's dynamics summary (:class:`sei_core.score_cache.Summary`) for ``method``."""
    return cached_scored(str(run.path), workspace.run_stamp(run), method).summary


def scores_of(run: Run, method: str = DEFAULT_METHOD):
    """The run's scores by ``method`` (default: the app's ranking), with the paper's SEI beside
    them (cached until the run writes another epoch)."""
    return cached_scores(str(run.path), workspace.run_stamp(run), method)


@st.cache_resource(max_entries=4, show_spinner=False)
def _reliability(run_path: str, stamp: tuple, method: str):
    import numpy as np

    from sei_core.reliability import class_reliability

    s = cached_scores(run_path, stamp, method)
    return class_reliability(s.labels, s.suggested, s.flagged, s.classes, scored=np.isfinite(s.score))


def reliability_of(run: Run, method: str = DEFAULT_METHOD):
    """Per class, how far the model agrees with its labels (``sei_core.reliability``; cached per run version)."""
    return _reliability(str(run.path), workspace.run_stamp(run), method)


def reliability_warning(run: Run, method: str = DEFAULT_METHOD, k: int = -1) -> None:
    """Say which classes' flags are unreliable and what would help (only class ``k`` if ``k >= 0``)."""
    from sei_core.reliability import reliability_note

    rel, names = reliability_of(run, method), class_names_of(run.config())
    note = reliability_note(rel if k < 0 else rel[k:k + 1], run.config(), names=names)
    if note:
        st.warning(md_safe_names(note, [names.get(r.name, r.name) for r in rel]), icon=":material/report:")


def md_safe_names(text: str, names) -> str:
    """``text`` with each class name Markdown-escaped (they come from the user's data)."""
    for n in sorted(set(names), key=len, reverse=True):
        text = text.replace(f"**{n}**", f"**{md(n)}**")
    return text


@st.cache_resource(max_entries=4, show_spinner=False)
def _truth(data_path: str, run_path: str, stamp: tuple, truth_stamp: tuple):
    from sei_core.score_cache import aligned_truth

    return aligned_truth(Run(run_path), data_path, cached_scores(run_path, stamp, DEFAULT_METHOD).ids)


def truth_of(run: Run):
    """``is_noisy`` per sample of the run from its data set's truth file, or None (cached per
    run and truth-file version)."""
    data = run.config().get("data", "")
    f = workspace.truth_file(data)
    return None if f is None else _truth(data, str(run.path), workspace.run_stamp(run), file_stamp(f))


# -- the shared choice of data set and run --------------------------------------------------------

def current_data() -> dict:
    """This browser session's data choice (:func:`sei_core.workspace.data_choice`: path,
    split, and the label file's path and label columns).

    Per session, never shared between tabs: the page address carries it (``?data=…&split=…``,
    and ``path_column``/``label_column`` where not the defaults, so a reload keeps it); a new
    session without one starts on the most recently opened data set that opened successfully
    (or the bundled sample data).
    """
    if "data" not in st.session_state:
        path = st.query_params.get("data")
        if path:
            split = st.query_params.get("split", "train")
            known = workspace.remembered_columns(path, split)
            st.session_state["data"] = workspace.data_choice(
                path, split, st.query_params.get("path_column", known["path_column"]),
                st.query_params.get("label_column", known["label_column"]),
                st.query_params.get_all("image_dir") or known["image_dirs"],
                st.query_params.get("image_ext", known["image_ext"]))
        else:
            st.session_state["data"] = workspace.current_data()
    data = st.session_state["data"]
    if st.query_params.get("data") != data["path"]:
        st.query_params["data"] = data["path"]
    defaults = {"split": "train", "path_column": PATH_COL, "label_column": LABEL_COL, "image_ext": None}
    for key, default in defaults.items():
        value = data.get(key, default)
        if value != default:
            if st.query_params.get(key) != value:
                st.query_params[key] = value
        elif key in st.query_params:
            del st.query_params[key]
    dirs = list(data.get("image_dirs") or [])
    if st.query_params.get_all("image_dir") != dirs:
        if dirs:
            st.query_params["image_dir"] = dirs
        elif "image_dir" in st.query_params:
            del st.query_params["image_dir"]
    return data


def choose_data(path: str, split: str = "train", columns: dict | None = None) -> None:
    """Switch this session (only) to a data set; it joins "recently opened" once it opens
    (:func:`opened_data`). ``columns`` (``path_column``, ``label_column``, optionally
    ``image_dirs``, ``image_ext``): default, the ones last used with this data set."""
    now = st.session_state.get("data", {})
    same = now.get("path") == workspace.normalise_data_path(path)
    base = data_options(now) if same and now.get("split", "train") == split else \
        workspace.remembered_columns(path, split)
    columns = {**base, **(columns or {})}
    st.session_state["data"] = workspace.data_choice(path, split, **columns)
    if not same:
        st.session_state.pop("run_name", None)
        st.session_state.pop("_run_choice", None)
        if "run" in st.query_params:
            del st.query_params["run"]


def opened_data(data: dict, ok: bool) -> None:
    """Remember a data set that opened (with its columns) in "recently opened"; forget one
    that failed."""
    recent = workspace.recent_data()
    entry = workspace.data_choice(data["path"], data.get("split", "train"), **data_options(data))
    if ok and (not recent or recent[0] != entry):
        workspace.remember_data(entry["path"], entry["split"], **data_options(entry))
    elif not ok and any(it["path"] == entry["path"] and it["split"] == entry["split"] for it in recent):
        workspace.forget_data(entry["path"], entry["split"])


def select_run(name: str) -> None:
    """Make ``name`` the selected run from the next rerun on."""
    st.session_state["_select_run"] = name


def current_run() -> Run | None:
    name = st.session_state.get("run_name")
    if not name:
        return None
    run = Run(workspace.runs_dir() / name)
    return run if run.exists() else None


def short_path(path: str, parts: int = 2) -> str:
    p = Path(path)
    return str(Path(*p.parts[-parts:])) if len(p.parts) > parts else str(p)


_STATE_ICON = {State.RUNNING: "▶", State.FINISHED: "✓", State.FAILED: "✗", State.STOPPED: "■",
               State.INTERRUPTED: "‖", State.CREATED: "…", State.MISSING: "?"}


def run_label(run: Run) -> str:
    try:
        state = run.state()
    except Exception:
        state = "?"
    try:
        data = workspace.data_name(run.config().get("data", ""))
    except Exception:
        data = ""
    shown = run.name if not data or data.lower() in run.name.lower() else f"{run.name} · {data}"
    return f"{_STATE_ICON.get(state, '?')} {shown} ({state})"


def sidebar() -> None:
    """Which data set and which run every page works on."""
    with st.sidebar:
        with guard("the sidebar"):
            data = current_data()
            st.markdown("**Data set**")
            st.text(short_path(data["path"]) + ("" if data.get("split", "train") == "train" else f" [{data['split']}]"))
            st.page_link(DATA_PAGE, label="Choose another data set", icon=":material/folder_open:")
            runs = workspace.runs_for(data["path"])
            names = [r.name for r in runs]
            labels = {r.name: run_label(r) for r in runs}
            st.markdown("**Run**")
            # the choice is kept under its own key: the menu is another widget on every page
            pending = st.session_state.pop("_select_run", None)
            if pending in names:
                st.session_state["_run_choice"] = pending
            if not names:
                st.session_state.pop("run_name", None)
                st.session_state.pop("_run_choice", None)
                if "run" in st.query_params:
                    del st.query_params["run"]
                st.caption("No run yet. Start one on the Train page.")
                return
            if st.session_state.get("_run_choice") not in names:
                # the address's run (a reload keeps it), else the newest finished run of this data set
                asked = st.query_params.get("run")
                best = workspace.newest_finished(runs, data["path"]) or workspace.newest_finished(runs)
                st.session_state["_run_choice"] = asked if asked in names else (best.name if best else names[0])
            st.session_state["run_name"] = st.session_state["_run_choice"]
            if st.query_params.get("run") != st.session_state["run_name"]:
                st.query_params["run"] = st.session_state["run_name"]
            st.selectbox("Run", names, key="run_name", format_func=lambda n: labels.get(n, n),
                         on_change=lambda: st.session_state.update(_run_choice=st.session_state["run_name"]),
                         label_visibility="collapsed",
                         help="Runs trained on this data set come first. Explore and Review show the selected run.")
            run = current_run()
            if run is not None:
                if not workspace.trained_on(run, data["path"]):
                    st.caption("This run was trained on another data set:")
                    st.text(short_path(workspace.run_data_path(run)))


# -- who may use the app (sei_core.access) ------------------------------------------------------

SIGNED_IN = "_sei_signed_in"  # session state: how this browser session signed in ("token" / "oidc")
_TOKEN_STORE = "sei-review.token"  # the browser's sessionStorage key: a reload keeps the sign-in
_SESSION_TOKEN = "_sei_token"  # session state: the token this session signed in with, checked on every run


def _secrets() -> dict:
    """The ``[auth]`` and ``[sei]`` sections of ``.streamlit/secrets.toml`` ({} without the file)."""
    try:
        if not st.secrets.load_if_toml_exists():
            return {}
        return {k: st.secrets[k] for k in ("auth", access.SECRETS_SECTION) if k in st.secrets}
    except Exception:  # an unreadable secrets file: no login configured, which refuses an exposed app
        log.exception("cannot read .streamlit/secrets.toml")
        return {}


def access_settings() -> access.Settings:
    """How this server is reached and what it may open (:func:`sei_core.access.settings`), from
    the address Streamlit listens on, ``secrets.toml`` and the environment."""
    s = access.settings(st.config.get_option("server.address"), _secrets())
    if s.roots and not access.data_roots():
        # roots from secrets.toml: the library (and training processes started from here) read them
        # from the environment
        import os

        os.environ[access.DATA_ROOTS_ENV] = os.pathsep.join(map(str, s.roots))
    return s


def _user() -> dict:
    try:
        return st.user.to_dict()
    except Exception:
        return {}


def _token_holder(s: access.Settings) -> str | None:
    """Who this session's token signs in (:meth:`sei_core.access.Settings.holder`): a reviewer's
    name, ``access.ANONYMOUS`` for the shared token, None when it signed in with none (or with
    one the server no longer has)."""
    if st.session_state.get(SIGNED_IN) != "token":
        return None
    return s.holder(st.session_state.get(_SESSION_TOKEN))


def signed_in_name() -> str | None:
    """The signed-in person's identity, which every decision records: the OpenID Connect login's,
    or the name a personal token belongs to; None without either (a local app, or the shared
    token, which says nothing about who is signing in)."""
    s = access_settings()
    if s.login == "oidc":
        return access.identity(_user())
    return (_token_holder(s) or None) if s.login == "token" else None


def anonymous_sign_in() -> bool:
    """True if this session signed in with the shared token: decisions carry the typed name."""
    s = access_settings()
    return s.login == "token" and _token_holder(s) == access.ANONYMOUS


def reviewer_name() -> str:
    """The name recorded with a decision: the signed-in identity, else the name typed on Review."""
    return signed_in_name() or str(st.session_state.get("reviewer", "")).strip()


def _token_script(store: str | None, clear: bool) -> None:
    import json

    st.html("<script>(() => { try { const K = %s, t = %s, clear = %s, url = new URL(window.location.href);"
            " if (clear) { sessionStorage.removeItem(K); return; }"
            " if (t) { sessionStorage.setItem(K, t); return; }"
            " const saved = sessionStorage.getItem(K);"
            " if (saved && !url.searchParams.get('token')) { url.searchParams.set('token', saved);"
            " window.location.replace(url.toString()); } } catch (e) {} })();</script>"
            % tuple(json.dumps(v).replace("<", "\\u003c") for v in (_TOKEN_STORE, store, clear)),
            unsafe_allow_javascript=True, width="content")


def _accept_token(s: access.Settings, given: str) -> bool:
    """Sign this session in with ``given`` if it is one of the server's tokens (a personal one
    signs in its reviewer; :func:`signed_in_name`)."""
    if s.holder(given) is None:
        st.session_state["_sei_token_failed"] = True
        return False
    st.session_state[SIGNED_IN] = "token"
    st.session_state[_SESSION_TOKEN] = given
    _token_script(given, False)
    return True


def _token_in_address(s: access.Settings) -> bool:
    """True if the address carried one of the server's tokens (``?token=…``); it is removed from
    the address either way (bookmarks, screenshots)."""
    given = st.query_params.get("token")
    if given is None:
        return False
    del st.query_params["token"]
    return _accept_token(s, given)


def _sign_in_with_token(s: access.Settings) -> bool:
    """The sign-in field; True once this session typed one of the server's tokens."""
    with st.form("sei_sign_in"):
        typed = st.text_input("Access token", type="password",
                              help="Your token: the server printed it, in the address to open, when it started.")
        if st.form_submit_button("Sign in", type="primary", icon=":material/login:"):
            if _accept_token(s, typed.strip()):
                st.rerun()
    failed = st.session_state.pop("_sei_token_failed", False)
    if failed:
        st.error("That is not this server's token.", icon=":material/error:")
    _token_script(None, failed or st.session_state.pop("_sei_signed_out", False))
    return False


def _sign_in_with_oidc() -> bool:
    """True if the visitor is signed in with the OpenID Connect provider of ``secrets.toml``."""
    if access.identity(_user()):
        return True
    import importlib.util

    if importlib.util.find_spec("authlib") is None:
        st.error("The login is configured (an [auth] section in .streamlit/secrets.toml) but Streamlit's login "
                 "needs Authlib, which is not installed: `pip install -e '.[auth]'` in the project (or "
                 "`pip install Authlib`) on the server, then restart it.", icon=":material/error:")
        return False
    if st.button("Sign in", type="primary", icon=":material/login:", key="sei_oidc_login"):
        try:
            st.login()
        except Exception as e:  # a wrong [auth] section: say what Streamlit says, never a traceback
            st.error(f"The sign-in cannot start: {md(e)}", icon=":material/error:")
    return False


def gate() -> None:
    """Let this visitor in, or show only the sign-in (or why the app refuses) and stop the page.

    A local app (listening on loopback only) lets everyone on this machine in. An exposed one
    (:attr:`sei_core.access.Settings.exposed`) asks for its login first, and refuses to serve
    anything while no login or no data folders are configured."""
    s = access_settings()
    if not s.exposed:
        return
    problems = s.problems()
    if problems:
        st.title("SEI review", anchor=False)
        for p in problems:
            st.error(md(p), icon=":material/lock:")
        st.stop()
    if s.login == "oidc" and st.session_state.get(SIGNED_IN) == "oidc" and access.identity(_user()):
        return
    if s.login == "token" and (_token_holder(s) is not None or _token_in_address(s)):
        return
    st.title("Sign in to SEI review", anchor=False)
    st.caption("This server can be reached from the network, so it asks who you are before it shows any data.")
    ok = _sign_in_with_oidc() if s.login == "oidc" else _sign_in_with_token(s)
    if ok:
        st.session_state[SIGNED_IN] = s.login
        return
    st.stop()


def sign_out_button() -> None:
    """In the sidebar: how others can reach a local app (an SSH tunnel); in a signed-in
    session, who is signed in and a way out."""
    s = access_settings()
    if not s.exposed:
        import re
        import socket

        port = int(st.config.get_option("server.port") or 8501)
        host = socket.gethostname()
        host = host if re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host) else "THIS-HOST"  # shown in a code span
        st.caption(f"Open on this computer only. From another one: `ssh -L {port}:localhost:{port} "
                   f"{host}`, then http://localhost:{port} there (or network mode with a "
                   "login: `sei app --network`, see the README).")
        return
    if s.login is None:
        return
    who = signed_in_name()
    if who:
        st.caption(f"Signed in as {md(who)}")
    elif anonymous_sign_in():
        st.caption("Signed in with the shared token (no personal identity)")
    if st.button("Sign out", icon=":material/logout:", key="sei_sign_out"):
        for key in (SIGNED_IN, _SESSION_TOKEN, "reviewer", "_reviewer"):  # the next person starts afresh
            st.session_state.pop(key, None)
        if "reviewer" in st.query_params:
            del st.query_params["reviewer"]
        if s.login == "oidc":
            st.logout()
        else:
            st.session_state["_sei_signed_out"] = True  # the sign-in page then forgets the browser's copy
            st.rerun()


# -- navigation ----------------------------------------------------------------------------

_run = threading.local()  # per script-run thread: did app.py start this run?


def _start() -> None:
    """The app's address without a page (``/``) opens the Data page at its own address, with the
    address's parameters (``/?token=…``, the address a network-mode server prints)."""
    st.switch_page(DATA_PAGE, query_params=st.query_params.to_dict() or None)


def navigation():
    """The app's ``st.navigation`` (menu hidden: :func:`menu` draws it in the sidebar).

    Streamlit serves the default page at ``/`` only, so every real page gets a non-default
    entry (``/data`` works) and the hidden default one forwards to the Data page.
    """
    return st.navigation([st.Page(_start, title="SEI review", url_path="start", default=True, visibility="hidden")]
                         + [st.Page(script, title=title, icon=icon, url_path=url) for script, title, icon, url in PAGES],
                         position="hidden")


def run_app() -> None:
    """app.py's body: declare the pages and run the one the URL asks for."""
    _run.via_app = True
    navigation().run()


def _declare_pages_if_run_directly() -> None:
    """Make app.py's navigation the one in charge when Streamlit ran a page script directly.

    A top-level ``pages/`` folder (the product's layout) makes a fresh Streamlit server (and
    every AppTest run) start in its old "pages directory" mode, in which a request for e.g.
    ``/review`` runs ``pages/review.py`` without app.py. Declaring the same pages with
    ``st.navigation`` (same URL paths, hence the same page ids) ends that mode through the
    public API; this run then goes on drawing the requested page, and later runs go through
    app.py. ``client.showSidebarNavigation = false`` keeps the automatic page list hidden.
    """
    if not getattr(_run, "via_app", False):
        navigation()
        # A browser sends its next run through app.py, and widget ids depend on the script that
        # ran: widgets drawn now would come back blank (first option, minimum) then. So once per
        # session start again through app.py. (AppTest, which has no browser and so no request
        # headers, runs the page it was switched to every time.)
        if st.context.headers and not st.session_state.get("_via_app_once"):
            st.session_state["_via_app_once"] = True
            st.rerun()
    _run.via_app = False


def menu() -> None:
    """The page menu at the top of the sidebar."""
    for script, title, icon, _ in PAGES:
        st.page_link(script, label=title, icon=icon)
    st.divider()


def page_setup(title: str) -> None:
    """Page configuration, the sign-in of an exposed server (:func:`gate`), title and the shared
    sidebar; first thing every page calls."""
    _declare_pages_if_run_directly()
    st.set_page_config(**PAGE_CONFIG)
    gate()  # an exposed server shows nothing but its sign-in before this
    with st.sidebar:
        menu()
        sign_out_button()
    sidebar()
    st.title(title, anchor=False)


def need_run() -> Run | None:
    """The selected run, or a message that points to the Train page."""
    run = current_run()
    if run is None:
        st.info("There is no run for this data set yet. Train one on the Train page; "
                "it takes a few minutes on a CPU for the sample data.", icon=":material/info:")
        st.page_link(TRAIN_PAGE, label="Go to Train", icon=":material/model_training:")
    return run
