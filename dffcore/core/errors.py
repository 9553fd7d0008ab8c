"""User-facing errors.

Every problem a user can cause (bad files, bad YAML, bad parameters) is raised as a
:class:`DffError` whose message is one line naming the culprit and what would be
valid. The command line prints these messages and exits non-zero; it never shows a
traceback for them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DffError(Exception):
    """An error caused by the user's input, with a one-line explanation."""


class SpecError(DffError):
    """One or more problems in a pipeline spec; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def one_line(exc: BaseException) -> str:
    """One line describing ``exc``, for a summary row or a log line.

    Parameters
    ----------
    exc : BaseException
        The exception.

    Returns
    -------
    str
        The message's non-blank lines joined by ``"; "``; a :class:`DffError` is its
        message alone, any other exception is prefixed with its type
        (``"RuntimeError: boom; second line"``, or just the type when it has no message).
    """
    text = "; ".join(s.strip() for s in str(exc).splitlines() if s.strip())
    if isinstance(exc, DffError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
