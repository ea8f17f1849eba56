"""Extract an annotation zip without trusting it.

Zips come back from other people's tools, so every member is checked before a byte is written:
no absolute paths or ``..`` (zip-slip), no symlinks, no encryption, no duplicate names, a bounded
member count, bounded sizes and a bounded compression ratio (zip bombs).  Sizes are enforced
while streaming too, because the sizes in the header are the attacker's claim.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from segal.errors import UserError

MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 1 << 30  # 1 GiB
MAX_TOTAL_BYTES = 8 << 30  # 8 GiB
MAX_RATIO = 100  # uncompressed / compressed
RATIO_FLOOR = 1 << 20  # members and archives smaller than 1 MiB are too small to be a bomb
_CHUNK = 1 << 20


def _bad(path: Path, message: str) -> UserError:
    return UserError(message, path=path, fix="re-export the annotations from the tool; do not use archives from "
                                             "untrusted sources")


def member_path(path: Path, name: str) -> PurePosixPath | None:
    """The safe relative path of a member, ``None`` for directories; refuses escaping names."""
    clean = name.replace("\\", "/")
    if clean.endswith("/"):
        return None
    rel = PurePosixPath(clean)
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or rel.is_absolute():
        raise _bad(path, f"member {name!r} has an absolute path")
    if any(part == ".." for part in rel.parts):
        raise _bad(path, f"member {name!r} escapes the archive with '..'")
    parts = [p for p in rel.parts if p not in ("", ".")]
    if not parts:
        raise _bad(path, f"member {name!r} has an empty name")
    return PurePosixPath(*parts)


def check_archive(path: Path, zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _bad(path, f"archive has {len(infos)} members, over the limit of {MAX_MEMBERS}")
    members, seen = [], set()
    total = compressed = 0
    for info in infos:
        rel = member_path(path, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise _bad(path, f"member {info.filename!r} is a symbolic link")
        if rel is None:
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise _bad(path, f"member {info.filename!r} is not a regular file")
        if info.flag_bits & 0x1:
            raise _bad(path, f"member {info.filename!r} is encrypted")
        key = str(rel)
        if key in seen:
            raise _bad(path, f"member {info.filename!r} appears twice")
        seen.add(key)
        if info.file_size > MAX_MEMBER_BYTES:
            raise _bad(path, f"member {info.filename!r} unpacks to {info.file_size} bytes, over the limit")
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise _bad(path, f"member {info.filename!r} has compression ratio "
                             f"{info.file_size / max(info.compress_size, 1):.0f}× (zip bomb?)")
        total += info.file_size
        compressed += info.compress_size
        members.append((info, rel))
    if total > MAX_TOTAL_BYTES:
        raise _bad(path, f"archive unpacks to {total} bytes, over the limit of {MAX_TOTAL_BYTES}")
    if total > RATIO_FLOOR and total > MAX_RATIO * max(compressed, 1):
        raise _bad(path, f"archive has compression ratio {total / max(compressed, 1):.0f}× (zip bomb?)")
    return members


def safe_extract(path: Path, target: Path) -> Path:
    """Extract ``path`` into the existing empty directory ``target`` after checking every member."""
    root = target.resolve()
    try:
        with zipfile.ZipFile(path) as zf:
            members = check_archive(path, zf)
            for info, rel in members:
                dest = root.joinpath(*rel.parts)
                if not dest.resolve().is_relative_to(root):
                    raise _bad(path, f"member {info.filename!r} escapes the target directory")
                dest.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                with zf.open(info) as src, open(dest, "xb") as dst:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > info.file_size or written > MAX_MEMBER_BYTES:
                            raise _bad(path, f"member {info.filename!r} is larger than its header says")
                        dst.write(chunk)
    except UserError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, ValueError,
            zlib.error) as exc:
        raise UserError(f"corrupt or truncated zip ({exc})", path=path,
                        fix="download the export again from the annotation tool") from None
    except FileExistsError:
        raise _bad(path, "archive holds two members with the same name") from None
    return target
