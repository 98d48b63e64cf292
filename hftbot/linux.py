"""Linux process plumbing through ctypes `prctl`: names in ps/top, parent-death signals, adopting
orphans, and reading a process's state, group and children from /proc.

Why here and not a dependency (`setproctitle`, `psutil`): each need is a few lines of prctl or
/proc, and the supervisor must keep working where those wheels are missing. Everything degrades
to a no-op (returns False) off Linux; nothing here raises for a process that is already gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
COMM_MAX = 15  # bytes of a thread name (16 with the NUL)

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _prctl = _libc.prctl
    _prctl.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _call(option: int, arg: int | ctypes.Array | ctypes.c_int) -> bool:
    if _prctl is None:
        return False
    return _prctl(option, arg, 0, 0, 0) == 0


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies.

    Caveat (prctl(2)): "parent" is the *thread* that created this process; a helper must be
    started from a thread that lives as long as its parent process (the main thread)."""
    return _call(PR_SET_PDEATHSIG, sig)


def set_child_subreaper(on: bool = True) -> bool:
    """Orphans of our descendants are re-parented to us, not to pid 1, so we can reap them (a
    container's pid 1 often never does, and they would stay as zombies)."""
    return _call(PR_SET_CHILD_SUBREAPER, int(on))


def is_child_subreaper() -> bool:
    if _prctl is None:
        return False
    v = ctypes.c_int(0)
    return _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(v), 0, 0, 0) == 0 and bool(v.value)


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the parenthesised command name), or None."""
    try:
        raw = (Path("/proc") / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode().split()


def pid_state(pid: int) -> str | None:
    """One-letter state (R, S, D, Z, ...) of a process, or None when it does not exist."""
    f = _stat_fields(pid)
    return f[0] if f else None


def pid_group(pid: int) -> int | None:
    f = _stat_fields(pid)
    return int(f[2]) if f else None


def children(pid: int | None = None) -> list[int]:
    """Direct children of a process (all its threads'), from /proc/<pid>/task/*/children."""
    base = Path("/proc") / str(pid if pid is not None else os.getpid()) / "task"
    out: list[int] = []
    try:
        tasks = list(base.iterdir())
    except OSError:
        return out
    for t in tasks:
        try:
            out.extend(int(x) for x in (t / "children").read_text().split())
        except OSError:
            continue
    return sorted(set(out))


def group_members(pgid: int) -> list[int]:
    """Every process (zombies included) in process group `pgid`."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            f = _stat_fields(p.name)
            if f and int(f[2]) == pgid:
                out.append(int(p.name))
    return out


def set_realtime(priority: int) -> str:
    """Run the calling thread SCHED_FIFO at `priority` (1..99); '' when done, else why not.

    SCHED_RESET_ON_FORK: threads and processes started afterwards are born SCHED_OTHER, so only
    the thread that asked is real-time (a helper that parses or writes files must not be). Needs
    root, CAP_SYS_NICE or an RLIMIT_RTPRIO of at least `priority`; the kernel keeps 5 % of each
    second for everything else (sched_rt_runtime_us) whatever a real-time thread does."""
    if not hasattr(os, "SCHED_FIFO"):
        return "no SCHED_FIFO on this platform"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except PermissionError:
        return f"not permitted (needs root, CAP_SYS_NICE or ulimit -r >= {priority})"
    except OSError as e:
        return f"sched_setscheduler: {e}"
    return ""


def thread_policy(tid: int = 0) -> tuple[int, int]:
    """(policy without flags, priority) of a thread (native id; 0: the calling one)."""
    flags = getattr(os, "SCHED_RESET_ON_FORK", 0)
    return os.sched_getscheduler(tid) & ~flags, os.sched_getparam(tid).sched_priority


def task_policies(pid: int) -> dict[int, tuple[int, int]]:
    """Every thread of `pid`: native id → (policy, priority); {} for a process that is gone."""
    out = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return out
    for tid in tids:
        try:
            out[tid] = thread_policy(tid)
        except OSError:  # the thread ended meanwhile
            pass
    return out


def set_process_name(title: str) -> bool:
    """Show `title` in ps and top: the thread name (`comm`, 15 bytes, what top shows) and the
    command line (`/proc/self/cmdline`, what `ps -ef` / `ps aux` show).

    The command line is rewritten in place, in the memory the kernel reports as this process's
    argument area (`arg_start`..`arg_end`, fields 48-49 of /proc/self/stat), padded with NULs and
    never written past its end; Python's own `sys.argv` is a separate copy and stays intact."""
    data = title.encode("utf-8", "replace")
    ok = _call(PR_SET_NAME, ctypes.create_string_buffer(data[:COMM_MAX]))
    f = _stat_fields("self")
    if not f or len(f) < 47:
        return ok
    start, end = int(f[45]), int(f[46])
    size = end - start
    if start <= 0 or size < 2:
        return ok
    buf = data[: size - 1].ljust(size, b"\0")
    ctypes.memmove(start, buf, size)
    return True
