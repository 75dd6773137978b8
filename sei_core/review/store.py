"""The review-decision store: records expert decisions on flagged samples.

Every decision (confirm / relabel / discard / undo) goes to two places: an append-only
SQLite audit log (who, when, what, before and after) and the label file itself, so the
label file holds the reviewed state and can be used for retraining directly.

What "at once" means
--------------------
A decision is **durable when the call returns**: it is committed to the log first (state
``pending``), and only then is the label file rewritten (atomically: a temporary file
renamed over it) and the decision marked ``applied``. A label file under
``coalesce_min_bytes`` (1 MB, some 20,000 rows) is rewritten within the call. A larger one,
whose rewrite costs more than a decision should wait for, is rewritten by a background
thread of the store: at once after a decision, but at most once per ``coalesce_s`` (0.5 s),
every decision logged meanwhile going into one rewrite (also :meth:`ReviewStore.flush`,
:meth:`ReviewStore.close`, and the interpreter's exit). So the file lags an acknowledged
decision by the time of about one or two rewrites (under a second at a million rows), and
readers of it only ever see a whole file. Everything the store itself answers
(:meth:`~ReviewStore.status_table`, conflicts, undo) already includes pending decisions.

Once the file has its review columns, a rewrite splices only the changed rows between the
unchanged bytes (when every row is one line), so it costs a copy of the file rather than
rendering every row; untouched rows keep their exact bytes.

Recovery
--------
Each decision sets absolute values (label, status, reviewer) on one row, so re-applying
the pending decisions in log order is idempotent. Opening a store (and any flush, from any
process) applies every pending decision to the file, whatever the file holds: a process
killed after the log commit is rolled *forward* (the decision was committed, so it counts,
even if the killed caller never saw the call return); one killed before the commit left
neither the log nor the file changed. Temporary files a killed rewrite left beside the
label file are removed then. The file therefore never holds a decision the log lacks, and
after recovery both tell the same story.

Concurrency
-----------
Two inter-process file locks: the *log lock* around each read-check-append of a decision
(milliseconds), and the *write lock* around a rewrite of the label file, which takes the
log lock only briefly to snapshot and to mark decisions applied, so a decision never waits
for a rewrite. The label file is re-read only when its size, inode or mtime changed (another
process or an editor wrote it); a stale screen is reported as a ``ConflictError``. A lock
held by another process for more than ``lock_timeout`` seconds raises ``LockTimeoutError``
naming the lock file and the holder's process id.

Layout for ``data/labels.csv`` (defaults)::

    data/labels.csv                                 the live label file
    data/labels.csv.sei-backup                      untouched original, made once
    data/.sei_review/labels.decisions.sqlite        decision log (WAL mode)
    data/.sei_review/labels.lock                    log lock
    data/.sei_review/labels.write.lock              label-file write lock

Test hook: the environment variable ``SEI_REVIEW_FAULT`` (comma-separated point names, read
once at import) makes the process SIGKILL itself at those points of a decision or rewrite
(``decide:before-commit``, ``decide:logged``, ``flush:backup``, ``flush:writing``,
``flush:replaced``, ``flush:marked``), so tests can kill a real process at every step.
Unset, it costs one truth test per point.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .. import access
from ..errors import SeiError
from ..files import atomic_write, file_lock, remove_temp_files
from ..labels import (COLUMN_FIX, LABEL_COL, PATH_COL, LabelTable, TableError, in_words, line_starts, read_table,
                     render_rows, render_table)


log = logging.getLogger(__name__)

ORIGINAL_LABEL_COL = "original_label"
STATUS_COL = "review_status"
REVIEWER_COL = "reviewed_by"
REVIEW_COLUMNS = (ORIGINAL_LABEL_COL, STATUS_COL, REVIEWER_COL)

CONFIRMED, RELABELED, DISCARDED = "confirmed", "relabeled", "discarded"
STATUSES = ("", CONFIRMED, RELABELED, DISCARDED)
ACTIONS = ("confirm", "relabel", "discard", "undo")
_STATUS_FOR_ACTION = {"confirm": CONFIRMED, "relabel": RELABELED, "discard": DISCARDED}

_BACKUP_SUFFIX = ".sei-backup"
_BUSY_TIMEOUT_S = 30.0  # SQLite wait for readers/checkpoints outside our file lock
DEFAULT_LOCK_TIMEOUT_S = 10.0
DEFAULT_COALESCE_S = 0.5
DEFAULT_COALESCE_MIN_BYTES = 1 << 20
_RETRY_S, _RETRY_MAX_S = 2.0, 60.0  # the background writer's retry interval after a failed rewrite

_FAULTS = frozenset(p.strip() for p in os.environ.get("SEI_REVIEW_FAULT", "").split(",") if p.strip())


def _fault(point: str) -> None:
    """Test hook: die here, as ``kill -9`` would, if ``SEI_REVIEW_FAULT`` names ``point``."""
    if _FAULTS and point in _FAULTS:
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- errors


class ReviewError(SeiError):
    """Base class of every error raised by the review store."""


class LabelFileError(ReviewError):
    """The label file is missing, unreadable, malformed, or could not be written."""


class LockTimeoutError(ReviewError):
    """Another process held the label file's lock for longer than the store's ``lock_timeout``."""


class UnknownSampleError(ReviewError, LookupError):
    """The given path is not a row of the label file."""


class UnknownLabelError(ReviewError, ValueError):
    """A relabel target is not one of the valid classes."""


class UndoError(ReviewError):
    """There is nothing (valid) to undo."""


class ExportError(ReviewError):
    """A clean export was refused or failed."""


class ConflictError(ReviewError):
    """The sample changed since the reviewer looked at it.

    ``latest`` is the most recent decision in effect for the sample (``None`` if
    the file was edited outside the review tool), so a UI can show who changed
    it, when, and to what, and offer to apply anyway with ``force=True``. ``reason`` is the
    message without the library's advice (``force=True``), for a UI that offers its own.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        latest: Decision | None,
        current_label: str,
        current_status: str,
        expected_label: str,
        expected_status: str,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.path = path
        self.latest = latest
        self.current_label = current_label
        self.current_status = current_status
        self.expected_label = expected_label
        self.expected_status = expected_status


