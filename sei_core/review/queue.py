"""The review queue: which image the Review page shows next, and the count's view of the log.

:class:`ReviewQueue` holds a run's flagged (and requested) images in a **static order** (most
suspicious first, by score), each row's label and review state (kept up to date from the
store's log, one row per decision), the filters and the next / previous image. With
``audit_share > 0`` it also draws **audit picks**: images drawn at random from every image
not reviewed yet, logged with how they were drawn (:class:`~sei_core.review.decision.Sampling`),
so that :mod:`sei_core.review_count` can count the wrong labels from the decisions.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from ..review_count import audit_weights, count_from_decisions, stop_advice, wrong_log_odds
from .decision import CONFIRMED, DISCARDED, RELABELED, STATUSES, Sampling
from .store import ReviewStore

# --------------------------------------------------------------------------- the queue

#: Review states a queue can be narrowed to (``None``: every state).
STATE_FILTERS: dict[str, tuple[str, ...] | None] = {
    "to review": ("",), "reviewed": (CONFIRMED, RELABELED, DISCARDED), "confirmed": (CONFIRMED,),
    "relabeled": (RELABELED,), "discarded": (DISCARDED,), "all": None,
}

#: Codes of the review statuses in :attr:`ReviewQueue.status` (their index in :data:`STATUSES`).
_CODE = {s: np.int8(i) for i, s in enumerate(STATUSES)}
MISSING = np.int8(-1)  # the image is no longer a row of the label file


#: How many of the latest decisions in order set the audit chance (:meth:`ReviewQueue.share_now`).
AUDIT_WINDOW = 20
#: The audit draw's extra weight just after the reviewer's position
#: (:func:`~sei_core.review_count.audit_weights`; 0: uniform), chosen by measurement
#: (docs/benchmarks.md, the count from the decisions).
AUDIT_BOOST = 4.0
#: The least share of ``audit_share`` drawn, however productive the order (:meth:`ReviewQueue.share_now`).
AUDIT_FLOOR = 1 / 3


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
                 requested: Sequence[str] = (), status_table: pd.DataFrame | None = None, *,
                 audit_share: float = 0.0, seed: int | None = None, audit_boost: float = AUDIT_BOOST,
                 audit_floor: float = AUDIT_FLOOR) -> None:
        self._all_ids, self._all_labels = ids, np.asarray(labels)
        self._all_score = np.asarray(score, dtype=np.float64)
        self.audit_share = float(audit_share)
        self.audit_boost = float(audit_boost)
        self.audit_floor = float(audit_floor)
        self._rng = np.random.default_rng(seed)
        self._audit: _AuditState | None = None
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
        self.synced_with: object = None  # the store mark of the last follow() (ReviewStore.changes)
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

    def follow(self, store: "ReviewStore") -> None:
        """Bring every queue row up to date with ``store``: only the decisions logged since the
        last call while the label file is the same version (O(decisions)); every queue row
        again on the first call or after the file was replaced by another program."""
        mark, changed = store.changes(self.synced_with)
        if changed is None and self._audit is not None:
            self._audit.resync(store)
        if changed is None:
            present, cols = store.status_of(self.ids)
            self.label, self.original = cols["label"], cols["original_label"]
            self.reviewer = cols["reviewed_by"]
            codes = np.array([_CODE.get(str(v).strip(), np.int8(0)) for v in cols["review_status"]], dtype=np.int8)
            self.status = np.where(present, codes, MISSING).astype(np.int8)
        else:
            for c in changed:
                self.apply(c.path, c.label, c.status, c.reviewed_by or "")
        self.synced_with = mark

    def apply(self, path: str, label: str, status: str, reviewer: str) -> None:
        """One decision (or undo) taken: update that row only."""
        if self._audit is not None:
            self._audit.set_decided(path, status != "")
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

    # ----------------------------------------------------------------- audit sampling (issue 22)

    def audit(self, store: "ReviewStore") -> "_AuditState":
        """The queue's static order over every image and what is reviewed, built on first use
        (an argsort of every score and the review status of every row: once per queue)."""
        if self._audit is None:
            self._audit = _AuditState(self)
            self._audit.resync(store)
        return self._audit

    def next_image(self, path: str, store: "ReviewStore") -> str | None:
        """The image to show after ``path`` (just decided or skipped), with audit sampling: with
        probability :meth:`share_now` an image drawn at random from every image not reviewed
        yet, with the weights of :func:`~sei_core.review_count.audit_weights` (an audit pick,
        remembered with its weight until decided), else the next unreviewed image
        of the static order after the last one shown in order. The static order is the queue
        (flagged and requested images, most suspicious first) followed by every other image by
        score, so the review can go on past the flagged ones. The pick is shown like any other
        image; it is added to the queue's rows if it was not in them. None: nothing left."""
        a = self.audit(store)
        q = self.position.get(path) if path is not None else None
        a.left(path, wrong=None if q is None else bool(self.status[q] in (_CODE[RELABELED], _CODE[DISCARDED])))
        pick = None
        share = self.share_now()
        drawn = None
        if share > 0 and self._rng.random() < share:
            drawn = a.draw(exclude=path, rng=self._rng, boost=self.audit_boost)
        if drawn is None:
            pick = a.next_in_order(exclude=path)
        else:
            pick, weight = drawn
            a.picks[pick] = (int(a.n - a.decided.sum()), share, weight)
        if pick is not None:
            self._include(pick, store)
        return pick

    def share_now(self) -> float:
        """The chance that the next image is an audit pick: ``audit_share · max(1 − p̂,
        audit_floor)``, ``p̂`` the share wrong among the latest decisions in order, ``(w + 1) /
        (n + 1)`` over the last :data:`AUDIT_WINDOW` of them (0 before the first decision in
        order). Audits cost wrong labels found mostly where the order still finds many, so
        fewer are drawn there; never fewer than ``audit_floor`` (:data:`AUDIT_FLOOR`) of the share, or a data set
        with many wrong labels would get no count from the decisions at all (measured:
        docs/benchmarks.md). When the picks are drawn does not bias the estimate: each pick's
        draw weight is logged and the count weighs it back."""
        if self.audit_share <= 0 or self._audit is None or not self._audit.recent:
            return 0.0
        recent = self._audit.recent[-AUDIT_WINDOW:]
        p = (sum(recent) + 1) / (len(recent) + 1)
        return self.audit_share * max(1 - p, self.audit_floor)

    def sampling(self, path: str, store: "ReviewStore") -> "Sampling | None":
        """How ``path`` came to be shown (logged with its decision): its rank in the static
        order, the audit population's size, and whether it is an audit pick."""
        a = self.audit(store)
        i = a.index_of(path)
        if i is None:
            return None
        m = a.picks.get(path)
        if m is None:
            return Sampling(rank=int(a.rank[i]), population=int(a.n - a.decided.sum()), audit=False,
                            share=float(self.share_now()))
        return Sampling(rank=int(a.rank[i]), population=int(m[0]), audit=True, share=float(m[1]), weight=float(m[2]))

    def count(self, store: "ReviewStore", model=None, **kw):
        """The number of wrong labels from the decisions in ``store``'s log
        (:func:`sei_core.review_count.count_from_decisions`) and when to stop
        (:func:`~sei_core.review_count.stop_advice`): ``(DecisionCount, StopAdvice, points)``,
        ``points`` the decisions as ``(rank, wrong, audit)``. Ranks are this queue's; the log
        gives each image's latest decision in effect, whether it was an audit pick and its
        draw weight."""
        a = self.audit(store)
        ids, rank, wrong, weight = a.log_view(store)
        audit = weight > 0
        if a.given is None:
            a.given = self._all_labels[a.order]
        given = a.given
        k = int(self._all_labels.max()) + 1 if self._all_labels.size else 0
        kw.setdefault("x_by_rank", a.x_by_rank)
        c = count_from_decisions(given, rank, wrong, audit, weight, n_classes=kw.pop("n_classes", k), model=model,
                                 **kw)
        return c, stop_advice(rank, wrong, audit, ids, c), (rank, wrong, audit)

    def previous_decided(self, path: str | None, decided: Sequence[str]) -> str | None:
        """"Previous": the image decided just before ``path`` in ``decided`` (a reviewer's images
        in the order decided, :meth:`ReviewStore.decided_paths`); the latest one when ``path`` is
        not among them (e.g. the next image, not decided yet); None if there is none."""
        decided = list(decided)
        if path in decided:
            at = decided.index(path)
            return decided[at - 1] if at > 0 else None
        return decided[-1] if decided else None

    def _include(self, path: str, store: "ReviewStore") -> None:
        """Make ``path`` (a sample of the run) a row of the queue, at its end."""
        if path in self.position:
            return
        i = self._audit.index_of(path)
        present, cols = store.status_of([path])
        self.position[path] = len(self.ids)
        self.ids.append(path)
        self.index = np.append(self.index, i)
        self.given = np.append(self.given, self._all_labels[i])
        self.label = np.append(self.label, cols["label"])
        self.original = np.append(self.original, cols["original_label"])
        self.reviewer = np.append(self.reviewer, cols["reviewed_by"])
        code = _CODE.get(str(cols["review_status"][0]).strip(), np.int8(0)) if present[0] else MISSING
        self.status = np.append(self.status, np.int8(code))



