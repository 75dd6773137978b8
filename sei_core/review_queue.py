"""The review queue of a run: which images to review, in which order, and where each one stands.

Built once per run version from the ranking (flagged images, most suspicious first, plus the
images sent to review by hand) and the label file's review columns; after that a decision
updates one row (:meth:`ReviewQueue.apply`) and the filters and "next image" are NumPy
operations over the queue, never Python loops over every sample. No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Review statuses as stored in the label file, and their codes in :attr:`ReviewQueue.status`.
STATUSES = ("", "confirmed", "relabeled", "discarded")
_CODE = {s: np.int8(i) for i, s in enumerate(STATUSES)}
MISSING = np.int8(-1)  # the image is no longer a row of the label file


class ReviewQueue:
    """Images to review, most suspicious first, with their current label and status.

    Parameters
    ----------
    ids : (N,) sample ids of the run (label-file paths).
    labels : (N,) given label index at training time.
    score : (N,) ranking score, lower = more suspicious (NaN = unscored, ranked last).
    flagged : (N,) boolean flag decision.
    requested : ids sent to review by hand (added to the queue even if not flagged).
    status_table : the label file's ``path, label, review_status, reviewed_by, original_label``
        (as :meth:`sei_core.review.ReviewStore.status_table` returns it).
    """

    def __init__(self, ids: Sequence[str], labels: np.ndarray, score: np.ndarray, flagged: np.ndarray,
                 requested: Sequence[str] = (), status_table: pd.DataFrame | None = None) -> None:
        member = np.asarray(flagged, dtype=bool).copy()
        self.requested = 0
        if len(requested):
            at = pd.Index(ids).get_indexer(list(requested))
            at = at[at >= 0]
            self.requested = int(len(np.unique(at)))
            member[at] = True
        idx = np.flatnonzero(member)
        key = pd.DataFrame({"score": np.nan_to_num(np.asarray(score, dtype=np.float64)[idx], nan=np.inf),
                            "id": [ids[i] for i in idx]})
        order = key.sort_values(["score", "id"], kind="stable").index.to_numpy()
        self.index = idx[order]  # (Q,) sample index of each queue position
        self.ids = [ids[i] for i in self.index]
        self.position = {sid: q for q, sid in enumerate(self.ids)}
        self.given = np.asarray(labels)[self.index]
        q = len(self.ids)
        self.label = np.full(q, "", dtype=object)
        self.original = np.full(q, "", dtype=object)
        self.reviewer = np.full(q, "", dtype=object)
        self.status = np.full(q, MISSING, dtype=np.int8)
        self.synced_with: object = None  # a version tag of the label file, kept by the caller
        if status_table is not None:
            self.sync(status_table)

    def __len__(self) -> int:
        return len(self.ids)

    def sync(self, status_table: pd.DataFrame) -> None:
        """Take every queue row's label and status from the label file's review columns."""
        t = status_table.drop_duplicates("path").set_index("path").reindex(self.ids)
        present = t["label"].notna().to_numpy()
        self.label = t["label"].fillna("").to_numpy(dtype=object, copy=True)
        self.original = t["original_label"].fillna("").to_numpy(dtype=object, copy=True)
        self.reviewer = t["reviewed_by"].fillna("").to_numpy(dtype=object, copy=True)
        codes = t["review_status"].fillna("").map(lambda v: _CODE.get(str(v).strip(), np.int8(0)))
        self.status = np.where(present, codes.to_numpy(dtype=np.int8), MISSING).astype(np.int8)

    def apply(self, path: str, label: str, status: str, reviewer: str) -> None:
        """One decision (or undo) taken: update that row only."""
        q = self.position.get(path)
        if q is None:
            return
        self.label[q] = label
        self.status[q] = _CODE.get(status, np.int8(0))
        self.reviewer[q] = reviewer

    def row(self, path: str) -> tuple[str, str, str, str] | None:
        """``(label, status, reviewed_by, original_label)`` of a queued image; None if it is not
        in the queue or no longer in the label file."""
        q = self.position.get(path)
        if q is None or self.status[q] == MISSING:
            return None
        return self.label[q], STATUSES[self.status[q]], self.reviewer[q], self.original[q]

    def select(self, statuses: Sequence[str] | None = None, given: int | None = None) -> np.ndarray:
        """Queue positions (in order) whose status is one of ``statuses`` (None: any) and whose
        given label is ``given`` (None or negative: any)."""
        keep = np.ones(len(self), dtype=bool)
        if statuses is not None:
            keep &= np.isin(self.status, [_CODE[s] for s in statuses])
        if given is not None and given >= 0:
            keep &= self.given == given
        return np.flatnonzero(keep)

    def reviewed(self) -> int:
        """How many queued images have a review status."""
        return int((self.status > 0).sum())

    def after(self, path: str, positions: np.ndarray) -> str | None:
        """The first image of ``positions`` after ``path`` in queue order (wrapping to the first
        one other than ``path``); None if there is none."""
        return self._step(path, positions, +1)

    def before(self, path: str, positions: np.ndarray) -> str | None:
        """The last image of ``positions`` before ``path`` in queue order (wrapping)."""
        return self._step(path, positions, -1)

    def _step(self, path: str, positions: np.ndarray, direction: int) -> str | None:
        positions = np.asarray(positions)
        q = self.position.get(path, -1)
        others = positions[positions != q]
        if not len(others):
            return None
        if direction > 0:
            later = others[others > q]
            pick = later[0] if len(later) else others[0]
        else:
            earlier = others[others < q] if q >= 0 else others[:0]
            pick = earlier[-1] if len(earlier) else others[-1]
        return self.ids[int(pick)]
