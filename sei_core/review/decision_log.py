"""The decision log: an append-only SQLite table of every decision on one label file, its
lock, and the queries the store asks it.

:class:`DecisionLog` holds each thread's connection (kept open) and the inter-process locks;
the functions below run on a connection, most inside the caller's lock, so that a
read-check-append is one step for every process. Every query of what decisions set on their
rows reads :class:`~sei_core.review.decision.Change` records through one ``SELECT``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..files import file_lock
from .decision import Change, Decision, Sampling, utc_now
from .errors import LockTimeoutError, UndoError
from .faults import fault

_BUSY_TIMEOUT_S = 30.0  # SQLite wait for readers/checkpoints outside our file lock

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
#: The one query of what decisions set on their rows (:class:`Change`).
_CHANGES = "SELECT id, path, new_label, new_status, COALESCE(new_reviewed_by, reviewer) FROM decisions"


class DecisionLog:
    """The SQLite log ``db_path`` of ``label_file`` and its inter-process locks (the log lock
    ``lock_path`` by default), a lock held by another process for more than ``lock_timeout``
    seconds raising ``LockTimeoutError``."""

    def __init__(self, db_path: Path, lock_path: Path, lock_timeout: float, label_file: Path) -> None:
        self.db_path, self.lock_path, self.lock_timeout = db_path, lock_path, lock_timeout
        self.label_file = label_file
        self._local = threading.local()  # per-thread SQLite connection

    def create(self) -> None:
        """Make the log (WAL mode) or bring an older one's table up to date."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self.locked(), self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            have = {r["name"] for r in conn.execute("PRAGMA table_info(decisions)")}
            for col, sql in _MIGRATIONS:
                if col not in have:
                    conn.execute(sql)
            conn.execute(_PENDING_INDEX)

    @contextlib.contextmanager
    def locked(self, lock_path: Path | None = None) -> Iterator[None]:
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
    def connect(self) -> Iterator[sqlite3.Connection]:
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

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            self._local.conn = None
            conn.close()


def _lock_message(lock_path: Path, fd: int, timeout: float, label_file: Path) -> str:
    try:
        holder = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        holder = ""
    if holder == str(os.getpid()):  # another thread of this process (e.g. the writer of a large file)
        return (f"The label file {label_file} has been locked by this process (another of its tasks, e.g. "
                f"writing a large file) for more than {timeout:g} s (lock file {lock_path}); wait and retry.")
    who = f"process {holder}" if holder.isdigit() else "another process"
    return (f"The label file {label_file} has been locked by {who} for more than {timeout:g} s "
            f"(lock file {lock_path}). Another review or export of this file is still busy; wait and "
            f"retry, or if {who} is stuck, stop it (its lock is released when it exits).")


# --------------------------------------------------------------------------- writing


def append(conn: sqlite3.Connection, *, path: str, action: str, reviewer: str, old: tuple[str, str, str],
           new_label: str, new_status: str, new_reviewed_by: str, sei: float | None, undoes: int | None,
           sampling: Sampling | None = None) -> Decision:
    """Commit the decision to the log as pending (caller holds the log lock); ``old``: the
    row's (label, status, reviewed_by) before it."""
    old_label, old_status, old_by = old
    stamp = utc_now()
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
        fault("decide:before-commit")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    fault("decide:logged")
    assert decision_id is not None
    return Decision(id=decision_id, time=stamp, reviewer=reviewer, path=path, action=action,
                    old_label=old_label, new_label=new_label, old_status=old_status,
                    new_status=new_status, sei=sei, undone=False, undoes=undoes,
                    old_reviewed_by=old_by)


def mark_applied(conn: sqlite3.Connection, last_id: int) -> None:
    """The label file now holds every pending decision up to ``last_id``."""
    conn.execute("UPDATE decisions SET applied = 1 WHERE applied = 0 AND id <= ?", (last_id,))


# --------------------------------------------------------------------------- changes


def _changes(conn: sqlite3.Connection, where: str, args: tuple = ()) -> list[Change]:
    return [Change(*r) for r in conn.execute(f"{_CHANGES} WHERE {where}", args)]


def pending(conn: sqlite3.Connection) -> list[Change]:
    """The decisions the label file may not hold yet, in log order."""
    return _changes(conn, "applied = 0 ORDER BY id")


def changes_after(conn: sqlite3.Connection, last_id: int) -> list[Change]:
    """Every decision logged after ``last_id``, in log order."""
    return _changes(conn, "id > ? ORDER BY id", (last_id,))


