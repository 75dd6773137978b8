"""Expert review of a run's flagged images: the decision store, the queue, and which file a run
reviews.

- :mod:`.store` — :class:`ReviewStore`: every decision (confirm / relabel / discard / undo)
  committed to an append-only SQLite log and written back into the user's own label file
  (that column only, atomically, crash-safe; the module docstring states the contract and
  the on-disk layout). It composes :mod:`.decision_log` (the SQLite log, its locks and
  queries), :mod:`.label_file` (the label file read, checked and rendered byte-exact),
  :mod:`.writeback` (the file kept in step with the log, coalesced for large files) and
  :mod:`.status` (the reviewed state of rows: the file with the pending decisions laid over).
- :mod:`.decision` — :class:`Decision`, :class:`Sampling`, :class:`Change`, the review
  columns and statuses; :mod:`.errors` — :class:`ReviewError` and its kinds.
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
from .decision import (ACTIONS, CONFIRMED, DISCARDED, ORIGINAL_LABEL_COL, RELABELED, REVIEW_COLUMNS, REVIEWER_COL,
                       STATUS_COL, STATUSES, Change, Decision, Sampling)
from .errors import (ConflictError, ExportError, LabelFileError, LockTimeoutError, ReviewError, UndoError,
                     UnknownLabelError, UnknownSampleError)
from .label_file import is_read_only
from .store import ReviewStore

__all__ = [
    "ACTIONS", "AUDIT_BOOST", "AUDIT_FLOOR", "AUDIT_WINDOW", "CONFIRMED", "DISCARDED", "ORIGINAL_LABEL_COL",
    "RELABELED", "REVIEW_COLUMNS", "REVIEWER_COL", "REVIEW_LABEL_FILE", "REVIEW_REQUESTS_FILE", "STATE_FILTERS",
    "STATUS_COL", "STATUSES", "Change", "ConflictError", "Decision", "ExportError", "LabelFileError", "LockTimeoutError",
    "ReviewError", "ReviewQueue", "ReviewStore", "Sampling", "UndoError", "UnknownLabelError",
    "UnknownSampleError", "is_read_only", "request_review", "review_columns", "review_label_file",
    "review_requests", "run_count", "Conflict", "Outcome", "ReviewSession",
]
