"""The user's label file as the review store reads and writes it.

:func:`load_file` reads and checks the table (any dialect :func:`sei_core.labels.read_table`
reads) into a :class:`FileState`, with what a decision needs looked up in O(1);
:func:`apply_changes` sets decisions' cells in it and :func:`rewrite` renders the new bytes,
splicing only the changed rows between the unchanged bytes where it can, so every cell but
those of the label column and the review columns keeps its exact bytes. The write itself,
atomic and crash-safe, is :mod:`sei_core.review.writeback`'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..labels import (COLUMN_FIX, LABEL_COL, PATH_COL, LabelTable, TableError, in_words, line_starts, read_table,
                     render_rows, render_table)
from .decision import ORIGINAL_LABEL_COL, REVIEW_COLUMNS, STATUS_COL, Change
from .errors import ExportError, LabelFileError


@dataclass
class FileState:
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
        """A rewrite may splice just the changed rows into ``raw`` (see :func:`rewrite`)."""
        return self.complete and not self.multiline

    @property
    def frame(self) -> pd.DataFrame:
        return self.table.frame

    def cell(self, i: int, which: int) -> str:
        return str(self.table.frame.iat[i, self.cols[which]]).strip()


def file_stat(path: Path) -> tuple[int, int, int]:
    """``(inode, size, mtime_ns)``: what tells that the file changed on disk."""
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def load_file(path: Path, gen: int, path_column: str = PATH_COL, label_column: str = LABEL_COL) -> FileState:
    """Read and validate the label file (any dialect :func:`sei_core.labels.read_table` reads),
    its image paths and labels in ``path_column`` and ``label_column``."""
    try:
        before = file_stat(path)
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
    labels = stripped(frame[table.label_column])
    unset = np.ones(n, dtype=bool)  # rows never reviewed: no original label and no status yet
    for col in (ORIGINAL_LABEL_COL, STATUS_COL):
        if col in frame.columns:
            unset &= (stripped(frame[col]) == "").to_numpy(dtype=bool)
    known = set(labels.unique().tolist())
    if ORIGINAL_LABEL_COL in frame.columns:
        known |= set(stripped(frame[ORIGINAL_LABEL_COL]).unique().tolist())
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
    return FileState(stat=before, gen=gen, table=table, row=row, known_labels=known, cols=cols,
                      raw=raw, starts=line_starts(raw), complete=complete, multiline=multiline)


def stripped(column: pd.Series) -> pd.Series:
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


def apply_changes(state: FileState, frame: pd.DataFrame, changes: Sequence[Change]) -> None:
    """Set (label, status, reviewed_by) of each change's row in the file's ``frame`` (or a
    copy of it), in log order. Idempotent: every decision sets absolute values."""
    _, lab, orig, st, by = state.cols
    for c in changes:
        i = state.row.get(c.path)
        if i is None:  # the row left the file (edited outside the tool): nothing to apply to
            continue
        cell = str(frame.iat[i, lab])
        if str(frame.iat[i, orig]).strip() == "" and str(frame.iat[i, st]).strip() == "":
            frame.iat[i, orig] = cell.strip()
        if cell.strip() != c.label:  # a confirm keeps the cell's own spelling (" nevus ")
            frame.iat[i, lab] = c.label
        frame.iat[i, st] = c.status
        frame.iat[i, by] = c.reviewed_by or ""


def rewrite(state: FileState, changes: Sequence[Change]) -> bytes:
    """The new bytes of the label file, whose frame already holds ``changes``.

    Only the changed rows are rendered and spliced between the unchanged bytes when the file
    allows it (``state.spliceable``), so a rewrite costs a copy of the file, not a render of
    every row; otherwise (the first write, which adds the review columns) the whole table.
    """
    rows = sorted({state.row[c.path] for c in changes if c.path in state.row})
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


def paths_for(paths: pd.Series, src_dir: Path, out_dir: Path) -> pd.Series:
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
