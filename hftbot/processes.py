"""Which processes run in which mode: the one registry the supervisor reads.

Start order is the list order (the simulator must listen before the feed connects; a replay
starts after its readers). Stop order is `stop_rank`, lowest first: execution stops sending and cancels
(10), inference (20), the feed (30), the recorder flushes what everyone produced (40), the
simulator goes last (90). `panel` picks the counters the status panel shows (80 columns). To add
a process, add one line.

`nice`: processes off the tick-to-order path (the recorder; the simulator, which stands in for a
remote venue) run at a lower priority, so that on a small machine the scheduler gives a core to
the feed, inference and execution first when a book update wakes them all at once (measured with
`python -m hftbot.bench e2e`; docs/runtime.md, "Tick-to-order on two cores").

`rt_priority`: execution's main thread runs SCHED_FIFO where `runtime.realtime` and the OS allow
it, so the book that wakes it preempts whatever runs (`hftbot.process.realtime_reason` says when
it does not apply). Only execution: a real-time feed kept inference off a core after every
publish (tick → signal p50 0.92–1.04 ms against 0.69–0.77 ms with execution alone real-time, and
no better tick-to-order), and a real-time inference (~0.4 ms of model per book) would hold a core
against execution (docs/runtime.md, fourth pass).
"""

from __future__ import annotations

from hftbot.config import Config
from hftbot.process import ProcessSpec

LIVE_DATA = ("sim", "paper", "testnet", "live")

PROCESSES: list[ProcessSpec] = [
    ProcessSpec("sim", "hftbot.sim.process:main", modes=("sim",), stop_rank=90, nice=5,
                panel=("events", "clients", "orders", "errors")),
    ProcessSpec("feed", "hftbot.feed.process:main", modes=LIVE_DATA, stop_rank=30,
                panel=("depth_applied", "resyncs", "gaps", "ticker_mismatches", "malformed", "raw_dropped")),
    ProcessSpec(
        "recorder",
        "hftbot.feed.recorder:main",
        stop_rank=40,
        critical=False,
        enabled=lambda c: c.recorder.enabled,
        panel=("book_rows", "book_files", "lost"),
        nice=10,
    ),
    ProcessSpec(
        "inference", "hftbot.model.inference:main", stop_rank=20, enabled=lambda c: c.inference.enabled,
        panel=("signals", "swaps", "refused", "nonfinite", "lost"),
    ),
    # replay and paper: orders go to the mirror venue, whose book follows the book and trade rings
    ProcessSpec(
        "venue",
        "hftbot.sim.mirror:main",
        modes=("replay", "paper"),
        stop_rank=90,
        enabled=lambda c: c.exec.strategy != "none",
    ),
    ProcessSpec(
        "execution", "hftbot.exec.process:main", stop_rank=10, rt_priority=1,
        enabled=lambda c: c.exec.strategy != "none",
        # position, orders and fills have the panel's exec line; these say whether it is healthy
        panel=("books", "signals", "rejects", "refused", "mismatches", "unknown", "halted"),
    ),
    # Replay starts last: its readers are already waiting, so a full-speed replay reaches all of
    # them from the first record (live data, by contrast, must not wait for the readers).
    ProcessSpec("feed", "hftbot.feed.replay:main", modes=("replay",), stop_rank=30,
                panel=("messages", "depth_applied", "resyncs", "gaps", "trades")),
]


def processes_for(cfg: Config, registry: list[ProcessSpec] | None = None) -> list[ProcessSpec]:
    """The specs that run in the configured mode, in start order."""
    return [
        p
        for p in (PROCESSES if registry is None else registry)
        if cfg.runtime.mode in p.modes and (p.enabled is None or p.enabled(cfg))
    ]