class _AuditState:
    """A queue's static order over all ``N`` images and which are reviewed (for audit sampling).

    ``order`` (N,): sample index at each rank (the queue's rows, then the rest by score);
    ``rank`` (N,): its inverse; ``decided`` (N,): reviewed, by sample index; ``picks``: audit
    picks not decided yet -> (population, share, relative draw weight) at the draw;
    ``scale``: the ranks over which the draw's weights fall off (the queue's length).
    """

    def __init__(self, queue: ReviewQueue) -> None:
        n = len(queue._all_ids)
        self.n = n
        self.ids = queue._all_ids
        member = np.zeros(n, dtype=bool)
        member[queue.index] = True
        rest = np.flatnonzero(~member)
        rest = rest[np.argsort(np.nan_to_num(queue._all_score[rest], nan=np.inf), kind="stable")]
        self.order = np.concatenate([queue.index, rest]).astype(np.int64)
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[self.order] = np.arange(n)
        self.decided = np.zeros(n, dtype=bool)
        self.picks: dict[str, tuple[int, float, float]] = {}  # path -> (population, share, weight) at the draw
        self.scale = float(max(len(queue.index), n // 100, 1))
        self.recent: list[bool] = []  # wrong or not, of the decisions in order (this queue's)
        self.given: np.ndarray | None = None  # the given label at each rank (ReviewQueue.count)
        x = wrong_log_odds(queue._all_score)  # the model's log-odds of a wrong label (the count's prior)
        self.x_by_rank = None if x is None else x[self.order]
        self._log: dict = {"last": 0}  # log_view's cache
        self.frontier = 0  # no unreviewed image ranks before it
        self.cursor = -1  # rank of the last image shown in order
        self._index = pd.Index(list(queue._all_ids), dtype=object)

    def log_view(self, store: "ReviewStore") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(id, rank, wrong, audit_weight)`` of the latest decision in effect on each image of
        the run (``audit_weight``: an audit pick's draw weight, 0 for a decision in order), in log order, kept up to date with only the decisions logged since the last call
        (O(new decisions), an undo included: its image falls back to its decision in effect
        before, :meth:`ReviewStore.decision_in_effect`; the whole log only with another store).
        The arrays are in log order of each image's latest decision, except that an image an
        undo fell back on goes last: ``id`` gives the order decided."""
        c = self._log
        rows = store.decisions_since(c["last"])
        if c.get("store") is not store:
            df = store.estimation_decisions()
            c.clear()
            c.update(last=0, store=store, at={}, cols=([], [], [], []), gone=[])
            rows = [(int(i), p, "", st, float(wt) if au else 0.0)
                    for i, p, st, au, wt in zip(df["id"], df["path"], df["status"], df["audit"], df["weight"])]
            last = store.decisions_since(0)
            c["last_full"] = last[-1][0] if last else 0
        at, cols, gone = c["at"], c["cols"], c["gone"]
        new = []
        for r in rows:
            if r[2] != "undo":
                new.append(r)
                continue
            new = [x for x in new if x[1] != r[1]]  # an undo of a decision in this batch
            if r[1] in at:
                gone[at.pop(r[1])] = True
            back = store.decision_in_effect(r[1])  # as of now: a later row of this batch may follow
            if back is not None and back[0] <= r[0]:
                new.append(back)
        if new:
            idx = self._index.get_indexer([r[1] for r in new])
            for (i, p, _, st, au), k in zip(new, idx.tolist()):
                if k < 0:
                    continue
                if p in at:
                    gone[at[p]] = True  # its latest decision goes last, in log order
                at[p] = len(cols[0])
                for col, v in zip(cols, (int(i), int(self.rank[k]), st in (RELABELED, DISCARDED), float(au or 0.0))):
                    col.append(v)
                gone.append(False)
        if rows:
            c["last"] = max(rows[-1][0], c.pop("last_full", 0))
        elif "last_full" in c:
            c["last"] = c.pop("last_full")
        if c.get("arrays_for") != (c["last"], len(gone)):
            keep = ~np.asarray(gone, dtype=bool)
            c["arrays"] = tuple(np.asarray(col, dtype=t)[keep]
                                for col, t in zip(cols, (np.int64, np.int64, bool, np.float64)))
            c["arrays_for"] = (c["last"], len(gone))
        return c["arrays"]

    def index_of(self, path: str) -> int | None:
        try:
            i = self._index.get_loc(path)  # a hash look-up (get_indexer builds arrays: ms at 100k ids)
        except (KeyError, TypeError):
            return None
        return int(i) if isinstance(i, (int, np.integer)) else int(np.flatnonzero(i)[0] if not isinstance(i, slice)
                                                                    else i.start)

    def resync(self, store: "ReviewStore") -> None:
        st = store.statuses(self.ids)
        self.decided = np.array([bool(v) for v in st], dtype=bool) if len(st) else np.zeros(0, bool)
        self.frontier = 0

    def set_decided(self, path: str, decided: bool) -> None:
        i = self.index_of(path)
        if i is None:
            return
        self.decided[i] = decided
        if not decided:
            self.frontier = min(self.frontier, int(self.rank[i]))

    def left(self, path: str | None, wrong: bool | None = None) -> None:
        """``path`` leaves the screen: decided, it moves the order's cursor past it (if shown in
        order) and its outcome (``wrong``) joins :attr:`recent`; skipped, an audit pick loses its
        mark (the skipped image is no random pick any more when it comes back)."""
        i = None if path is None else self.index_of(path)
        if i is None:
            return
        if path in self.picks and not self.decided[i]:
            del self.picks[path]
        elif path not in self.picks:
            r = int(self.rank[i])
            if self.decided[i] and wrong is not None and r > self.cursor:
                self.recent = self.recent[-(AUDIT_WINDOW - 1):] + [wrong]
            self.cursor = max(self.cursor, r)

    def _first_unreviewed(self) -> int:
        f, n = self.frontier, self.n
        while f < n:
            chunk = np.flatnonzero(~self.decided[self.order[f:f + 4096]])
            if chunk.size:
                f += int(chunk[0])
                break
            f += 4096
        self.frontier = min(f, n)
        return self.frontier

    def next_in_order(self, exclude: str | None) -> str | None:
        start = max(self.cursor + 1, self._first_unreviewed())
        for lo in (start, self._first_unreviewed()):
            r = lo
            while r < self.n:
                sl = self.order[r:r + 4096]
                ok = np.flatnonzero(~self.decided[sl])
                for j in ok.tolist():
                    sid = self.ids[int(sl[j])]
                    if sid != exclude and sid not in self.picks:
                        return sid
                r += 4096
        return None

    def draw(self, exclude: str | None, rng: np.random.Generator, boost: float = 0.0) -> tuple[str, float] | None:
        """One unreviewed image other than ``exclude`` (all rank at or after the frontier),
        drawn with probability proportional to :func:`~sei_core.review_count.audit_weights`
        (``boost`` 0: uniformly), and its weight relative to the mean over the unreviewed
        images. Rejection sampling from the weights' three parts over every rank (uniform; the
        flat boost up to the next rank in order; its geometric fall-off after it), then an exact
        draw: O(1) per try, O(N) for the mean weight."""
        f, n = self._first_unreviewed(), self.n
        if f >= n:
            return None
        c = min(max(self.cursor + 1, f), n)
        L = self.scale
        decay = math.exp(-1.0 / L)
        # the geometric part untruncated (a draw past the last rank is tried again)
        cum = np.cumsum([n - f, boost * (c - f), boost / (1 - decay)])
        sid = None
        for _ in range(64):
            u = rng.random() * cum[-1]
            if u < cum[0]:
                r = int(rng.integers(f, n))
            elif u < cum[1]:
                r = int(rng.integers(f, c))
            else:
                r = c + int(rng.exponential(L))
                if r >= n:
                    continue
            i = int(self.order[r])
            if not self.decided[i] and self.ids[i] != exclude:
                sid = self.ids[i]
                break
        if sid is None:
            free = self.order[f:][~self.decided[self.order[f:]]]
            free = np.array([int(i) for i in free if self.ids[int(i)] != exclude], dtype=np.int64)
            if not free.size:
                return None
            w = audit_weights(self.rank[free], c, L, boost)
            i = int(free[rng.choice(free.size, p=w / w.sum())])
            sid = self.ids[i]
        if boost <= 0:
            return sid, 1.0
        done = self.rank[np.flatnonzero(self.decided)]
        done = done[done >= f]
        total = float((n - f) + boost * (c - f) + boost * (1 - decay ** (n - c)) / (1 - decay)
                      - audit_weights(done, c, L, boost).sum())
        left = (n - f) - done.size
        w = float(audit_weights(np.array([self.rank[self.index_of(sid)]]), c, L, boost)[0])
        return sid, w * left / total if total > 0 else 1.0
