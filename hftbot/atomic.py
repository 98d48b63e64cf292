"""Atomic file replacement: the one helper every writer of a file that readers watch uses.

Recordings, checkpoints, the `CURRENT` pointer, trainer state and trade logs are read by other
processes while they are being written. Each is written to a temporary name in the same folder,
fsynced, renamed over the final name, and the folder fsynced, so the visible name only ever holds
a whole file, before and after a crash. It never leaves its temporary file behind on an error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `path`; write it, and on a clean exit it replaces `path`.

    The temporary name starts with a dot and ends in `.tmp`, so folder scans that look for
    `*.parquet` or `*.json` never see a half-written file.
    """
    final = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)  # mkstemp makes 0600; a trainer and the bot may run as different users
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(final.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically (see the module docstring)."""
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)
