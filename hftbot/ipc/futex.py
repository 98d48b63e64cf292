"""Cross-process futex wait/wake on a word in shared memory, and a full memory fence.

Blocking readers sleep in the kernel on a 32-bit word of the ring header and the writer wakes
them: a real wakeup, no sleep-polling. The futex is the shared (non-private) kind, so processes
that map the same segment meet on it.

Python cannot emit a fence instruction, but acquiring an uncontended `threading.Lock` executes a
locked read-modify-write, which is a full barrier on x86-64 (and the lock's C code uses
sequentially consistent atomics on other CPUs). The ring needs one on each side of the
"store, then load the other side's flag" handshake (the Dekker pattern) so a wakeup is never lost
to store-buffer reordering.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
_INT_MAX = 0x7FFFFFFF

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_fence_lock = threading.Lock()


def fence() -> None:
    """Full memory barrier (see module docstring)."""
    _fence_lock.acquire()
    _fence_lock.release()


def available() -> bool:
    return _SYS_FUTEX is not None


def futex_wait(addr: int, expected: int, timeout_s: float | None) -> None:
    """Sleep while the u32 at `addr` equals `expected`, until woken or `timeout_s` passes.

    Returns on wakeup, timeout, a changed word or a signal; the caller re-checks its condition.
    """
    if _SYS_FUTEX is None:
        raise OSError(f"futex is not supported on {platform.machine()}")
    ts_ptr = None
    if timeout_s is not None:
        timeout_s = max(timeout_s, 0.0)
        sec = int(timeout_s)
        ts = _Timespec(sec, int((timeout_s - sec) * 1e9))
        ts_ptr = ctypes.byref(ts)
    r = _syscall(_SYS_FUTEX, ctypes.c_void_p(addr), _FUTEX_WAIT, ctypes.c_uint32(expected), ts_ptr, None, 0)
    if r == -1:
        err = ctypes.get_errno()
        # EAGAIN: the word already changed; ETIMEDOUT; EINTR: a signal. All mean "re-check".
        if err not in (11, 110, 4):
            raise OSError(err, os.strerror(err))


def futex_wake(addr: int, n: int = _INT_MAX) -> int:
    """Wake up to `n` waiters on the word at `addr`; returns how many were woken."""
    if _SYS_FUTEX is None:
        return 0
    return int(_syscall(_SYS_FUTEX, ctypes.c_void_p(addr), _FUTEX_WAKE, n, None, None, 0))
