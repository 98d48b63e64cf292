"""Bounded memory (point 8): a multi-day run holds what one chunk needs, not what the run has seen.

Half a day and two days of the same market (a book update every 20 s, as hourly raw Parquet
files, the book leaning one way then the other every few minutes) replayed with small chunks:
the peak of Python-tracked memory (numpy buffers included) of the two-day run is the half-day
run's within the few equity rows. What grows with a run that trades is stated in docs/backtest.md:
one equity row per period, and per order its log entry, fills and closed trades (~1.5 KB an order).
"""

from __future__ import annotations

import gc
import tracemalloc

from hftbot.backtest.engine import run_backtest
from hftbot.config import load_config
from tests.backtest.capture import T0_MS, Tape

STEP_MS = 20_000
DAY_MS = 86_400_000


def days_tape(path, days: float):
    t = Tape()
    even = ["1.01", "1.02", "1.03", "1.04", "1.05"]
    heavy = ["9.01", "9.02", "9.03", "9.04", "9.05"]

    def book(bq, aq):
        return ([(f"{(10000 - i) / 100:.2f}", q) for i, q in enumerate(bq)],
                [(f"{(10001 + i) / 100:.2f}", q) for i, q in enumerate(aq)])

    t.snapshot(T0_MS, *book(even, even))
    n = int(days * DAY_MS / STEP_MS)
    for k in range(n):
        phase = (k // 10) % 4  # 200 s a phase: even, bids heavy, even, asks heavy
        bq, aq = (heavy, even) if phase == 1 else (even, heavy) if phase == 3 else (even, even)
        bids, asks = book(bq, aq)
        bids[4] = (bids[4][0], f"{1 + (k % 3) / 100:.2f}")
        t.diff(T0_MS + (k + 1) * STEP_MS, bids=bids, asks=asks)
        if k % 3 == 0:
            t.trade(T0_MS + (k + 1) * STEP_MS + 1, "100.00", "0.05", taker_sells=True)
    return t.write_raw(path)  # a file per hour, as the recorder writes them


def peak_bytes(path, threshold: float) -> tuple[int, object]:
    cfg = (load_config(env={})
           .override("backtest", chunk_frames=2000, period_s=3600.0, feed_latency="zero")
           .override("strategy", imbalance_qty=0.1, imbalance_move_bps=500.0, imbalance_horizon_updates=5,
                     imbalance_threshold=threshold))
    gc.collect()
    tracemalloc.start()
    try:
        r = run_backtest([path], strategy="imbalance", cfg=cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, r


def test_memory_does_not_grow_with_the_days(tmp_path):
    half = days_tape(tmp_path / "half", 0.5)
    two = days_tape(tmp_path / "two", 2.0)
    # the strategy reads every record but never trades (threshold 1): only the replay itself is measured
    p1, r1 = peak_bytes(half, 1.0)
    p4, r4 = peak_bytes(two, 1.0)
    assert r4.events > 3.9 * r1.events and r1.orders == r4.orders == 0
    # 1.5 days more (6,480 more book records, ~4 MB if they were kept): the peak moves by the
    # equity rows only (one per hour)
    assert p4 - p1 < 256 * 1024, (p1, p4)
