"""Named shared-memory segments: create owner-only, attach, unlink, and sweep stale ones.

We map files under /dev/shm ourselves instead of using `multiprocessing.shared_memory`, whose
resource tracker (Python 3.11) unlinks or warns about segments it thinks a child leaked. Here the
supervisor alone owns and unlinks; every name embeds the owner's pid
(`hftbot-<pid>-<name>`) so a later run can tell a crashed run's leftovers from a live run's
segments and remove them.

Linux only (/dev/shm). Never unlinks a segment whose owner process is alive. `Segment.create`
refuses any other name, tests' segments included: a crashed test run is cleaned by the next run.
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

SHM_DIR = Path("/dev/shm")
PREFIX = "hftbot-"
_NAME = re.compile(r"^hftbot-(\d+)-[A-Za-z0-9_.-]+$")


def segment_name(name: str, owner_pid: int | None = None) -> str:
    """The /dev/shm name of a logical segment owned by `owner_pid` (default: this process)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"segment name must be [A-Za-z0-9_.-]+, got {name!r}")
    return f"{PREFIX}{owner_pid if owner_pid is not None else os.getpid()}-{name}"


class Segment:
    """One mapped segment. `create` makes it owner-only (0600) and fails if it exists."""

    def __init__(self, name: str, mm: mmap.mmap, size: int, owner: bool) -> None:
        self.name = name
        self.mm = mm
        self.size = size
        self.owner = owner

    @classmethod
    def create(cls, name: str, size: int) -> Segment:
        if not _NAME.match(name):
            # every segment carries the owner's pid, so remove_stale can clean up after any crash
            raise ValueError(f"segment name must be hftbot-<owner pid>-<name> (use segment_name), got {name!r}")
        path = SHM_DIR / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return cls(name, mm, size, owner=True)

    @classmethod
    def attach(cls, name: str) -> Segment:
        path = SHM_DIR / name
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"shared-memory segment {name!r} does not exist (is the supervisor running?)"
            ) from None
        try:
            size = os.fstat(fd).st_size
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return cls(name, mm, size, owner=False)

    def close(self) -> None:
        """Unmap. Views into the segment must be dropped first (numpy holds the buffer)."""
        try:
            self.mm.close()
        except BufferError:
            pass  # a view still exists; the mapping goes when the last view does

    def unlink(self) -> None:
        unlink_segment(self.name)


def unlink_segment(name: str) -> bool:
    """Remove a segment by name; True if it existed. Safe to call twice."""
    try:
        (SHM_DIR / name).unlink()
        return True
    except FileNotFoundError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (dead, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_bytes()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def list_segments(owner_pid: int | None = None) -> list[str]:
    """Names of hftbot segments in /dev/shm, optionally only those of one owner."""
    names = []
    for p in SHM_DIR.glob(PREFIX + "*"):
        m = _NAME.match(p.name)
        if m and (owner_pid is None or int(m.group(1)) == owner_pid):
            names.append(p.name)
    return sorted(names)


def remove_stale() -> list[str]:
    """Unlink every hftbot segment whose owner process is gone (a crashed earlier run)."""
    removed = []
    for name in list_segments():
        pid = int(_NAME.match(name).group(1))  # type: ignore[union-attr]
        if not pid_alive(pid) and unlink_segment(name):
            removed.append(name)
    return removed
