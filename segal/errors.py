"""User-facing errors.

Anything the user can fix (a bad recipe, a missing file, an impossible budget) is raised as
:class:`UserError`; the CLI prints its one-line message and exits with code 2.  Everything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, path: object | None = None, fix: str | None = None):
        parts = [f"{path}: {message}" if path is not None else message]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" — ".join(parts))
