"""`python -m hftbot.bench match`: how fast the matching engine replays a real capture, and drives the simulator.

1. replay: the shared BTCUSDT capture (`tests/data/btcusdt_20240808.gz`, 345 s) decoded once into
   market event rows (`hftbot.sim.replayrows`, not timed), then replayed through a fresh engine:
   every diff level and every trade, with a power-probability queue model, constant entry and
   response latency, and one resting order of ours per side, re-quoted at the touch whenever one
   closes. The headline drives it from a numba loop (`quote_loop`: `run_rows` hands control back
   after each of our order events, as hftbacktest's strategy loop does); the same replay with the
   quotes kept from Python (`MatchingEngine.run(..., stop_on_event=True)`) is reported beside.
   The engine is built fresh for each replay and its set-up (allocation, page faults) is timed;
   compile excluded (a first replay warms the kernels); best of `--repeat`. Reported:
   `capture_wall_s` (and its CPU time), level updates/s, rows/s (levels + trades), our fills.
   hftbacktest 2.4.4 replays the same capture with a power-probability queue model, constant
   latency and a quoting strategy in ~0.065-0.084 s here (its ~7.5 M event rows/s);
   nautilus_trader's book alone applies ~3 M level updates/s.
2. generate: the simulator's market model through the same engine, messages only (as `bench sim`
   measures it), simulated seconds per wall and per CPU second.

Prints a table, then one JSON line. Not a test: the machine's load moves the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numba as nb
import numpy as np

from hftbot.bench.common import print_json, print_table
from hftbot.sim import kernels as k
from hftbot.sim.matching import (
    BUY,
    PENDING_NEW,
    SELL,
    TRADE,
    ConstantLatency,
    LatencyModel,
    MatchingEngine,
    Order,
    PowerProbQueue,
)
from hftbot.sim.replayrows import MarketRows, load_rows

CAPTURE = Path(__file__).resolve().parents[2] / "tests" / "data" / "btcusdt_20240808.gz"


@nb.njit(cache=True)
def _requote(lad, mem, slot, oid, next_id, side, lots):
    """Keep one order on `side` at the touch: place a new one when ours has closed."""
    ob = k._orders(mem)
    if slot >= 0 and ob[slot, k.O_ID] == oid and ob[slot, k.O_STATE] != k.OS_FREE:
        return slot, oid, next_id
    px = mem[k.S_BID_PX] if side == k.BUY else mem[k.S_ASK_PX]
    if px == 0:
        return np.int64(-1), np.int64(0), next_id
    s = k.place(lad, mem, next_id, side, k.T_LIMIT, k.TIF_GTC, px, lots, mem[k.S_NOW_NS], 0)
    return s, next_id, next_id + 1


@nb.njit(cache=True)
def quote_loop(lad, mem, rows, first, lots):
    """A numba strategy loop (as hftbacktest's): replay rows, and after each of our order events
    re-quote the side that closed. Returns (our fills, orders placed), or (-1, kernel code)."""
    n = rows.shape[0]
    bid = np.int64(-1)
    bid_id = np.int64(0)
    ask = np.int64(-1)
    ask_id = np.int64(0)
    next_id = np.int64(1)
    fills = 0
    i = first
    while True:
        bid, bid_id, next_id = _requote(lad, mem, bid, bid_id, next_id, k.BUY, lots)
        ask, ask_id, next_id = _requote(lad, mem, ask, ask_id, next_id, k.SELL, lots)
        if i >= n:
            break
        i = k.run_rows(lad, mem, rows, i, n, 1)
        if i < 0:
            return np.int64(-1), i
        ev = k._events(mem)
        for j in range(mem[k.S_NEV]):
            if ev[j, k.E_EXEC] == k.X_TRADE:
                fills += 1
        mem[k.S_NEV] = 0
    return np.int64(fills), next_id - 1


def _first_message_end(rows: np.ndarray) -> int:
    """Rows up to the end of the first message (the snapshot): a book to quote into."""
    return int(np.flatnonzero(rows["flags"] & k.MF_LAST)[0]) + 1


def _engine(data: MarketRows, latency_ns: int, power: float) -> MatchingEngine:
    lat = LatencyModel(order_entry=ConstantLatency(latency_ns), order_response=ConstantLatency(latency_ns))
    eng = MatchingEngine(
        tick=data.tick, lot=data.lot, queue=PowerProbQueue(power), latency=lat, log_levels=False
    )
    eng.fit(*data.px_range())  # a replay knows its price range: no re-grid mid-way
    return eng


def replay_numba(data: MarketRows, lots: int, latency_ns: int, power: float) -> dict:
    """One full replay driven by `quote_loop` (no Python per event)."""
    rows = data.rows
    words = rows.view(np.int64).reshape(len(rows), k.MEF)
    first = _first_message_end(rows)
    t0 = time.perf_counter()
    c0 = time.process_time()
    eng = _engine(data, latency_ns, power)
    eng.run(rows, 0, first)
    fills, orders = quote_loop(eng.lad, eng.mem, words, first, lots)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if fills < 0:
        raise RuntimeError(f"bench match: replay stopped with kernel code {orders}")
    return {"wall_s": wall, "cpu_s": cpu, "fills": int(fills), "orders": int(orders), "far": eng.far_levels}


def replay_python(data: MarketRows, lots: int, latency_ns: int, power: float) -> dict:
    """The same replay with the quotes kept by Python between `MatchingEngine.run` calls."""
    rows = data.rows
    n = len(rows)
    first = _first_message_end(rows)
    t0 = time.perf_counter()
    c0 = time.process_time()
    eng = _engine(data, latency_ns, power)
    eng.run(rows, 0, first)
    quotes: dict[int, Order | None] = {BUY: None, SELL: None}
    fills = placed = 0
    i = first
    while True:
        for side in (BUY, SELL):
            o = quotes[side]
            if o is None or not (o.is_open or o.status == PENDING_NEW):
                px = eng.best_bid if side == BUY else eng.best_ask
                if px:
                    placed += 1
                    quotes[side] = eng.place(
                        Order(placed, f"q{placed}", side, "LIMIT", "GTC", px, lots, eng.now_ns)
                    )
        if i >= n:
            break
        i = eng.run(rows, i, n, stop_on_event=True)
        ch = eng.drain()
        if ch is not None:
            fills += sum(1 for ev in ch.order_events if ev.exec_type == TRADE)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "fills": fills, "orders": placed, "far": eng.far_levels}


def bench_replay(path: Path, repeat: int, lots: int, latency_ns: int, power: float) -> dict:
    t0 = time.perf_counter()
    data = load_rows(path)
    load_s = time.perf_counter() - t0
    replay_numba(data, lots, latency_ns, power)  # compile / load the kernels
    replay_python(data, lots, latency_ns, power)
    runs = [replay_numba(data, lots, latency_ns, power) for _ in range(repeat)]
    py = min((replay_python(data, lots, latency_ns, power) for _ in range(repeat)), key=lambda r: r["wall_s"])
    best = min(runs, key=lambda r: r["wall_s"])
    n_rows = len(data.rows)
    n_levels = data.level_rows
    return {
        "capture": path.name,
        "capture_rows": n_rows,
        "capture_level_updates": n_levels,
        "capture_trades": n_rows - n_levels - data.counts["snapshots"],
        "capture_load_s": round(load_s, 3),
        "capture_wall_s": round(best["wall_s"], 5),
        "capture_wall_s_runs": [round(r["wall_s"], 5) for r in runs],
        "capture_cpu_s": round(min(r["cpu_s"] for r in runs), 5),  # what a free core would give
        "level_updates_per_s": round(n_levels / best["wall_s"]),
        "rows_per_s": round(n_rows / best["wall_s"]),
        "our_fills": best["fills"],
        "our_orders": best["orders"],
        "far_levels": best["far"],
        "python_driver_wall_s": round(py["wall_s"], 5),
        "python_driver_cpu_s": round(py["cpu_s"], 5),
        "python_driver_fills": py["fills"],
        "queue_model": f"power_prob({power})",
        "latency_ns": latency_ns,
    }


def bench_generate(seconds: float, seed: int) -> dict:
    from hftbot.sim.generate import generate_messages
    from hftbot.sim.market import ModelParams

    params = ModelParams(seed=seed)
    generate_messages(params, 5.0, lambda ns, s, p: None)  # warm
    c0 = time.process_time()
    res = generate_messages(params, seconds, lambda ns, s, p: None)
    cpu = time.process_time() - c0
    return {
        "generate_sim_s": seconds,
        "generate_events": res.events,
        "generate_inmem_x_realtime": round(res.speedup, 1),
        "generate_inmem_x_realtime_cpu": round(seconds / cpu, 1) if cpu > 0 else float("inf"),
        "generate_events_per_s": round(res.events / res.wall_seconds),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench match", description=__doc__.splitlines()[0])
    ap.add_argument("--capture", type=Path, default=CAPTURE, help="capture or recording to replay")
    ap.add_argument("--repeat", type=int, default=5, help="timed replays (best reported)")
    ap.add_argument("--lots", type=int, default=1, help="size of each of our quotes, in lots")
    ap.add_argument("--latency-us", type=float, default=100.0, help="constant entry and response latency")
    ap.add_argument("--power", type=float, default=2.0, help="power-probability queue model exponent")
    ap.add_argument(
        "--generate-s", type=float, default=1800.0, help="simulated seconds for the generate figure"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="one timed replay, 60 simulated seconds (smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat, args.generate_s = 1, 60.0
    if not args.capture.exists():
        print(f"bench match: capture {args.capture} not found", file=sys.stderr)
        return 2
    rep = bench_replay(args.capture, max(1, args.repeat), args.lots, int(args.latency_us * 1000), args.power)
    gen = bench_generate(args.generate_s, args.seed)
    figures = {**rep, **gen, "load_avg_1m": os.getloadavg()[0]}
    print_table(
        "matching engine",
        ("figure", "measured", "reference"),
        [
            (
                "capture replay wall (compile excluded)",
                f"{rep['capture_wall_s']:.4f} s",
                "hftbacktest 0.065-0.084 s",
            ),
            ("capture replay CPU time", f"{rep['capture_cpu_s']:.4f} s", ""),
            ("level updates/s", f"{rep['level_updates_per_s']:,}", "nautilus book ~3,000,000"),
            ("rows/s (levels + trades)", f"{rep['rows_per_s']:,}", "hftbacktest ~7,500,000"),
            ("our fills / orders placed", f"{rep['our_fills']} / {rep['our_orders']}", ""),
            ("same, quotes kept from Python: wall", f"{rep['python_driver_wall_s']:.4f} s", ""),
            ("generate (messages only)", f"{gen['generate_inmem_x_realtime']:.0f}x real time", ""),
            ("generate, per CPU second", f"{gen['generate_inmem_x_realtime_cpu']:.0f}x real time", ""),
            ("machine load average (1 min)", f"{figures['load_avg_1m']:.1f}", f"{os.cpu_count()} cores"),
        ],
    )
    print_json(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