# --------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class Decision:
    """One logged review action; ``undo`` entries name the decision they revert in ``undoes``."""

    id: int
    time: str  # UTC, ISO 8601
    reviewer: str
    path: str
    action: str  # one of ACTIONS
    old_label: str
    new_label: str
    old_status: str
    new_status: str
    sei: float | None
    undone: bool
    undoes: int | None = None
    old_reviewed_by: str = ""

    def summary(self) -> str:
        """Plain-words sentence, e.g. "dr_x relabeled 'a.png' from 'nevus' to 'melanoma' at 14:02 UTC on 2024-05-01"."""
        when = _human_time(self.time)
        if self.action == "relabel":
            what = f"relabeled '{self.path}' from '{self.old_label}' to '{self.new_label}'"
        elif self.action == "confirm":
            what = f"confirmed '{self.path}' as '{self.new_label}'"
        elif self.action == "discard":
            what = f"discarded '{self.path}'"
        else:
            what = (f"undid decision #{self.undoes} on '{self.path}' "
                    f"(back to label '{self.new_label}', status '{self.new_status or 'unreviewed'}')")
        return f"{self.reviewer} {what} at {when}"


def _human_time(iso: str) -> str:
    try:
        dt = datetime.fromisoformat(iso).astimezone(timezone.utc)
    except ValueError:
        return iso
    return dt.strftime("%H:%M UTC on %Y-%m-%d")


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- label file state


@dataclass
class _FileState:
    """The label file as last read or written by this process, with what a decision needs
    looked up in O(1): the row of each path and the labels allowed without a class list.

    ``frame`` may already hold pending decisions applied in place by a rewrite in progress;
    that is harmless, since every reader overlays the pending decisions on it again.
    """

    stat: tuple[int, int, int]  # (inode, size, mtime_ns) of the file the frame matches
    gen: int  # bumped whenever the file is re-read from disk (changed outside this process)
    table: LabelTable
    row: dict[str, int]  # stripped path -> row position
    known_labels: frozenset[str]
    cols: tuple[int, int, int, int, int]  # positions of path, label, original_label, status, reviewed_by
    raw: bytes  # the file's bytes (what ``frame`` was read from, or last written)
    starts: np.ndarray  # sei_core.labels.line_starts(raw)
    complete: bool  # the file on disk has every review column
    multiline: bool  # a cell holds a line break, so rows are not lines

    @property
    def spliceable(self) -> bool:
        """A rewrite may splice just the changed rows into ``raw`` (see :func:`_rewrite`)."""
        return self.complete and not self.multiline

    @property
    def frame(self) -> pd.DataFrame:
        return self.table.frame

    def cell(self, i: int, which: int) -> str:
        return str(self.table.frame.iat[i, self.cols[which]]).strip()


