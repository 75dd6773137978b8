"""Expert review of a run's flagged images: the decision store, the queue, and which file a run
reviews.

- :mod:`.store` — :class:`ReviewStore`: every decision (confirm / relabel / discard / undo)
  committed to an append-only SQLite log and written back into the user's own label file
  (that column only, atomically, crash-safe; the module docstring states the contract and
  the on-disk layout), with :class:`Decision`, :class:`Sampling` and the errors.
- :mod:`.queue` — :class:`ReviewQueue`: the static order, filters, next / previous, audit
  picks for the count from the decisions.
- :mod:`.session` — :class:`ReviewSession`: one reviewer's decide / undo / next / previous
  over the store and the queue, every failure an :class:`Outcome` in the reviewer's words.
- :mod:`.run_files` — :func:`review_label_file`, :func:`review_columns`, the images sent to
  a run's queue by hand, and :func:`run_count`.
"""

from .queue import AUDIT_BOOST, AUDIT_FLOOR, AUDIT_WINDOW, STATE_FILTERS, ReviewQueue
from .session import Conflict, Outcome, ReviewSession
from .run_files import (REVIEW_LABEL_FILE, REVIEW_REQUESTS_FILE, request_review, review_columns, review_label_file,
                        review_requests, run_count)
from .store import (ACTIONS, CONFIRMED, DISCARDED, ORIGINAL_LABEL_COL, RELABELED, REVIEW_COLUMNS, REVIEWER_COL,
                    STATUS_COL, STATUSES, ConflictError, Decision, ExportError, LabelFileError, LockTimeoutError,
                    ReviewError, ReviewStore, Sampling, UndoError, UnknownLabelError, UnknownSampleError,
                    is_read_only)

__all__ = [
    "ACTIONS", "AUDIT_BOOST", "AUDIT_FLOOR", "AUDIT_WINDOW", "CONFIRMED", "DISCARDED", "ORIGINAL_LABEL_COL",
    "RELABELED", "REVIEW_COLUMNS", "REVIEWER_COL", "REVIEW_LABEL_FILE", "REVIEW_REQUESTS_FILE", "STATE_FILTERS",
    "STATUS_COL", "STATUSES", "ConflictError", "Decision", "ExportError", "LabelFileError", "LockTimeoutError",
    "ReviewError", "ReviewQueue", "ReviewStore", "Sampling", "UndoError", "UnknownLabelError",
    "UnknownSampleError", "is_read_only", "request_review", "review_columns", "review_label_file",
    "review_requests", "run_count", "Conflict", "Outcome", "ReviewSession",
]
