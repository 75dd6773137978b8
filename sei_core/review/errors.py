"""The errors of the review store, every one a :class:`ReviewError` whose message says what
to do, and :func:`conflict`, which words a :class:`ConflictError` from what the log holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SeiError

if TYPE_CHECKING:
    from .decision import Decision


class ReviewError(SeiError):
    """Base class of every error raised by the review store."""


class LabelFileError(ReviewError):
    """The label file is missing, unreadable, malformed, or could not be written."""


class LockTimeoutError(ReviewError):
    """Another process held the label file's lock for longer than the store's ``lock_timeout``."""


class UnknownSampleError(ReviewError, LookupError):
    """The given path is not a row of the label file."""


class UnknownLabelError(ReviewError, ValueError):
    """A relabel target is not one of the valid classes."""


class UndoError(ReviewError):
    """There is nothing (valid) to undo."""


class ExportError(ReviewError):
    """A clean export was refused or failed."""


class ConflictError(ReviewError):
    """The sample changed since the reviewer looked at it.

    ``latest`` is the most recent decision in effect for the sample (``None`` if
    the file was edited outside the review tool), so a UI can show who changed
    it, when, and to what, and offer to apply anyway with ``force=True``. ``reason`` is the
    message without the library's advice (``force=True``), for a UI that offers its own.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        latest: Decision | None,
        current_label: str,
        current_status: str,
        expected_label: str,
        expected_status: str,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.path = path
        self.latest = latest
        self.current_label = current_label
        self.current_status = current_status
        self.expected_label = expected_label
        self.expected_status = expected_status


def conflict(latest: Decision | None, path: str, label: str, status: str, expected_label: str,
             expected_status: str, undoing: Decision | None = None) -> ConflictError:
    """The :class:`ConflictError` of a decision (or of the undo of ``undoing``) on ``path``,
    which is now ``label``/``status`` where the caller expected ``expected_label``/
    ``expected_status``; ``latest``: the decision in effect on it (None: changed outside the tool)."""
    if latest is not None:
        cause = latest.summary()
    else:
        cause = "the label file was changed outside the review tool"
    now = f"label {label!r}, status {status or 'unreviewed'!r}"
    want = f"label {expected_label!r}, status {expected_status or 'unreviewed'!r}"
    if undoing is not None:
        reason = (f"Cannot undo decision #{undoing.id} on {path!r}: the sample changed since "
                  f"({cause}). It is now {now}, not {want} as that decision left it.")
        fix = "Undo the later decision first, or pass force=True to revert anyway."
    else:
        reason = (f"{path!r} changed since you loaded it: {cause}. It is now {now}, but you "
                  f"saw {want}.")
        fix = "Reload the sample and decide again, or pass force=True to apply your decision anyway."
    return ConflictError(f"{reason} {fix}", path=path, latest=latest, current_label=label,
                         current_status=status, expected_label=expected_label,
                         expected_status=expected_status, reason=reason)
