"""Review-decision store: records expert decisions on flagged samples.

Every decision (confirm / relabel / discard / undo) is written at once to two
places: an append-only SQLite audit log (who, when, what, before and after) and
the label CSV itself, so the label file always holds the reviewed state and can
be used for retraining directly. Both writes happen under one exclusive
inter-process file lock, with the CSV re-read from disk each time, so several
processes, browser tabs or reviewers cannot lose each other's work; a stale
screen is reported as a ``ConflictError`` instead of being silently overwritten.

Layout for ``data/labels.csv`` (defaults)::

    data/labels.csv                                 the live label file
    data/labels.csv.sei-backup                      untouched original, made once
    data/.sei_review/labels.decisions.sqlite        decision log (WAL mode)
    data/.sei_review/labels.lock                    inter-process lock
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import fcntl
import io
import os
import sqlite3
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .files import atomic_write_bytes

__all__ = [
    "ACTIONS",
    "STATUSES",
    "ConflictError",
    "Decision",
    "ExportError",
    "LabelFileError",
    "ReviewError",
    "ReviewStore",
    "UndoError",
    "UnknownLabelError",
    "UnknownSampleError",
]

PATH_COL = "path"
LABEL_COL = "label"
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


# --------------------------------------------------------------------------- errors


class ReviewError(Exception):
    """Base class of every error raised by the review store."""


class LabelFileError(ReviewError):
    """The label file is missing, unreadable, malformed, or could not be written."""


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
    it, when, and to what, and offer to apply anyway with ``force=True``.
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
    ) -> None:
        super().__init__(message)
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


# --------------------------------------------------------------------------- CSV I/O


@dataclass
class _LabelTable:
    """A label file as read from disk: its frame plus what is needed to write it back alike."""

    frame: pd.DataFrame
    raw: bytes
    newline: str
    bom: bool


def _read_label_file(path: Path) -> _LabelTable:
    """Read the label CSV with every cell as an exact string, validating its shape."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabelFileError(
            f"Label file {path} does not exist. Check the path, or create a CSV with "
            f"'path' and 'label' columns."
        ) from None
    except OSError as exc:
        raise LabelFileError(f"Cannot read label file {path}: {exc}. Check its permissions.") from None
    bom = raw.startswith(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFileError(
            f"Label file {path} is not valid UTF-8 ({exc}). Re-save it as a UTF-8 CSV and try again."
        ) from None
    header = next((row for row in csv.reader(io.StringIO(text)) if row), None)
    if header is None:
        raise LabelFileError(
            f"Label file {path} is empty. It needs a header row with at least 'path' and 'label' columns."
        )
    missing = [c for c in (PATH_COL, LABEL_COL) if c not in header]
    if missing:
        raise LabelFileError(
            f"Label file {path} has no {' or '.join(repr(c) for c in missing)} column. "
            f"Its columns are {header}; a label file needs at least 'path' (the image) and "
            f"'label' (its class). Rename the matching columns and try again."
        )
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise LabelFileError(
            f"Label file {path} has duplicate column names {dupes}. Give every column a unique name."
        )
    try:
        with warnings.catch_warnings():
            # A row with more cells than the header would be silently truncated.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as exc:
        raise LabelFileError(
            f"Label file {path} is not a well-formed CSV ({exc}). Make sure every row has the "
            f"same number of cells as the header and quotes are balanced."
        ) from None
    frame = frame.fillna("")
    dup_paths = frame.loc[frame[PATH_COL].duplicated(), PATH_COL].unique().tolist()
    if dup_paths:
        shown = ", ".join(repr(p) for p in dup_paths[:5]) + (" ..." if len(dup_paths) > 5 else "")
        raise LabelFileError(
            f"Label file {path} lists {len(dup_paths)} path(s) more than once ({shown}). "
            f"Each image must appear on exactly one row; remove the duplicates."
        )
    first_nl = raw.find(b"\n")
    newline = "\r\n" if first_nl > 0 and raw[first_nl - 1:first_nl] == b"\r" else "\n"
    return _LabelTable(frame=frame, raw=raw, newline=newline, bom=bom)


def _with_review_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with the review columns present (appended if new) and original_label filled."""
    out = frame.copy()
    for col in REVIEW_COLUMNS:
        if col not in out.columns:
            out[col] = ""
    unset = (out[ORIGINAL_LABEL_COL] == "") & (out[STATUS_COL] == "")
    out.loc[unset, ORIGINAL_LABEL_COL] = out.loc[unset, LABEL_COL]
    return out


def _render(table: _LabelTable, frame: pd.DataFrame) -> bytes:
    """Serialise a frame as UTF-8 CSV with the source file's newline and BOM."""
    data = frame.to_csv(index=False, lineterminator=table.newline).encode("utf-8")
    return codecs.BOM_UTF8 + data if table.bom else data


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

_COLUMNS = ("id, time, reviewer, path, action, old_label, new_label, old_status, "
            "new_status, sei, undone, undoes, old_reviewed_by")


def _decision_from_row(row: sqlite3.Row) -> Decision:
    return Decision(
        id=row["id"], time=row["time"], reviewer=row["reviewer"], path=row["path"],
        action=row["action"], old_label=row["old_label"], new_label=row["new_label"],
        old_status=row["old_status"], new_status=row["new_status"], sei=row["sei"],
        undone=bool(row["undone"]), undoes=row["undoes"], old_reviewed_by=row["old_reviewed_by"],
    )


# --------------------------------------------------------------------------- store


class ReviewStore:
    """Applies and logs review decisions for one label CSV.

    Safe to share between threads and to use from several processes at once:
    every operation opens its own SQLite connection and takes the file lock.
    ``classes`` lists the labels a relabel may use; if ``None``, any non-empty
    label already present in the file (``label`` or ``original_label``) is allowed.
    """

    def __init__(
        self,
        label_file: str | os.PathLike[str],
        db_path: str | os.PathLike[str] | None = None,
        *,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.label_file = Path(label_file).absolute()
        default_db = self.label_file.parent / ".sei_review" / f"{self.label_file.stem}.decisions.sqlite"
        self.db_path = Path(db_path).absolute() if db_path is not None else default_db
        self.lock_path = self.db_path.parent / f"{self.label_file.stem}.lock"
        self.backup_path = Path(str(self.label_file) + _BACKUP_SUFFIX)
        self.classes: list[str] | None = None if classes is None else [str(c) for c in classes]
        _read_label_file(self.label_file)  # fail early on a bad file
        if is_read_only(self.label_file):
            raise LabelFileError(
                f"{self.label_file} is read-only (the file or its folder has no write permission). "
                "Review a writable copy instead, e.g. copy the file (and keep its image paths valid), "
                "or make the folder writable.")
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(), self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    # ----------------------------------------------------------------- actions

    def confirm(self, path: str, reviewer: str, expected_label: str, sei: float | None = None,
                *, expected_status: str = "", force: bool = False) -> Decision:
        """Mark the current label as correct."""
        return self._decide("confirm", path, reviewer, expected_label, expected_status, sei, force)

    def relabel(self, path: str, new_label: str, reviewer: str, expected_label: str,
                sei: float | None = None, *, expected_status: str = "", force: bool = False) -> Decision:
        """Replace the label with ``new_label`` (must be a valid class)."""
        return self._decide("relabel", path, reviewer, expected_label, expected_status, sei, force,
                            new_label=new_label)

    def discard(self, path: str, reviewer: str, expected_label: str, sei: float | None = None,
                *, expected_status: str = "", force: bool = False) -> Decision:
        """Mark the sample as unusable; the row stays in the file with status 'discarded'."""
        return self._decide("discard", path, reviewer, expected_label, expected_status, sei, force)

    def undo(self, reviewer: str, decision_id: int | None = None, *, force: bool = False) -> Decision:
        """Revert ``reviewer``'s latest not-yet-undone decision, or decision ``decision_id``.

        Restores the label, status and reviewed_by the sample had before that
        decision, marks it undone and logs an ``undo`` entry. Only reverts if the
        sample still is in the state that decision left it in; if someone acted
        on it since, raises ``ConflictError`` (``force=True`` reverts anyway).
        """
        reviewer = _check_reviewer(reviewer)
        with self._locked():
            target = self._undo_target(reviewer, decision_id)
            table = self._read()
            idx = self._row_index(table.frame, target.path)
            row = table.frame.loc[idx]
            label, status = row[LABEL_COL], row[STATUS_COL]
            if not force and (label, status) != (target.new_label, target.new_status):
                raise self._conflict(target.path, label, status, target.new_label, target.new_status,
                                     undoing=target)
            return self._record(table, idx, action="undo", reviewer=reviewer,
                                new_label=target.old_label, new_status=target.old_status,
                                new_reviewed_by=target.old_reviewed_by, sei=target.sei,
                                undoes=target.id)

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

    def latest_decision(self, path: str) -> Decision | None:
        """The most recent decision still in effect for ``path`` (may be an ``undo`` entry), or None."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM decisions WHERE path = ? AND undone = 0 ORDER BY id DESC LIMIT 1",
                (path,),
            ).fetchone()
        return None if row is None else _decision_from_row(row)

    def status_table(self) -> pd.DataFrame:
        """Fresh from disk: path, label, original_label, review_status, reviewed_by for every row."""
        frame = _with_review_columns(_read_label_file(self.label_file).frame)
        return frame[[PATH_COL, LABEL_COL, *REVIEW_COLUMNS]].reset_index(drop=True)

    def progress(self, paths: Iterable[str]) -> tuple[int, int]:
        """(reviewed, total) over the distinct given paths; paths not in the file count as unreviewed."""
        wanted = list(dict.fromkeys(paths))
        frame = _with_review_columns(_read_label_file(self.label_file).frame)
        status = dict(zip(frame[PATH_COL], frame[STATUS_COL]))
        reviewed = sum(1 for p in wanted if status.get(p, "") != "")
        return reviewed, len(wanted)

    def export_clean(self, out_path: str | os.PathLike[str]) -> int:
        """Write a label file without discarded rows (provenance columns kept); returns rows written."""
        out = Path(out_path).absolute()
        protected = {self.label_file.resolve(): "the live label file",
                     self.backup_path.resolve(): "the backup of the original label file"}
        for guarded, what in protected.items():
            if out.resolve() == guarded or (out.exists() and guarded.exists() and os.path.samefile(out, guarded)):
                raise ExportError(
                    f"Refusing to export to {out}: that is {what}, and the export leaves out "
                    f"discarded rows. Choose a different output path, e.g. {self.label_file.with_suffix('.clean.csv')}."
                )
        table = _read_label_file(self.label_file)
        frame = _with_review_columns(table.frame)
        clean = frame[frame[STATUS_COL] != DISCARDED]
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out, _render(table, clean))
        except OSError as exc:
            raise ExportError(f"Could not write the clean export to {out}: {exc}. "
                              f"Check that the folder is writable and has free space.") from exc
        return len(clean)

    # ----------------------------------------------------------------- internals

    def _decide(self, action: str, path: str, reviewer: str, expected_label: str,
                expected_status: str, sei: float | None, force: bool,
                new_label: str | None = None) -> Decision:
        reviewer = _check_reviewer(reviewer)
        if expected_status not in STATUSES:
            raise ReviewError(f"expected_status must be one of {list(STATUSES)}, got {expected_status!r}.")
        with self._locked():
            table = self._read()
            idx = self._row_index(table.frame, path)
            row = table.frame.loc[idx]
            label, status = row[LABEL_COL], row[STATUS_COL]
            if new_label is not None:
                self._check_label(new_label, table.frame)
            if not force and (label != expected_label or status != expected_status):
                raise self._conflict(path, label, status, expected_label, expected_status)
            return self._record(table, idx, action=action, reviewer=reviewer,
                                new_label=label if new_label is None else new_label,
                                new_status=_STATUS_FOR_ACTION[action], new_reviewed_by=reviewer,
                                sei=None if sei is None else float(sei), undoes=None)

    def _record(self, table: _LabelTable, idx: int, *, action: str, reviewer: str, new_label: str,
                new_status: str, new_reviewed_by: str, sei: float | None, undoes: int | None) -> Decision:
        """Log the decision and rewrite the CSV; both happen or neither (caller holds the lock)."""
        frame = table.frame
        row = frame.loc[idx]
        path = row[PATH_COL]
        old_label, old_status, old_by = row[LABEL_COL], row[STATUS_COL], row[REVIEWER_COL]
        frame.loc[idx, [LABEL_COL, STATUS_COL, REVIEWER_COL]] = [new_label, new_status, new_reviewed_by]
        data = _render(table, frame)
        stamp = _utc_now()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO decisions (time, reviewer, path, action, old_label, new_label, "
                    "old_status, new_status, sei, undone, undoes, old_reviewed_by) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                    (stamp, reviewer, path, action, old_label, new_label, old_status, new_status,
                     sei, undoes, old_by),
                )
                decision_id = cur.lastrowid
                if undoes is not None:
                    conn.execute("UPDATE decisions SET undone = 1 WHERE id = ?", (undoes,))
                self._write_csv(table, data)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                # The CSV already holds the decision: put the previous bytes back so both agree.
                with contextlib.suppress(OSError):
                    atomic_write_bytes(self.label_file.resolve(), table.raw)
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        assert decision_id is not None
        return Decision(id=decision_id, time=stamp, reviewer=reviewer, path=path, action=action,
                        old_label=old_label, new_label=new_label, old_status=old_status,
                        new_status=new_status, sei=sei, undone=False, undoes=undoes,
                        old_reviewed_by=old_by)

    def _write_csv(self, table: _LabelTable, data: bytes) -> None:
        """Back up the untouched original once, then atomically replace the label file."""
        try:
            if not self.backup_path.exists():
                atomic_write_bytes(self.backup_path, table.raw)
            atomic_write_bytes(self.label_file.resolve(), data)
        except OSError as exc:
            raise LabelFileError(
                f"Could not write label file {self.label_file}: {exc}. Nothing was recorded; "
                f"check that the folder is writable and has free space, then retry."
            ) from exc

    def _read(self) -> _LabelTable:
        table = _read_label_file(self.label_file)
        table.frame = _with_review_columns(table.frame)
        return table

    def _row_index(self, frame: pd.DataFrame, path: str) -> int:
        hits = frame.index[frame[PATH_COL] == path]
        if len(hits) == 0:
            raise UnknownSampleError(
                f"No row with path {path!r} in label file {self.label_file}. The file may have been "
                f"replaced or the path spelled differently; reload the file and pick the sample again."
            )
        return int(hits[0])

    def _check_label(self, new_label: str, frame: pd.DataFrame) -> None:
        if self.classes is not None:
            valid = list(dict.fromkeys(self.classes))
        else:
            seen = pd.concat([frame[LABEL_COL], frame[ORIGINAL_LABEL_COL]])
            valid = sorted(set(seen) - {""})
        if new_label not in valid or new_label == "":
            hint = ("" if self.classes is not None else
                    " (taken from the labels already in the file; pass classes=[...] to "
                    "ReviewStore to allow a new class)")
            raise UnknownLabelError(
                f"{new_label!r} is not a valid class. Valid classes{hint}: "
                f"{', '.join(repr(c) for c in valid) or 'none'}. Pick one of them."
            )

    def _conflict(self, path: str, label: str, status: str, expected_label: str,
                  expected_status: str, undoing: Decision | None = None) -> ConflictError:
        latest = self.latest_decision(path)
        if latest is not None:
            cause = latest.summary()
        else:
            cause = "the label file was changed outside the review tool"
        now = f"label {label!r}, status {status or 'unreviewed'!r}"
        want = f"label {expected_label!r}, status {expected_status or 'unreviewed'!r}"
        if undoing is not None:
            message = (f"Cannot undo decision #{undoing.id} on {path!r}: the sample changed since "
                       f"({cause}). It is now {now}, not {want} as that decision left it. "
                       f"Undo the later decision first, or pass force=True to revert anyway.")
        else:
            message = (f"{path!r} changed since you loaded it: {cause}. It is now {now}, but you "
                       f"saw {want}. Reload the sample and decide again, or pass force=True to "
                       f"apply your decision anyway.")
        return ConflictError(message, path=path, latest=latest, current_label=label,
                             current_status=status, expected_label=expected_label,
                             expected_status=expected_status)

    def _undo_target(self, reviewer: str, decision_id: int | None) -> Decision:
        with self._connect() as conn:
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
    def _locked(self) -> Iterator[None]:
        """Exclusive inter-process lock around a read-modify-write of CSV and DB.

        A blocking flock (not a polling loop): waiters are woken on release, so
        concurrent writers take turns fairly. The kernel drops the lock if its
        holder dies, and holders only do a few milliseconds of file I/O.
        """
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            yield conn
        finally:
            conn.close()


def _check_reviewer(reviewer: str) -> str:
    name = str(reviewer).strip()
    if not name:
        raise ReviewError("A reviewer name is required so every decision can be attributed; enter your name.")
    return name
