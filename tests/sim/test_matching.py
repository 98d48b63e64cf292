"""Matching-engine behaviour: priority, queue position, fees, conservation, order types."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftbot.sim.matching import (
    BUY,
    CANCELED,
    EXPIRED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    SELL,
    TRADE,
    MatchingEngine,
    Order,
    ProportionalQueue,
    RejectError,
    RiskAverseQueue,
)


def book(queue=None) -> MatchingEngine:
    """Bids 100..96 and asks 101..105, 50 lots each (ticks/lots)."""
    e = MatchingEngine(tick=0.01, lot=0.01, queue=queue or RiskAverseQueue())
    e.begin()
    for k in range(5):
        e.add(BUY, 100 - k, 50)
        e.add(SELL, 101 + k, 50)
    e.drain()
    return e


def order(e: MatchingEngine, side: int, px: int, qty: int, tif: str = "GTC", typ: str = "LIMIT") -> Order:
    o = Order(e.new_order_id(), f"c{e._next_order_id}", side, typ, tif, px, qty, time_ns=1)
    e.begin()
    e.place(o)
    return o


def fills(e: MatchingEngine) -> list:
    ch = e.drain()
    return [ev for ev in (ch.order_events if ch else []) if ev.exec_type == TRADE]


def test_new_order_queues_behind_displayed_size() -> None:
    e = book()
    o = order(e, BUY, 100, 10)
    assert o.others_ahead == 50
    assert e.level(BUY, 100) == 60
    e.begin()
    e.market(SELL, 30, 2)
    assert fills(e) == [] and o.others_ahead == 20
    e.begin()
    e.market(SELL, 25, 3)
    f = fills(e)
    assert [x.last_qty for x in f] == [5] and o.status == PARTIALLY_FILLED and o.others_ahead == 0


def test_limit_taker_fills_best_price_first_and_rests_the_rest() -> None:
    e = book()
    o = order(e, BUY, 102, 120)
    f = fills(e)
    assert [(x.last_px, x.last_qty) for x in f] == [(101, 50), (102, 50)]
    assert o.status == PARTIALLY_FILLED and o.remaining == 20
    assert e.best_bid == 102 and e.level(BUY, 102) == 20 and e.best_ask == 103


def test_post_only_that_would_take_is_rejected_with_5022() -> None:
    e = book()
    with pytest.raises(RejectError) as err:
        order(e, BUY, 101, 1, tif="GTX")
    assert err.value.code == -5022
    assert e.level(SELL, 101) == 50


def test_fok_that_cannot_fill_is_rejected_and_leaves_book() -> None:
    e = book()
    with pytest.raises(RejectError) as err:
        order(e, BUY, 101, 51, tif="FOK")
    assert err.value.code == -5021 and e.level(SELL, 101) == 50
    o = order(e, BUY, 101, 50, tif="FOK")
    assert o.status == FILLED


def test_ioc_remainder_expires_and_market_sweeps() -> None:
    e = book()
    o = order(e, BUY, 101, 80, tif="IOC")
    assert o.filled == 50 and o.status == EXPIRED and e.best_bid == 100
    m = order(e, SELL, 0, 120, typ="MARKET")
    assert m.status == FILLED and e.best_bid == 98 and e.level(BUY, 98) == 30


def test_cancel_and_modify_lose_queue_place() -> None:
    e = book()
    o = order(e, BUY, 100, 10)
    e.begin()
    e.market(SELL, 40, 2)
    assert o.others_ahead == 10
    e.begin()
    e.modify_order(o, 100, 12, 3)
    assert o.others_ahead == 10  # the 10 left ahead; it rejoined at the back of the level
    e.begin()
    e.add(BUY, 100, 5)
    e.begin()
    e.cancel_order(o, 4)
    assert o.status == CANCELED and e.level(BUY, 100) == 15
    with pytest.raises(RejectError) as err:
        e.cancel_order(o, 5)
    assert err.value.code == -2011


def test_self_trade_expires_our_resting_order() -> None:
    e = book()
    mine = order(e, SELL, 101, 10)  # behind 50
    taker = order(e, BUY, 101, 70)
    assert mine.status == "EXPIRED_IN_MATCH" and mine.filled == 0
    assert taker.filled == 50 and taker.remaining == 20


def test_replay_trade_through_our_price_fills_us() -> None:
    e = book()
    o = order(e, SELL, 103, 10)
    e.replay_trade(True, 104, 5, 9)
    assert o.status == FILLED


# -- properties ------------------------------------------------------------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "cancel", "market", "mine", "mine_cancel"]),
        st.sampled_from([BUY, SELL]),
        st.integers(0, 6),  # distance from the touch
        st.integers(1, 120),  # lots
    ),
    min_size=1,
    max_size=60,
)


def _run(e: MatchingEngine, seq, on_step=None) -> dict:
    placed = 0
    taken_by_prints = 0
    for kind, side, d, lots in seq:
        e.begin()
        if kind == "add":
            if side == BUY:
                px = (e.best_ask - 1 - d) if e.best_ask else 100 - d
            else:
                px = (e.best_bid + 1 + d) if e.best_bid else 101 + d
            e.add(side, px, lots)
        elif kind == "cancel":
            best = e.best_bid if side == BUY else e.best_ask
            if best:
                e.cancel(side, best - d if side == BUY else best + d, lots)
        elif kind == "market":
            e.market(side, lots, 5)
        elif kind == "mine":
            best = e.best_bid if side == BUY else e.best_ask
            if best:
                px = best - d if side == BUY else best + d
                o = Order(e.new_order_id(), f"m{placed}", side, "LIMIT", "GTC", px, lots, 1)
                e.place(o)
                placed += 1
        elif kind == "mine_cancel":
            opens = e.open_orders()
            if opens:
                e.cancel_order(opens[d % len(opens)], 6)
        ch = e.drain()
        if ch:
            taken_by_prints += sum(p.qty for p in ch.prints)
            if on_step:
                on_step(ch)
    return {"placed": placed, "printed": taken_by_prints}


@settings(max_examples=150, deadline=None)
@given(ops, st.sampled_from(["risk_averse", "proportional"]))
def test_queue_position_only_advances(seq, qname) -> None:
    e = book(RiskAverseQueue() if qname == "risk_averse" else ProportionalQueue())
    seen: dict[int, int] = {}

    def check(ch) -> None:
        for o in e.open_orders():
            if o.order_id in seen:
                assert o.others_ahead <= seen[o.order_id]
            seen[o.order_id] = o.others_ahead
            assert 0 <= o.others_ahead <= e.others(o.side, o.px)

    _run(e, seq, check)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_no_fill_through_a_better_resting_price(seq) -> None:
    e = book()

    def check(ch) -> None:
        for p in ch.prints:
            # after a print, nothing better than its price remains on the side it hit
            if p.taker_buy:
                assert not e.asks or min(e.asks) >= p.px
            else:
                assert not e.bids or max(e.bids) <= p.px
        assert not (e.best_bid and e.best_ask) or e.best_bid < e.best_ask

    _run(e, seq, check)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_quantity_is_conserved(seq) -> None:
    e = book()
    total = sum(e.bids.values()) + sum(e.asks.values())
    own_total = {}
    for kind, side, d, lots in seq:
        e.begin()
        delta = 0
        if kind == "add":
            best = e.best_bid if side == BUY else e.best_ask
            opp = e.best_ask if side == BUY else e.best_bid
            px = (opp - 1 - d) if side == BUY else (opp + 1 + d)
            if not opp:
                px = (best or 100) - d if side == BUY else (best or 101) + d
            e.add(side, px, lots)
            delta += lots
        elif kind == "cancel":
            best = e.best_bid if side == BUY else e.best_ask
            if best:
                delta -= e.cancel(side, best - d if side == BUY else best + d, lots)
        elif kind in ("market", "mine"):
            best = e.best_bid if side == BUY else e.best_ask
            if kind == "market" or not best:
                e.market(side, lots, 5)
            else:
                px = best - d if side == BUY else best + d
                o = Order(e.new_order_id(), f"m{o_id(e)}", side, "LIMIT", "GTC", px, lots, 1)
                e.place(o)
                delta += lots  # rests whole (it does not cross: it sits at or behind its own touch)
                own_total[o.order_id] = lots
        elif kind == "mine_cancel":
            opens = e.open_orders()
            if opens:
                o = opens[d % len(opens)]
                delta -= o.remaining
                e.cancel_order(o, 6)
        ch = e.drain()
        printed = sum(p.qty for p in ch.prints) if ch else 0
        total += delta - printed
        assert sum(e.bids.values()) + sum(e.asks.values()) == total
        for o in e.orders.values():
            assert o.filled + o.remaining == o.qty and 0 <= o.filled <= o.qty
        for o in e.open_orders():
            assert e.level(o.side, o.px) >= o.remaining


def o_id(e: MatchingEngine) -> int:
    return e._next_order_id


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10_000_000), st.integers(1, 100_000), st.booleans())
def test_fees_are_exact(px, lots, maker) -> None:
    e = MatchingEngine(tick=0.01, lot=0.001)
    notional = e.notional(px, lots)
    assert notional == Decimal(px) * Decimal(lots) * Decimal("0.01") * Decimal("0.001")
    fee = e.fees.fee(notional, maker)
    assert fee == notional * (Decimal("0.0002") if maker else Decimal("0.0005"))


def test_fill_events_carry_exact_fees_and_maker_flag() -> None:
    e = book()
    mine = order(e, BUY, 100, 10)
    e.drain()
    e.begin()
    e.market(SELL, 60, 2)
    (f,) = fills(e)
    assert f.maker and f.order is mine and f.last_qty == 10
    assert f.fee == Decimal("1.00") * Decimal("0.10") * Decimal("0.0002")
    taker = order(e, BUY, 101, 5)
    (t,) = fills(e)
    assert not t.maker and t.fee == Decimal("1.01") * Decimal("0.05") * Decimal("0.0005")
    assert taker.status == FILLED and mine.status == FILLED


def test_update_ids_increase_and_rejects_use_none() -> None:
    e = book()
    uid = e.update_id
    with pytest.raises(RejectError):
        order(e, BUY, 101, 1, tif="GTX")
    assert e.update_id == uid and e.drain() is None
    order(e, BUY, 99, 1)
    ch = e.drain()
    assert ch.first_update_id == ch.last_update_id == uid + 1 and ch.bids == [99]
    assert [ev.status for ev in ch.order_events] == [NEW]
