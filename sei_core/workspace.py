"""Where the app keeps its things: the runs folder, recent data choices, the label file a
run is reviewed against, samples sent to review, and a data set's ground truth if it has one.

No Streamlit here (the CLI and tests use it too). Every write is atomic.

- Runs live under ``$SEI_RUNS_DIR`` (default ``./runs``).
- ``<runs>/recent.json`` remembers the data sets opened recently, newest first.
- A run trained on a CSV is reviewed against that CSV (decisions are written back to it).
  A run trained on an image folder or a ``.npz`` has no CSV to write to, so a label file
  ``<run>/labels.csv`` (``path,label``) is created for it once and reviewed instead.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes
from .review import is_read_only
from .runs import Run, list_runs

RUNS_ENV = "SEI_RUNS_DIR"
BENCH_ENV = "SEI_BENCH_DIR"
RECENT_FILE = "recent.json"
MAX_RECENT = 10
REVIEW_LABEL_FILE = "labels.csv"
REVIEW_REQUESTS_FILE = "review_requests.json"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


def runs_dir() -> Path:
    """The folder that holds the runs: ``$SEI_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get(RUNS_ENV) or "runs").expanduser().absolute()


def bench_root() -> Path:
    """The folder searched for benchmark results: ``$SEI_BENCH_DIR`` or ``./bench``."""
    return Path(os.environ.get(BENCH_ENV) or "bench").expanduser().absolute()


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
    atomic_write_bytes(path, json.dumps(obj, indent=1).encode("utf-8"))


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


def recent_data(folder: Path | None = None) -> list[dict]:
    """Recently opened data sets, newest first: ``[{"path": ..., "split": ...}, ...]``."""
    f = (folder or runs_dir()) / RECENT_FILE
    try:
        items = json.loads(f.read_text(encoding="utf-8")).get("data", [])
    except (OSError, ValueError, AttributeError):
        return []
    out = []
    for it in items:
        if isinstance(it, dict) and isinstance(it.get("path"), str):
            out.append({"path": it["path"], "split": str(it.get("split", "train"))})
    return out


def remember_data(path: str | Path, split: str = "train", folder: Path | None = None) -> list[dict]:
    """Put a data choice at the front of the recent list (kept to :data:`MAX_RECENT`)."""
    folder = folder or runs_dir()
    entry = {"path": normalise_data_path(path), "split": split}
    items = [entry] + [it for it in recent_data(folder) if it != entry]
    items = items[:MAX_RECENT]
    try:
        old = json.loads((folder / RECENT_FILE).read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            old = {}
    except (OSError, ValueError):
        old = {}
    old["data"] = items
    _write_json(folder / RECENT_FILE, old)
    return items


def forget_data(path: str | Path, split: str = "train", folder: Path | None = None) -> list[dict]:
    """Remove a data choice from the recent list (e.g. one that no longer opens)."""
    folder = folder or runs_dir()
    entry = {"path": normalise_data_path(path), "split": split}
    items = [it for it in recent_data(folder) if it != entry]
    try:
        old = json.loads((folder / RECENT_FILE).read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            old = {}
    except (OSError, ValueError):
        return items
    old["data"] = items
    _write_json(folder / RECENT_FILE, old)
    return items


def current_data(folder: Path | None = None) -> dict:
    """The most recent data choice, or the bundled sample data (generated if missing)."""
    items = recent_data(folder)
    if items:
        return items[0]
    return {"path": str(ensure_sample_data()), "split": "train"}


# -- runs ----------------------------------------------------------------------------

def runs_for(data_path: str | Path | None, folder: Path | None = None) -> list[Run]:
    """Runs in the runs folder, those trained on ``data_path`` first (each newest first)."""
    runs = list_runs(folder or runs_dir())
    if data_path is None:
        return runs
    want = normalise_data_path(data_path)

    def same(r: Run) -> bool:
        try:
            return normalise_data_path(r.config().get("data", "")) == want
        except Exception:
            return False

    mine = [r for r in runs if same(r)]
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


def new_run_name(data_path: str | Path, model: str, folder: Path | None = None) -> str:
    """A fresh, readable run name: ``<data>-<model>-<n>``."""
    folder = folder or runs_dir()
    p = Path(data_path)
    stem = p.parent.name if p.name in ("labels.csv",) else p.stem
    base = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in f"{stem}-{model}").strip("-").lower()
    base = base or "run"
    n = 1
    while (folder / f"{base}-{n}").exists():
        n += 1
    return f"{base}-{n}"


# -- the label file a run is reviewed against ---------------------------------------------

def is_csv_data(run: Run) -> bool:
    data = Path(run.config().get("data", ""))
    return data.is_file() and data.suffix.lower() not in (".npz",)


def review_label_file(run: Run) -> Path:
    """The label file decisions on ``run`` are written to.

    For a CSV data set that is the CSV itself — unless it is read-only, then a verbatim
    working copy ``<run>/labels.csv`` is made once (its paths stay as they were, so its
    cleaned export can replace the original). For an image folder or ``.npz`` a label file
    ``<run>/labels.csv`` (``path,label``, from the samples the run trained on) is created
    once and used from then on.
    """
    data = Path(run.config().get("data", ""))
    target = run.path / REVIEW_LABEL_FILE
    if data.is_file() and data.suffix.lower() != ".npz":
        if not is_read_only(data):
            return data
        if not target.is_file():  # a read-only label file: review a working copy of it
            atomic_write_bytes(target, data.read_bytes())
        return target
    if not target.is_file():
        ids, labels = run.samples()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "label"])
        w.writerows(zip(ids, labels))
        atomic_write_bytes(target, buf.getvalue().encode("utf-8"))
    return target


