"""`python -m hftbot.bench strategy`: what one strategy call costs, on the real capture's books.

The backtester (issue 14) calls a strategy once per book update, so its speed target (the shared
345 s BTCUSDT capture in about hftbacktest's 0.07 s) bounds what a call may cost. This replays the
capture through the feed core into book records (0-d views, built before timing), then calls each
strategy's `on_book` once per valid record and times exactly those calls (perf_counter_ns around
each). Orders a strategy asks for are acknowledged at once outside the timed part (a place rests
as NEW, an IOC ends, a modify applies, a cancel removes), so the mm requotes resting quotes as it
would live; nothing fills. deeplob gets one neutral signal (it decides, finds no edge, returns).

Prints a table, then one JSON line: per strategy `call_us` (p50/p99/p99.9/max/mean µs and n, the
shape every bench prints), `pass_s` (the sum of the timed calls over the capture) and `intents`.
`--quick` takes the first 3000 books.
Never used by tests; the machine's load changes the figures.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from hftbot.bench.common import machine, percentiles_us, print_json
from hftbot.config import ExecConfig, RiskConfig, StrategyConfig
from hftbot.exec.messages import IOC, NEW, Cancel, Modify, OrderRequest, OrderUpdate, Place
from hftbot.exec.positions import Positions
from hftbot.exec.strategy import fee_model, make_strategy
from hftbot.feed.capture import iter_blocks
from hftbot.feed.core import FeedCore
from hftbot.records import BOOK_VALID, SIGNAL_DTYPE, TRADE_DTYPE, book_dtype

DEFAULT_CAPTURE = Path(__file__).resolve().parents[2] / "tests" / "data" / "btcusdt_20240808.gz"
STRATEGIES = ("deeplob", "imbalance", "mm")


def capture_books(path: Path, levels: int, limit: int) -> np.ndarray:
    """Every valid book record the feed core makes of the capture (replay mode)."""
    core = FeedCore(levels=levels, replay=True)
    out_b = np.zeros(4096, dtype=book_dtype(levels))
    out_t = np.zeros(4096, dtype=TRADE_DTYPE)
    chunks = []
    total = 0
    for blk in iter_blocks([path]):
        i, n = 0, len(blk)
        while i < n:
            i, nb, _ = core.run(blk.data, blk.starts, blk.ends, blk.nss, i, n, out_b, out_t)
            if nb:
                recs = out_b[:nb]
                recs = recs[(recs["flags"] & BOOK_VALID) != 0].copy()
                chunks.append(recs)
                total += len(recs)
        if limit and total >= limit:
            break
    books = np.concatenate(chunks) if chunks else np.zeros(0, dtype=book_dtype(levels))
    return books[:limit] if limit else books


def _ack(pos: Positions, intents, now_ns: int, name: str, oid: list[int]) -> None:
    """An instant venue without fills: places rest (IOC ones end), modifies apply, cancels remove."""
    for it in intents:
        if isinstance(it, Place):
            oid[0] += 1
            cid = f"b{oid[0]}"
            if it.tif == IOC:
                continue
            pos.on_request(OrderRequest(cid, it.side, it.qty, it.px, it.type, it.tif, it.reduce_only, it.tag, name,
                                        0, now_ns, now_ns))
            pos.on_update(OrderUpdate(cid, oid[0], NEW, NEW, it.side, it.qty, it.px, 0, now_ns // 1_000_000))
        elif isinstance(it, Modify):
            o = pos.orders.get(it.client_id)
            if o is not None:
                o.qty, o.px = it.qty, it.px
        elif isinstance(it, Cancel):
            pos.orders.pop(it.client_id, None)


def time_strategy(name: str, books: list, tick: float, lot: float) -> dict:
    ex = ExecConfig(strategy=name)
    strategy = make_strategy(ex, StrategyConfig(), RiskConfig(), fee_model(ex))
    pos = Positions(tick, lot, fee_model(ex), strategy=name)
    view = pos.view
    if strategy.needs_signal:
        sig = np.zeros((), dtype=SIGNAL_DTYPE)
        sig["p_down"], sig["p_flat"], sig["p_up"] = 0.3, 0.4, 0.3
        sig["publish_ns"] = int(books[0]["recv_ns"])
        sig["model_id"] = 1
        strategy.on_signal(sig, view)
    clock = time.perf_counter_ns
    lat = np.empty(len(books), dtype=np.int64)
    oid = [0]
    intents = 0
    on_book = strategy.on_book
    for i, rec in enumerate(books):
        view.now_ns = now = int(rec["recv_ns"])
        t0 = clock()
        out = on_book(rec, view)
        lat[i] = clock() - t0
        if out:
            intents += len(out)
            _ack(pos, out, now, name, oid)
    return {"call_us": percentiles_us(lat), "pass_s": round(float(lat.sum()) / 1e9, 4), "intents": intents}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench strategy", description=__doc__.split("\n")[0])
    ap.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="the first 3000 books only (a smoke run)")
    args = ap.parse_args(argv)
    if not args.capture.exists():
        print(f"bench strategy: capture not found: {args.capture}")
        return 2
    arr = capture_books(args.capture, args.levels, 3000 if args.quick else 0)
    if not len(arr):
        print(f"bench strategy: no valid book in {args.capture}")
        return 2
    books = [arr[i : i + 1].reshape(()) for i in range(len(arr))]  # 0-d views, as a ring reader returns
    tick, lot = float(arr["tick"][0]), float(arr["lot"][0])
    results = {name: time_strategy(name, books, tick, lot) for name in STRATEGIES}
    load = os.getloadavg()[0]
    print(f"machine: {machine()}")
    print(f"capture {args.capture.name}: {len(books):,} valid books, levels {args.levels}, "
          f"load avg {load:.2f} on {os.cpu_count()} cpus")
    print(f"{'strategy':<12}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}{'pass s':>10}{'intents':>10}")
    for name, r in results.items():
        c = r["call_us"]
        print(f"{name:<12}{c['p50']:>10.2f}{c['p99']:>10.2f}{c['mean']:>10.2f}{r['pass_s']:>10.4f}"
              f"{r['intents']:>10}")
    print_json({"bench": "strategy", "books": len(books), **results, "loadavg_1m": round(load, 2),
                "quick": args.quick})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
