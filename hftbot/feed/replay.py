"""Replay: recordings and `<ns> <json>` captures through the live book code into the rings.

`--mode replay` runs `main(ctx)` as the "feed" process: frames from `replay.path` (files or
folders, raw Parquet recordings or .gz captures) go through the same `FeedCore` as the live feed,
at real time (`speed = 1`), a multiple (`speed = 10`), or as fast as possible (`speed = 0`).
Records carry BOOK_REPLAY; their `recv_ns` is the local time the frame was replayed (the
original receive time shifted to now and divided by the speed), so latency figures downstream
stay meaningful; `event_ms` keeps the exchange's time. Resyncs in the data (gaps, snapshots) are
replayed as they happened: markers without BOOK_VALID, then BOOK_RESYNC.

Frames are processed in batches by the numba fast path; paced replay hands over all frames due
by now, then sleeps until the next one (bounded, so heartbeats and stop requests are served).
Without `loop`, the process finishes (`ctx.finish()`) when the recording is exhausted: the
supervisor then stops the run in order, and the readers (inference, recorder) serve what is still
in the ring before they exit, so the run ends with everything replayed processed, rc 0.
It must never change the data it reads and never publish faster than asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from hftbot.feed.capture import iter_blocks
from hftbot.feed.core import OUT_BOOK, FeedCore
from hftbot.records import TRADE_DTYPE, book_dtype


class Replayer:
    """Pure driver: blocks in, `publish_books(array)` / `publish_trades(array)` out."""

    def __init__(
        self,
        core: FeedCore,
        publish_books: Callable[[np.ndarray], None],
        publish_trades: Callable[[np.ndarray], None],
        speed: float = 1.0,
        batch: int = 4096,
        max_sleep_s: float = 0.1,
    ) -> None:
        if speed < 0:
            raise ValueError(f"replay speed must be >= 0 (0 = full speed), got {speed}")
        self.core = core
        self.publish_books = publish_books
        self.publish_trades = publish_trades
        self.speed = float(speed)
        self.max_sleep_s = max_sleep_s
        self.out_b = np.zeros(batch, dtype=book_dtype(core.levels))
        self.out_t = np.zeros(batch, dtype=TRADE_DTYPE)
        self.messages = 0
        self.t0_wall: int | None = None  # wall ns that the first frame maps to
        self.t0_data: int | None = None

    def _flush(self, nb: int, nt: int) -> None:
        now = time.time_ns()
        if nb:
            self.out_b["publish_ns"][:nb] = now
            self.publish_books(self.out_b[:nb])
        if nt:
            self.out_t["publish_ns"][:nt] = now
            self.publish_trades(self.out_t[:nt])

    def run(
        self, paths, stopping: Callable[[], bool] = lambda: False, idle: Callable[[], None] = lambda: None
    ) -> bool:
        """Replay everything under paths; False if stopped early."""
        for blk in iter_blocks(paths):
            if self.t0_data is None and len(blk):
                self.t0_data = int(blk.nss[0])
                self.t0_wall = time.time_ns()
            # local receive times of the replay: original offsets / speed, from now
            if self.speed > 0:
                mapped = self.t0_wall + ((blk.nss - self.t0_data) / self.speed).astype(np.int64)
            else:
                mapped = np.empty_like(blk.nss)
            i, n = 0, len(blk)
            while i < n:
                if stopping():
                    return False
                if self.speed > 0:
                    now = time.time_ns()
                    due = int(np.searchsorted(mapped, now, side="right"))
                    if due <= i:
                        wait = (int(mapped[i]) - now) / 1e9
                        idle()
                        time.sleep(min(max(wait, 0.0), self.max_sleep_s))
                        continue
                    stop_at = min(due, n)
                else:
                    stop_at = n
                    mapped[i:] = time.time_ns()
                i2, nb, nt = self.core.run(
                    blk.data,
                    blk.starts,
                    blk.ends,
                    mapped,
                    i,
                    min(stop_at, i + len(self.out_b)),
                    self.out_b,
                    self.out_t,
                )
                self.messages += i2 - i
                i = i2
                self._flush(nb, nt)
                if self.speed == 0:
                    idle()
        return True

    def restart(self) -> None:
        """Loop mode: the next pass starts over; readers see a resync marker first."""
        if self.core.reset(time.time_ns()) & OUT_BOOK:
            self.publish_books(self.core.book_rec.reshape(1).copy())
        self.t0_data = self.t0_wall = None


def main(ctx) -> None:
    from hftbot.feed.process import open_writers

    cfg = ctx.config
    if not cfg.replay.path:
        raise ValueError("replay: set replay.path to a recording folder/file or a .gz capture")
    bw, tw = open_writers(ctx, cfg.feed.levels)
    core = FeedCore(levels=cfg.feed.levels, replay=True)
    last_beat = [0.0]

    def idle() -> None:
        now = time.monotonic()
        if now - last_beat[0] >= cfg.runtime.heartbeat_s / 2:
            last_beat[0] = now
            c = core.counters()
            ctx.beat(
                messages=rep.messages,
                depth_applied=c["depth_applied"],
                gaps=c["gaps"],
                resyncs=c["resyncs"],
                trades=c["trades"],
                malformed=c["malformed"],
            )

    def pub_many(w):
        def publish(arr: np.ndarray) -> None:
            for k in range(0, len(arr), w.ring.capacity):
                w.publish_many(arr[k : k + w.ring.capacity])

        return publish

    rep = Replayer(core, pub_many(bw), pub_many(tw), speed=cfg.replay.speed)
    passes = 0
    ctx.serving()
    finished = False
    while not ctx.stopping():
        finished = rep.run([cfg.replay.path], ctx.stopping, idle)
        passes += 1
        if not finished or not cfg.replay.loop:
            break
        rep.restart()
    last_beat[0] = 0.0
    idle()  # final counters, for the exit summary
    ctx.log.info("replay done: %d pass(es), %d messages, %s", passes, rep.messages, core.counters())
    if finished and not cfg.replay.loop:
        # the recording is exhausted: the run ends (readers drain what is in the ring at their stop)
        ctx.finish()
