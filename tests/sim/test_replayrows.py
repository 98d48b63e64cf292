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


def _frame_by_frame(path: Path):
    """The rows by the Python `frame` alone, one call per frame: the definition `build_rows` follows."""
    from hftbot.sim.replayrows import _Builder

    b = _Builder(None)
    for blk in iter_blocks([path]):
        for j in range(len(blk)):
            b.frame(int(blk.nss[j]), blk.frame(j), f"{blk.source} frame {j}")
    return b.buf[: b.n].copy(), b.counts


def _diff(U: int, u: int, pu: int, bids: str = '[["100.1","1"]]', asks: str = "[]", e: int = 5) -> bytes:
    return (b'{"stream":"x@depth","data":{"e":"depthUpdate","E":%d,"T":%d,"s":"X","U":%d,"u":%d,"pu":%d,'
            b'"b":%s,"a":%s}}' % (e, e, U, u, pu, bids.encode(), asks.encode()))


def _trade(px: str, maker: str = "true") -> bytes:
    return (b'{"stream":"x@aggTrade","data":{"e":"aggTrade","E":7,"s":"X","a":1,"p":"%s","q":"2",'
            b'"f":1,"l":1,"T":7,"m":%s}}' % (px.encode(), maker.encode()))


def test_the_compiled_rows_equal_the_frame_by_frame_definition(tmp_path) -> None:
    """Every case `build_rows` hands back (snapshots, buffered diffs, a gap and its resync, a dropped
    diff, trades before the book, tickers, a buffer that must grow) gives the rows and counts of the
    one-frame-at-a-time Python path, on the real capture and on a hand-built one."""
    snap = b'{"lastUpdateId":%d,"E":1,"T":1,"bids":[["100.0","1"],["99.9","3"]],"asks":[["101.0","1"]]}'
    frames = [
        _trade("100.0"),  # before the book: counted, no row
        _diff(8, 9, 7),  # buffered until the snapshot, then dropped (older than it)
        _diff(10, 12, 9, asks='[["101.0","0"],["101.2","4"]]'),  # buffered, applied first
        snap % 10,
        _diff(13, 14, 12),
        b'{"stream":"x@bookTicker","data":{"e":"bookTicker","u":14,"b":"100.1","B":"1","a":"101.2","A":"4"}}',
        _trade("100.1", "false"),
        _diff(13, 14, 12),  # a duplicate: dropped
        _diff(20, 22, 19),  # a gap: resync
        _trade("100.2"),  # out of sync: counted, no row
        snap % 25,
        _diff(24, 26, 23, bids='[["100.3","2"],["100.2","0"]]'),
        _diff(27, 28, 26, bids="[]", asks='[["101.4","1"]]'),
        _trade("101.4"),
    ]
    synthetic = tmp_path / "cases.gz"
    synthetic.write_bytes(gzip.compress(b"".join(b"%d %s\n" % (100 + i, f) for i, f in enumerate(frames))))
    for path in (synthetic, CAPTURE):
        want, counts = _frame_by_frame(path)
        got = load_rows(path)
        assert np.array_equal(got.rows.view(np.int64).reshape(want.shape), want)
        assert got.counts == {**counts, "gaps": got.counts["gaps"]}
    got = load_rows(synthetic)
    assert got.counts["gaps"] == 1 and got.counts["snapshots"] == 2 and got.counts["trades"] == 2
    assert got.counts["trades_before_book"] == 2 and got.counts["dropped"] == 3 and got.counts["diffs"] == 4


def test_the_compiled_rows_grow_their_buffer_and_refuse_off_grid_levels(tmp_path) -> None:
    from hftbot.sim.kernels import MEF
    from hftbot.sim.replayrows import RowBuilder, row_frames

    rb = RowBuilder()
    rb.buf = np.zeros((2, MEF), np.int64)  # far too small: build_rows stops, the buffer doubles
    blocks = list(iter_blocks([CAPTURE]))
    for blk in blocks:
        rb.frames(blk, row_frames(blk, 0, len(blk)))
    assert np.array_equal(rb.take(), load_rows(CAPTURE).rows)
    path = tmp_path / "off.gz"
    snap = b'{"lastUpdateId":10,"E":1,"T":1,"bids":[["100.0","1"]],"asks":[["101.0","1"]]}'
    path.write_bytes(gzip.compress(b"1 %s\n2 %s\n3 %s\n" % (snap, _diff(10, 12, 9), _trade("100.05"))))
    with pytest.raises(CaptureError, match=r"off.gz frame 2: trade price/quantity not a whole number"):
        load_rows(path, tick="0.1", lot="1")
