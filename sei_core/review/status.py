"""The reviewed state of rows: the label file's cells with the decisions it may not hold yet
laid over them (:func:`overlay`, the one rule), for the whole file (:class:`StatusView`,
updated in place per decision) or for some rows (:func:`cells_of`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..labels import LABEL_COL, PATH_COL
from .decision import REVIEW_COLUMNS, REVIEWER_COL, STATUS_COL, Change
from .label_file import FileState, stripped


def _columns(state: FileState) -> tuple[tuple[str, str], ...]:
    """(name in a view, column of the file): ``label`` is the file's label column, whatever its name."""
    return ((LABEL_COL, state.table.label_column), *((r, r) for r in REVIEW_COLUMNS))


def overlay(cols: Mapping[str, np.ndarray], where: Mapping[str, int], changes: Iterable[Change]) -> None:
    """Lay ``changes`` over the cells ``cols`` (``label`` and the review columns, stripped
    but for ``reviewed_by``) of the rows ``where`` gives each path, in log order (the latest
    wins). A row's first decision keeps its label as ``original_label``."""
    lab, orig, st, by = (cols[c] for c in (LABEL_COL, *REVIEW_COLUMNS))
    for c in changes:
        i = where.get(c.path)
        if i is None:
            continue
        if orig[i] == "" and st[i] == "":
            orig[i] = lab[i]
        lab[i], st[i], by[i] = c.label, c.status, c.reviewed_by or ""


def cells_of(state: FileState, paths: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``present`` (False for a path not in the file) and object arrays of ``label`` and the
    review columns of the file's rows of ``paths`` (``""`` where absent), in their order."""
    at = np.fromiter((state.row.get(p, -1) for p in paths), dtype=np.int64, count=len(paths))
    present = at >= 0
    rows = at[present]
    cols = {}
    for c, col in _columns(state):
        cells = state.frame[col].to_numpy(dtype=object)[rows]
        out = np.full(len(paths), "", dtype=object)
        out[present] = [str(v) if c == REVIEWER_COL else str(v).strip() for v in cells]
        cols[c] = out
    return present, cols


@dataclass
class StatusView:
    """The reviewed state of every row as plain object arrays, updated in place per decision
    (a pandas string column would copy all of itself for each changed cell)."""

    gen: int  # the FileState generation it was built from
    last: int  # the last decision id it includes
    paths: pd.Index
    cols: dict[str, np.ndarray]  # label, original_label, review_status, reviewed_by
    row: dict[str, int] = None  # the file's row of each path (FileState.row)
    table: pd.DataFrame | None = None
    by_path: pd.Series | None = None

    @classmethod
    def of(cls, state: FileState) -> StatusView:
        """The file's cells as they are, no decision laid over them yet (``last`` 0)."""
        f = state.frame
        return cls(gen=state.gen, last=0, paths=pd.Index(state.table.paths().to_numpy(dtype=object), dtype=object),
                   cols={c: (f[col] if c == REVIEWER_COL else stripped(f[col])).to_numpy(dtype=object, copy=True)
                         for c, col in _columns(state)}, row=state.row)

    def frames(self) -> tuple[pd.DataFrame, pd.Series]:
        if self.table is None:  # copies: a frame handed out never changes under its holder
            self.table = pd.DataFrame({PATH_COL: self.paths.to_numpy(), **self.cols}, dtype=object, copy=True)
            self.by_path = pd.Series(self.cols[STATUS_COL], index=self.paths, dtype=object, copy=True)
        return self.table, self.by_path
