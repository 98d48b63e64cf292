"""An independent reading of a capture or raw recording, by the documented futures procedure.

Plain Python and `json`, nothing from `hftbot.feed`'s numba path: the expected figures of the
feed's tests (diffs applied, bookTicker checks, trades) are computed here from the file itself
rather than typed in, so a test compares two implementations of the procedure
(../shared/reference/binance-usdm.md §2), not one implementation with a number.

The procedure: buffer diffs until the first depth snapshot; drop buffered diffs with
`u < lastUpdateId`; the first applied diff must have `U <= lastUpdateId <= u`; then every diff's
`pu` equals the previous applied `u` (a diff with `u <=` the last applied `u` is a duplicate and
is skipped, as the feed does); a break resyncs at the next snapshot in the data. A bookTicker is
checked when the book reaches its `u`: at once when its `u` is the last applied diff's `u`, or
later, when a diff ends on it (held until then; dropped when the book passes it). Trades count
once the tick and lot are known, i.e. after the first snapshot (captures carry no exchangeInfo).
It is slow (seconds for the shared capture) and meant for tests only.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path


@dataclass
class ReferenceCounts:
    depth_msgs: int = 0
    depth_applied: int = 0
    gaps: int = 0
    ticker_msgs: int = 0
    ticker_checks: int = 0  # at once or held until the book reached the ticker's u
    ticker_checks_at_once: int = 0  # only those whose u was the last applied u on arrival
    ticker_mismatches: int = 0
    trades: int = 0
    syncs: int = 0  # snapshots the book synced from
    applied_at_sync: int = 0  # buffered diffs applied when a snapshot arrived (one burst each)
    mismatch_us: list[int] = field(default_factory=list)


def frames(path: str | Path) -> Iterator[dict]:
    """Parsed JSON messages of a `<ns> <json>` gzip capture or a raw Parquet recording, in order."""
    p = Path(path)
    if p.name.endswith(".gz"):
        with gzip.open(p, "rt") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line.split(" ", 1)[1])
        return
    import pyarrow.parquet as pq

    files = sorted(p.rglob("raw-*.parquet")) if p.is_dir() else [p]
    for f in files:
        for payload in pq.read_table(f, columns=["payload"]).column("payload").to_pylist():
            yield json.loads(payload)


class _Book:
    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def load(self, bids: list, asks: list) -> None:
        self.bids, self.asks = {}, {}
        self.update(bids, asks)

    def update(self, bids: list, asks: list) -> None:
        for side, rows in ((self.bids, bids), (self.asks, asks)):
            for px, qty in rows:
                p, q = Decimal(px), Decimal(qty)
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)

    def matches(self, t: dict) -> bool:
        if not self.bids or not self.asks:
            return False
        bp, ap = max(self.bids), min(self.asks)
        return (bp, self.bids[bp], ap, self.asks[ap]) == tuple(Decimal(t[k]) for k in "bBaA")


def reference_counts(path: str | Path, hold: int = 4) -> ReferenceCounts:
    """Rebuild the book from the file and count what the feed must count (see the module doc).

    `hold`: how many tickers ahead of the book are kept for a later comparison (the newest win).
    """
    c = ReferenceCounts()
    book = _Book()
    state = "wait_snapshot"  # -> "wait_first" (snapshot loaded) -> "synced"
    known = False  # tick/lot known: after the first snapshot
    last_u = snapshot_id = 0
    buffered: list[dict] = []
    held: list[dict] = []

    def check(t: dict) -> None:
        c.ticker_checks += 1
        if not book.matches(t):
            c.ticker_mismatches += 1
            c.mismatch_us.append(t["u"])

    def apply(d: dict) -> None:
        nonlocal last_u
        book.update(d["b"], d["a"])
        last_u = d["u"]
        c.depth_applied += 1
        for t in list(held):
            if t["u"] <= last_u:
                held.remove(t)
                if t["u"] == last_u:
                    check(t)

    def lose_sync(d: dict) -> None:
        nonlocal state
        state = "wait_snapshot"
        buffered[:] = [d]
        held.clear()

    def on_diff(d: dict) -> None:
        nonlocal state
        if state == "synced":
            if d["pu"] == last_u:
                apply(d)
            elif d["u"] > last_u:  # (u <= last u: a duplicate or straggler, already in the book)
                c.gaps += 1
                lose_sync(d)
        elif state == "wait_first":
            if d["u"] < snapshot_id:
                return
            if d["U"] <= snapshot_id:
                state = "synced"
                apply(d)
            else:  # the snapshot is older than the stream: wait for another
                lose_sync(d)
        else:
            buffered.append(d)

    for msg in frames(path):
        d = msg.get("data", msg)
        if "lastUpdateId" in d and "e" not in d:  # a REST / WS API depth snapshot
            if state != "wait_snapshot":
                continue
            known = True
            book.load(d["bids"], d["asks"])
            snapshot_id = last_u = d["lastUpdateId"]
            state = "wait_first"
            pending, buffered = buffered, []
            before = c.depth_applied
            for x in pending:
                on_diff(x)
            c.applied_at_sync += c.depth_applied - before
            c.syncs += 1
            continue
        e = d.get("e")
        if e == "depthUpdate":
            c.depth_msgs += 1
            on_diff(d)
        elif e == "bookTicker":
            c.ticker_msgs += 1
            if state != "synced":
                continue
            if d["u"] == last_u:
                c.ticker_checks_at_once += 1
                check(d)
            elif d["u"] > last_u and hold:
                held.append(d)
                if len(held) > hold:
                    held.pop(0)
        elif e in ("trade", "aggTrade") and known:
            c.trades += 1
    return c
