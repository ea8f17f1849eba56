"""File I/O on the ground floor: atomic writes, bounded JSON reads, dotted-key lookup, id fingerprints.

Every module that writes state (the pool, caches, reports, annotation exports) writes through
:func:`atomic_write_bytes`, so a crash at any moment leaves either the old or the new file, never a
torn one.  This module imports nothing of segal above the ground floor, so anything may use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from segal.crashpoints import crash_point
from segal.errors import UserError


def _umask() -> int:
    """The process umask (read by setting it: there is no getter; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 would hide reports and exports


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a partial one.

    In a distributed run only rank 0 writes; the other ranks hold the same state in memory.
    """
    from segal.distributed import is_main  # torch.distributed: imported only when something is written

    if not is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # another user (a Label Studio server, a web server) may read it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        crash_point("write.before_rename")
        os.replace(tmp, path)
        crash_point("write.after_rename")
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a full disk fails in write()/fsync(), which name no file: name ours
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_json(path: Path, obj: Any) -> None:
    """:func:`atomic_write_bytes` of indented JSON; numpy scalars and arrays become plain numbers and lists."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """Read a whole file, refusing absurd sizes before they reach a parser (user-supplied annotation files)."""
    try:
        size = path.stat().st_size
    except OSError:
        raise UserError(f"{what} not found", path=path, fix="pass the file exported by the annotation tool") from None
    if size > limit:
        raise UserError(f"{what} is {size / 2**20:.0f} MiB, over the {limit / 2**20:.0f} MiB limit", path=path,
                        fix="export fewer images per file")
    return path.read_bytes()


def read_json(path: Path, *, fix: str = "delete it to recompute this step", max_bytes: int | None = None) -> Any:
    """Parse a JSON file; a corrupt one is a :class:`UserError` naming the file and ``fix``.

    ``max_bytes`` bounds files from outside segal (annotation exports) before they reach the parser.
    """
    path = Path(path)
    data = read_limited(path, max_bytes, "JSON file") if max_bytes is not None else path.read_bytes()
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise UserError(f"corrupt or truncated JSON ({exc})", path=path, fix=fix) from None


def get_dotted(d: Any, dotted: str) -> Any:
    """``d["a"]["b"]`` for ``"a.b"``; ``None`` where any level is missing or not a mapping."""
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def fingerprint(ids: list[str]) -> str:
    """A short hash of the pool's ids in order: detects a dataset that changed under a run."""
    h = hashlib.sha1()
    for i in ids:
        h.update(i.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
