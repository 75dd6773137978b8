"""Where the app keeps its things: the runs folder, recent data choices, and a data set's
ground truth if it has one.

No Streamlit here (the CLI and tests use it too). Every write is atomic.

- Runs live under ``$SEI_RUNS_DIR`` (default ``./runs``).
- ``<runs>/recent.json`` remembers the data sets opened recently, newest first, each with
  the columns of its label file that hold the image path and the label.
- Which label file a run is reviewed against, and the samples sent to review by hand, are
  :func:`sei_core.review.review_label_file` and :func:`sei_core.review.review_requests`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import access
from .dataset import PROMPTS_FILE, table_in_folder
from .files import atomic_write_json
from .labels import LABEL_COL, PATH_COL, TableError, source_kind, truth_columns, truth_for
from .runs import Run, State, list_runs

RECENT_FILE = "recent.json"
MAX_RECENT = 10
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


def runs_dir() -> Path:
    """The folder that holds the runs: ``$SEI_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get(access.RUNS_ENV) or "runs").expanduser().absolute()


def bench_root() -> Path:
    """The folder searched for benchmark results: ``$SEI_BENCH_DIR`` or ``./bench``."""
    return Path(os.environ.get(access.BENCH_ENV) or "bench").expanduser().absolute()


def bench_dirs(root: str | Path | None = None) -> list[Path]:
    """Benchmark directories (written by ``sei bench``) in ``root`` (default
    :func:`bench_root`): the folder itself and its sub-folders that hold a ``bench.json`` or a
    ``results.csv``, most recently changed first."""
    root = Path(root) if root is not None else bench_root()
    if not root.is_dir():
        return []
    found = [d for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]
             if (d / "bench.json").is_file() or (d / "results.csv").is_file()]

    def changed(d: Path) -> float:
        f = d / "results.csv"
        return (f if f.is_file() else d / "bench.json").stat().st_mtime

    return sorted(found, key=changed, reverse=True)


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj)


# -- the bundled sample data --------------------------------------------------------

def sample_labels() -> Path:
    """The bundled sample data's label file (may not exist yet)."""
    return SAMPLE_DIR / "labels.csv"


def ensure_sample_data() -> Path:
    """The sample label file, generated first (deterministically, a few seconds) if missing."""
    labels = sample_labels()
    if not labels.is_file() or not (SAMPLE_DIR / "images").is_dir():
        from sample_data.make_sample_data import generate

        generate(SAMPLE_DIR)
    return labels


# -- recent data choices -----------------------------------------------------------

def normalise_data_path(path: str | Path) -> str:
    """Absolute form of a data path as typed by a user (``~`` expanded, not resolved)."""
    return str(Path(str(path).strip().strip('"').strip("'")).expanduser().absolute())


def data_path(path: str | Path) -> str:
    """A data set's path as the app opens it: normalised, and a folder holding one label file
    (the HAM10000 archive: its metadata table beside its image folders) as that file, whether
    it was typed on the Data page or came in the address (``?data=FOLDER``)."""
    p = normalise_data_path(path)
    table = table_in_folder(Path(p)) if Path(p).is_dir() else None
    return p if table is None else str(table)


def data_choice(path: str | Path, split: str = "train", path_column: str = PATH_COL,
                label_column: str = LABEL_COL, image_dirs=(), image_ext: str | None = None) -> dict:
    """A data choice as the app keeps it: ``{"path", "split", "path_column", "label_column",
    "image_dirs", "image_ext"}`` (the path as :func:`data_path` opens it; the columns say which
    of a label file's columns hold the image path and the label, the image folders (absolute)
    and extension where its images are: part of the data set's identity)."""
    return {"path": data_path(path), "split": str(split or "train"),
            "path_column": str(path_column or PATH_COL).strip(),
            "label_column": str(label_column or LABEL_COL).strip(),
            "image_dirs": [normalise_data_path(d) for d in (image_dirs or []) if str(d).strip()],
            "image_ext": (str(image_ext).strip() or None) if image_ext else None}


def _same_data(a: dict, b: dict) -> bool:
    return a["path"] == b["path"] and a["split"] == b["split"]


