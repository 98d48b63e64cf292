"""Captures to engine rows: the real BTCUSDT capture replayed through the engine rebuilds the feed's book."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from hftbot.feed.capture import CaptureError, iter_blocks
from hftbot.feed.core import FeedCore
from hftbot.records import TRADE_DTYPE, book_dtype
from hftbot.sim.kernels import EV_CLEAR, EV_LEVEL, EV_TRADE, MF_LAST
from hftbot.sim.matching import BUY, SELL, MatchingEngine, Order
from hftbot.sim.replayrows import load_rows

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "btcusdt_20240808.gz"


def feed_book(path: Path) -> tuple[list, list]:
    core = FeedCore(levels=10)
    out_b, out_t = np.zeros(4096, dtype=book_dtype(10)), np.zeros(4096, dtype=TRADE_DTYPE)
    for block in iter_blocks([path]):
        i = 0
        while i < len(block):
            i, _, _ = core.run(block.data, block.starts, block.ends, block.nss, i, len(block), out_b, out_t)
    return core.book.bids(), core.book.asks()


def test_capture_replayed_through_the_engine_rebuilds_the_feeds_book() -> None:
    data = load_rows(CAPTURE)
    assert data.counts["diffs"] == 6547 and data.counts["gaps"] == 0 and data.counts["snapshots"] == 1
    assert (data.tick, data.lot) == (0.1, 0.001)
    rows = data.rows
    assert rows["kind"][0] == EV_CLEAR and set(np.unique(rows["kind"])) == {EV_CLEAR, EV_LEVEL, EV_TRADE}
    assert np.count_nonzero(rows["kind"] == EV_TRADE) == data.counts["trades"] == 21_308
    assert (rows["flags"][rows["kind"] == EV_TRADE] & MF_LAST).all() and rows["flags"][-1] & MF_LAST
    assert 1 + 21_308 < np.count_nonzero(rows["flags"] & MF_LAST) <= 1 + 6547 + 21_308  # one per message
    e = MatchingEngine(tick=data.tick, lot=data.lot, log_levels=False)
    e.run(rows)  # re-grids on its own for the far levels (bids at 1,000 USD, asks at 621,000)
    bids, asks = feed_book(CAPTURE)
    assert sorted(e.bids.items(), reverse=True) == bids and sorted(e.asks.items()) == asks
    assert e.far_levels == 0 and e.regrids >= 1 and (e.best_bid, e.best_ask) == (bids[0][0], asks[0][0])
    f = MatchingEngine(tick=data.tick, lot=data.lot, log_levels=False)
    assert f.fit(*data.px_range())
    f.run(rows)
    assert f.regrids == 1 and f.bids.items() == e.bids.items()


def test_our_quotes_fill_on_the_real_capture_and_fees_add_up() -> None:
    data = load_rows(CAPTURE)
    e = MatchingEngine(tick=data.tick, lot=data.lot, log_levels=False)
    e.fit(*data.px_range())
    first = int(np.flatnonzero(data.rows["flags"] & MF_LAST)[0]) + 1
    e.run(data.rows, 0, first)
    bid = e.place(Order(1, "b", BUY, "LIMIT", "GTC", e.best_bid, 5, e.now_ns))
    ask = e.place(Order(2, "a", SELL, "LIMIT", "GTC", e.best_ask, 5, e.now_ns))
    assert bid.others_ahead > 0 and ask.others_ahead > 0
    e.run(data.rows, first)
    ch = e.drain()
    trades = [ev for ev in ch.order_events if ev.exec_type == "TRADE"]
    assert trades and bid.filled + ask.filled == sum(ev.last_qty for ev in trades)
    for o in (bid, ask):
        mine = [ev for ev in trades if ev.order is o]
        assert o.cum_fee == sum((ev.fee for ev in mine), start=Decimal(0)) != 0
        assert all(ev.maker and ev.last_px == o.px for ev in mine)


def test_bad_captures_are_refused_with_the_frame_named(tmp_path) -> None:
    lines = [
        b'1 {"lastUpdateId":10,"E":1,"T":1,"bids":[["100.0","1"]],"asks":[["101.0","1"]]}',
        b'2 {"stream":"x@depth","data":{"e":"depthUpdate","E":2,"T":2,"s":"X","U":9,"u":11,"pu":8,'
        b'"b":[["100.05","2"]],"a":[]}}',
    ]
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(CaptureError, match=r"bad.gz frame 1: a level is not a whole number of ticks"):
        load_rows(bad, tick="0.1", lot="1")
    none = tmp_path / "none.gz"
    none.write_bytes(gzip.compress(lines[1] + b"\n"))
    with pytest.raises(CaptureError, match="no depth snapshot"):
        load_rows(none)
