"""`python -m hftbot.feed check PATH...`: rebuild the book from captures/recordings and verify it.

The book is rebuilt by the very code the live feed runs (`FeedCore`), across all files given, in
time order. Every bookTicker whose `u` equals the `u` of the last applied diff must match the
rebuilt best bid/ask price and quantity exactly. Prints a human summary, then one JSON line.

Exit status: 0 clean; 1 on any ticker mismatch, any malformed frame or any rejected (off-tick)
level; 2 when the input cannot be read at all. Gaps and resyncs are reported, not failures: real
captures have them, and the book recovers at the next snapshot in the data.
It must never modify its input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from hftbot.feed.capture import CaptureError, iter_blocks
from hftbot.feed.core import FeedCore, Instrument
from hftbot.feed.decode import parse_decimal
from hftbot.feed.fastpath import W_MISMATCH_U
from hftbot.records import TRADE_DTYPE, book_dtype


def check(paths: list[str], levels: int = 10, tick: str | None = None, lot: str | None = None) -> dict:
    """Rebuild and check; returns the report (counters, files, messages, seconds)."""
    inst = None
    if tick or lot:
        if not (tick and lot):
            raise ValueError("--tick and --lot go together")
        inst = Instrument(parse_decimal(tick), parse_decimal(lot))
    core = FeedCore(levels=levels, instrument=inst, check_tickers=True)
    out_b = np.zeros(4096, dtype=book_dtype(levels))
    out_t = np.zeros(4096, dtype=TRADE_DTYPE)
    msgs = 0
    files = []
    t0 = time.perf_counter()
    for block in iter_blocks(paths):
        if block.source not in files:
            files.append(block.source)
        i, n = 0, len(block)
        while i < n:
            i, _, _ = core.run(block.data, block.starts, block.ends, block.nss, i, n, out_b, out_t)
        msgs += n
    report = {
        "files": len(files),
        "messages": msgs,
        **core.counters(),
        "tick": core.instrument.tick_u / 1e8 if core.instrument else None,
        "lot": core.instrument.lot_u / 1e8 if core.instrument else None,
        "first_mismatch_u": int(core.ws[W_MISMATCH_U]) if core.ticker_mismatches else None,
        "last_error": core.last_error or None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return report


def failed(report: dict) -> bool:
    return bool(report["ticker_mismatches"] or report["malformed"] or report["rejected"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.feed check", description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="capture .gz files, raw .parquet recordings or folders")
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--tick", help="tick size (default: inferred from the first snapshot)")
    ap.add_argument("--lot", help="lot size (default: inferred from the first snapshot)")
    args = ap.parse_args(argv)
    try:
        r = check(args.paths, args.levels, args.tick, args.lot)
    except (CaptureError, FileNotFoundError, ValueError) as e:
        print(f"check: {e}", file=sys.stderr)
        return 2
    verdict = "FAIL" if failed(r) else "OK"
    print(f"{verdict}: {r['files']} file(s), {r['messages']:,} messages in {r['seconds']} s")
    print(
        f"  depth: {r['depth_msgs']:,} events, {r['depth_applied']:,} applied, {r['dropped']:,} dropped "
        f"(older than the book), {r['gaps']} gaps, {r['resyncs']} resyncs, {r['snapshots']} snapshots"
    )
    print(
        f"  bookTicker: {r['ticker_msgs']:,} messages, {r['ticker_checks']:,} checked against the book, "
        f"{r['ticker_mismatches']} mismatches"
    )
    print(
        f"  trades: {r['trades']:,} (+{r['trades_skipped']} before tick/lot were known); "
        f"tick {r['tick']}, lot {r['lot']}"
    )
    if r["malformed"] or r["rejected"]:
        print(
            f"  malformed frames: {r['malformed']}, rejected levels: {r['rejected']}; last: {r['last_error']}"
        )
    print(json.dumps(r))
    return 1 if failed(r) else 0
