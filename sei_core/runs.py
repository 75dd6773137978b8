"""The run directory: configuration, status, samples, per-run records and checkpoints.

Layout of ``runs/<name>/``::

    config.json     what was asked for (data, model, schedule, prompts …)
    status.json     where the run is (state, epoch, loss, accuracy, ETA, error, history); error_app
                    is the error in the app's words where they differ (see :func:`status_error`)
    samples.csv     the samples trained on: id, given label, CSV line
    log.txt         the training process's output
    cache/          decoded images (uint8), shared by the complementary runs and resumes
    run1/, run2/    one folder per complementary run: aux.npy (its auxiliary samples),
                    records/ (columnar, see :mod:`sei_core.records`), checkpoint.pt, done
    scores.csv      the ranked table, written when training finishes

Every file is replaced atomically (the record columns are filled in place, and an epoch
counts once the records' manifest is replaced), so a reader never sees half a file and a
killed process leaves the last complete epoch behind. A lock file held by the training process
tells whether it is alive: a run whose status says "running" but whose lock is free was
killed (state "interrupted") and can be resumed.

The lifecycle of a run, as ``status.json``'s ``state`` says it (:class:`State`)::

    created ──► running ──► finished
                   ├──────► failed     (error says why)
                   └──────► stopped    (asked to stop)

    failed, stopped, interrupted ──► running again when resumed (``jobs.resume`` marks it
                                     created first, until its process starts)

"interrupted" is never written: :meth:`Run.status` reads a "running" run whose lock is free
(its process is gone) as interrupted, and a folder without a run as "missing". Readers compare
with the members (``run.state() == State.FINISHED``, ``State(status["state"]).resumable``),
never with the strings. Each transition has one method on :class:`Run`
(:meth:`Run.mark_created`, :meth:`Run.mark_running`, :meth:`Run.mark_finished`,
:meth:`Run.mark_failed`, :meth:`Run.mark_stopped`) that writes the fields that go with it;
callers add their own (the plan, the pid …) as keywords.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from enum import StrEnum
from pathlib import Path

import numpy as np

from .errors import ANOTHER_OUT, Fix, SeiError, said
from .files import atomic_write, atomic_write_json
from .records import RecordStore

try:
    import fcntl
except ImportError:  # Windows: fall back to the pid recorded in the status
    fcntl = None


class State(StrEnum):
    """Where a run is; the value is the string ``status.json`` holds (and equals it)."""

    CREATED = "created"  # configured, waiting for a training process
    RUNNING = "running"  # a process holds the lock and trains
    FINISHED = "finished"  # scores.csv written
    FAILED = "failed"  # stopped by an error (``error`` says which)
    STOPPED = "stopped"  # asked to stop; resumable
    INTERRUPTED = "interrupted"  # read, never written: "running" with nobody holding the lock
    MISSING = "missing"  # read, never written: no run in the folder (no config.json)

    @property
    def active(self) -> bool:
        """Waiting for or held by a training process: its status still changes."""
        return self in (State.CREATED, State.RUNNING)

    @property
    def resumable(self) -> bool:
        """Stopped, interrupted or failed: resuming continues from the last complete epoch."""
        return self in (State.STOPPED, State.INTERRUPTED, State.FAILED)


STATES = tuple(s.value for s in State)


class RunError(SeiError):
    """A run directory is missing, incomplete or busy; the fix says what to do."""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def duration_text(seconds: float | None, unknown: str = "—") -> str:
    """A run's duration for people, to the second: ``1 h 05 min``, ``2 min 05 s``, ``5 s``;
    ``unknown`` when there is none yet (``eta_seconds`` before the first batches)."""
    if seconds is None:
        return unknown
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


class Run:
    """Handle on a run directory; cheap to create, reads files on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- files -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return (self.path / "config.json").is_file()

    def config(self) -> dict:
        try:
            return json.loads((self.path / "config.json").read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a run directory (no config.json)",
                           Fix("start one with `sei train DATA --out DIR`", "start one on the Train page")) from None

    def write_config(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(self.path / "config.json", config)

    def sub_run(self, index: int) -> Path:
        """Folder of complementary run ``index`` (1-based)."""
        return self.path / f"run{index}"

    def records(self, index: int, keep_probs: int = 5) -> RecordStore:
        """The record store of complementary run ``index``, sized for the configured epochs."""
        try:
            epochs = int(json.loads((self.path / "config.json").read_text())["epochs"])
        except (FileNotFoundError, KeyError, ValueError, TypeError):
            epochs = None
        return RecordStore(self.sub_run(index) / "records", keep_probs, capacity=epochs)

    def n_sub_runs(self) -> int:
        return int(self.config().get("runs", 2))

    def aux_file(self, index: int) -> Path:
        """Where complementary run ``index`` keeps the indices of its auxiliary samples."""
        return self.sub_run(index) / "aux.npy"

    def aux_indices(self, index: int) -> np.ndarray:
        return np.load(self.aux_file(index))

    def write_aux(self, index: int, indices) -> None:
        """Keep the auxiliary samples of complementary run ``index`` (an ``.npy`` of indices,
        replaced atomically), read back by :meth:`aux_indices`."""
        path = self.aux_file(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.save(f, indices))

    @property
    def log_file(self) -> Path:
        return self.path / "log.txt"

    def checkpoint(self, index: int) -> Path:
        return self.sub_run(index) / "checkpoint.pt"

    def is_done(self, index: int) -> bool:
        return (self.sub_run(index) / "done").is_file()

    def mark_done(self, index: int) -> None:
        (self.sub_run(index) / "done").write_text(now())

    # -- samples ---------------------------------------------------------------------
    def write_samples(self, ids: list[str], labels: list[str], rows=None) -> None:
        def save(f):
            text = io.StringIO()
            w = csv.writer(text)
            w.writerow(["id", "label", "line"])
            for i, (sid, lab) in enumerate(zip(ids, labels)):
                w.writerow([sid, lab, "" if rows is None else int(rows[i])])
            f.write(text.getvalue().encode("utf-8"))

        atomic_write(self.path / "samples.csv", save)

    def samples(self) -> tuple[list[str], list[str]]:
        """Sample ids and given label names, in training order."""
        import pandas as pd

        try:  # pandas' C parser, Python strings (object): a million rows in about half a second
            df = pd.read_csv(self.path / "samples.csv", usecols=["id", "label"], dtype=object,
                             keep_default_na=False, encoding="utf-8")
        except FileNotFoundError:
            raise RunError(f"{self.path} has no samples yet: training has not loaded the data") from None
        return df["id"].tolist(), df["label"].tolist()

    def sample_ids(self) -> list[str]:
        """The sample ids alone, in training order (:meth:`samples` without the labels; read
        with Arrow's CSV reader: a million ids in about 0.2 s)."""
        import pyarrow as pa
        import pyarrow.csv as pcsv

        try:
            table = pcsv.read_csv(
                self.path / "samples.csv", parse_options=pcsv.ParseOptions(newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(include_columns=["id"], column_types={"id": pa.string()},
                                                    strings_can_be_null=False, quoted_strings_can_be_null=False))
        except FileNotFoundError:
            raise RunError(f"{self.path} has no samples yet: training has not loaded the data") from None
        return table.column("id").to_pylist()

    # -- status ----------------------------------------------------------------------
    def status(self) -> dict:
        """The run's status; a "running" run whose process is gone reads as "interrupted".
        ``state`` is always one of :class:`State`'s values (:meth:`state` gives the member)."""
        try:
            st = json.loads((self.path / "status.json").read_text())
        except FileNotFoundError:
            st = {"state": (State.CREATED if self.exists() else State.MISSING).value}
        except json.JSONDecodeError:  # only possible if written by a foreign tool
            st = {"state": State.FAILED.value, "error": "status.json is unreadable"}
        st.setdefault("state", State.CREATED.value)  # fields written before the first mark
        if st["state"] not in STATES:  # a foreign tool's word
            st["error"] = f"status.json has an unknown state {st.get('state')!r}"
            st["state"] = State.FAILED.value
        if st.get("state") == State.RUNNING and not self.is_locked():
            st["state"] = State.INTERRUPTED.value
            st.setdefault("error", None)
            st["error"] = st["error"] or ("the training process stopped without finishing "
                                          "(killed or crashed); resume it to continue")
        return st

    def state(self) -> State:
        """Where the run is now (the ``state`` of :meth:`status`)."""
        return State(self.status()["state"])

    def trained_nothing(self) -> bool:
        """True for a run that failed before its first epoch ended (bad data, missing
        weights …): nothing of it is worth keeping, so a new ``sei train`` may replace it."""
        st = self.status()
        if st.get("state") != State.FAILED or st.get("history") or st.get("epoch"):
            return False
        return not any(p.name in ("checkpoint.pt", "done") for p in self.path.glob("run*/*"))

    def clear(self) -> None:
        """Remove everything of the run but its lock (the caller holds it): for a new run in the
        same folder over one that :meth:`trained_nothing`."""
        import shutil

        for p in self.path.iterdir():
            if p.name == ".lock":
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    def update_status(self, **fields) -> dict:
        """Merge ``fields`` into status.json (atomic) and return the new status. A change of
        state goes through the ``mark_*`` methods below. A new ``error`` drops the app's words of
        the previous one."""
        if "error" in fields:
            fields.setdefault("error_app", None)
        try:
            st = json.loads((self.path / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            st = {"created_at": now()}
        st.update(fields)
        st["updated_at"] = now()
        _write_json(self.path / "status.json", st)
        return st

    # -- the lifecycle (see the module docstring) ------------------------------------
    def mark_created(self, **fields) -> dict:
        """Configured, waiting for a training process (a new run, or one about to be resumed)."""
        return self.update_status(state=State.CREATED.value, phase="waiting to start", **fields)

    def mark_running(self, **fields) -> dict:
        """A training process has started: no error, ``started_at`` now."""
        return self.update_status(state=State.RUNNING.value, **fields, error=None, started_at=now())

    def mark_finished(self, **fields) -> dict:
        """Training is over and the scores are written: nothing left to wait for."""
        return self.update_status(state=State.FINISHED.value, phase="finished", **fields, eta_seconds=0,
                                  finished_at=now())

    def mark_failed(self, error: str | BaseException, **fields) -> dict:
        """Stopped by ``error`` (the exception, or the message people read); the records so far
        stay. A :class:`~sei_core.errors.SeiError` is kept in both vocabularies."""
        cli, app = said(error), said(error, app=True)
        return self.update_status(state=State.FAILED.value, error=cli, error_app=app if app != cli else None,
                                  **fields)

    def mark_stopped(self, **fields) -> dict:
        """Asked to stop; the last complete epoch stays and the run can be resumed."""
        return self.update_status(state=State.STOPPED.value, phase="stopped", **fields)

    # -- the lock held while training ------------------------------------------------
    @property
    def _lock_path(self) -> Path:
        return self.path / ".lock"

    def acquire(self, creating: bool = False):
        """Take the training lock, or raise RunError if another process holds it.

        ``creating``: the caller is about to create the run (the message then says that
        another process is creating or training a run in the same folder).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if creating:
                    raise RunError(f"{self.path} is being created or trained by another process "
                                   f"(pid {self.locked_pid() or '?'})", ANOTHER_OUT) from None
                raise RunError(f"{self.path} is being trained by another process",
                               Fix("stop it first (`sei stop`) or wait for it to finish",
                                   "stop it first (the Stop button on the Train page) or wait for it to finish")) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    @staticmethod
    def release(fd) -> None:
        os.close(fd)  # closing the descriptor drops the flock

    def is_locked(self) -> bool:
        """True while a training process holds this run."""
        if not self._lock_path.exists():
            return False
        if fcntl is None:
            return _pid_alive(self.locked_pid())
        fd = os.open(self._lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def locked_pid(self) -> int | None:
        try:
            return int(self._lock_path.read_text().strip() or 0) or None
        except (FileNotFoundError, ValueError):
            return None


def status_error(status: dict, app: bool = False) -> str | None:
    """The error a run's status records, in the command line's words or (``app``) the app's."""
    return (app and status.get("error_app")) or status.get("error")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def list_runs(folder: str | Path) -> list[Run]:
    """Runs found directly under ``folder``, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    runs = [Run(p) for p in folder.iterdir() if (p / "config.json").is_file()]
    return sorted(runs, key=lambda r: (r.path / "config.json").stat().st_mtime, reverse=True)
