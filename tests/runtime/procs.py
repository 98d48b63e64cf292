"""Small real processes for supervisor tests (spawned by the real supervisor)."""

from __future__ import annotations

import os
import time
from pathlib import Path

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
    """Runs healthily for a second, then crashes.

    With ``endpoints["crash_count_file"]`` it crashes only the first ``endpoints["crashes"]`` times
    (spawns counted in that file) and then runs until stopped, so a test's stop can never land on a
    crash in progress (a crash at the stop is rightly a failure of the run).
    """
    count_file = ctx.endpoints.get("crash_count_file")
    if count_file is not None:
        path = Path(count_file)
        spawned = int(path.read_text()) if path.exists() else 0
        path.write_text(str(spawned + 1))
        if spawned >= ctx.endpoints["crashes"]:
            while not ctx.stopping():
                ctx.beat()
                time.sleep(0.02)
            return
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        if ctx.stopping():
            return
        ctx.beat()
        time.sleep(0.02)
    raise RuntimeError("deliberate late crash")


def serving_reporter(ctx: ProcessContext) -> None:
    """Says it serves 0.2 s after its start; beats its pid."""
    t0 = time.monotonic()
    while not ctx.stopping():
        if time.monotonic() - t0 > 0.2:
            ctx.serving()
        ctx.beat(pid=os.getpid())
        time.sleep(0.02)


def with_helper(ctx: ProcessContext) -> None:
    """Starts a helper process (a plain `sleep`, which knows nothing of parent-death signals) and
    beats its pid: the supervisor must kill and reap it together with this process."""
    import subprocess

    helper = subprocess.Popen(["sleep", "1000"])
    try:
        while not ctx.stopping():
            ctx.beat(helper=helper.pid, pid=os.getpid())
            time.sleep(0.02)
    finally:
        helper.kill()
        helper.wait()


def silent_with_helper(ctx: ProcessContext) -> None:
    """Beats once with its helper's pid, then hangs (killed on heartbeat timeout, helper too)."""
    import subprocess

    helper = subprocess.Popen(["sleep", "1000"])
    ctx.beat(helper=helper.pid)
    while True:
        time.sleep(0.05)


def finisher(ctx: ProcessContext) -> None:
    """Does its work for half a second, then says it is done."""
    t0 = time.monotonic()
    n = 0
    while not ctx.stopping() and time.monotonic() - t0 < 0.5:
        n += 1
        ctx.beat(work=n)
        time.sleep(0.02)
    ctx.beat(work=n, done=1)
    ctx.finish()


def counts_at_stop(ctx: ProcessContext) -> None:
    """Keeps counting after the stop request (a drain) and reports the final count."""
    n = 0
    while not ctx.stopping():
        ctx.beat(items=n)
        time.sleep(0.02)
    for _ in range(25):  # the drain: items the last heartbeat did not see
        n += 1
        time.sleep(0.004)
    ctx.beat(items=n, drained=1)


def no_model(ctx: ProcessContext) -> None:
    """Reports what inference reports when it found no checkpoint to serve."""
    while not ctx.stopping():
        ctx.beat(no_model=1)
        time.sleep(0.02)
