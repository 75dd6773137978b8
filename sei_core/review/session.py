"""One reviewer's work on a run's queue: decide, undo, and which image comes next.

:class:`ReviewSession` is what the Review page does between two screens, without Streamlit: a
decision or undo goes to the store (with how the image came to be shown, for the count from
the decisions), the queue row is updated, and every failure comes back as an
:class:`Outcome` in the reviewer's words (a conflict with what the other reviewer did, or a
message with its fix), never as an exception. The page only draws what it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .queue import STATE_FILTERS, ReviewQueue
from .decision import Decision
from .errors import ConflictError, ReviewError
from .store import ReviewStore

log = logging.getLogger(__name__)

#: The decisions a reviewer can make on one image (undo is :meth:`ReviewSession.undo`).
DECISIONS = ("confirm", "relabel", "discard")


@dataclass(frozen=True)
class Conflict:
    """Someone else changed the image since it was shown: what they did and what it is now
    (``message``: the reason, without the library's advice). ``action``, ``new_label`` and
    ``sei`` repeat the decision that was refused, so it can be made again over theirs
    (``force``)."""

    path: str
    message: str
    theirs: str  # what the other decision did, in words
    label: str  # the image's label now
    status: str  # its review status now
    action: str = ""
    new_label: str | None = None
    sei: float | None = None
    decision_id: int | None = None  # of an undo refused: the decision it would revert


@dataclass(frozen=True)
class Outcome:
    """What a decision or undo did: ``decision`` when saved; else ``conflict`` or ``error``
    (a message that says what to do)."""

    decision: Decision | None = None
    conflict: Conflict | None = None
    error: str = ""

    @property
    def saved(self) -> bool:
        return self.decision is not None


class ReviewSession:
    """Decisions, undo and navigation over one run's :class:`ReviewQueue` and :class:`ReviewStore`."""

    def __init__(self, store: ReviewStore, queue: ReviewQueue) -> None:
        self.store, self.queue = store, queue

    def decide(self, reviewer: str, action: str, path: str, shown_label: str, shown_status: str,
               sei: float | None = None, new_label: str | None = None, force: bool = False) -> Outcome:
        """Confirm, relabel (to ``new_label``) or discard ``path`` as shown (its label and status
        on screen, so a change by someone else meanwhile is a conflict, not overwritten;
        ``force`` overwrites it)."""
        if action not in DECISIONS:
            raise ValueError(f"unknown decision {action!r}; one of {DECISIONS}")
        if not reviewer:
            return Outcome(error="Enter your name first, so every decision can be attributed.")
        sei = None if sei is None or not np.isfinite(sei) else float(sei)
        store, queue = self.store, self.queue
        try:
            how = dict(expected_status=shown_status, force=force, sampling=queue.sampling(path, store))
            if action == "confirm":
                d = store.confirm(path, reviewer, shown_label, sei, **how)
            elif action == "relabel":
                d = store.relabel(path, new_label, reviewer, shown_label, sei, **how)
            else:
                d = store.discard(path, reviewer, shown_label, sei, **how)
        except ConflictError as e:
            queue.apply(path, e.current_label, e.current_status,
                        e.latest.reviewer if e.latest is not None and e.current_status else "")
            return Outcome(conflict=Conflict(
                path=path, message=e.reason, label=e.current_label, status=e.current_status,
                theirs=e.latest.summary() if e.latest is not None else "The label file was changed outside the review tool.",
                action=action, new_label=new_label, sei=sei))
        except ReviewError as e:
            return Outcome(error=str(e))
        except Exception as e:  # e.g. a disk or database failure: say so, never a traceback
            log.exception("review action failed")
            return Outcome(error=f"The decision could not be saved ({type(e).__name__}: {e}). Nothing was changed; "
                                 "check that the label file's folder is writable and try again.")
        queue.apply(d.path, d.new_label, d.new_status, reviewer)
        return Outcome(decision=d)

    def undo(self, reviewer: str, decision_id: int | None = None, force: bool = False) -> Outcome:
        """Revert ``reviewer``'s latest decision in effect (or ``decision_id``)."""
        if not reviewer:
            return Outcome(error="Enter your name first: undo reverts your own latest decision.")
        store = self.store
        try:
            d = store.undo(reviewer, decision_id, force=force)
        except ConflictError as e:
            return Outcome(conflict=Conflict(path=e.path, message=e.reason, theirs="", label=e.current_label,
                                             status=e.current_status,
                                             decision_id=decision_id or self.latest_own(reviewer)))
        except ReviewError as e:
            return Outcome(error=str(e))
        except Exception as e:
            log.exception("undo failed")
            return Outcome(error=f"The undo could not be saved ({type(e).__name__}: {e}). Nothing was changed; "
                                 "try again.")
        undone = next((x for x in store.decisions(d.path) if x.id == d.undoes), None)
        self.queue.apply(d.path, d.new_label, d.new_status, undone.old_reviewed_by if undone is not None else "")
        return Outcome(decision=d)

    def latest_own(self, reviewer: str) -> int | None:
        """The id of ``reviewer``'s latest decision in effect (what undo reverts), or None."""
        own = [d for d in self.store.decisions(include_undone=False) if d.reviewer == reviewer and d.action != "undo"]
        return own[-1].id if own else None

    def shown(self, state_filter: str, given: int = -1) -> np.ndarray:
        """Queue positions shown with the filter (a key of ``STATE_FILTERS``) and given class
        (negative: every class), in order."""
        return self.queue.select(STATE_FILTERS[state_filter], given)

    def advance(self, from_path: str, state_filter: str, given: int = -1) -> str | None:
        """The image after ``from_path`` (just decided or skipped): with "to review" over every
        class, the queue's order with its random checks (:meth:`ReviewQueue.next_image`); with
        any other selection, the next image of it."""
        if state_filter == "to review" and given < 0:
            return self.queue.next_image(from_path, self.store)
        return self.queue.after(from_path, self.shown(state_filter, given))

    def back(self, from_path: str, reviewer: str) -> str:
        """"Previous": the image ``reviewer`` decided before ``from_path``, in the order decided
        (``from_path`` itself when there is none)."""
        return self.queue.previous_decided(from_path, self.store.decided_paths(reviewer)) or from_path

    def current(self, path: str | None, state_filter: str, given: int = -1) -> str | None:
        """``path`` if it is an image of the queue, else the first one the selection shows (None:
        nothing to show)."""
        if path in self.queue.position:
            return path
        shown = self.shown(state_filter, given)
        return self.queue.ids[int(shown[0])] if len(shown) else None