def recent_data(folder: Path | None = None) -> list[dict]:
    """Recently opened data sets, newest first, as :func:`data_choice` dicts."""
    f = (folder or runs_dir()) / RECENT_FILE
    try:
        items = json.loads(f.read_text(encoding="utf-8")).get("data", [])
    except (OSError, ValueError, AttributeError):
        return []
    out = []
    for it in items:
        if isinstance(it, dict) and isinstance(it.get("path"), str):
            dirs = it.get("image_dirs") if isinstance(it.get("image_dirs"), list) else []
            out.append({"path": it["path"], "split": str(it.get("split", "train")),
                        "path_column": str(it.get("path_column") or PATH_COL),
                        "label_column": str(it.get("label_column") or LABEL_COL),
                        "image_dirs": [str(d) for d in dirs], "image_ext": it.get("image_ext") or None})
    return out


def _write_recent(folder: Path, items: list[dict]) -> None:
    try:
        old = json.loads((folder / RECENT_FILE).read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            old = {}
    except (OSError, ValueError):
        old = {}
    old["data"] = items
    _write_json(folder / RECENT_FILE, old)


def remember_data(path: str | Path, split: str = "train", folder: Path | None = None, *,
                  path_column: str = PATH_COL, label_column: str = LABEL_COL, image_dirs=(),
                  image_ext: str | None = None) -> list[dict]:
    """Put a data choice, with its columns and image folders, at the front of the recent list
    (one entry per data set and split; kept to :data:`MAX_RECENT`)."""
    folder = folder or runs_dir()
    entry = data_choice(path, split, path_column, label_column, image_dirs, image_ext)
    items = [entry] + [it for it in recent_data(folder) if not _same_data(it, entry)]
    items = items[:MAX_RECENT]
    _write_recent(folder, items)
    return items


def forget_data(path: str | Path, split: str = "train", folder: Path | None = None) -> list[dict]:
    """Remove a data choice from the recent list (e.g. one that no longer opens)."""
    folder = folder or runs_dir()
    entry = data_choice(path, split)
    items = recent_data(folder)
    keep = [it for it in items if not _same_data(it, entry)]
    if len(keep) != len(items):
        _write_recent(folder, keep)
    return keep


def remembered_columns(path: str | Path, split: str = "train", folder: Path | None = None) -> dict:
    """``{"path_column", "label_column", "image_dirs", "image_ext"}`` last used with this data
    set (the defaults if it was never opened with others)."""
    entry = data_choice(path, split)
    for it in recent_data(folder):
        if _same_data(it, entry):
            return {k: it[k] for k in ("path_column", "label_column", "image_dirs", "image_ext")}
    return {"path_column": PATH_COL, "label_column": LABEL_COL, "image_dirs": [], "image_ext": None}


def run_data_path(run: Run) -> str:
    """The data set a run was trained on, normalised ('' if its config cannot be read)."""
    try:
        d = run.config().get("data")
    except Exception:
        return ""
    return normalise_data_path(d) if d else ""


def trained_on(run: Run, data_path: str | Path) -> bool:
    """Whether ``run`` was trained on the data set at ``data_path``."""
    return run_data_path(run) == normalise_data_path(data_path)


def newest_finished(runs: list[Run], data_path: str | Path | None = None) -> Run | None:
    """The newest finished run among ``runs`` (newest first, as :func:`runs_for` lists them)
    trained on ``data_path`` (any data set if None); None if there is none."""
    for r in runs:
        try:
            if r.state() == State.FINISHED and (data_path is None or trained_on(r, data_path)):
                return r
        except Exception:
            continue
    return None


def current_data(folder: Path | None = None) -> dict:
    """The most recent data choice, or the bundled sample data (generated if missing)."""
    items = recent_data(folder)
    if items:
        return items[0]
    return data_choice(ensure_sample_data())


# -- runs ----------------------------------------------------------------------------

def runs_for(data_path: str | Path | None, folder: Path | None = None) -> list[Run]:
    """Runs in the runs folder, those trained on ``data_path`` first (each newest first)."""
    runs = list_runs(folder or runs_dir())
    if data_path is None:
        return runs
    mine = [r for r in runs if trained_on(r, data_path)]
    return mine + [r for r in runs if r not in mine]


def run_stamp(run: Run) -> tuple:
    """Changes whenever the run writes a new epoch or status: a cache key for its scores."""
    stamps = []
    for name in ("status.json", "samples.csv", "config.json"):
        try:
            stamps.append((run.path / name).stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return (str(run.path.resolve()), *stamps)


#: Label-file names that say nothing about the data set: a run is named after their folder.
GENERIC_STEMS = {"labels", "label", "train", "training", "metadata", "data", "dataset", "annotations", "images",
                 "list", "all", "test", "val", "valid", "validation"}


def data_name(data_path: str | Path) -> str:
    """A short name that tells data sets apart: the file's stem, with its folder's name in
    front where the stem is generic (``labels``, ``train``, ``metadata`` …) or shared
    (``skin/labels.csv`` → ``skin``, ``derm/train.csv`` → ``derm-train``, ``retinamnist.npz``
    → ``retinamnist``, an image folder → its name)."""
    p = Path(str(data_path).rstrip("/\\"))
    if not p.name:
        return ""
    if p.suffix.lower() not in (".csv", ".tsv", ".txt", ".npz"):
        return p.name
    stem, parent = p.stem, p.parent.name
    if stem.lower() == "labels" and parent:
        return parent
    if parent and stem.lower() in GENERIC_STEMS:
        return f"{parent}-{stem}"
    return stem


def new_run_name(data_path: str | Path, model: str, folder: Path | None = None) -> str:
    """A fresh, readable run name: ``<data>-<model>-<n>``, ``<data>`` from :func:`data_name`,
    with the folder's name in front where runs of that name were trained on other data sets
    only (two ``HAM10000_metadata.csv`` in different folders: ``ham2-ham10000_metadata-…``).
    The folder of a run of this data set that failed before training anything counts as free:
    starting again under its name replaces it (as the Train page says of such a run), instead
    of leaving it beside a new ``-<n+1>``."""
    folder = folder or runs_dir()
    want = normalise_data_path(data_path)

    def slug(text: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text).strip("-").lower() or "run"

    stem = data_name(data_path)
    base = slug(f"{stem}-{model}")
    # the nearest folder whose name the stem does not hold yet (skin/labels.csv is "skin" already)
    parent = next((a.name for a in Path(want).parents
                   if a.name and a.name.lower() not in stem.lower().split("-")), "")
    used_by = {run_data_path(Run(p)) for p in folder.glob(f"{base}-*") if p.is_dir()} - {""}
    if parent and used_by and want not in used_by:
        base = slug(f"{parent}-{stem}-{model}")
    n = 1
    while (p := folder / f"{base}-{n}").exists() and not (Run(p).trained_nothing() and run_data_path(Run(p)) == want):
        n += 1
    return f"{base}-{n}"


# -- the data a run is reviewed against ---------------------------------------------------

def is_csv_data(run: Run) -> bool:
    """True if ``run`` trained on a label file (not an image folder or ``.npz``)."""
    return source_kind(run.config().get("data", "")) == "csv"


# -- ground truth (data sets with known noise) ---------------------------------------------

def truth_file(data_path: str | Path) -> Path | None:
    """``truth.csv`` (or ``<stem>.truth.csv``) beside a label file, if there is one."""
    p = Path(data_path)
    if source_kind(p) != "csv":
        return None
    roots = access.allowed_roots()
    for cand in (p.with_name(f"{p.stem}.truth.csv"), p.with_name("truth.csv")):
        if cand.is_file() and (roots is None or access.inside(cand, roots)):
            return cand
    return None


def load_truth(data_path: str | Path, ids: list[str]) -> np.ndarray | None:
    """Boolean ``is_noisy`` per sample id from the data set's truth file, or None.

    The truth file has columns ``path`` and ``is_noisy`` (read by
    :func:`sei_core.labels.read_truth`: 1/true/yes mean noisy), as written by
    ``sample_data/make_sample_data.py`` and :func:`sei_core.bench.noise.write_noisy_label_file`.
    Returns None when there is no truth file, it cannot be read, or it does not cover every sample.
    """
    f = truth_file(data_path)
    if f is None:
        return None
    try:
        return truth_for(ids, truth_columns(f), f)
    except TableError:
        return None


# -- prompts ---------------------------------------------------------------------------------

def prompts_file(data) -> Path:
    """Where a data set's ``prompts.json`` lives (what :meth:`LabeledImages.prompts` reads)."""
    folder = data.source.parent if data.kind == "csv" else data.root
    return Path(folder) / PROMPTS_FILE


def save_prompts(data, prompts) -> Path:
    """Write ``prompts`` (a :class:`~sei_core.dataset.Prompts`) beside the data, atomically.

    Raises ValueError if the template has no ``{}`` for the class name.
    """
    prompts.for_classes(data.classes)  # validates the template
    target = prompts_file(data)
    access.check(target, "the prompts file")
    _write_json(target, prompts.to_dict())
    return target
