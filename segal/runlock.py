"""One writer per run directory: an OS lock on ``<run>/.lock``, held while a command changes the run.

``segal acquire``, ``import`` and ``export`` take it before they touch anything; a second command
on the same run stops at once with the holder's PID, host and command line (recorded inside the
file while the lock is held).  The lock is a POSIX record lock (``fcntl.lockf``), not ``flock``:
the kernel drops it when the holder dies, so a SIGKILLed run never leaves a stale lock, and unlike
``flock`` it is not inherited by forked children (data-loader workers, a fork server), which could
otherwise keep a dead run locked until they noticed.  On release the file is emptied, so a run at
rest always holds the same bytes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from segal.errors import UserError

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    """Who holds the lock, from what it wrote into the file (best effort: it may not have written yet)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    where = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
    since = time.strftime(" since %H:%M:%S", time.localtime(info["since"])) if info.get("since") else ""
    command = f" ({info['command']})" if info.get("command") else ""
    return f"PID {info['pid']}{where}{command}{since}"


class RunLock:
    """Exclusive, non-blocking lock of one run directory; a context manager, released on exit or death."""

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UserError(f"cannot open the run's lock file ({exc.strerror})", path=self.path,
                            fix="make the run directory writable (a run is changed in place), or copy it elsewhere"
                            ) from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise UserError(f"cannot lock the run ({exc.strerror})", path=self.path,
                                fix="keep run directories on a local disk that supports file locks") from None
            holder = _holder(self.path)
            raise UserError(f"the run is in use by {holder}", path=self.run_dir,
                            fix="wait for it to finish, or stop that process (a killed process leaves no lock)"
                            ) from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3),
                  "command": " ".join(["segal", *sys.argv[1:]])[:200]}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError:
            pass  # the record only improves the message another process shows; the lock itself is held
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a run at rest has an empty lock file (stable bytes for comparisons)
        os.close(fd)  # closing drops the POSIX lock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a library user who never released: drop it with the object
        self.release()


def lock_run(run_dir: Path | str) -> RunLock:
    """Take the run's lock or raise a :class:`UserError` naming the process holding it."""
    return RunLock(run_dir).acquire()