# -- samples sent to review by hand --------------------------------------------------------

def review_requests(run: Run) -> list[str]:
    """Sample ids a user sent to the review queue from Explore (besides the flagged ones)."""
    try:
        items = json.loads((run.path / REVIEW_REQUESTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(x) for x in items] if isinstance(items, list) else []


def request_review(run: Run, sample_id: str) -> list[str]:
    """Add a sample to the run's review queue (kept on disk); returns the request list."""
    items = review_requests(run)
    if sample_id not in items:
        items.append(sample_id)
        _write_json(run.path / REVIEW_REQUESTS_FILE, items)
    return items


# -- ground truth (data sets with known noise) ---------------------------------------------

def truth_file(data_path: str | Path) -> Path | None:
    """``truth.csv`` (or ``<stem>.truth.csv``) beside a label file, if there is one."""
    p = Path(data_path)
    if not p.is_file() or p.suffix.lower() == ".npz":
        return None
    for cand in (p.with_name(f"{p.stem}.truth.csv"), p.with_name("truth.csv")):
        if cand.is_file():
            return cand
    return None


def load_truth(data_path: str | Path, ids: list[str]) -> np.ndarray | None:
    """Boolean ``is_noisy`` per sample id from the data set's truth file, or None.

    The truth file has columns ``path`` and ``is_noisy`` (1/0 or True/False), as written
    by ``sample_data/make_sample_data.py`` and :func:`sei_core.noise.write_noisy_label_file`.
    Returns None when there is no truth file or it does not cover every sample.
    """
    f = truth_file(data_path)
    if f is None:
        return None
    try:
        with open(f, newline="", encoding="utf-8-sig") as fh:
            rows = {r["path"]: r["is_noisy"] for r in csv.DictReader(fh)}
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return None
    truthy = {"1", "true", "yes", "y", "t"}
    try:
        return np.array([(rows[i] or "").strip().lower() in truthy for i in ids], dtype=bool)
    except KeyError:
        return None


# -- prompts ---------------------------------------------------------------------------------

def prompts_file(data) -> Path:
    """Where a data set's ``prompts.json`` lives (what :meth:`LabeledImages.prompts` reads)."""
    from .dataset import PROMPTS_FILE

    folder = data.source.parent if data.kind == "csv" else data.root
    return Path(folder) / PROMPTS_FILE


def save_prompts(data, prompts) -> Path:
    """Write ``prompts`` (a :class:`~sei_core.dataset.Prompts`) beside the data, atomically.

    Raises ValueError if the template has no ``{}`` for the class name.
    """
    prompts.for_classes(data.classes)  # validates the template
    target = prompts_file(data)
    _write_json(target, prompts.to_dict())
    return target
