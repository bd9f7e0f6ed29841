"""Durable file writes: a reader (or a resumed run) never sees half a file, and what a
resume relies on survives a power loss.

A rename is atomic, but it lives in its directory's entries: until the directory itself
is fsynced, a power loss can undo it (and a new file or folder can vanish). So every
rename and every new directory entry that a resume relies on is followed by an fsync of
the directory holding it.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: str | Path) -> None:
    """Make the entries of directory `path` (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: str | Path) -> Path:
    """mkdir -p, fsyncing the parent of every directory it creates."""
    path = Path(path)
    if not path.is_dir():
        ensure_dir(path.parent)
        path.mkdir(exist_ok=True)
        fsync_dir(path.parent)
    return path


def replace_durably(src: str | Path, dest: str | Path) -> None:
    """os.replace, then fsync the directories it changed."""
    os.replace(src, dest)
    fsync_dir(Path(dest).parent)
    if Path(src).parent != Path(dest).parent:
        fsync_dir(Path(src).parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync it, rename it over `path`, and
    fsync the folder."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())
