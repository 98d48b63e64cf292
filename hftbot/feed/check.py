"""`python -m hftbot.feed check PATH...`: rebuild the book from captures/recordings and verify it.

The book is rebuilt by the very code the live feed runs (`FeedCore`), across all files given, in
time order. Every bookTicker must match the rebuilt best bid/ask price and quantity exactly when
the book stands at the ticker's `u`: at once when `u` is the last applied diff's `u`, or held
until a diff ends on it (on throttled `@depth@100ms` streams the ticker comes first). Prints a
verdict with its reasons and a human summary, then one JSON line (`verdict`, `reasons`, counters).

Exit status: 0 clean; 1 on any ticker mismatch, any malformed frame or any rejected (off-tick)
level, and when nothing was checked (no message, no diff applied, or no bookTicker compared: an
empty or unrelated input is not a pass); 2 when the input cannot be read (missing, empty,
truncated or damaged files, named in the message). Gaps and resyncs are reported, not failures:
real captures have them, and the book recovers at the next snapshot in the data.
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
        "verdict": "",
        "reasons": [],
        "files": len(files),
        "messages": msgs,
        **core.counters(),
        "tick": core.instrument.tick_u / 1e8 if core.instrument else None,
        "lot": core.instrument.lot_u / 1e8 if core.instrument else None,
        "first_mismatch_u": int(core.ws[W_MISMATCH_U]) if core.ticker_mismatches else None,
        "last_error": core.last_error or None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    report["reasons"] = reasons(report)
    report["verdict"] = "FAIL" if report["reasons"] else "OK"
    return report


def reasons(r: dict) -> list[str]:
    """Why the input does not pass; empty when it does."""
    out = []
    if r["ticker_mismatches"]:
        out.append(
            f"{r['ticker_mismatches']} bookTicker(s) differ from the rebuilt book (first at u={r['first_mismatch_u']})"
        )
    if r["malformed"]:
        out.append(f"{r['malformed']} malformed frame(s) (last: {r['last_error']})")
    if r["rejected"]:
        out.append(f"{r['rejected']} diff(s) with a level off tick/lot (last: {r['last_error']})")
    if not r["messages"]:
        out.append("nothing checked: the input holds no messages")
    elif not r["depth_applied"]:
        out.append(
            "nothing checked: no depth diff was applied (no snapshot in the data, or none that the "
            f"diffs straddle; {r['depth_msgs']} diffs, {r['snapshots']} snapshots)"
        )
    elif not r["ticker_checks"]:
        out.append(
            f"nothing checked: no bookTicker was compared with the book ({r['ticker_msgs']} bookTicker "
            "messages; none reached while the book stood at its u)"
        )
    return out


def failed(report: dict) -> bool:
    return bool(report["reasons"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.feed check", description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="capture .gz files, raw .parquet recordings or folders")
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--tick", help="tick size (default: inferred from the first snapshot)")
    ap.add_argument("--lot", help="lot size (default: inferred from the first snapshot)")
    args = ap.parse_args(argv)
    try:
        r = check(args.paths, args.levels, args.tick, args.lot)
    except (CaptureError, OSError, ValueError) as e:
        print(f"check: {e}", file=sys.stderr)
        return 2
    print(f"{r['verdict']}: {r['files']} file(s), {r['messages']:,} messages in {r['seconds']} s")
    for why in r["reasons"]:
        print(f"  why: {why}")
    print(
        f"  depth: {r['depth_msgs']:,} events, {r['depth_applied']:,} applied, {r['dropped']:,} dropped "
        f"(older than the book), {r['gaps']} gaps, {r['resyncs']} resyncs, {r['snapshots']} snapshots"
    )
    print(
        f"  bookTicker: {r['ticker_msgs']:,} messages, {r['ticker_checks']:,} checked against the book "
        f"({r['ticker_checks'] - r['ticker_checks_held']:,} on arrival, {r['ticker_checks_held']:,} held "
        f"until the book reached their u), {r['ticker_mismatches']} mismatches"
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
