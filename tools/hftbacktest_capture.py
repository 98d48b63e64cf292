"""hftbacktest 2.4.4 on the capture `bench backtest` replays: the peer's figure, measured here.

Not part of hftbot and not run by its tests: hftbacktest pins an older numpy than hftbot, so it
lives in its own virtual environment (numba and the rest come from PyPI):

    python -m venv /tmp/hbt && /tmp/hbt/bin/pip install hftbacktest==2.4.4
    /tmp/hbt/bin/python tools/hftbacktest_capture.py [tests/data/btcusdt_20240808.gz] [--repeat 6]

What it runs, as close as hftbacktest allows to `bench backtest`'s mm run: the capture converted
by hftbacktest's own converter (outside the timing, as our prepared cache is), a power-probability
queue (n = 2), constant 100 µs entry and response latency, maker/taker fees, and a quoting
strategy compiled with numba inside its loop: one post-only quote a side one tick outside the
touch, re-placed when the touch moves, inventory capped, woken every `--step-ms` (default 50 ms,
about as often as our strategy sees a book record: 6,546 in 345 s) or at every feed event
(`--per-feed`). Each run builds the backtest and replays the whole capture; best of `--repeat`,
the first (numba's compile) excluded. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from hftbacktest import BUY, GTX, LIMIT, BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.data.utils import binancefutures
from numba import njit

CAPTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "btcusdt_20240808.gz"


@njit
def _quote(hbt, qty, max_pos):
    """One decision: keep a bid one tick under the best bid and an ask one tick over the best ask."""
    hbt.clear_inactive_orders(0)
    depth = hbt.depth(0)
    bb, ba = depth.best_bid_tick, depth.best_ask_tick
    if bb <= 0 or ba <= 0 or ba <= bb:
        return 0
    pos = hbt.position(0)
    have_bid = have_ask = False
    vals = hbt.orders(0).values()
    while vals.has_next():
        o = vals.get()
        want = bb - 1 if o.side == BUY else ba + 1
        if o.price_tick != want and o.cancellable:
            hbt.cancel(0, o.order_id, False)
        elif o.side == BUY:
            have_bid = True
        else:
            have_ask = True
    placed = 0
    if not have_bid and pos < max_pos:
        hbt.submit_buy_order(0, hbt.current_timestamp * 2, (bb - 1) * depth.tick_size, qty, GTX, LIMIT, False)
        placed += 1
    if not have_ask and pos > -max_pos:
        hbt.submit_sell_order(0, hbt.current_timestamp * 2 + 1, (ba + 1) * depth.tick_size, qty, GTX, LIMIT, False)
        placed += 1
    return placed


@njit
def run_timed(hbt, step_ns, qty, max_pos):
    calls = placed = 0
    while hbt.elapse(step_ns) == 0:
        placed += _quote(hbt, qty, max_pos)
        calls += 1
    return calls, placed


@njit
def run_per_feed(hbt, qty, max_pos):
    calls = placed = 0
    while hbt.wait_next_feed(False, 1_000_000_000_000) in (0, 2):
        placed += _quote(hbt, qty, max_pos)
        calls += 1
    return calls, placed


def build(data):
    asset = (BacktestAsset().data([data]).linear_asset(1.0)
             .constant_order_latency(100_000, 100_000).power_prob_queue_model(2.0)
             .no_partial_fill_exchange().trading_value_fee_model(0.0002, 0.0005)
             .tick_size(0.1).lot_size(0.001))
    return HashMapMarketDepthBacktest([asset])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", default=str(CAPTURE))
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--step-ms", type=float, default=50.0)
    ap.add_argument("--per-feed", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    data = binancefutures.convert(a.capture, combined_stream=True)
    convert_s = time.perf_counter() - t0
    walls = []
    calls = placed = 0
    for _ in range(a.repeat + 1):
        t0 = time.perf_counter()
        hbt = build(data)
        if a.per_feed:
            calls, placed = run_per_feed(hbt, 0.002, 0.01)
        else:
            calls, placed = run_timed(hbt, int(a.step_ms * 1e6), 0.002, 0.01)
        hbt.close()
        walls.append(time.perf_counter() - t0)
    best = min(walls[1:])
    mode = "every feed event" if a.per_feed else f"every {a.step_ms:g} ms"
    print(f"hftbacktest 2.4.4, {Path(a.capture).name}: {len(data):,} event rows, strategy {mode}")
    print(f"{'wall s (best of ' + str(a.repeat) + ')':<24} {'rows/s':>12} {'decisions':>10} {'orders':>8}")
    print(f"{best:<24.4f} {len(data) / best:>12,.0f} {calls:>10,} {placed:>8,}")
    print(json.dumps({"machine": platform.processor() or platform.machine(), "capture_wall_s": round(best, 4),
                      "walls_s": [round(w, 4) for w in walls[1:]], "rows": len(data), "decisions": calls,
                      "orders": placed, "mode": mode, "convert_s": round(convert_s, 2)}))


if __name__ == "__main__":
    main()
