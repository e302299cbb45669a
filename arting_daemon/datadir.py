"""The data directory is private: the directory ``0700``, every file in it ``0600``.

It holds the job journal, the key hashes, the guest identity and the images; none of
it is for other accounts on the machine. Files are created private from the start
(never written first and narrowed after), and a directory made by an older version is
narrowed once, the first time this one opens it.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

DIR_MODE, FILE_MODE = 0o700, 0o600


def prepare(path: Path) -> None:
    """Create the data directory, or narrow one made by an older (or careless) version."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) == DIR_MODE:
        return
    for parent, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(Path(parent) / name, DIR_MODE)
        for name in files:
            os.chmod(Path(parent) / name, FILE_MODE)
    os.chmod(path, DIR_MODE)


def subdir(path: Path) -> None:
    """A directory inside the data directory (and any missing between them), private."""
    if not path.is_dir():
        subdir(path.parent)
        path.mkdir(mode=DIR_MODE, exist_ok=True)


def touch(path: Path) -> None:
    """Make sure ``path`` exists as a private file (SQLite then gives its -wal and -shm
    files the same mode)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))


def write(path: Path, data: bytes, sync: bool = False) -> None:
    """Write a private file atomically: a private temporary file (its name unique, so
    two writers never share one), then a rename. ``sync``: on the disk when it returns
    (the file, then the directory's entry), for a file a crash must not take back."""
    tmp = _written(path, data, sync)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def create(path: Path, data: bytes) -> bool:
    """Write a private file atomically unless it exists (several replicas may try at
    once: the first one wins); False when it existed."""
    tmp = _written(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _written(path: Path, data: bytes, sync: bool = False) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
