"""Errors people read: what is wrong and what to do, said for the command line and for the app.

Every error the library raises for a person to act on derives from :class:`SeiError`, which
holds the ``reason`` (what is wrong) and the ``fix`` (what to do, a :class:`Fix`). A fix that
names a control says it in both vocabularies, ``Fix(cli="use --device cpu", app="choose
Device “cpu”")``; a fix without a flag, a command or a button is a plain string, the same for
both. ``str(error)`` is the command line's text, ``error.said(app=True)`` the app's; nobody
rewrites one into the other. A data set's problems (:class:`sei_core.dataset.Problem`) carry
their fix the same way.

The fixes several errors share are worded once, here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fix:
    """What to do about an error: ``cli`` for the command line, ``app`` for the app's pages
    (None: the same words, as no flag, command or button is named). ``+`` joins a fix and
    text (or another fix) in both vocabularies at once."""

    cli: str = ""
    app: str | None = None

    def said(self, app: bool = False) -> str:
        return self.app if app and self.app is not None else self.cli

    def __str__(self) -> str:
        return self.cli

    def __bool__(self) -> bool:
        return bool(self.cli or self.app)

    def __add__(self, other: "Fix | str") -> "Fix":
        o = Fix.of(other)
        both = self.app is None and o.app is None
        return Fix(self.cli + o.cli, None if both else self.said(True) + o.said(True))

    def __radd__(self, other: str) -> "Fix":
        return Fix.of(other) + self

    @classmethod
    def of(cls, fix: "Fix | str | None") -> "Fix":
        """``fix`` as a :class:`Fix` (a string is the same in both vocabularies)."""
        return fix if isinstance(fix, Fix) else cls(fix or "")


class SeiError(Exception):
    """An error with its ``reason`` and its ``fix``; ``str(e)`` is the command line's message."""

    def __init__(self, reason: str, fix: Fix | str = ""):
        self.reason = reason
        self.fix = Fix.of(fix)
        super().__init__(self.said())

    def said(self, app: bool = False) -> str:
        """The message, in the command line's words or (``app``) in the app's."""
        fix = self.fix.said(app)
        return f"{self.reason}; {fix}" if fix else self.reason


def said(e: BaseException, app: bool = False) -> str:
    """Any exception's message; a :class:`SeiError`'s in the vocabulary asked for."""
    return e.said(app) if isinstance(e, SeiError) else str(e)


# -- the fixes several errors give ------------------------------------------------------------

#: An image that cannot be used is left out of training.
SKIP_UNREADABLE = Fix("use --skip-unreadable to leave it out",
                      "tick “Leave out unreadable images” on the Train page to leave it out")
#: Training starts from random weights.
WEIGHTS_NONE = Fix("train from random weights with --weights none", "choose Weights “none” (random weights)")
#: Training starts from a weights file on this machine.
WEIGHTS_FILE = Fix("pass the file with --weights /path/to/file",
                   "choose Weights “local checkpoint” and give the file")
#: Training runs on the CPU.
DEVICE_CPU = Fix("use --device cpu", "choose Device “cpu”")
#: A new run goes into another folder.
ANOTHER_OUT = Fix("choose another --out", "choose another run name")


def resume_fix(path) -> Fix:
    """Continue the run in ``path`` from its last complete epoch."""
    return Fix(f"resume it with `sei resume {path}`", "resume it with the Resume button on the Train page")
