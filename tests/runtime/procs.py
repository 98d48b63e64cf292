"""Small real processes for supervisor tests (spawned by the real supervisor)."""

from __future__ import annotations

import os
import time

from hftbot.ipc.ring import RingWriter
from hftbot.process import ProcessContext


def ticker(ctx: ProcessContext) -> None:
    """Publishes a book record every 10 ms and beats; stops when asked."""
    w = RingWriter(ctx.open_ring("book"))
    n = 0
    while not ctx.stopping():
        rec = w.staging
        rec["recv_ns"] = time.time_ns()
        rec["update_id"] = n
        rec["publish_ns"] = time.time_ns()
        w.publish(rec)
        n += 1
        ctx.beat(published=n)
        time.sleep(0.01)


def idle(ctx: ProcessContext) -> None:
    while not ctx.stopping():
        ctx.beat()
        time.sleep(0.02)


def crash_after_start(ctx: ProcessContext) -> None:
    ctx.beat()
    time.sleep(0.05)
    raise RuntimeError("deliberate crash")


def silent(ctx: ProcessContext) -> None:
    """Beats once, then hangs without heartbeats (the supervisor must kill it)."""
    ctx.beat()
    while True:
        time.sleep(0.05)


def stubborn(ctx: ProcessContext) -> None:
    """Ignores stop requests (and SIGTERM's effect) until killed."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        ctx.beat()
        time.sleep(0.02)


def pid_reporter(ctx: ProcessContext) -> None:
    ctx.beat(pid=os.getpid())
    while not ctx.stopping():
        ctx.beat(pid=os.getpid())
        time.sleep(0.02)


def crash_later(ctx: ProcessContext) -> None:
    """Runs healthily for a second, then crashes."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        ctx.beat()
        time.sleep(0.02)
    raise RuntimeError("deliberate late crash")
