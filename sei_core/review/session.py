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
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..methods import PAPER_METHOD, display_name
from .queue import MISSING, STATE_FILTERS, ReviewQueue
from .decision import STATUSES, Decision
from .errors import ConflictError, ReviewError
from .store import ReviewStore

log = logging.getLogger(__name__)

#: The decisions a reviewer can make on one image (undo is :meth:`ReviewSession.undo`).
DECISIONS = ("confirm", "relabel", "discard")
#: A review status in the reviewer's words.
STATUS_WORDS = {"": "not reviewed yet", "confirmed": "confirmed", "relabeled": "relabeled", "discarded": "discarded"}
#: Classes that get a number key (1–9); with more, a picker and "L" relabel as the rest.
MAX_KEY_CLASSES = 9


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

    def navigate(self, path: str | None, state_filter: str, given: int = -1, reviewer: str = "", *,
                 advance_from: str | None = None, back_from: str | None = None) -> str | None:
        """The image to show now: after ``advance_from`` (just decided or skipped,
        :meth:`advance`), before ``back_from`` ("Previous", :meth:`back`), else ``path`` as
        :meth:`current` keeps it."""
        if advance_from is not None:
            return self.advance(advance_from, state_filter, given)
        if back_from is not None:
            return self.back(back_from, reviewer)
        return self.current(path, state_filter, given)

    def place(self, path: str, state_filter: str, given: int = -1) -> tuple[int, int] | None:
        """``(n, of)``: ``path`` is the n-th (from 1) of the ``of`` images the selection shows;
        None if it is not (or no longer) one of them."""
        shown = self.shown(state_filter, given)
        q = self.queue.position.get(path, -1)
        at = int(np.searchsorted(shown, q))
        return (at + 1, len(shown)) if at < len(shown) and shown[at] == q else None

    def current(self, path: str | None, state_filter: str, given: int = -1) -> str | None:
        """``path`` if it is an image of the queue, else the first one the selection shows (None:
        nothing to show)."""
        if path in self.queue.position:
            return path
        shown = self.shown(state_filter, given)
        return self.queue.ids[int(shown[0])] if len(shown) else None


# -- what the page shows, in words (the Review page draws these) ----------------------------------

def suggested_class(s, i: int) -> str | None:
    """The model's suggestion for sample ``i`` of scores ``s`` (None where it has none)."""
    k = int(s.suggested[i])
    return s.classes[k] if 0 <= k < len(s.classes) else None


def image_facts(s, i: int, row: tuple[str, str, str, str], name_of: Callable[[str], str] = str,
                trust=None) -> list[tuple[str, str]]:
    """The facts beside an image: ``(label, value)`` rows for its label now (and the original
    one if changed), the model's suggestion, its score and the paper's SEI, its status, and
    ``trust`` (a :class:`~sei_core.reliability.ClassReliability`) when its class is unreliable.
    ``row``: :meth:`ReviewQueue.row`; ``name_of``: a class code as shown (e.g. with its name)."""
    label, status, by, orig = row
    suggested = suggested_class(s, i)
    rows = [("Label now", name_of(label))]
    if orig and orig != label:
        rows.append(("Original label", name_of(orig)))
    rows += [("Model suggests", f"{name_of(suggested)} · {100 * s.suggested_probability[i]:.0f}%" if suggested
              else "—"),
             (display_name(s.method), f"{s.score[i]:.3g}  (threshold {s.threshold[i]:.3g})"
              if np.isfinite(s.score[i]) else "no score")]
    if s.method != PAPER_METHOD:
        rows.append(("Paper's SEI", f"{s.sei[i]:.3g}  (threshold {s.sei_threshold[i]:.3g}, "
                     f"{'flagged' if s.sei_flagged[i] else 'not flagged'})" if np.isfinite(s.sei[i]) else "no score"))
    rows.append(("Status", STATUS_WORDS.get(status, status) + (f" by {by}" if by else "")))
    if trust is not None and not trust.reliable:  # the model has not learnt this class: say so beside its flag
        rows.append(("Flags of this class", f"unreliable: the model agrees with {100 * trust.agreement:.0f}% "
                                            f"of its {trust.images:,} labels"))
    return rows


def keys_text(n_classes: int) -> str:
    """The keyboard shortcuts in words, for ``n_classes`` classes."""
    return ("Keyboard: Y confirm · 1–%d relabel as that class (the image's own class confirms) · D discard · "
            "S skip · ← previous · U undo%s. The star marks the model's suggestion: the class it predicted "
            "most often over the last epochs, with its average probability."
            % (min(n_classes, MAX_KEY_CLASSES), " · L relabel as picked" if n_classes > MAX_KEY_CLASSES else ""))


def queue_table(queue: ReviewQueue, s, positions: np.ndarray, name_of: Callable[[str], str] = str) -> pd.DataFrame:
    """The queue's rows at ``positions``: image, given label, the run's score, the paper's SEI,
    label now and status, the labels as ``name_of`` shows a class code."""
    idx = queue.index[positions]
    score = display_name(s.method)
    df = pd.DataFrame({"image": [Path(queue.ids[q]).name for q in positions],
                       "given label": [name_of(s.classes[j]) for j in s.labels[idx]],
                       score: s.score[idx], "SEI": s.sei[idx],
                       "label now": [name_of(v) if v else "" for v in queue.label[positions]],
                       "status": [STATUS_WORDS.get(STATUSES[c], "?") if c != MISSING else "not in the label file"
                                  for c in queue.status[positions]]})
    return df[list(dict.fromkeys(["image", "given label", score, "SEI", "label now", "status"]))]


def decision_lines(decisions: Sequence[Decision], name_of: Callable[[str], str] = str) -> list[str]:
    """One line per decision of an image's history: when, who, what, from which label to which."""
    return [f"{d.time[:16].replace('T', ' ')} · {d.reviewer} · {d.action}{' (undone)' if d.undone else ''}"
            + (f" · {name_of(d.old_label)} → {name_of(d.new_label)}" if d.old_label != d.new_label else "")
            for d in decisions]


def decision_log_table(decisions: Sequence[Decision]) -> pd.DataFrame:
    """The decision log (as given: e.g. newest first) as a table."""
    return pd.DataFrame([{"#": d.id, "when (UTC)": d.time[:19].replace("T", " "), "reviewer": d.reviewer,
                          "image": d.path, "action": d.action + (" (undone)" if d.undone else ""),
                          "old label": d.old_label, "new label": d.new_label, "SEI": d.sei} for d in decisions],
                        columns=["#", "when (UTC)", "reviewer", "image", "action", "old label", "new label", "SEI"])