def _file_stat(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _load_file(path: Path, gen: int, path_column: str = PATH_COL, label_column: str = LABEL_COL) -> _FileState:
    """Read and validate the label file (any dialect :func:`sei_core.labels.read_table` reads),
    its image paths and labels in ``path_column`` and ``label_column``."""
    try:
        before = _file_stat(path)
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabelFileError(
            f"Label file {path} does not exist. Check the path, or create a CSV with "
            f"'path' and 'label' columns."
        ) from None
    except OSError as exc:
        raise LabelFileError(f"Cannot read label file {path}: {exc}. Check its permissions.") from None
    taken = [c for c in (path_column, label_column) if c in REVIEW_COLUMNS]
    if taken:
        raise LabelFileError(f"Label file {path}: the review writes its own column {in_words(taken)}, so it "
                             "cannot be the path or label column", COLUMN_FIX)
    try:
        table = read_table(path, raw=raw, path_column=path_column, label_column=label_column)
    except TableError as exc:
        raise LabelFileError(f"Label file {path}: {exc.reason}", exc.fix) from None
    frame = table.frame
    complete = all(c in frame.columns for c in REVIEW_COLUMNS)
    # Without a quote character no cell can hold a line break; with one, look.
    multiline = table.dialect.quotechar.encode() in raw and bool(
        frame.apply(lambda c: c.str.contains("[\r\n]", regex=True)).to_numpy().any())
    # column operations on the reader's text columns first (fast), then object columns: they
    # are set cell by cell on every decision, O(1) as objects
    n = len(frame)
    labels = _stripped(frame[table.label_column])
    unset = np.ones(n, dtype=bool)  # rows never reviewed: no original label and no status yet
    for col in (ORIGINAL_LABEL_COL, STATUS_COL):
        if col in frame.columns:
            unset &= (_stripped(frame[col]) == "").to_numpy(dtype=bool)
    known = set(labels.unique().tolist())
    if ORIGINAL_LABEL_COL in frame.columns:
        known |= set(_stripped(frame[ORIGINAL_LABEL_COL]).unique().tolist())
    for col in (table.label_column, *REVIEW_COLUMNS):
        frame[col] = frame[col].astype(object) if col in frame.columns else np.full(n, "", dtype=object)
    if unset.any():
        frame[ORIGINAL_LABEL_COL] = np.where(unset, labels.to_numpy(dtype=object),
                                             frame[ORIGINAL_LABEL_COL].to_numpy(dtype=object))
    paths = table.paths()
    row = dict(zip(paths.tolist(), range(len(paths))))
    dup = paths[paths.duplicated()].unique().tolist() if len(row) < len(paths) else []
    if dup:
        shown = ", ".join(repr(p) for p in dup[:5]) + (" ..." if len(dup) > 5 else "")
        raise LabelFileError(
            f"Label file {path} lists {len(dup)} path(s) more than once ({shown}). "
            f"Each image must appear on exactly one row; remove the duplicates."
        )
    known = frozenset(str(k) for k in known) - {""}
    cols = tuple(frame.columns.get_loc(c) for c in (table.path_column, table.label_column, *REVIEW_COLUMNS))
    return _FileState(stat=before, gen=gen, table=table, row=row, known_labels=known, cols=cols,
                      raw=raw, starts=line_starts(raw), complete=complete, multiline=multiline)


def _stripped(column: pd.Series) -> pd.Series:
    """``column.str.strip()`` computed on Arrow strings (object columns: a Python call per cell)."""
    if column.dtype == object:
        column = column.astype("string[pyarrow]")
    return column.str.strip()


def is_read_only(label_file: str | os.PathLike[str]) -> bool:
    """True if the label file or its folder is marked read-only.

    The permission bits are read as well as ``os.access``: the superuser may write anywhere,
    but a file the owner marked read-only (a shared, reference copy) is left alone.
    """
    f = Path(label_file)
    folder = f.absolute().parent
    for p in (f, folder):
        if not os.access(p, os.W_OK) or not (p.stat().st_mode & 0o222):
            return True
    return False


# --------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    path TEXT NOT NULL,
    action TEXT NOT NULL,
    old_label TEXT NOT NULL,
    new_label TEXT NOT NULL,
    old_status TEXT NOT NULL,
    new_status TEXT NOT NULL,
    sei REAL,
    undone INTEGER NOT NULL DEFAULT 0,
    undoes INTEGER NULL REFERENCES decisions(id),
    old_reviewed_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS decisions_by_path ON decisions(path, id);
CREATE INDEX IF NOT EXISTS decisions_by_reviewer ON decisions(reviewer, id);
"""
# Added later (older logs are migrated; their decisions were all written to the file):
# applied = 0 while the label file may not hold the decision yet; new_reviewed_by = the
# reviewed_by cell the decision sets (the reviewer, or for an undo the one it restores).
_MIGRATIONS = (
    ("applied", "ALTER TABLE decisions ADD COLUMN applied INTEGER NOT NULL DEFAULT 1"),
    ("new_reviewed_by", "ALTER TABLE decisions ADD COLUMN new_reviewed_by TEXT"),
    # How the image came to be shown (issue 22, the count from the decisions): its rank in the
    # queue's static order, the audit population's size, whether it was an audit pick and the
    # audit share then. NULL in older logs: such decisions count as ones in queue order.
    ("q_rank", "ALTER TABLE decisions ADD COLUMN q_rank INTEGER"),
    ("q_population", "ALTER TABLE decisions ADD COLUMN q_population INTEGER"),
    ("q_audit", "ALTER TABLE decisions ADD COLUMN q_audit INTEGER"),
    ("q_share", "ALTER TABLE decisions ADD COLUMN q_share REAL"),
    # An audit pick's draw weight (review_count.audit_weights); NULL: a uniform draw (weight 1).
    ("q_weight", "ALTER TABLE decisions ADD COLUMN q_weight REAL"),
)
#: SQL: an audit pick's draw weight, 0 for a decision in order (NULL weight: a uniform draw, 1).
_AUDIT_WEIGHT = "(CASE WHEN q_audit = 1 THEN COALESCE(q_weight, 1.0) ELSE 0.0 END)"
_PENDING_INDEX = "CREATE INDEX IF NOT EXISTS decisions_pending ON decisions(id) WHERE applied = 0"

_COLUMNS = ("id, time, reviewer, path, action, old_label, new_label, old_status, "
            "new_status, sei, undone, undoes, old_reviewed_by")


def _decision_from_row(row: sqlite3.Row) -> Decision:
    return Decision(
        id=row["id"], time=row["time"], reviewer=row["reviewer"], path=row["path"],
        action=row["action"], old_label=row["old_label"], new_label=row["new_label"],
        old_status=row["old_status"], new_status=row["new_status"], sei=row["sei"],
        undone=bool(row["undone"]), undoes=row["undoes"], old_reviewed_by=row["old_reviewed_by"],
    )


@dataclass(frozen=True)
class Sampling:
    """How a decided image came to be shown, logged with the decision (what the count from
    the decisions needs, :mod:`sei_core.review_count`).

    ``rank``: the image's position in the queue's static order (0 = most suspicious);
    ``population``: how many images an audit pick was drawn from at that moment (the
    not-yet-reviewed ones); ``audit``: drawn at random (True) or next in the static order;
    ``share``: the audit share in effect; ``weight``: an audit pick's draw weight
    (:func:`sei_core.review_count.audit_weights`) relative to the mean weight of the images it
    was drawn from (1 for a uniform draw). An audit pick's inclusion probability at its draw is
    ``share · weight / population``.
    """

    rank: int
    population: int
    audit: bool
    share: float
    weight: float = 1.0

    @property
    def inclusion_probability(self) -> float:
        return self.share * self.weight / self.population if self.audit and self.population else float("nan")


@dataclass
class _Status:
    """The reviewed state of every row as plain object arrays, updated in place per decision
    (a pandas string column would copy all of itself for each changed cell)."""

    gen: int  # the _FileState generation it was built from
    last: int  # the last decision id it includes
    paths: pd.Index
    cols: dict[str, np.ndarray]  # label, original_label, review_status, reviewed_by
    row: dict[str, int] = None  # the file's row of each path (_FileState.row)
    table: pd.DataFrame | None = None
    by_path: pd.Series | None = None

    def apply(self, row: dict[str, int], decisions: Sequence[tuple]) -> None:
        lab, orig, st, by = (self.cols[c] for c in (LABEL_COL, *REVIEW_COLUMNS))
        for _, path, new_label, new_status, new_by in decisions:
            i = row.get(path)
            if i is None:
                continue
            if orig[i] == "" and st[i] == "":
                orig[i] = lab[i]
            lab[i], st[i], by[i] = new_label, new_status, new_by or ""

    def frames(self) -> tuple[pd.DataFrame, pd.Series]:
        if self.table is None:  # copies: a frame handed out never changes under its holder
            self.table = pd.DataFrame({PATH_COL: self.paths.to_numpy(), **self.cols}, dtype=object, copy=True)
            self.by_path = pd.Series(self.cols[STATUS_COL], index=self.paths, dtype=object, copy=True)
        return self.table, self.by_path


# Stores with decisions not yet in their label file, flushed when the interpreter exits.
_OPEN_STORES: "weakref.WeakSet[ReviewStore]" = weakref.WeakSet()


@atexit.register
def _flush_open_stores() -> None:
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):
            store.close()


# --------------------------------------------------------------------------- store


class ReviewStore:
    """Applies and logs review decisions for one label CSV.

    Safe to share between threads and to use from several processes at once: every
    operation opens its own SQLite connection and takes the inter-process locks.

    Parameters
    ----------
    label_file : the CSV (any dialect training reads; written back in its own dialect).
    db_path : the decision log (default ``.sei_review/<stem>.decisions.sqlite`` beside it).
    classes : the labels a relabel may use; if ``None``, any non-empty label already in the
        file (``label`` or ``original_label``) is allowed.
    lock_timeout : seconds to wait for a lock held by another process before
        ``LockTimeoutError``.
    coalesce_s, coalesce_min_bytes : a label file of at least ``coalesce_min_bytes`` is
        rewritten at most once per ``coalesce_s`` seconds (see the module docstring); a
        smaller one within every decision.
    path_column, label_column : the file's columns of image path and label (a run's are
        :func:`review_columns`). Decisions change only cells of the label column and the
        review columns; every other byte of the file stays as it was.
    """

    def __init__(
        self,
        label_file: str | os.PathLike[str],
        db_path: str | os.PathLike[str] | None = None,
        *,
        classes: Sequence[str] | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        coalesce_s: float = DEFAULT_COALESCE_S,
        coalesce_min_bytes: int = DEFAULT_COALESCE_MIN_BYTES,
        path_column: str = PATH_COL,
        label_column: str = LABEL_COL,
    ) -> None:
        self.label_file = Path(label_file).absolute()
        access.check(self.label_file, "the label file")  # where data roots are set (sei_core.access)
        self.path_column, self.label_column = str(path_column).strip(), str(label_column).strip()
        default_db = self.label_file.parent / ".sei_review" / f"{self.label_file.stem}.decisions.sqlite"
        self.db_path = Path(db_path).absolute() if db_path is not None else default_db
        access.check(self.db_path, "the decision log")
        self.lock_path = self.db_path.parent / f"{self.label_file.stem}.lock"
        self.write_lock_path = self.db_path.parent / f"{self.label_file.stem}.write.lock"
        self.backup_path = Path(str(self.label_file) + _BACKUP_SUFFIX)
        self.classes: list[str] | None = None if classes is None else [str(c) for c in classes]
        self.lock_timeout = float(lock_timeout)
        self.coalesce_s = float(coalesce_s)
        self.coalesce_min_bytes = int(coalesce_min_bytes)
        #: The last error of a background rewrite (the decisions stay pending and are retried).
        self.flush_error: Exception | None = None
        # Guards the caches and the timer below; held only briefly and never while waiting
        # for a file lock (file locks are always taken first), so it cannot deadlock.
        self._mutex = threading.Lock()
        self._state: _FileState | None = None
        self._gen = 0
        self._status: _Status | None = None
        self._timer: threading.Timer | None = None
        self._local = threading.local()  # per-thread SQLite connection
        self._retry_s = _RETRY_S
        self._last_write = -float("inf")  # time.monotonic() at the end of the last rewrite
        self._state = self._load(0)  # fail early on a bad file
        if is_read_only(self.label_file):
            raise LabelFileError(
                f"{self.label_file} is read-only (the file or its folder has no write permission). "
                "Review a writable copy instead, e.g. copy the file (and keep its image paths valid), "
                "or make the folder writable.")
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(), self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            have = {r["name"] for r in conn.execute("PRAGMA table_info(decisions)")}
            for col, sql in _MIGRATIONS:
                if col not in have:
                    conn.execute(sql)
            conn.execute(_PENDING_INDEX)
        self.flush()  # recovery: apply what a killed process left pending, remove its temp files

    # ----------------------------------------------------------------- actions

    def confirm(self, path: str, reviewer: str, expected_label: str, sei: float | None = None,
                *, expected_status: str = "", force: bool = False, sampling: Sampling | None = None) -> Decision:
        """Mark the current label as correct. ``sampling``: how the image came to be shown
        (:meth:`ReviewQueue.sampling`), logged for the count."""
        return self._decide("confirm", path, reviewer, expected_label, expected_status, sei, force,
                            sampling=sampling)

    def relabel(self, path: str, new_label: str, reviewer: str, expected_label: str,
                sei: float | None = None, *, expected_status: str = "", force: bool = False,
                sampling: Sampling | None = None) -> Decision:
        """Replace the label with ``new_label`` (must be a valid class)."""
        return self._decide("relabel", path, reviewer, expected_label, expected_status, sei, force,
                            new_label=new_label, sampling=sampling)

    def discard(self, path: str, reviewer: str, expected_label: str, sei: float | None = None,
                *, expected_status: str = "", force: bool = False, sampling: Sampling | None = None) -> Decision:
        """Mark the sample as unusable; the row stays in the file with status 'discarded'."""
        return self._decide("discard", path, reviewer, expected_label, expected_status, sei, force,
                            sampling=sampling)

    def estimation_decisions(self) -> pd.DataFrame:
        """The decisions in effect (not undone, not undos), one row per image (its latest), in
        log order, with what the count needs: ``id, path, reviewer, status`` (the status it
        set) and the logged :class:`Sampling` (``rank, population, audit, share, weight``;
        NaN/None in older logs, weight 1). Undone decisions are left out, so an undo takes its decision out of
        the count too."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, path, reviewer, new_status, q_rank, q_population, q_audit, q_share, "
                "COALESCE(q_weight, 1.0) FROM decisions WHERE action != 'undo' AND undone = 0 ORDER BY id").fetchall()
        df = pd.DataFrame([tuple(r) for r in rows], columns=["id", "path", "reviewer", "status", "rank",
                                                             "population", "audit", "share", "weight"])
        df = df.drop_duplicates("path", keep="last").reset_index(drop=True)
        df["audit"] = df["audit"].fillna(0).astype(bool)
        df["weight"] = df["weight"].astype(float)
        return df

    def decisions_since(self, last_id: int) -> list[tuple]:
        """``(id, path, action, new_status, audit_weight)`` of every decision logged after
        ``last_id``, in log order: ``audit_weight`` is an audit pick's draw weight and 0 for a
        decision in order (an undo names the decision it reverts there instead). What
        :meth:`ReviewQueue.count` reads after each decision, O(new decisions)."""
        with self._connect() as conn:
            return [tuple(r) for r in conn.execute(
                f"SELECT id, path, action, new_status, CASE WHEN action = 'undo' THEN undoes ELSE {_AUDIT_WEIGHT} END "
                "FROM decisions WHERE id > ? ORDER BY id", (int(last_id),))]

    def decision_in_effect(self, path: str) -> tuple | None:
        """``(id, path, action, new_status, audit_weight)`` of the latest decision in effect on
        ``path`` (not undone, not an undo), or None: what an undo leaves the image with, read
        by the path index (O(decisions on that path), not O(log))."""
        with self._connect() as conn:
            r = conn.execute(
                f"SELECT id, path, action, new_status, {_AUDIT_WEIGHT} FROM decisions WHERE path = ? AND "
                "action != 'undo' AND undone = 0 ORDER BY id DESC LIMIT 1", (str(path),)).fetchone()
        return None if r is None else tuple(r)

    def decided_paths(self, reviewer: str) -> list[str]:
        """The images ``reviewer`` decided (decisions in effect), in the order decided, each
        once (at its latest decision): what "Previous" walks back through."""
        reviewer = str(reviewer).strip()
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT path, MAX(id) AS last FROM decisions WHERE reviewer = ? AND action != 'undo' "
                "AND undone = 0 GROUP BY path ORDER BY last", (reviewer,)).fetchall()
        return [r[0] for r in rows]

    def undo(self, reviewer: str, decision_id: int | None = None, *, force: bool = False) -> Decision:
        """Revert ``reviewer``'s latest not-yet-undone decision, or decision ``decision_id``.

        Restores the label, status and reviewed_by the sample had before that
        decision, marks it undone and logs an ``undo`` entry. Only reverts if the
        sample still is in the state that decision left it in; if someone acted
        on it since, raises ``ConflictError`` (``force=True`` reverts anyway).
        """
        reviewer = _check_reviewer(reviewer)
        with self._locked(), self._connect() as conn:
            target = self._undo_target(conn, reviewer, decision_id)
            state = self._current_file()
            _, label, status, _ = self._row_now(conn, state, target.path)
            if not force and (label, status) != (target.new_label, target.new_status):
                raise self._conflict(conn, target.path, label, status, target.new_label,
                                     target.new_status, undoing=target)
            d = self._log(conn, state, target.path, action="undo", reviewer=reviewer,
                          new_label=target.old_label, new_status=target.old_status,
                          new_reviewed_by=target.old_reviewed_by, sei=target.sei, undoes=target.id)
        self._write_back()
        return d

    # ----------------------------------------------------------------- write-back

    def flush(self) -> int:
        """Write every pending decision (of any process) to the label file in one atomic
        rewrite, then mark them applied. Returns how many were pending.

        Also removes temporary files a killed rewrite left beside the label file.
        Raises ``LabelFileError`` if the file cannot be written; the decisions stay pending.
        """
        with self._mutex:
            self._cancel_timer()
        with self._locked(self.write_lock_path):
            return self._flush_locked()

    def close(self) -> None:
        """Write pending decisions to the label file, stop the background writer and close
        this thread's connection to the log."""
        self.flush()
        _OPEN_STORES.discard(self)
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            self._local.conn = None
            conn.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pending(self) -> int:
        """How many logged decisions the label file may not hold yet."""
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM decisions WHERE applied = 0").fetchone()[0]

    # ----------------------------------------------------------------- queries

    def decisions(self, path: str | None = None, include_undone: bool = True) -> list[Decision]:
        """All logged decisions (oldest first), optionally for one path and without undone ones."""
        sql = f"SELECT {_COLUMNS} FROM decisions"
        where, args = [], []
        if path is not None:
            where.append("path = ?")
            args.append(path)
        if not include_undone:
            where.append("undone = 0")
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect() as conn:
            return [_decision_from_row(r) for r in conn.execute(sql + " ORDER BY id", args)]

    def recent_decisions(self, n: int) -> list[Decision]:
        """The ``n`` most recent logged decisions, newest first (what a page lists; the whole
        log grows with every decision)."""
        with self._connect() as conn:
            return [_decision_from_row(r) for r in
                    conn.execute(f"SELECT {_COLUMNS} FROM decisions ORDER BY id DESC LIMIT ?", (int(n),))]

    def latest_decision(self, path: str) -> Decision | None:
        """The most recent decision still in effect for ``path`` (may be an ``undo`` entry), or None."""
        with self._connect() as conn:
            return self._latest(conn, path)

    def status_table(self) -> pd.DataFrame:
        """path, label, original_label, review_status, reviewed_by of every row, as reviewed
        (pending decisions included; path and label without surrounding spaces). ``path`` and
        ``label`` are the cells of the store's path and label columns, whatever their names.

        Cached per label-file version and log position, and brought up to date with only the
        decisions logged since, so calling it on every page rerun is cheap. The frame is
        shared between callers: do not modify it.
        """
        return self._status_now()[0]

    def progress(self, paths: Iterable[str]) -> tuple[int, int]:
        """(reviewed, total) over the distinct given paths; paths not in the file count as unreviewed."""
        wanted = pd.unique(pd.Series(list(paths), dtype=object))
        status = self._status_now()[1]
        got = status.reindex(wanted)
        reviewed = int((got.fillna("") != "").sum())
        return reviewed, len(wanted)

    def statuses(self, paths: Sequence[str]) -> np.ndarray:
        """The review status of each path (``None`` for a path not in the label file)."""
        status = self._status_now()[1]
        got = status.reindex(pd.Index(list(paths), dtype=object))
        return got.astype(object).where(got.notna(), None).to_numpy(dtype=object)

    def export_clean(self, out_path: str | os.PathLike[str], class_names: dict[str, str] | None = None) -> int:
        """Write a label file without discarded rows (provenance columns kept); returns rows written.

        ``class_names`` (code -> display name, e.g. ``nv`` -> ``melanocytic nevus``): a column
        ``<label column>_name`` is added after the review columns with each row's name (the
        label column keeps its codes).

        Written in the label file's dialect. Image paths relative to the label file's folder
        are rewritten relative to the export's folder (absolute where no relative path exists,
        e.g. another drive), so the export can be used where it is; the written paths are
        checked to reach the same images (``ExportError`` otherwise). Cells that do not name
        an existing file from the label file's folder (ids of an ``.npz``) are kept as they are.
        """
        out = Path(out_path).absolute()
        access.check(out, "the export")
        protected = {self.label_file.resolve(): "the live label file",
                     self.backup_path.resolve(): "the backup of the original label file"}
        for guarded, what in protected.items():
            if out.resolve() == guarded or (out.exists() and guarded.exists() and os.path.samefile(out, guarded)):
                raise ExportError(
                    f"Refusing to export to {out}: that is {what}, and the export leaves out "
                    f"discarded rows. Choose a different output path, e.g. {self.label_file.with_suffix('.clean.csv')}."
                )
        with self._locked(), self._connect() as conn:
            state = self._current_file()
            frame = state.frame.copy()
            pending = self._pending(conn)
        _apply(state, frame, pending)
        clean = frame[frame[STATUS_COL].str.strip() != DISCARDED].copy()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"Could not create the folder of {out}: {exc}.") from exc
        pc = state.table.path_column
        clean[pc] = _paths_for(clean[pc], self.label_file.parent, out.parent)
        if class_names:
            codes = clean[state.table.label_column].str.strip()
            clean[f"{state.table.label_column.strip()}_name"] = codes.map(lambda c: class_names.get(c, c))
        try:
            data = render_table(state.table, clean)
            atomic_write(out, lambda fh: fh.write(data))
        except OSError as exc:
            raise ExportError(f"Could not write the clean export to {out}: {exc}. "
                              f"Check that the folder is writable and has free space.") from exc
        return len(clean)

    # ----------------------------------------------------------------- internals

    def _decide(self, action: str, path: str, reviewer: str, expected_label: str,
                expected_status: str, sei: float | None, force: bool,
                new_label: str | None = None, sampling: Sampling | None = None) -> Decision:
        reviewer = _check_reviewer(reviewer)
        if expected_status not in STATUSES:
            raise ReviewError(f"expected_status must be one of {list(STATUSES)}, got {expected_status!r}.")
        with self._locked(), self._connect() as conn:
            state = self._current_file()
            _, label, status, _ = self._row_now(conn, state, path)
            if new_label is not None:
                self._check_label(new_label, state)
            if not force and (label != expected_label or status != expected_status):
                raise self._conflict(conn, path, label, status, expected_label, expected_status)
            d = self._log(conn, state, path, action=action, reviewer=reviewer,
                          new_label=label if new_label is None else new_label,
                          new_status=_STATUS_FOR_ACTION[action], new_reviewed_by=reviewer,
                          sei=None if sei is None else float(sei), undoes=None, sampling=sampling)
        self._write_back()
        return d

    def _log(self, conn: sqlite3.Connection, state: _FileState, path: str, *, action: str,
             reviewer: str, new_label: str, new_status: str, new_reviewed_by: str,
             sei: float | None, undoes: int | None, sampling: Sampling | None = None) -> Decision:
        """Commit the decision to the log as pending (caller holds the log lock)."""
        _, old_label, old_status, old_by = self._row_now(conn, state, path)
        stamp = _utc_now()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT INTO decisions (time, reviewer, path, action, old_label, new_label, "
                "old_status, new_status, sei, undone, undoes, old_reviewed_by, applied, new_reviewed_by, "
                "q_rank, q_population, q_audit, q_share, q_weight) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
                (stamp, reviewer, path, action, old_label, new_label, old_status, new_status,
                 sei, undoes, old_by, new_reviewed_by,
                 *((None,) * 5 if sampling is None else
                   (int(sampling.rank), int(sampling.population), int(bool(sampling.audit)),
                    float(sampling.share), float(sampling.weight) if sampling.audit else None))),
            )
            decision_id = cur.lastrowid
            if undoes is not None:
                conn.execute("UPDATE decisions SET undone = 1 WHERE id = ?", (undoes,))
            _fault("decide:before-commit")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        _fault("decide:logged")
        _OPEN_STORES.add(self)
        assert decision_id is not None
        return Decision(id=decision_id, time=stamp, reviewer=reviewer, path=path, action=action,
                        old_label=old_label, new_label=new_label, old_status=old_status,
                        new_status=new_status, sei=sei, undone=False, undoes=undoes,
                        old_reviewed_by=old_by)

    def _write_back(self) -> None:
        """After a logged decision: rewrite a small label file now; leave a large one to the
        background writer, which starts at once unless it wrote less than ``coalesce_s`` ago."""
        with self._mutex:
            wait = max(0.0, self._last_write + self.coalesce_s - time.monotonic())
            state = self._state
            large = state is not None and state.stat[1] >= self.coalesce_min_bytes
            if large:
                self._schedule(wait)
                return
        try:
            self.flush()
        except LockTimeoutError:  # another process holds the file for long: the decision is logged
            with self._mutex:
                self._schedule(self.coalesce_s)
        except LabelFileError as exc:
            raise LabelFileError(
                f"{exc} The decision itself is saved in the decision log {self.db_path} and "
                f"will be written to the label file as soon as it can be (the next decision, "
                f"or reopening the file, retries).") from exc

    def _schedule(self, wait: float) -> None:
        """Start the background writer in ``wait`` seconds unless it is already due (caller
        holds ``_mutex``)."""
        if self._timer is None:
            self._timer = threading.Timer(wait, self._background_flush)
            self._timer.daemon = True
            self._timer.start()

    def _background_flush(self) -> None:
        with self._mutex:
            self._timer = None
        try:
            self.flush()
            self.flush_error, self._retry_s = None, _RETRY_S
        except Exception as exc:  # kept pending in the log; retried (also by flush() or reopening)
            self.flush_error = exc
            log.warning("could not write pending review decisions to %s (retrying in %.0f s): %s",
                        self.label_file, self._retry_s, exc)
            with self._mutex:
                self._schedule(self._retry_s)
                self._retry_s = min(2 * self._retry_s, _RETRY_MAX_S)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush_locked(self) -> int:
        """The rewrite itself; the caller holds the write lock (and so may remove temp files)."""
        remove_temp_files(self.label_file.resolve())
        remove_temp_files(self.backup_path)
        with self._locked(), self._connect() as conn:
            state = self._current_file()
            pending = self._pending(conn)
        if not pending:
            return 0
        last_id = pending[-1][0]
        _apply(state, state.frame, pending)  # in place: see _FileState
        data = _rewrite(state, pending)
        target = self.label_file.resolve()
        written: list[tuple[int, int, int]] = []

        def write(fh) -> None:
            half = len(data) // 2
            fh.write(data[:half])
            _fault("flush:writing")
            fh.write(data[half:])
            fh.flush()
            st = os.fstat(fh.fileno())
            written.append((st.st_ino, st.st_size, st.st_mtime_ns))

        try:
            if not self.backup_path.exists():
                with open(target, "rb") as src:
                    atomic_write(self.backup_path, lambda fh: shutil.copyfileobj(src, fh, 1 << 20))
            _fault("flush:backup")
            atomic_write(target, write)
        except OSError as exc:
            with self._mutex:  # the in-place frame no longer matches the file: re-read it next time
                if self._state is state:
                    self._state = None
            raise LabelFileError(
                f"Could not write label file {self.label_file}: {exc}. Check that the folder is "
                f"writable and has free space; {len(pending)} decision(s) are kept in the decision "
                f"log until then.") from exc
        _fault("flush:replaced")
        starts = line_starts(data)
        with self._locked(), self._connect() as conn:
            conn.execute("UPDATE decisions SET applied = 1 WHERE applied = 0 AND id <= ?", (last_id,))
            with self._mutex:
                if self._state is state:
                    state.stat, state.raw, state.starts = written[0], data, starts
                    if not state.complete or state.multiline:  # written whole: one row per line now
                        state.table.lines = np.arange(2, len(state.frame) + 2, dtype=np.int64)
                    state.complete = True
        _fault("flush:marked")
        self._last_write = time.monotonic()
        return len(pending)

    def _current_file(self) -> _FileState:
        """The label file's state, re-read only if the file changed on disk (caller holds the log lock)."""
        try:
            now = _file_stat(self.label_file)
        except FileNotFoundError:
            raise LabelFileError(f"Label file {self.label_file} no longer exists. Restore it (e.g. from "
                                 f"{self.backup_path}) and reload.") from None
        with self._mutex:
            if self._state is not None and self._state.stat == now:
                return self._state
            self._gen += 1
            self._state = self._load(self._gen)
            return self._state

    def _load(self, gen: int) -> _FileState:
        return _load_file(self.label_file, gen, self.path_column, self.label_column)

    @staticmethod
    def _pending(conn: sqlite3.Connection) -> list[tuple[int, str, str, str, str]]:
        return [tuple(r) for r in conn.execute(
            "SELECT id, path, new_label, new_status, COALESCE(new_reviewed_by, reviewer) "
            "FROM decisions WHERE applied = 0 ORDER BY id")]

    def _row_now(self, conn: sqlite3.Connection, state: _FileState, path: str) -> tuple[int, str, str, str]:
        """(row, label, status, reviewed_by) of ``path`` as reviewed: the file overlaid with
        its latest pending decision."""
        idx = state.row.get(path)
        if idx is None:
            raise UnknownSampleError(
                f"No row with path {path!r} in label file {self.label_file}. The file may have been "
                f"replaced or the path spelled differently; reload the file and pick the sample again."
            )
        r = conn.execute(
            "SELECT new_label, new_status, COALESCE(new_reviewed_by, reviewer) FROM decisions "
            "WHERE path = ? AND applied = 0 ORDER BY id DESC LIMIT 1", (path,)).fetchone()
        if r is not None:
            return idx, r[0], r[1], r[2]
        return idx, state.cell(idx, 1), state.cell(idx, 3), state.cell(idx, 4)

    def changes(self, since: tuple[int, int] | None) -> tuple[tuple[int, int], list[tuple[str, str, str, str]] | None]:
        """What changed since ``since``, a mark an earlier call returned (None: nothing known).

        Returns the new mark and ``(path, label, review_status, reviewed_by)`` of every
        decision logged since, in log order — or None in place of the list when the label
        file itself was replaced meanwhile (another program wrote it) or nothing was known:
        then read every row again (:meth:`status_of`). O(decisions since), not O(rows): what
        a page calls on every rerun to keep its own copy of some rows current.
        """
        with self._locked(), self._connect() as conn:
            state = self._current_file()
            if since is None or since[0] != state.gen:
                last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0]
                return (state.gen, last), None
            rows = conn.execute(
                "SELECT id, path, new_label, new_status, COALESCE(new_reviewed_by, reviewer) "
                "FROM decisions WHERE id > ? ORDER BY id", (since[1],)).fetchall()
        return (state.gen, rows[-1][0] if rows else since[1]), [tuple(r[1:]) for r in rows]

    def status_of(self, paths: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The reviewed state of some rows: ``present`` (False for a path not in the file) and
        object arrays of ``label``, ``original_label``, ``review_status``, ``reviewed_by`` (as
        :meth:`status_table` has them, ``""`` where absent), in the order of ``paths``. Costs
        O(len(paths) + pending decisions), not O(rows): the file's cells of those rows with
        the pending decisions laid over them."""
        with self._locked(), self._connect() as conn:
            state = self._current_file()
            pending = self._pending(conn)
            with self._mutex:
                at = np.fromiter((state.row.get(p, -1) for p in paths), dtype=np.int64, count=len(paths))
                present = at >= 0
                rows = at[present]
                cols = {}
                for c, col in ((LABEL_COL, state.table.label_column), *((r, r) for r in REVIEW_COLUMNS)):
                    cells = state.frame[col].to_numpy(dtype=object)[rows]
                    out = np.full(len(paths), "", dtype=object)
                    out[present] = [str(v) if c == REVIEWER_COL else str(v).strip() for v in cells]
                    cols[c] = out
        if pending:
            where = {p: i for i, p in enumerate(paths)}
            for _, path, label, status, by in pending:  # in log order: the latest wins
                i = where.get(path)
                if i is not None and present[i]:
                    if cols[ORIGINAL_LABEL_COL][i] == "" and cols[STATUS_COL][i] == "":
                        cols[ORIGINAL_LABEL_COL][i] = cols[LABEL_COL][i]
                    cols[LABEL_COL][i], cols[STATUS_COL][i], cols[REVIEWER_COL][i] = label, status, by or ""
        return present, cols

    def _status_now(self) -> tuple[pd.DataFrame, pd.Series]:
        """(status table, review status by path), brought up to date with the decisions
        logged since the last call: O(1) per decision, O(rows) only per label-file version."""
        st = self._status_state()
        with self._mutex:
            return st.frames()

    def _status_state(self) -> _Status:
        """The reviewed state of every row (:class:`_Status`), brought up to date with the
        decisions logged since the last call."""
        with self._locked(), self._connect() as conn:
            state = self._current_file()
            last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0]
            with self._mutex:
                st = self._status
                if st is None or st.gen != state.gen:
                    f = state.frame
                    st = _Status(gen=state.gen, last=0, paths=pd.Index(state.table.paths().to_numpy(dtype=object),
                                                                       dtype=object),
                                 cols={c: (f[col] if c == REVIEWER_COL else _stripped(f[col]))
                                       .to_numpy(dtype=object, copy=True)
                                       for c, col in ((LABEL_COL, state.table.label_column),
                                                      *((r, r) for r in REVIEW_COLUMNS))}, row=state.row)
                    since = self._pending(conn)
                elif st.last < last:
                    since = [tuple(r) for r in conn.execute(
                        "SELECT id, path, new_label, new_status, COALESCE(new_reviewed_by, reviewer) "
                        "FROM decisions WHERE id > ? ORDER BY id", (st.last,))]
                else:
                    since = None
                if since is not None:
                    st.apply(state.row, since)
                    st.last, st.table, st.by_path = last, None, None
                    self._status = st
                return st

    def _check_label(self, new_label: str, state: _FileState) -> None:
        if self.classes is not None:
            valid = list(dict.fromkeys(self.classes))
        else:
            valid = sorted(state.known_labels)
        if new_label not in valid or new_label == "":
            hint = ("" if self.classes is not None else
                    " (taken from the labels already in the file; pass classes=[...] to "
                    "ReviewStore to allow a new class)")
            raise UnknownLabelError(
                f"{new_label!r} is not a valid class. Valid classes{hint}: "
                f"{', '.join(repr(c) for c in valid) or 'none'}. Pick one of them."
            )

    @staticmethod
    def _latest(conn: sqlite3.Connection, path: str) -> Decision | None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM decisions WHERE path = ? AND undone = 0 ORDER BY id DESC LIMIT 1",
            (path,),
        ).fetchone()
        return None if row is None else _decision_from_row(row)

    def _conflict(self, conn: sqlite3.Connection, path: str, label: str, status: str,
                  expected_label: str, expected_status: str,
                  undoing: Decision | None = None) -> ConflictError:
        latest = self._latest(conn, path)
        if latest is not None:
            cause = latest.summary()
        else:
            cause = "the label file was changed outside the review tool"
        now = f"label {label!r}, status {status or 'unreviewed'!r}"
        want = f"label {expected_label!r}, status {expected_status or 'unreviewed'!r}"
        if undoing is not None:
            reason = (f"Cannot undo decision #{undoing.id} on {path!r}: the sample changed since "
                      f"({cause}). It is now {now}, not {want} as that decision left it.")
            fix = "Undo the later decision first, or pass force=True to revert anyway."
        else:
            reason = (f"{path!r} changed since you loaded it: {cause}. It is now {now}, but you "
                      f"saw {want}.")
            fix = "Reload the sample and decide again, or pass force=True to apply your decision anyway."
        return ConflictError(f"{reason} {fix}", path=path, latest=latest, current_label=label,
                             current_status=status, expected_label=expected_label,
                             expected_status=expected_status, reason=reason)

    @staticmethod
    def _undo_target(conn: sqlite3.Connection, reviewer: str, decision_id: int | None) -> Decision:
        if decision_id is None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM decisions WHERE reviewer = ? AND action != 'undo' "
                f"AND undone = 0 ORDER BY id DESC LIMIT 1", (reviewer,)).fetchone()
            if row is None:
                raise UndoError(f"{reviewer} has no decision left to undo.")
        else:
            row = conn.execute(f"SELECT {_COLUMNS} FROM decisions WHERE id = ?",
                               (int(decision_id),)).fetchone()
            if row is None:
                raise UndoError(f"There is no decision #{decision_id}; check the id in the decision log.")
        target = _decision_from_row(row)
        if target.action == "undo":
            raise UndoError(f"Decision #{target.id} is itself an undo; to redo, apply the decision again.")
        if target.undone:
            raise UndoError(f"Decision #{target.id} ({target.summary()}) was already undone.")
        return target

    @contextlib.contextmanager
    def _locked(self, lock_path: Path | None = None) -> Iterator[None]:
        """Exclusive inter-process lock (the log lock by default).

        The kernel drops a lock when its holder dies, so only a live, stuck process can hold
        it long; after ``lock_timeout`` seconds that is reported with the holder's process id,
        which every holder writes into the lock file.
        """
        lock_path = self.lock_path if lock_path is None else lock_path
        with file_lock(lock_path, self.lock_timeout,
                       lambda fd: LockTimeoutError(_lock_message(lock_path, fd, self.lock_timeout, self.label_file))):
            yield

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection to the log, kept open: closing the last connection makes
        SQLite checkpoint the WAL, which would cost a decision several fsyncs."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # none yet, or inherited by a fork
            conn = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            self._local.conn, self._local.pid = conn, os.getpid()
        try:
            yield conn
        finally:
            if conn.in_transaction:  # an error left a transaction open: end it
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")


def _apply(state: _FileState, frame: pd.DataFrame, decisions: Sequence[tuple]) -> None:
    """Set (label, status, reviewed_by) of each decision's row in the file's ``frame`` (or a
    copy of it), in log order. Idempotent: every decision sets absolute values."""
    _, lab, orig, st, by = state.cols
    for _, path, new_label, new_status, new_by in decisions:
        i = state.row.get(path)
        if i is None:  # the row left the file (edited outside the tool): nothing to apply to
            continue
        cell = str(frame.iat[i, lab])
        if str(frame.iat[i, orig]).strip() == "" and str(frame.iat[i, st]).strip() == "":
            frame.iat[i, orig] = cell.strip()
        if cell.strip() != new_label:  # a confirm keeps the cell's own spelling (" nevus ")
            frame.iat[i, lab] = new_label
        frame.iat[i, st] = new_status
        frame.iat[i, by] = new_by or ""


def _rewrite(state: _FileState, decisions: Sequence[tuple]) -> bytes:
    """The new bytes of the label file, whose frame already holds ``decisions``.

    Only the changed rows are rendered and spliced between the unchanged bytes when the file
    allows it (``state.spliceable``), so a rewrite costs a copy of the file, not a render of
    every row; otherwise (the first write, which adds the review columns) the whole table.
    """
    rows = sorted({state.row[d[1]] for d in decisions if d[1] in state.row})
    if not state.spliceable or not rows:
        return render_table(state.table)
    lines = state.table.lines[rows]
    pieces = render_rows(state.table, state.frame.iloc[rows])
    if len(pieces) != len(rows) or any(p.count(b"\n") != 1 for p in pieces):
        state.multiline = True  # a new cell holds a line break: rows are no longer lines
        return render_table(state.table)
    raw, starts = memoryview(state.raw), state.starts
    out, prev = [], 0
    for line, piece in zip(lines.tolist(), pieces):
        out += [raw[prev:starts[line - 1]], piece]
        prev = int(starts[line])
    out.append(raw[prev:])
    return b"".join(out)


def _paths_for(paths: pd.Series, src_dir: Path, out_dir: Path) -> pd.Series:
    """Path cells rewritten so that, read from ``out_dir``, they reach the files they reach
    from ``src_dir``. Absolute paths and cells naming no existing file are kept."""
    if out_dir.resolve() == src_dir.resolve():
        return paths
    out = paths.copy()
    missing = []
    for i, cell in enumerate(paths.tolist()):
        p = cell.strip()
        if not p or os.path.isabs(p):
            continue
        target = src_dir / p
        if not target.exists():
            continue
        try:
            new = Path(os.path.relpath(target, out_dir)).as_posix()
        except ValueError:  # another drive: no relative path exists
            new = str(target.absolute())
        if not (out_dir / new).exists():
            missing.append(p)
        out.iat[i] = new
    if missing:
        raise ExportError(f"The export would name {len(missing)} image(s) it cannot reach from "
                          f"{out_dir} (e.g. {missing[0]!r}). Export into the label file's folder instead.")
    return out


def _lock_message(lock_path: Path, fd: int, timeout: float, label_file: Path) -> str:
    try:
        holder = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        holder = ""
    who = f"process {holder}" if holder.isdigit() else "another process"
    return (f"The label file {label_file} has been locked by {who} for more than {timeout:g} s "
            f"(lock file {lock_path}). Another review or export of this file is still busy; wait and "
            f"retry, or if {who} is stuck, stop it (its lock is released when it exits).")


def _check_reviewer(reviewer: str) -> str:
    name = str(reviewer).strip()
    if not name:
        raise ReviewError("A reviewer name is required so every decision can be attributed; enter your name.")
    if any(ch in name for ch in "\r\n\t"):
        raise ReviewError("A reviewer name must be one line of text; remove the line breaks or tabs.")
    return name