def latest_pending(conn: sqlite3.Connection, path: str) -> Change | None:
    """The latest decision on ``path`` the label file may not hold yet."""
    rows = _changes(conn, "path = ? AND applied = 0 ORDER BY id DESC LIMIT 1", (path,))
    return rows[0] if rows else None


def last_id(conn: sqlite3.Connection) -> int:
    """The id of the latest decision logged (0: none)."""
    return conn.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0]


def count_pending(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM decisions WHERE applied = 0").fetchone()[0]


# --------------------------------------------------------------------------- decisions


def _decision_from_row(row: sqlite3.Row) -> Decision:
    return Decision(
        id=row["id"], time=row["time"], reviewer=row["reviewer"], path=row["path"],
        action=row["action"], old_label=row["old_label"], new_label=row["new_label"],
        old_status=row["old_status"], new_status=row["new_status"], sei=row["sei"],
        undone=bool(row["undone"]), undoes=row["undoes"], old_reviewed_by=row["old_reviewed_by"],
    )


def decisions(conn: sqlite3.Connection, path: str | None = None, include_undone: bool = True) -> list[Decision]:
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
    return [_decision_from_row(r) for r in conn.execute(sql + " ORDER BY id", args)]


def recent(conn: sqlite3.Connection, n: int) -> list[Decision]:
    """The ``n`` most recent logged decisions, newest first."""
    return [_decision_from_row(r) for r in
            conn.execute(f"SELECT {_COLUMNS} FROM decisions ORDER BY id DESC LIMIT ?", (int(n),))]


def latest(conn: sqlite3.Connection, path: str) -> Decision | None:
    """The most recent decision still in effect for ``path`` (may be an ``undo`` entry), or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM decisions WHERE path = ? AND undone = 0 ORDER BY id DESC LIMIT 1",
        (path,),
    ).fetchone()
    return None if row is None else _decision_from_row(row)


def undo_target(conn: sqlite3.Connection, reviewer: str, decision_id: int | None) -> Decision:
    """The decision an undo by ``reviewer`` reverts: ``decision_id``, or their latest in effect."""
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


def decided_paths(conn: sqlite3.Connection, reviewer: str) -> list[str]:
    """The images ``reviewer`` decided (decisions in effect), in the order decided, each once."""
    rows = conn.execute(
        "SELECT path, MAX(id) AS last FROM decisions WHERE reviewer = ? AND action != 'undo' "
        "AND undone = 0 GROUP BY path ORDER BY last", (reviewer,)).fetchall()
    return [r[0] for r in rows]


# --------------------------------------------------------------------------- the count's view


def estimation_decisions(conn: sqlite3.Connection) -> pd.DataFrame:
    """The decisions in effect, one row per image (its latest), with their :class:`Sampling`
    (:meth:`ReviewStore.estimation_decisions <sei_core.review.store.ReviewStore.estimation_decisions>`)."""
    rows = conn.execute(
        "SELECT id, path, reviewer, new_status, q_rank, q_population, q_audit, q_share, "
        "COALESCE(q_weight, 1.0) FROM decisions WHERE action != 'undo' AND undone = 0 ORDER BY id").fetchall()
    df = pd.DataFrame([tuple(r) for r in rows], columns=["id", "path", "reviewer", "status", "rank",
                                                         "population", "audit", "share", "weight"])
    df = df.drop_duplicates("path", keep="last").reset_index(drop=True)
    df["audit"] = df["audit"].fillna(0).astype(bool)
    df["weight"] = df["weight"].astype(float)
    return df


def decisions_since(conn: sqlite3.Connection, last_id: int) -> list[tuple]:
    """``(id, path, action, new_status, audit_weight)`` of every decision logged after
    ``last_id`` (an undo: the id it reverts in place of the weight)."""
    return [tuple(r) for r in conn.execute(
        f"SELECT id, path, action, new_status, CASE WHEN action = 'undo' THEN undoes ELSE {_AUDIT_WEIGHT} END "
        "FROM decisions WHERE id > ? ORDER BY id", (int(last_id),))]


def decision_in_effect(conn: sqlite3.Connection, path: str) -> tuple | None:
    """``(id, path, action, new_status, audit_weight)`` of the latest decision in effect on ``path``."""
    r = conn.execute(
        f"SELECT id, path, action, new_status, {_AUDIT_WEIGHT} FROM decisions WHERE path = ? AND "
        "action != 'undo' AND undone = 0 ORDER BY id DESC LIMIT 1", (str(path),)).fetchone()
    return None if r is None else tuple(r)
