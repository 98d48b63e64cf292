"""The one small interface between the supervisor and every process it runs.

A process is a plain function `main(ctx: ProcessContext) -> None`, named by an import path in a
`ProcessSpec`. The supervisor spawns it (spawn context: never fork after torch is imported), and
the function loops until `ctx.stopping()`, calling `ctx.beat(**counters)` at least every
`runtime.heartbeat_s`. Heartbeats and stop requests travel through one shared-memory table
(`HeartbeatTable`), so a stop check costs a memory read, not a syscall.

Each child runs in its own process group (so a Ctrl-C or a `kill -TERM -<pgid>` reaches only the
supervisor, which stops everyone in order, and so the supervisor can kill a child together with
every helper it started), names itself in ps/top (`hftbot: feed`), and asks the kernel for a
SIGTERM when the supervisor dies. A child that finds its supervisor gone (killed with SIGKILL)
stops, and the last one out unlinks the dead run's segments, so nothing stays in /dev/shm on
that path either.

Besides beating, a process tells the supervisor two things: `ctx.serving()` once it does its job
(the feed publishes a synced book, inference its model's signals: the restart-to-serving time is
measured to that moment), and `ctx.finish()` when its work is done (a replay at the end of its
recording): it then exits 0, is not restarted, and a critical one ends the run.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hftbot import linux
from hftbot.config import Config
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring

MAX_PROCESSES = 16
MAX_COUNTERS = 12
GIL_SWITCH_S = 0.0002  # the switch interval of the processes on the tick-to-order path (short_gil_slices)

HEARTBEAT_DTYPE = np.dtype(
    [
        ("name", "S16"),
        ("pid", "<i8"),
        ("started_ns", "<i8"),
        ("beat_ns", "<i8"),  # 0 until the process's first beat (= "ready")
        ("beats", "<i8"),
        ("stop", "<i8"),  # set by the supervisor: please stop
        ("serving_ns", "<i8"),  # when the process first did its job (ctx.serving()); 0 before
        ("finished", "<i8"),  # 1: its work is done (ctx.finish()); exits 0, not restarted
        ("counter_names", "S24", (MAX_COUNTERS,)),
        ("counters", "<i8", (MAX_COUNTERS,)),
    ]
)


class HeartbeatTable:
    """One row per supervised process, in a shared-memory segment the supervisor owns."""

    def __init__(self, seg: shm.Segment) -> None:
        self.segment = seg
        self.rows = np.frombuffer(seg.mm, dtype=HEARTBEAT_DTYPE, count=MAX_PROCESSES)

    @classmethod
    def create(cls, name: str) -> HeartbeatTable:
        return cls(shm.Segment.create(name, HEARTBEAT_DTYPE.itemsize * MAX_PROCESSES))

    @classmethod
    def attach(cls, name: str) -> HeartbeatTable:
        return cls(shm.Segment.attach(name))

    def counters(self, slot: int) -> dict[str, int]:
        row = self.rows[slot]
        return {n.decode(): int(v) for n, v in zip(row["counter_names"], row["counters"], strict=True) if n}

    def close(self) -> None:
        del self.rows
        self.segment.close()


@dataclass(frozen=True)
class ProcessSpec:
    """What the supervisor needs to run one process."""

    name: str
    entry: str  # "package.module:function"
    modes: tuple[str, ...] = ("sim", "replay", "paper", "testnet", "live")
    critical: bool = True  # past max_restarts a critical process brings the whole system down
    stop_rank: int = 50  # lower stops first (execution 10, inference 20, feed 30, recorder 40, sim 90)
    enabled: Callable[[Config], bool] | None = None  # e.g. lambda cfg: cfg.recorder.enabled
    panel: tuple[str, ...] = ()  # counters the status panel shows (empty: all, as room allows)
    nice: int = 0  # added to the process's nice value at start: > 0 for work off the tick-to-order path
    rt_priority: int = 0  # > 0: its main thread runs SCHED_FIFO at this priority (`realtime_reason`)


def short_gil_slices() -> None:
    """Let this process's threads hold the GIL 0.2 ms at a time instead of Python's 5 ms.

    For the processes on the tick-to-order path (feed, inference, execution), each of which has a
    side thread (the feed's raw-frame writer, inference's checkpoint loader, the gateway's
    readers): a frame or record that arrives while such a thread runs waits at most this long
    for the thread that serves it."""
    sys.setswitchinterval(GIL_SWITCH_S)


@dataclass
class ProcessContext:
    """Everything a process gets from the supervisor. Picklable; built in the parent."""

    name: str
    slot: int
    config: Config
    segments: dict[str, str]  # logical name ("book", "trade", "signal", "heartbeats") -> shm name
    endpoints: dict[str, Any]
    supervisor_pid: int
    nice: int = 0  # ProcessSpec.nice: applied by child_main before the process's main runs
    rt_priority: int = 0  # ProcessSpec.rt_priority: applied by child_main where `realtime_reason` allows
    _table: HeartbeatTable | None = field(default=None, repr=False)
    _counters: dict[str, int] = field(default_factory=dict, repr=False)
    _stop_local: bool = False
    _served: bool = False

    @property
    def mode(self) -> str:
        return self.config.runtime.mode

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"hftbot.{self.name}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_table"] = None
        return state

    def _row(self) -> np.void:
        if self._table is None:
            self._table = HeartbeatTable.attach(self.segments["heartbeats"])
        return self._table.rows[self.slot]

    def open_ring(self, name: str) -> Ring:
        """Attach to a ring the supervisor created ("book", "trade", "signal")."""
        if name not in self.segments:
            raise KeyError(f"no ring named {name!r}; the supervisor created {sorted(self.segments)}")
        return Ring.attach(self.segments[name])

    def orphaned(self) -> bool:
        return os.getppid() != self.supervisor_pid

    def supervisor_dead(self) -> bool:
        """The supervisor died, even if we were not re-parented yet.

        A SIGKILLed supervisor's threads exit one by one. Our parent-death signal comes when the
        thread that spawned us exits, and the kernel then hands us to one of its threads that has
        not begun exiting, so for a moment `getppid()` still names the supervisor. Its main
        thread is already a zombie ("Z") then: seen on a loaded 2-core machine, where the window
        is long enough for a stopping child to miss its orphan cleanup."""
        return self.orphaned() or linux.pid_state(self.supervisor_pid) in ("Z", "X")

    def stopping(self) -> bool:
        """True once the supervisor asked this process to stop (or died)."""
        return self._stop_local or bool(self._row()["stop"])

    def request_stop(self) -> None:
        self._stop_local = True

    def serving(self) -> None:
        """Say "I do my job now" (first time only; later calls cost an attribute read)."""
        if not self._served:
            self._served = True
            self._row()["serving_ns"] = time.time_ns()

    def finish(self) -> None:
        """Say "my work is done": return from main next; the supervisor will not restart us."""
        self._row()["finished"] = 1

    def beat(self, **counters: int) -> None:
        """Report liveness and (optionally) integer counters shown in the status panel."""
        row = self._row()
        if counters:
            for k, v in counters.items():
                if k not in self._counters:
                    if len(self._counters) >= MAX_COUNTERS:
                        raise ValueError(f"{self.name}: more than {MAX_COUNTERS} heartbeat counters")
                    self._counters[k] = len(self._counters)
                    row["counter_names"][self._counters[k]] = k.encode()[:24]
                row["counters"][self._counters[k]] = int(v)
        row["beats"] += 1
        row["beat_ns"] = time.time_ns()
        if self.orphaned():
            self.log.error("supervisor (pid %d) is gone: stopping", self.supervisor_pid)
            self._stop_local = True


def configure_logging(level: str, name: str | None = None) -> None:
    fmt = "%(asctime)s %(levelname).1s " + (f"[{name}] " if name else "") + "%(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def realtime_reason(cfg: Config) -> str:
    """Why this configuration runs no thread real-time ('' when it may).

    A real-time thread that never sleeps starves every other process of its core, so: not with
    `ring.wait = "spin"` (its readers never sleep), and not in replay (a replay runs as fast as it
    is asked to, so the feed and execution would not sleep either); in sim, paper, testnet and
    live the market paces them and they sleep between records (docs/runtime.md)."""
    if not cfg.runtime.realtime:
        return "runtime.realtime = false"
    if cfg.ring.wait == "spin":
        return 'ring.wait = "spin"'
    if cfg.runtime.mode == "replay":
        return "replay mode"
    return ""


def _go_realtime(ctx: ProcessContext) -> None:
    why = realtime_reason(ctx.config) or linux.set_realtime(ctx.rt_priority)
    if why:
        ctx.log.info("%s: normal priority: %s", ctx.name, why)
    else:
        ctx.log.info("%s: main thread real-time (SCHED_FIFO %d)", ctx.name, ctx.rt_priority)


def resolve_entry(entry: str) -> Callable[[ProcessContext], None]:
    module, _, func = entry.partition(":")
    return getattr(importlib.import_module(module), func)


def child_main(entry: str, ctx: ProcessContext) -> None:
    """Entry point of every spawned process (gets the entry string: specs may hold lambdas)."""
    # Our own process group: a terminal's Ctrl-C or a group SIGTERM (systemd, kill -TERM -pgid)
    # reaches the supervisor only, which stops everyone in stop_rank order; and the supervisor
    # kills this group, helpers included, after any exit.
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    # We were born with SIGINT/SIGTERM blocked (the supervisor's spawn): one sent to the
    # supervisor's group during our bootstrap is pending here. SIG_IGN discards it; from now on
    # only signals sent to us (the supervisor's escalation) arrive.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: ctx.request_stop())  # the supervisor's escalation
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    linux.set_parent_death_signal(signal.SIGTERM)  # the supervisor died: stop now, not at a beat
    linux.set_process_name(f"hftbot: {ctx.name}")
    if ctx.nice > 0:  # off the tick-to-order path: on a small machine the scheduler prefers the rest
        os.nice(ctx.nice)
    configure_logging(ctx.config.runtime.log_level, ctx.name)
    if ctx.rt_priority > 0:  # the tick-to-order path: a book that wakes it preempts the rest at once
        _go_realtime(ctx)
    row = ctx._row()
    row["pid"] = os.getpid()
    code = 0
    try:
        resolve_entry(entry)(ctx)
    except Exception:
        ctx.log.exception("process %s crashed", ctx.name)
        code = 1
    finally:
        if ctx.supervisor_dead():
            # The supervisor died without cleaning up (SIGKILL). We know its segments: unlink them
            # (idempotent; peers keep their mappings). Its pid may still be an unreaped zombie, so
            # this cannot wait for remove_stale's liveness test.
            removed = [n for n in ctx.segments.values() if shm.unlink_segment(n)]
            if removed:
                ctx.log.error("removed segments of the dead supervisor: %s", ", ".join(removed))
    # Out without the interpreter's teardown: every process closed its own files and threads
    # above, and unloading numba's (or torch's) modules costs seconds of a loaded machine's CPU,
    # which would eat a stop group's grace. Logs and stdio are flushed first.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
