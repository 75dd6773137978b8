"""Test hook: the points of a decision or rewrite at which a process can be made to die.

The environment variable ``SEI_REVIEW_FAULT`` (comma-separated point names, read once at
import) makes the process SIGKILL itself at those points (``decide:before-commit``,
``decide:logged``, ``flush:backup``, ``flush:writing``, ``flush:replaced``,
``flush:marked``), so tests can kill a real process at every step of the store's contract
(:mod:`sei_core.review.store`). Unset, it costs one truth test per point.
"""

from __future__ import annotations

import os
import signal

_FAULTS = frozenset(p.strip() for p in os.environ.get("SEI_REVIEW_FAULT", "").split(",") if p.strip())


def fault(point: str) -> None:
    """Die here, as ``kill -9`` would, if ``SEI_REVIEW_FAULT`` names ``point``."""
    if _FAULTS and point in _FAULTS:
        os.kill(os.getpid(), signal.SIGKILL)
