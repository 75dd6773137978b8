"""What a review decision is: the review columns and statuses it sets, :class:`Decision` (one
logged action), :class:`Sampling` (how the image came to be shown) and :class:`Change` (what
a decision sets on its row)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

ORIGINAL_LABEL_COL = "original_label"
STATUS_COL = "review_status"
REVIEWER_COL = "reviewed_by"
REVIEW_COLUMNS = (ORIGINAL_LABEL_COL, STATUS_COL, REVIEWER_COL)

CONFIRMED, RELABELED, DISCARDED = "confirmed", "relabeled", "discarded"
STATUSES = ("", CONFIRMED, RELABELED, DISCARDED)
ACTIONS = ("confirm", "relabel", "discard", "undo")
STATUS_FOR_ACTION = {"confirm": CONFIRMED, "relabel": RELABELED, "discard": DISCARDED}


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


class Change(NamedTuple):
    """What decision ``id`` (an undo included) sets on the row of ``path``: its label, review
    status and reviewed_by. Every value is absolute, so applying changes again in log order
    is idempotent."""

    id: int
    path: str
    label: str
    status: str
    reviewed_by: str


@dataclass(frozen=True)
class Sampling:
    """How a decided image came to be shown, logged with the decision (what the count from
    the decisions needs, :mod:`sei_core.review_count`).

    ``rank``: the image's position in the queue's static order (0 = most suspicious);
    ``population``: how many images an audit pick was drawn from at that moment (the
    not-yet-reviewed ones); ``audit``: drawn at random (True) or next in the static order;
    ``share``: the audit share in effect; ``weight``: an audit pick's draw weight
    (:func:`sei_core.review_count.audit_weights`) relative to the mean weight of the images it
    was drawn from (1 for a uniform draw). An audit pick's inclusion probability at its draw is
    ``share · weight / population``.
    """

    rank: int
    population: int
    audit: bool
    share: float
    weight: float = 1.0

    @property
    def inclusion_probability(self) -> float:
        return self.share * self.weight / self.population if self.audit and self.population else float("nan")


def _human_time(iso: str) -> str:
    try:
        dt = datetime.fromisoformat(iso).astimezone(timezone.utc)
    except ValueError:
        return iso
    return dt.strftime("%H:%M UTC on %Y-%m-%d")


def utc_now() -> str:
    """The time a decision is logged at: UTC, ISO 8601 to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

