"""The feed process: `main(ctx)` keeps the local book from Binance (or the simulator) and publishes.

Thin loop around `BinanceFeed` on uvloop: book records go into the "book" ring (a marker without
BOOK_VALID whenever sync is lost; the first valid record after it carries BOOK_RESYNC), trades into
the "trade" ring, raw frames to data/recordings through `RawSink` (see its docstring for why the
feed records raw frames itself). Records are built in place in the ring writers' staging buffers.

It must never publish a book while out of sync and never exit on bad exchange input; it stops when
`ctx.stopping()` says so, flushing the raw recording on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib

from hftbot.feed.binance import BinanceFeed, FeedSettings
from hftbot.feed.core import FeedCore
from hftbot.feed.paths import recordings_root
from hftbot.feed.rawsink import RawSink
from hftbot.feed.recording import source_for_mode
from hftbot.ipc.ring import RingWriter
from hftbot.process import short_gil_slices
from hftbot.records import book_dtype


def settings_from_config(cfg, endpoints: dict) -> FeedSettings:
    """The `[feed]` section as it is, with the runtime symbol and the mode's URLs."""
    return FeedSettings.from_config(cfg.feed, cfg.runtime.symbol, endpoints)


def open_writers(ctx, levels: int) -> tuple[RingWriter, RingWriter]:
    book_ring, trade_ring = ctx.open_ring("book"), ctx.open_ring("trade")
    if book_ring.dtype != book_dtype(levels):
        raise ValueError(f"feed: book ring holds a different record layout than feed.levels={levels}")
    return RingWriter(book_ring), RingWriter(trade_ring)


def main(ctx) -> None:
    cfg = ctx.config
    # Threads share this process with the event loop (raw recording, its compaction): a frame that
    # arrives while one of them holds the GIL waits up to the switch interval (5 ms by default).
    short_gil_slices()
    bw, tw = open_writers(ctx, cfg.feed.levels)
    # every bookTicker is checked against the book when it reaches the ticker's u; a mismatch
    # means the book is wrong: a marker, then a new snapshot (counted in ticker_mismatches)
    core = FeedCore(levels=cfg.feed.levels, check_tickers="resync" if cfg.feed.book_ticker else False)
    core.bind(bw.staging, tw.staging)
    sink = None
    if cfg.feed.record_raw and cfg.recorder.enabled:
        sink = RawSink(
            recordings_root(cfg), cfg.runtime.symbol, cfg.recorder.flush_s, cfg.recorder.rotate_s, log=ctx.log,
            source=source_for_mode(cfg.runtime.mode),
        )
    feed = BinanceFeed(
        settings_from_config(cfg, ctx.endpoints),
        core,
        publish_book=lambda c: bw.publish(bw.staging),
        publish_trade=lambda c: tw.publish(tw.staging),
        record_raw=sink.put if sink else None,
        log=ctx.log,
    )

    def beat() -> None:
        c = feed.counters()
        if sink is not None:
            c["raw_rows"] = sink.rows_written
            c["raw_dropped"] = sink.dropped
        ctx.beat(**{k: v for k, v in c.items() if k in _BEAT})

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(feed.run(stop))
        served = False
        try:
            while not ctx.stopping() and not task.done():
                beat()
                if not served and core.depth_applied > 0:  # a synced book is out: serving
                    ctx.serving()
                    served = True
                # look often until serving (the restart-to-serving figure), then every half beat
                await asyncio.sleep(cfg.runtime.heartbeat_s / 2 if served else min(0.05, cfg.runtime.heartbeat_s / 2))
        finally:
            stop.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(task, 5.0)
        if task.done() and task.exception():
            raise task.exception()

    try:
        _run_loop(run())
    finally:
        if sink is not None:
            sink.close()
        beat()  # final counters (raw rows written at the close included), for the exit summary
        ctx.log.info("feed stopped: %s", feed.counters())


# at most 12 heartbeat counters (hftbot.process.MAX_COUNTERS)
_BEAT = (
    "depth_applied",
    "gaps",
    "resyncs",
    "trades",
    "malformed",
    "snapshot_requests",
    "public_connects",
    "stale",  # watchdog reconnects, both routes
    "ticker_checks",
    "ticker_mismatches",
    "raw_rows",
    "raw_dropped",
)


def _run_loop(coro) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is in requirements
        asyncio.run(coro)
