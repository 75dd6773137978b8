"""The label file kept in step with the decision log: the file's state as this process last
read or wrote it, and the atomic, crash-safe rewrite of the decisions it does not hold yet,
within a decision for a small file and coalesced by a background thread for a large one.
The contract (durability, recovery, locks, layout) is :mod:`sei_core.review.store`'s."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from ..files import atomic_write, remove_temp_files
from ..labels import line_starts
from . import decision_log
from .decision_log import DecisionLog
from .errors import LabelFileError, LockTimeoutError
from .faults import fault
from .label_file import FileState, apply_changes, file_stat, load_file, rewrite

log = logging.getLogger(__name__)

_RETRY_S, _RETRY_MAX_S = 2.0, 60.0  # the background writer's retry interval after a failed rewrite

# Writers with decisions not yet in their label file, flushed when the interpreter exits.
_OPEN: "weakref.WeakSet[WriteBack]" = weakref.WeakSet()


@atexit.register
def _flush_open() -> None:
    for writer in list(_OPEN):
        with contextlib.suppress(Exception):
            writer.close()
            writer.db.close()


class WriteBack:
    """Writes the decisions of ``db`` into ``label_file`` (see :class:`ReviewStore
    <sei_core.review.store.ReviewStore>` for the parameters).

    ``mutex`` guards the file's state and the timer (the store shares it for its own caches);
    it is held only briefly and never while waiting for a file lock (file locks are always
    taken first), so it cannot deadlock.
    """

    def __init__(self, label_file: Path, backup_path: Path, write_lock_path: Path, db: DecisionLog,
                 mutex: threading.Lock, *, path_column: str, label_column: str, coalesce_s: float,
                 coalesce_min_bytes: int) -> None:
        self.label_file, self.backup_path, self.write_lock_path = label_file, backup_path, write_lock_path
        self.db = db
        self.path_column, self.label_column = path_column, label_column
        self.coalesce_s = float(coalesce_s)
        self.coalesce_min_bytes = int(coalesce_min_bytes)
        #: The last error of a background rewrite (the decisions stay pending and are retried).
        self.flush_error: Exception | None = None
        self._mutex = mutex
        self._state: FileState | None = None
        self._gen = 0
        self._timer: threading.Timer | None = None
        self._retry_s = _RETRY_S
        self._last_write = -float("inf")  # time.monotonic() at the end of the last rewrite
        self._state = self._load(0)  # fail early on a bad file

    def current(self) -> FileState:
        """The label file's state, re-read only if the file changed on disk (caller holds the log lock)."""
        try:
            now = file_stat(self.label_file)
        except FileNotFoundError:
            raise LabelFileError(f"Label file {self.label_file} no longer exists. Restore it (e.g. from "
                                 f"{self.backup_path}) and reload.") from None
        with self._mutex:
            if self._state is not None and self._state.stat == now:
                return self._state
            self._gen += 1
            self._state = self._load(self._gen)
            return self._state

    def _load(self, gen: int) -> FileState:
        return load_file(self.label_file, gen, self.path_column, self.label_column)

    def after_decision(self) -> None:
        """After a logged decision: rewrite a small label file now; leave a large one to the
        background writer, which starts at once unless it wrote less than ``coalesce_s`` ago."""
        _OPEN.add(self)
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
                f"{exc} The decision itself is saved in the decision log {self.db.db_path} and "
                f"will be written to the label file as soon as it can be (the next decision, "
                f"or reopening the file, retries).") from exc

    def flush(self) -> int:
        """Write every pending decision (of any process) to the label file in one atomic
        rewrite, then mark them applied; returns how many were pending (see
        :meth:`ReviewStore.flush <sei_core.review.store.ReviewStore.flush>`)."""
        with self._mutex:
            self._cancel_timer()
        with self.db.locked(self.write_lock_path):
            return self._flush_locked()

    def close(self) -> None:
        """Write pending decisions to the label file and stop the background writer."""
        self.flush()
        _OPEN.discard(self)

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
        with self.db.locked(), self.db.connect() as conn:
            state = self.current()
            pending = decision_log.pending(conn)
        if not pending:
            return 0
        last_id = pending[-1].id
        apply_changes(state, state.frame, pending)  # in place: see FileState
        data = rewrite(state, pending)
        target = self.label_file.resolve()
        written: list[tuple[int, int, int]] = []

        def write(fh) -> None:
            half = len(data) // 2
            fh.write(data[:half])
            fault("flush:writing")
            fh.write(data[half:])
            fh.flush()
            st = os.fstat(fh.fileno())
            written.append((st.st_ino, st.st_size, st.st_mtime_ns))

        try:
            if not self.backup_path.exists():
                with open(target, "rb") as src:
                    atomic_write(self.backup_path, lambda fh: shutil.copyfileobj(src, fh, 1 << 20))
            fault("flush:backup")
            atomic_write(target, write)
        except OSError as exc:
            with self._mutex:  # the in-place frame no longer matches the file: re-read it next time
                if self._state is state:
                    self._state = None
            raise LabelFileError(
                f"Could not write label file {self.label_file}: {exc}. Check that the folder is "
                f"writable and has free space; {len(pending)} decision(s) are kept in the decision "
                f"log until then.") from exc
        fault("flush:replaced")
        starts = line_starts(data)
        with self.db.locked(), self.db.connect() as conn:
            decision_log.mark_applied(conn, last_id)
            with self._mutex:
                if self._state is state:
                    state.stat, state.raw, state.starts = written[0], data, starts
                    if not state.complete or state.multiline:  # written whole: one row per line now
                        state.table.lines = np.arange(2, len(state.frame) + 2, dtype=np.int64)
                    state.complete = True
        fault("flush:marked")
        self._last_write = time.monotonic()
        return len(pending)
