"""The mirror venue's engine follows book and trade records: levels, queue place, fills."""

from __future__ import annotations

import numpy as np

from hftbot.records import BOOK_VALID, TRADE_DTYPE, empty_book
from hftbot.sim.matching import (
    BUY,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    SELL,
    MatchingEngine,
    Order,
    RiskAverseQueue,
)
from hftbot.sim.mirror import BookMirror


def record(bids: list[tuple[int, int]], asks: list[tuple[int, int]], valid: bool = True) -> np.ndarray:
    b = empty_book(10)
    b["flags"] = BOOK_VALID if valid else 0
    b["tick"], b["lot"] = 0.01, 0.01
    for i, (px, q) in enumerate(bids):
        b["bid_px"][i], b["bid_qty"][i] = px, q
    for i, (px, q) in enumerate(asks):
        b["ask_px"][i], b["ask_qty"][i] = px, q
    return b


def trade(px: int, qty: int, taker_buy: bool) -> np.ndarray:
    t = np.zeros((), TRADE_DTYPE)
    t["px"], t["qty"], t["buyer_is_maker"] = px, qty, 0 if taker_buy else 1
    return t


def ours(e: MatchingEngine, side: int, px: int, qty: int, tif: str = "GTC") -> Order:
    o = Order(e.new_order_id(), f"c{e._next_order_id}", side, "LIMIT", tif, px, qty, time_ns=1)
    e.begin()
    e.place(o)
    e.drain()
    return o


def mirrored(*recs) -> tuple[MatchingEngine, BookMirror]:
    e = MatchingEngine(tick=0.01, lot=0.01, queue=RiskAverseQueue())
    m = BookMirror(e)
    for r in recs:
        e.begin()
        m.on_book(r, 1)
        e.drain()
    return e, m


def test_the_engine_shows_exactly_the_records_levels() -> None:
    e, m = mirrored(record([(100, 5), (99, 7), (98, 9)], [(101, 4), (102, 6)]))
    assert e.bids == {100: 5, 99: 7, 98: 9} and e.asks == {101: 4, 102: 6}
    e.begin()
    m.on_book(record([(101, 3), (100, 5)], [(102, 8), (103, 1)]), 2)  # the market moved up a tick
    assert e.bids == {101: 3, 100: 5} and e.asks == {102: 8, 103: 1}
    assert (e.best_bid, e.best_ask) == (101, 102)
    e.begin()
    assert not m.on_book(record([(90, 1)], [(95, 1)], valid=False), 3)  # a resync marker changes nothing
    assert e.bids == {101: 3, 100: 5} and m.skipped == 1 and m.books == 2


def test_our_order_keeps_its_place_and_fills_when_the_queue_ahead_has_traded() -> None:
    e, m = mirrored(record([(100, 50), (99, 10)], [(101, 40)]))
    mine = ours(e, BUY, 100, 10)  # behind 50
    assert mine.others_ahead == 50 and e.bids[100] == 60
    e.begin()
    m.on_book(record([(100, 55), (99, 10)], [(101, 40)]), 2)  # 5 more join behind us
    assert mine.others_ahead == 50 and e.bids[100] == 65
    e.begin()
    m.on_trade(trade(100, 30, taker_buy=False), 3)  # a seller takes 30 of the 50 ahead
    assert mine.status == NEW and mine.others_ahead == 20
    e.begin()
    m.on_trade(trade(100, 25, taker_buy=False), 4)  # the last 20 ahead, then 5 of ours
    assert mine.status == PARTIALLY_FILLED and mine.filled == 5
    events = e.drain().order_events
    assert events[-1].last_qty == 5 and events[-1].maker


def test_a_book_that_crosses_our_resting_order_fills_it_at_its_price() -> None:
    e, m = mirrored(record([(100, 50)], [(102, 40)]))
    mine = ours(e, SELL, 101, 10)  # inside the spread, alone at 101
    e.begin()
    m.on_book(record([(101, 20), (100, 50)], [(102, 40)]), 5)  # the market's bid reached our ask
    assert mine.status == FILLED and m.crossed == 1
    assert e.bids == {101: 20, 100: 50} and e.asks == {102: 40}


def test_our_aggressive_order_takes_the_shown_liquidity_and_the_next_book_restores_it() -> None:
    e, m = mirrored(record([(100, 50)], [(101, 4), (102, 6)]))
    taker = ours(e, BUY, 102, 8, tif="IOC")
    assert taker.filled == 8 and e.asks == {102: 2}
    e.begin()
    m.on_book(record([(100, 50)], [(101, 4), (102, 6)]), 6)  # the market never saw us
    assert e.asks == {101: 4, 102: 6}
    assert SELL not in {o.side for o in e.open_orders()}
