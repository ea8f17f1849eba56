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
        message = _worker_message(message)
        parts = [f"{path}: {message}" if path is not None else message]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" — ".join(parts))


_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def _worker_message(message: str) -> str:
    """The original one-line message of a UserError raised in a DataLoader worker.

    PyTorch re-raises a worker's exception in the main process as ``type(e)(text)``, where ``text``
    is the worker's whole formatted traceback; without this, a bad file met by a worker
    (``train.num_workers > 0``) would reach the user as a 26-line traceback instead of one line.
    """
    if _WORKER_TRACEBACK not in message:
        return message
    last = message.rstrip().splitlines()[-1]
    head, sep, tail = last.partition("UserError: ")
    return tail if sep else last
