"""`python -m hftbot.bench book`: feed latency per depth message and full-speed replay throughput.

1. Per depth message of the real capture, from the raw frame bytes (as the socket hands them
   over) to a top-N record published in a real shared-memory ring: decode + sync + apply +
   write + publish, timed with perf_counter_ns around exactly that. All messages go through the
   same core in file order (bookTickers, checked against the book as the live feed does, and
   trades too); only depth messages that produced a valid book are timed.
   `depth_to_published_us`: p50/p99/p99.9/max/mean in µs, and n.
2. Full-speed replay of the whole capture through the book into the book and trade rings, as the
   replay process does it: gzip decompression + line index + fast path + publish_many. Reported
   end to end (`replay_msgs_per_s`, best of N passes) and without the file work
   (`replay_inmem_msgs_per_s`).

Prints a table, then one JSON line. Never used by tests; the machine's load changes the figures.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from hftbot.bench.common import machine, percentiles_us, print_json, print_table
from hftbot.feed.capture import iter_blocks
from hftbot.feed.core import OUT_BOOK, OUT_TRADE, FeedCore
from hftbot.records import BOOK_VALID, TRADE_DTYPE, book_dtype

DEFAULT_CAPTURE = Path(__file__).resolve().parents[2] / "tests" / "data" / "btcusdt_20240808.gz"


class _Sink:
    """A real ring when hftbot.ipc.ring is importable, else a numpy buffer (same copy work)."""

    def __init__(self, dtype: np.dtype, capacity: int, tag: str) -> None:
        self.ring = None
        try:
            from hftbot.ipc.ring import Ring, RingWriter
            from hftbot.ipc.shm import segment_name

            self.ring = Ring.create(segment_name(f"bench-{tag}"), dtype, capacity)
            self.writer = RingWriter(self.ring)
            self.kind = "shm ring"
        except ImportError:
            self.buf = np.zeros(capacity, dtype=dtype)
            self.i = 0
            self.kind = "numpy buffer"

    def publish(self, rec: np.ndarray) -> None:
        if self.ring is not None:
            self.writer.publish(rec)
        else:
            self.buf[self.i & (len(self.buf) - 1)] = rec
            self.i += 1

    def publish_many(self, recs: np.ndarray) -> None:
        if self.ring is not None:
            self.writer.publish_many(recs)
        else:
            n = len(recs)
            self.buf[:n] = recs

    def close(self) -> None:
        if self.ring is not None:
            self.writer = None
            self.ring.close()
            self.ring.unlink()


def latency(path: Path, levels: int) -> tuple[np.ndarray, dict, str]:
    block_frames = []
    for b in iter_blocks([path]):
        block_frames += [(int(b.nss[i]), b.frame(i)) for i in range(len(b))]
    core = FeedCore(levels=levels, check_tickers="resync")  # as the live feed runs it
    books = _Sink(book_dtype(levels), 1 << 14, "book")
    trades = _Sink(TRADE_DTYPE, 1 << 14, "trade")
    if books.ring is not None:  # build records in the writers' staging buffers, as the feed does
        core.bind(books.writer.staging, trades.writer.staging)
    lat = []
    clock = time.perf_counter_ns
    try:
        for ns, frame in block_frames:
            t0 = clock()
            out = core.on_frame(ns, frame)
            if out & OUT_BOOK:
                books.publish(core.book_rec)
                t1 = clock()
                if core.book_rec["flags"] & BOOK_VALID:
                    lat.append(t1 - t0)
            elif out & OUT_TRADE:
                trades.publish(core.trade_rec)
    finally:
        kind = books.kind
        books.close()
        trades.close()
    return np.array(lat, dtype=np.int64), core.counters(), kind


def replay_pass(path: Path, levels: int) -> tuple[float, float, int, dict]:
    t0 = time.perf_counter()
    core = FeedCore(levels=levels, replay=True)
    books = _Sink(book_dtype(levels), 1 << 14, "rbook")
    trades = _Sink(TRADE_DTYPE, 1 << 14, "rtrade")
    out_b = np.zeros(4096, dtype=book_dtype(levels))
    out_t = np.zeros(4096, dtype=TRADE_DTYPE)
    msgs = 0
    busy = 0.0
    try:
        for blk in iter_blocks([path]):
            t1 = time.perf_counter()
            i, n = 0, len(blk)
            while i < n:
                i, nb_, nt_ = core.run(blk.data, blk.starts, blk.ends, blk.nss, i, n, out_b, out_t)
                now = time.time_ns()
                if nb_:
                    out_b["publish_ns"][:nb_] = now
                    books.publish_many(out_b[:nb_])
                if nt_:
                    out_t["publish_ns"][:nt_] = now
                    trades.publish_many(out_t[:nt_])
            msgs += n
            busy += time.perf_counter() - t1
    finally:
        books.close()
        trades.close()
    return time.perf_counter() - t0, busy, msgs, core.counters()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench book", description=__doc__.split("\n")[0])
    ap.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--passes", type=int, default=3, help="replay passes; the best is reported")
    args = ap.parse_args(argv)
    if not args.capture.exists():
        print(f"bench book: capture not found: {args.capture}")
        return 2
    replay_pass(args.capture, args.levels)  # warm-up: numba caches, page cache
    lat, counters, sink = latency(args.capture, args.levels)
    pct = percentiles_us(lat)
    runs = [replay_pass(args.capture, args.levels) for _ in range(max(1, args.passes))]
    best = min(runs, key=lambda r: r[0])
    msgs = best[2]
    rate = msgs / best[0]
    inmem = msgs / min(r[1] for r in runs)
    load = os.getloadavg()[0]
    print(f"machine: {machine()}")
    print(
        f"capture {args.capture.name}: {msgs:,} messages, {counters['depth_applied']:,} depth applied, "
        f"levels {args.levels}, publish into {sink}, load avg {load:.2f} on {os.cpu_count()} cpus"
    )
    print_table(
        "depth message: raw bytes -> published book record, µs",
        ["n", "p50", "p99", "p99.9", "max"],
        [[pct["n"], pct["p50"], pct["p99"], pct["p99.9"], pct["max"]]],
    )
    print()
    print_table(
        "full-speed replay of the capture, messages/s",
        ["path", "msgs/s"],
        [["gunzip + index + book + rings", f"{rate:,.0f}"], ["in memory", f"{inmem:,.0f}"]],
    )
    print_json(
        {
            "bench": "book",
            "depth_to_published_us": pct,  # raw frame bytes -> decode -> sync -> apply -> ring publish
            "replay_msgs_per_s": round(rate),
            "replay_inmem_msgs_per_s": round(inmem),
            "replay_seconds": round(best[0], 4),
            "messages": msgs,
            "depth_applied": best[3]["depth_applied"],
            "sink": sink,
            "loadavg_1m": round(load, 2),
            "cpus": os.cpu_count(),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
