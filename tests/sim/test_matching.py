"""Matching-engine behaviour: priority, queue position, fees, latency, replay, conservation, order types.

Hand-built scenarios with answers worked out by hand (in the comments), then properties.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
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
    PENDING_NEW,
    REJECTED,
    SELL,
    TRADE,
    ConstantLatency,
    FeeModel,
    JitterLatency,
    LatencyModel,
    MatchingEngine,
    Order,
    PowerProbQueue,
    ProportionalQueue,
    RejectError,
    RiskAverseQueue,
)

QUEUES = {"risk_averse": RiskAverseQueue, "proportional": ProportionalQueue, "power_prob": PowerProbQueue}


def book(queue=None, **kw) -> MatchingEngine:
    """Bids 100..96 and asks 101..105, 50 lots each (ticks/lots)."""
    e = MatchingEngine(tick=0.01, lot=0.01, queue=queue or RiskAverseQueue(), width=1 << 12, **kw)
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
        st.sampled_from(["add", "cancel", "market", "mine", "mine_cancel", "replay_level", "replay_trade"]),
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
        elif kind == "replay_level":
            best = e.best_bid if side == BUY else e.best_ask
            if best:
                px = best - d if side == BUY else best + d
                e.replay_level(side, px, max(0, e.others(side, px) + 60 - lots), 7)
        elif kind == "replay_trade":
            best = e.best_bid if side == BUY else e.best_ask
            if best:
                e.replay_trade(side == SELL, best - d if side == BUY else best + d, lots, 8)
        ch = e.drain()
        if ch:
            taken_by_prints += sum(p.qty for p in ch.prints)
            if on_step:
                on_step(ch)
    return {"placed": placed, "printed": taken_by_prints}


@settings(max_examples=150, deadline=None)
@given(ops, st.sampled_from(sorted(QUEUES)))
def test_queue_position_only_advances(seq, qname) -> None:
    e = book(QUEUES[qname]())
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


# -- queue position, each model: what is ahead must trade or cancel before we fill ----------------


@pytest.mark.parametrize("qname", sorted(QUEUES))
def test_queue_ahead_must_trade_before_we_fill(qname) -> None:
    e = book(QUEUES[qname]())
    o = order(e, BUY, 100, 10)  # behind the 50 displayed
    e.begin()
    assert e.market(SELL, 30, 2) == 30
    assert fills(e) == [] and o.others_ahead == 20 and o.status == NEW
    e.begin()
    e.market(SELL, 25, 3)  # 20 ahead, then 5 of ours
    (f,) = fills(e)
    assert (f.last_qty, f.last_px, f.maker) == (5, 100, True)
    assert o.status == PARTIALLY_FILLED and o.filled == 5 and o.others_ahead == 0


# 50 ahead of us, 30 join behind (80 others), then 40 are cancelled:
#   risk_averse:   min(50, 80 - 40)                                   = 40
#   proportional:  floor(50 * 40 / 80)                                = 25
#   power_prob(2): p(behind) = 30² / (30² + 50²) = 0.2647; round(0.2647 * 40) = 11 from behind,
#                  29 from ahead                                      = 21
AHEAD_AFTER_CANCEL = {"risk_averse": 40, "proportional": 25, "power_prob": 21}


@pytest.mark.parametrize("qname", sorted(QUEUES))
def test_queue_ahead_must_cancel_before_we_fill(qname) -> None:
    e = book(QUEUES[qname]())
    o = order(e, BUY, 100, 10)
    e.begin()
    e.add(BUY, 100, 30)
    assert o.others_ahead == 50 and e.others(BUY, 100) == 80
    e.begin()
    assert e.cancel(BUY, 100, 40) == 40
    ahead = AHEAD_AFTER_CANCEL[qname]
    assert o.others_ahead == ahead == QUEUES[qname]().ahead_after_cancel(50, 80, 40)
    e.begin()
    e.market(SELL, ahead, 4)  # exactly what is ahead: still no fill
    assert fills(e) == [] and o.filled == 0
    e.begin()
    e.market(SELL, 3, 5)
    assert [x.last_qty for x in fills(e)] == [3]


@pytest.mark.parametrize("qname", sorted(QUEUES))
def test_replay_level_increase_joins_behind_and_decrease_advances_per_queue_model(qname) -> None:
    e = book(QUEUES[qname]())
    o = order(e, BUY, 100, 10)
    e.replay_level(BUY, 100, 80, 2)  # 30 more: behind us
    assert o.others_ahead == 50 and e.level(BUY, 100) == 90 and e.others(BUY, 100) == 80
    e.replay_level(BUY, 100, 40, 3)  # 40 fewer, no trade seen: an anonymous cancel
    ahead = AHEAD_AFTER_CANCEL[qname]
    assert o.others_ahead == ahead and e.level(BUY, 100) == 50
    e.replay_trade(False, 100, ahead + 4, 4)  # a sell prints at our price: ahead first, then 4 of ours
    (f,) = fills(e)
    assert f.last_qty == 4 and o.filled == 4 and o.others_ahead == 0
    assert e.level(BUY, 100) == 40 + 6  # the recorded 40 until the next diff, plus our 6 left


def test_replayed_trade_is_not_counted_again_by_the_diff_that_follows() -> None:
    e = book(ProportionalQueue())
    o = order(e, BUY, 100, 20)
    e.replay_level(BUY, 100, 80, 2)  # 50 ahead, 30 behind
    e.replay_trade(False, 100, 40, 3)
    assert o.others_ahead == 10 and o.filled == 0
    e.replay_level(BUY, 100, 40, 4)  # the diff shows those 40 gone: nothing left to cancel
    assert o.others_ahead == 10  # (counted twice it would be floor(10 * 40 / 80) = 5)
    e.replay_level(BUY, 100, 20, 5)  # now a real cancel of 20 out of 40
    assert o.others_ahead == 5  # floor(10 * 20 / 40)


def test_replay_trade_short_of_the_queue_does_not_fill() -> None:
    e = book()
    o = order(e, SELL, 102, 10)  # behind 50
    e.replay_trade(True, 102, 49, 9)
    assert o.filled == 0 and o.others_ahead == 1
    e.replay_trade(True, 102, 3, 10)
    assert o.filled == 2 and o.status == PARTIALLY_FILLED


def test_replayed_book_crossing_our_order_fills_it() -> None:
    e = book()
    o = order(e, SELL, 102, 10)
    e.replay_level(BUY, 102, 7, 5)  # someone now bids at our ask: they would have taken us
    (f,) = fills(e)
    assert (f.last_qty, f.last_px, f.maker) == (10, 102, True) and o.status == FILLED
    assert e.level(SELL, 102) == 50 and e.best_bid == 102


def test_snapshot_clears_everyone_else_and_sends_us_to_the_back() -> None:
    e = book()
    o = order(e, BUY, 100, 10)
    e.clear_others(3)
    assert e.level(BUY, 100) == 10 and e.best_bid == 100 and e.best_ask == 0 and len(e.bids) == 1
    e.replay_level(BUY, 100, 70, 4)
    e.replay_level(SELL, 101, 5, 4)
    assert o.others_ahead == 70 and e.level(BUY, 100) == 80 and e.best_ask == 101


# -- sweeps and partial fills --------------------------------------------------------------------


def test_market_order_sweeps_levels_and_fills_ours_in_priority() -> None:
    e = book()
    mine = order(e, SELL, 102, 10)  # behind 50 at 102
    e.drain()
    e.begin()
    assert e.market(BUY, 120, 7) == 120
    ch = e.drain()
    # 101: 50; 102: 50 others then our 10 (its own trade id); 103: the last 10
    assert [(p.px, p.qty, p.first_id, p.last_id) for p in ch.prints] == [
        (101, 50, 1, 1),
        (102, 60, 2, 2),
        (103, 10, 3, 3),
    ]
    (f,) = [x for x in ch.order_events if x.exec_type == TRADE]
    assert (f.last_qty, f.trade_id, mine.status) == (10, 2, FILLED)
    assert e.best_ask == 103 and e.level(SELL, 103) == 40 and sorted(ch.asks) == [101, 102, 103]


def test_partial_fills_add_up_exactly() -> None:
    e = book()
    o = order(e, SELL, 101, 30)  # behind 50
    for t, lots in ((2, 60), (3, 15), (4, 10)):  # 10 of ours, then 15, then the last 5
        e.begin()
        e.market(BUY, lots, t)
    assert o.status == FILLED and o.filled == 30
    assert o.cum_quote == Decimal("1.01") * Decimal("0.30")  # 30 lots at 1.01: exact
    assert o.cum_fee == o.cum_quote * Decimal("0.0002")


# -- fees ------------------------------------------------------------------------------------------


def test_rebate_and_odd_rates_are_exact() -> None:
    fees = FeeModel(maker=Decimal("-0.00005"), taker=Decimal("0.00036"))
    e = book(fees=fees)
    mine = order(e, BUY, 100, 7)
    e.drain()
    e.begin()
    e.market(SELL, 57, 2)
    (f,) = fills(e)
    assert f.fee == Decimal("1.00") * Decimal("0.07") * Decimal("-0.00005")
    t = order(e, BUY, 103, 3)  # crosses: taker at 101
    (x,) = fills(e)
    assert x.fee == Decimal("1.01") * Decimal("0.03") * Decimal("0.00036") and not x.maker
    assert mine.cum_fee == f.fee and t.cum_fee == x.fee


def test_fee_rate_with_more_than_8_decimals_is_refused() -> None:
    with pytest.raises(ValueError, match="maker rate"):
        FeeModel(maker=Decimal("0.000000001"))


# -- latency ---------------------------------------------------------------------------------------


def latent(entry_ns: int = 1000, resp_ns: int = 500, **kw) -> MatchingEngine:
    lat = LatencyModel(order_entry=ConstantLatency(entry_ns), order_response=ConstantLatency(resp_ns))
    return book(latency=lat, **kw)


def test_entry_latency_delays_the_fill() -> None:
    now = book()
    o0 = Order(now.new_order_id(), "a", BUY, "LIMIT", "GTC", 100, 10, 0)
    now.begin()
    now.place(o0)
    now.begin()
    now.market(SELL, 60, 500)  # at once: 50 ahead, then our 10
    assert o0.filled == 10

    e = latent()
    o = Order(e.new_order_id(), "a", BUY, "LIMIT", "GTC", 100, 10, 0)
    e.begin()
    e.place(o)
    assert o.status == PENDING_NEW and e.level(BUY, 100) == 50 and e.open_orders() == [o]
    e.begin()
    e.market(SELL, 60, 500)  # it has not arrived: 50 at 100, 10 at 99
    assert o.filled == 0 and e.best_bid == 99
    e.advance(1000)  # arrives at 1000 and rests at 100, now alone at the top
    (new,) = e.drain().order_events
    assert (new.exec_type, new.time_ns, new.resp_ns) == (NEW, 1000, 1500) and o.others_ahead == 0
    e.begin()
    e.market(SELL, 4, 1500)
    (f,) = fills(e)
    assert (f.last_qty, f.time_ns, f.resp_ns) == (4, 1500, 2000)


def test_cancel_takes_effect_after_its_entry_latency() -> None:
    e = latent()
    o = Order(e.new_order_id(), "a", BUY, "LIMIT", "GTC", 99, 10, 0)
    e.place(o)
    e.advance(1000)
    e.cancel_order(o, 1600)  # reaches the engine at 2600
    e.begin()
    e.market(SELL, 53, 2000)  # 50 at 100, then 3 of the 50 ahead at 99... still queued behind
    e.replay_trade(False, 99, 50, 2100)  # 47 more ahead, then 3 of ours
    assert o.filled == 3 and o.status == PARTIALLY_FILLED
    e.advance(2600)
    assert o.status == CANCELED and o.remaining == 7 and e.open_orders() == []
    ev = e.drain().order_events
    assert [(x.exec_type, x.time_ns, x.resp_ns) for x in ev[-1:]] == [(CANCELED, 2600, 3100)]


def test_cancel_that_arrives_after_the_fill_is_refused() -> None:
    e = latent()
    o = Order(e.new_order_id(), "a", SELL, "LIMIT", "GTC", 102, 5, 0)
    e.place(o)
    e.advance(1000)
    e.cancel_order(o, 1100)
    e.replay_trade(True, 103, 1, 1500)  # trades through our price: filled before the cancel lands
    e.advance(2100)
    ev = e.drain().order_events
    assert o.status == FILLED and (ev[-1].exec_type, ev[-1].reject_code, ev[-1].status) == (
        REJECTED,
        -2011,
        FILLED,
    )


def test_post_only_that_would_take_on_arrival_is_rejected_later() -> None:
    e = latent()
    o = Order(e.new_order_id(), "g", BUY, "LIMIT", "GTX", 100, 5, 0)
    e.place(o)  # no error now: the engine has not seen it
    e.replay_level(SELL, 100, 9, 500)  # by the time it arrives, 100 is an ask
    e.advance(1000)
    (ev,) = e.drain().order_events
    assert (ev.exec_type, ev.status, ev.reject_code) == (REJECTED, REJECTED, -5022)
    assert e.open_orders() == [] and e.open_order("g") is None


def test_jitter_latency_is_seeded_and_never_below_its_base() -> None:
    def arrivals(seed: int) -> list[int]:
        e = book(latency=LatencyModel(order_entry=JitterLatency(1000, 400)), seed=seed)
        for j in range(20):
            e.place(Order(e.new_order_id(), f"j{j}", BUY, "LIMIT", "GTC", 90, 1, j * 10))
        e.advance(10**9)
        return [ev.time_ns - 10 * (ev.order.order_id - 1) for ev in e.drain().order_events]

    a = arrivals(1)
    assert a == arrivals(1) and a != arrivals(2)
    assert min(a) >= 1000 and max(a) > 1000 and 1000 < sum(a) / len(a) < 2000


def test_advance_with_nothing_in_flight_is_what_the_kernel_would_do() -> None:
    """`advance` makes no kernel call when no request waits; the same script through the kernel's
    own advance gives the same clock, events, times and drawn response delays."""
    from hftbot.sim import kernels as k

    def script(through_kernel: bool) -> tuple:
        lat = LatencyModel(order_entry=JitterLatency(1000, 400), order_response=JitterLatency(500, 300))
        e = book(latency=lat, seed=5)

        def advance(t: int) -> None:
            if through_kernel:
                e._call(e.lad, e.mem, k.OP_ADVANCE, t, 0, 0, 0, 0, 0, 0, 0)
                e._after()
            else:
                e.advance(t)

        seen = []
        for j in range(30):
            t = 10_000 * j
            advance(t)  # nothing in flight at most of these
            if j % 3 == 0:
                e.begin()
                e.place(Order(e.new_order_id(), f"p{j}", BUY, "LIMIT", "GTC", 100 - j % 2, 1, t + 1))
            if j % 5 == 4:
                e.begin()
                e.market(SELL, 60, t + 2)  # takes the bids: our resting ones fill, response drawn
            advance(t + 5_000)
            advance(t + 4_000)  # the clock never goes back
            seen.append(e.now_ns)
            ch = e.drain()
            seen += [(ev.order.order_id, ev.exec_type, ev.time_ns, ev.resp_ns, ev.last_qty)
                     for ev in (ch.order_events if ch else [])]
        return tuple(seen)

    fast, kernel = script(False), script(True)
    assert fast == kernel
    assert any(isinstance(x, tuple) and x[1] == TRADE for x in fast)  # fills happened, responses drawn


# -- limits and bad input --------------------------------------------------------------------------


def test_engine_capacity_is_the_open_order_limit() -> None:
    e = book(capacity=2)
    order(e, BUY, 98, 1)
    order(e, BUY, 97, 1)
    with pytest.raises(RejectError) as err:
        order(e, BUY, 96, 1)
    assert err.value.code == -2025 and len(e.open_orders()) == 2


def test_bad_prices_are_refused() -> None:
    e = book()
    with pytest.raises(ValueError, match="price must be > 0"):
        e.add(BUY, -3, 1)
    with pytest.raises(ValueError, match="would cross"):
        e.add(BUY, 101, 1)


def test_run_applies_rows_like_the_single_calls_and_stops_on_our_fill() -> None:
    from hftbot.sim.kernels import EV_LEVEL, EV_TRADE, MARKET_EVENT_DTYPE

    rows = np.array(
        [
            (1, 1, EV_LEVEL, BUY, 100, 70, 0),
            (2, 2, EV_LEVEL, SELL, 102, 0, 0),
            (3, 3, EV_TRADE, BUY, 101, 60, 0),  # 50 ahead of our ask at 101, then 10 of ours
            (4, 4, EV_LEVEL, SELL, 104, 9, 0),
        ],
        dtype=MARKET_EVENT_DTYPE,
    )
    a, b = book(), book()
    oa, ob = order(a, SELL, 101, 20), order(b, SELL, 101, 20)
    assert a.run(rows, stop_on_event=True) == 3  # stopped after the row that filled us
    assert a.run(rows, 3) == 4
    for t, kind, side, px, qty in rows[["exch_ns", "kind", "side", "px", "qty"]].tolist():
        if kind == EV_LEVEL:
            b.replay_level(side, px, qty, t)
        else:
            b.replay_trade(side == BUY, px, qty, t)
    assert a.bids.items() == b.bids.items() and a.asks.items() == b.asks.items()
    assert (oa.filled, oa.others_ahead) == (ob.filled, ob.others_ahead) == (10, 0)
    bad = rows.copy()
    bad["kind"][1] = 99
    with pytest.raises(ValueError, match="row 1 has unknown kind 99"):
        book().run(bad)


# -- the book against a plain dict model -------------------------------------------------------------

book_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "cancel", "market", "replay"]),
        st.sampled_from([BUY, SELL]),
        st.integers(0, 12),  # distance from the touch
        st.integers(0, 90),  # lots
    ),
    min_size=1,
    max_size=80,
)


class DictBook:
    """The obvious model: two dicts px -> lots."""

    def __init__(self) -> None:
        self.side = {BUY: {}, SELL: {}}

    def best(self, side: int) -> int:
        d = self.side[side]
        return (max(d) if side == BUY else min(d)) if d else 0

    def set(self, side: int, px: int, lots: int) -> None:
        if lots > 0:
            self.side[side][px] = lots
        else:
            self.side[side].pop(px, None)

    def market(self, taker: int, lots: int) -> int:
        d, done = self.side[-taker], 0
        while lots > 0 and d:
            px = self.best(-taker)
            x = min(lots, d[px])
            self.set(-taker, px, d[px] - x)
            lots -= x
            done += x
        return done


@settings(max_examples=200, deadline=None)
@given(book_ops)
def test_book_matches_a_plain_dict_model(seq) -> None:
    e = MatchingEngine(width=1 << 12)
    m = DictBook()
    e.begin()
    for side, px in ((BUY, 1000), (SELL, 1001)):
        e.add(side, px, 10)
        m.set(side, px, 10)
    for kind, side, d, lots in seq:
        e.begin()
        opp = m.best(-side)
        own = m.best(side) or (1000 if side == BUY else 1001)
        if kind == "add":
            px = (opp - 1 - d if side == BUY else opp + 1 + d) if opp else own - side * d
            e.add(side, px, lots)
            m.set(side, px, m.side[side].get(px, 0) + lots)
        elif kind == "cancel":
            px = own - side * d
            got = e.cancel(side, px, lots)
            want = min(lots, m.side[side].get(px, 0))
            m.set(side, px, m.side[side].get(px, 0) - want)
            assert got == want
        elif kind == "market":
            assert e.market(side, lots, 1) == m.market(side, lots)
        else:  # a replayed absolute size may even cross the book
            px = own - side * (d - 3)
            e.replay_level(side, px, lots, 1)
            m.set(side, px, lots)
        ch = e.drain()
        for s in (BUY, SELL):
            view = e.bids if s == BUY else e.asks
            assert sorted(view.items()) == sorted(m.side[s].items()) and len(view) == len(m.side[s])
            top = sorted(m.side[s].items(), reverse=(s == BUY))[:5]
            assert e.depth(s, 5) == top
        assert (e.best_bid, e.best_ask) == (m.best(BUY), m.best(SELL))
        if ch is not None:
            assert ch.first_update_id <= ch.last_update_id == e.update_id


def test_far_levels_regrid_the_ladder_and_keep_the_book_exact() -> None:
    e = book()  # width 4096 around 100
    o = order(e, SELL, 103, 4)
    e.begin()
    e.add(SELL, 100 + 5000, 7)  # outside: re-centred
    e.replay_level(BUY, 3, 11, 1)  # far below
    e.replay_level(SELL, 100 + 60_000, 2, 2)  # needs a wider ladder
    assert e.regrids >= 2 and e.far_levels == 0
    assert e.asks[5100] == 7 and e.bids[3] == 11 and e.asks[60_100] == 2
    assert (e.best_bid, e.best_ask) == (100, 101) and o.others_ahead == 50 and e.level(SELL, 103) == 54
    assert e.depth(BUY, 7)[-2:] == [(96, 50), (3, 11)]
    e.begin()
    e.market(BUY, 160, 3)  # 101, 102, then 50 ahead of us at 103 and our 4
    assert o.status == FILLED
    tight = MatchingEngine(width=1 << 12, max_width=1 << 13)
    tight.add(BUY, 5000, 1)
    tight.replay_level(SELL, 5000 + 20_000, 1, 1)  # more than the widest window allows: dropped, counted
    assert tight.far_levels == 1 and len(tight.asks) == 0
    with pytest.raises(ValueError, match="outside the engine's window"):
        tight.add(SELL, 5000 + 20_000, 1)


def test_a_full_request_table_is_an_error_not_a_silent_drop() -> None:
    e = latent(capacity=1)  # room for 4 waiting requests
    o = Order(e.new_order_id(), "a", BUY, "LIMIT", "GTC", 99, 1, 0)
    e.place(o)
    for t in (1, 2, 3):
        e.cancel_order(o, t)
    with pytest.raises(RuntimeError, match="4 requests already wait out their entry latency"):
        e.cancel_order(o, 4)
    e.advance(2000)  # the place lands, the first cancel takes it, the other two find it gone
    assert o.status == CANCELED
    assert [ev.reject_code for ev in e.drain().order_events if ev.exec_type == REJECTED] == [-2011, -2011]


def test_closed_orders_are_kept_up_to_the_history_and_open_ones_always() -> None:
    """A simulator that runs for days: `orders` holds the open orders and the newest `history`
    closed ones (queryable, as Binance keeps recent history), never every order ever placed."""
    e = book(history=3)
    resting = [order(e, BUY, 90, 1), order(e, SELL, 110, 1)]  # far from the touch: open throughout
    closed = []
    for i in range(10):
        o = order(e, BUY, 91, 1)
        e.begin()
        e.cancel_order(o, 10 + i)
        closed.append(o)
    taken = order(e, BUY, 101, 5)  # fills at once: closed by the match, not by a cancel
    e.drain()
    assert taken.status == FILLED
    kept = {o.order_id for o in (*resting, *closed[-2:], taken)}
    assert set(e.orders) == kept  # the two open, the newest three closed (the last two cancels, the fill)
    assert all(e.orders[o.order_id] is o and o.status == NEW for o in resting)
    # by client id: open ones, closed ones still kept, nothing for the forgotten
    assert e.order_by_client(resting[0].client_id) is resting[0]
    assert e.order_by_client(closed[-1].client_id) is closed[-1]
    assert e.order_by_client(taken.client_id) is taken
    assert e.order_by_client(closed[0].client_id) is None
    assert e.order_by_client("never-placed") is None
    # a client id used again after its order closed: the newest order answers, and forgetting the
    # older one does not forget the newer one
    def close_one(t: int) -> None:
        o = order(e, BUY, 91, 1)
        e.begin()
        e.cancel_order(o, t)

    again = Order(e.new_order_id(), closed[-1].client_id, BUY, "LIMIT", "GTC", 92, 1, time_ns=30)
    e.begin()
    e.place(again)
    assert e.order_by_client(again.client_id) is again
    e.begin()
    e.cancel_order(again, 31)  # kept: closed[-1], taken, again
    close_one(40)  # closed[-1] forgotten
    e.drain()
    assert closed[-1].order_id not in e.orders
    assert e.order_by_client(again.client_id) is again
    close_one(41)
    close_one(42)  # `again` forgotten too
    e.drain()
    assert again.order_id not in e.orders
    assert e.order_by_client(again.client_id) is None
    with pytest.raises(ValueError, match="history"):
        MatchingEngine(history=-1)
