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
Unset, it costs one truth test per point (:mod:`.faults`).

Parts: the decision log (:mod:`.decision_log`), the label file read and rendered
(:mod:`.label_file`) and written back (:mod:`.writeback`), the reviewed state of rows
(:mod:`.status`); :class:`ReviewStore` composes them into the API.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import access
from ..files import atomic_write
from ..labels import LABEL_COL, PATH_COL, render_table
from . import decision_log
from .decision import DISCARDED, STATUS_COL, STATUS_FOR_ACTION, STATUSES, Change, Decision, Sampling
from .decision_log import DecisionLog
from .errors import ExportError, LabelFileError, ReviewError, UnknownLabelError, UnknownSampleError, conflict
from .label_file import FileState, apply_changes, is_read_only, paths_for
from .status import StatusView, cells_of, overlay
from .writeback import WriteBack

_BACKUP_SUFFIX = ".sei-backup"
DEFAULT_LOCK_TIMEOUT_S = 10.0
DEFAULT_COALESCE_S = 0.5
DEFAULT_COALESCE_MIN_BYTES = 1 << 20


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
        # Guards the caches (the file's state, the status view) and the background writer's
        # timer; held only briefly and never while waiting for a file lock.
        self._mutex = threading.Lock()
        self._status: StatusView | None = None
        self._db = DecisionLog(self.db_path, self.lock_path, self.lock_timeout, self.label_file)
        self._file = WriteBack(self.label_file, self.backup_path, self.write_lock_path, self._db, self._mutex,
                               path_column=self.path_column, label_column=self.label_column,
                               coalesce_s=coalesce_s, coalesce_min_bytes=coalesce_min_bytes)  # fails early on a bad file
        if is_read_only(self.label_file):
            raise LabelFileError(
                f"{self.label_file} is read-only (the file or its folder has no write permission). "
                "Review a writable copy instead, e.g. copy the file (and keep its image paths valid), "
                "or make the folder writable.")
        self._db.create()
        self.flush()  # recovery: apply what a killed process left pending, remove its temp files

    @property
    def coalesce_s(self) -> float:
        return self._file.coalesce_s

    @property
    def coalesce_min_bytes(self) -> int:
        return self._file.coalesce_min_bytes

    @property
    def flush_error(self) -> Exception | None:
        """The last error of a background rewrite (the decisions stay pending and are retried)."""
        return self._file.flush_error

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

    def undo(self, reviewer: str, decision_id: int | None = None, *, force: bool = False) -> Decision:
        """Revert ``reviewer``'s latest not-yet-undone decision, or decision ``decision_id``.

        Restores the label, status and reviewed_by the sample had before that
        decision, marks it undone and logs an ``undo`` entry. Only reverts if the
        sample still is in the state that decision left it in; if someone acted
        on it since, raises ``ConflictError`` (``force=True`` reverts anyway).
        """
        reviewer = _check_reviewer(reviewer)
        with self._db.locked(), self._db.connect() as conn:
            target = decision_log.undo_target(conn, reviewer, decision_id)
            state = self._file.current()
            _, label, status, _ = self._row_now(conn, state, target.path)
            if not force and (label, status) != (target.new_label, target.new_status):
                raise conflict(decision_log.latest(conn, target.path), target.path, label, status,
                               target.new_label, target.new_status, undoing=target)
            d = self._log(conn, state, target.path, action="undo", reviewer=reviewer,
                          new_label=target.old_label, new_status=target.old_status,
                          new_reviewed_by=target.old_reviewed_by, sei=target.sei, undoes=target.id)
        self._file.after_decision()
        return d

    # ----------------------------------------------------------------- write-back

    def flush(self) -> int:
        """Write every pending decision (of any process) to the label file in one atomic
        rewrite, then mark them applied. Returns how many were pending.

        Also removes temporary files a killed rewrite left beside the label file.
        Raises ``LabelFileError`` if the file cannot be written; the decisions stay pending.
        """
        return self._file.flush()

    def close(self) -> None:
        """Write pending decisions to the label file, stop the background writer and close
        this thread's connection to the log."""
        self._file.close()
        self._db.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pending(self) -> int:
        """How many logged decisions the label file may not hold yet."""
        with self._db.connect() as conn:
            return decision_log.count_pending(conn)

    # ----------------------------------------------------------------- queries

    def decisions(self, path: str | None = None, include_undone: bool = True) -> list[Decision]:
        """All logged decisions (oldest first), optionally for one path and without undone ones."""
        with self._db.connect() as conn:
            return decision_log.decisions(conn, path, include_undone)

    def recent_decisions(self, n: int) -> list[Decision]:
        """The ``n`` most recent logged decisions, newest first (what a page lists; the whole
        log grows with every decision)."""
        with self._db.connect() as conn:
            return decision_log.recent(conn, n)

    def latest_decision(self, path: str) -> Decision | None:
        """The most recent decision still in effect for ``path`` (may be an ``undo`` entry), or None."""
        with self._db.connect() as conn:
            return decision_log.latest(conn, path)

    def decided_paths(self, reviewer: str) -> list[str]:
        """The images ``reviewer`` decided (decisions in effect), in the order decided, each
        once (at its latest decision): what "Previous" walks back through."""
        with self._db.connect() as conn:
            return decision_log.decided_paths(conn, str(reviewer).strip())

    def estimation_decisions(self) -> pd.DataFrame:
        """The decisions in effect (not undone, not undos), one row per image (its latest), in
        log order, with what the count needs: ``id, path, reviewer, status`` (the status it
        set) and the logged :class:`Sampling` (``rank, population, audit, share, weight``;
        NaN/None in older logs, weight 1). Undone decisions are left out, so an undo takes its decision out of
        the count too."""
        with self._db.connect() as conn:
            return decision_log.estimation_decisions(conn)

    def decisions_since(self, last_id: int) -> list[tuple]:
        """``(id, path, action, new_status, audit_weight)`` of every decision logged after
        ``last_id``, in log order: ``audit_weight`` is an audit pick's draw weight and 0 for a
        decision in order (an undo names the decision it reverts there instead). What
        :meth:`ReviewQueue.count` reads after each decision, O(new decisions)."""
        with self._db.connect() as conn:
            return decision_log.decisions_since(conn, last_id)

    def decision_in_effect(self, path: str) -> tuple | None:
        """``(id, path, action, new_status, audit_weight)`` of the latest decision in effect on
        ``path`` (not undone, not an undo), or None: what an undo leaves the image with, read
        by the path index (O(decisions on that path), not O(log))."""
        with self._db.connect() as conn:
            return decision_log.decision_in_effect(conn, path)

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

    def changes(self, since: tuple[int, int] | None) -> tuple[tuple[int, int], list[Change] | None]:
        """What changed since ``since``, a mark an earlier call returned (None: nothing known).

        Returns the new mark and the :class:`Change` (path, label, review status, reviewed_by)
        of every decision logged since, in log order — or None in place of the list when the
        label file itself was replaced meanwhile (another program wrote it) or nothing was
        known: then read every row again (:meth:`status_of`). O(decisions since), not O(rows):
        what a page calls on every rerun to keep its own copy of some rows current.
        """
        with self._db.locked(), self._db.connect() as conn:
            state = self._file.current()
            if since is None or since[0] != state.gen:
                return (state.gen, decision_log.last_id(conn)), None
            rows = decision_log.changes_after(conn, since[1])
        return (state.gen, rows[-1].id if rows else since[1]), rows

    def status_of(self, paths: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The reviewed state of some rows: ``present`` (False for a path not in the file) and
        object arrays of ``label``, ``original_label``, ``review_status``, ``reviewed_by`` (as
        :meth:`status_table` has them, ``""`` where absent), in the order of ``paths``. Costs
        O(len(paths) + pending decisions), not O(rows): the file's cells of those rows with
        the pending decisions laid over them."""
        with self._db.locked(), self._db.connect() as conn:
            state = self._file.current()
            pending = decision_log.pending(conn)
            with self._mutex:
                present, cols = cells_of(state, paths)
        if pending:
            overlay(cols, {p: i for i, p in enumerate(paths) if present[i]}, pending)
        return present, cols

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
        with self._db.locked(), self._db.connect() as conn:
            state = self._file.current()
            frame = state.frame.copy()
            pending = decision_log.pending(conn)
        apply_changes(state, frame, pending)
        clean = frame[frame[STATUS_COL].str.strip() != DISCARDED].copy()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"Could not create the folder of {out}: {exc}.") from exc
        pc = state.table.path_column
        clean[pc] = paths_for(clean[pc], self.label_file.parent, out.parent)
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
        with self._db.locked(), self._db.connect() as conn:
            state = self._file.current()
            _, label, status, _ = self._row_now(conn, state, path)
            if new_label is not None:
                self._check_label(new_label, state)
            if not force and (label != expected_label or status != expected_status):
                raise conflict(decision_log.latest(conn, path), path, label, status, expected_label, expected_status)
            d = self._log(conn, state, path, action=action, reviewer=reviewer,
                          new_label=label if new_label is None else new_label,
                          new_status=STATUS_FOR_ACTION[action], new_reviewed_by=reviewer,
                          sei=None if sei is None else float(sei), undoes=None, sampling=sampling)
        self._file.after_decision()
        return d

    def _log(self, conn: sqlite3.Connection, state: FileState, path: str, *, action: str,
             reviewer: str, new_label: str, new_status: str, new_reviewed_by: str,
             sei: float | None, undoes: int | None, sampling: Sampling | None = None) -> Decision:
        """Commit the decision to the log as pending (caller holds the log lock)."""
        _, old_label, old_status, old_by = self._row_now(conn, state, path)
        return decision_log.append(conn, path=path, action=action, reviewer=reviewer,
                                   old=(old_label, old_status, old_by), new_label=new_label, new_status=new_status,
                                   new_reviewed_by=new_reviewed_by, sei=sei, undoes=undoes, sampling=sampling)

    def _row_now(self, conn: sqlite3.Connection, state: FileState, path: str) -> tuple[int, str, str, str]:
        """(row, label, status, reviewed_by) of ``path`` as reviewed: the file overlaid with
        its latest pending decision."""
        idx = state.row.get(path)
        if idx is None:
            raise UnknownSampleError(
                f"No row with path {path!r} in label file {self.label_file}. The file may have been "
                f"replaced or the path spelled differently; reload the file and pick the sample again."
            )
        c = decision_log.latest_pending(conn, path)
        if c is not None:
            return idx, c.label, c.status, c.reviewed_by
        return idx, state.cell(idx, 1), state.cell(idx, 3), state.cell(idx, 4)

    def _status_now(self) -> tuple[pd.DataFrame, pd.Series]:
        """(status table, review status by path), brought up to date with the decisions
        logged since the last call: O(1) per decision, O(rows) only per label-file version."""
        st = self._status_state()
        with self._mutex:
            return st.frames()

    def _status_state(self) -> StatusView:
        """The reviewed state of every row (:class:`StatusView`), brought up to date with the
        decisions logged since the last call."""
        with self._db.locked(), self._db.connect() as conn:
            state = self._file.current()
            last = decision_log.last_id(conn)
            with self._mutex:
                st = self._status
                if st is None or st.gen != state.gen:
                    st = StatusView.of(state)
                    since = decision_log.pending(conn)
                elif st.last < last:
                    since = decision_log.changes_after(conn, st.last)
                else:
                    since = None
                if since is not None:
                    overlay(st.cols, state.row, since)
                    st.last, st.table, st.by_path = last, None, None
                    self._status = st
                return st

    def _check_label(self, new_label: str, state: FileState) -> None:
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


def _check_reviewer(reviewer: str) -> str:
    name = str(reviewer).strip()
    if not name:
        raise ReviewError("A reviewer name is required so every decision can be attributed; enter your name.")
    if any(ch in name for ch in "\r\n\t"):
        raise ReviewError("A reviewer name must be one line of text; remove the line breaks or tabs.")
    return name
