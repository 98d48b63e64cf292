"""The risk manager: each limit trips and blocks exactly what it should; REDUCING, HALTED, kill switch."""

from __future__ import annotations

import dataclasses

import pytest

from hftbot.config import RiskConfig
from hftbot.exec.fees import FeeModel
from hftbot.exec.filters import SymbolFilters
from hftbot.exec.ids import VALID, ClientIds
from hftbot.exec.messages import (
    BUY,
    GTX,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PENDING_NEW,
    SELL,
    Cancel,
    CancelAll,
    CancelAllRequest,
    CancelRequest,
    Modify,
    ModifyRequest,
    OrderRequest,
    Place,
    Refused,
    Rejected,
)
from hftbot.exec.positions import Positions
from hftbot.exec.risk import HALTED, REASONS, REDUCING, REHEARSAL_ID, RUNNING, RiskManager
from hftbot.records import BOOK_VALID, SIGNAL_NO_MODEL, SIGNAL_WARMUP
from hftbot.sim.market import ModelParams
from hftbot.sim.venue import VenueSettings, exchange_info
from tests.exec.helpers import LOT, MS, TICK, book, fill, signal, update

NOW = 1_000 * MS  # helpers' books are received at 1 s
FILTERS = SymbolFilters.from_exchange_info(exchange_info(ModelParams(), VenueSettings(), 0), "SOLUSDT")
# permissive limits; each test tightens the one it is about
LOOSE = RiskConfig(max_position=100.0, max_position_notional_usdt=1e6, max_order_qty=100.0,
                   max_order_notional_usdt=1e6, max_open_orders=100, price_band_bps=1000.0)


def make(needs_signal: bool = False, **cfg) -> tuple[RiskManager, Positions]:
    pos = Positions(TICK, LOT, FeeModel(), symbol="SOLUSDT", strategy="test")
    risk = RiskManager(dataclasses.replace(LOOSE, **cfg), FILTERS, pos, ClientIds(start_ns=NOW),
                       strategy="test", needs_signal=needs_signal, now_ns=NOW)
    return risk, pos


def buy(qty: int = 100, px: int = 15000, **kw) -> Place:
    return Place(BUY, qty, px, **kw)


def sell(qty: int = 100, px: int = 15001, **kw) -> Place:
    return Place(SELL, qty, px, **kw)


def approved(res) -> bool:
    return not isinstance(res, Refused)


def refused(res, reason: str) -> bool:
    assert isinstance(res, Refused), f"expected a refusal ({reason}), got {res!r}"
    assert res.reason == reason, res
    return True


def test_an_approved_order_is_ready_for_the_wire_and_counts_at_once():
    risk, pos = make()
    sig = signal(0.1, 0.2, 0.7, publish_ns=NOW, model_id=99)
    req = risk.check(buy(100, 15000, tag="entry"), book(recv_ns=NOW - 5 * MS), NOW, sig)
    assert isinstance(req, OrderRequest)
    assert (req.side, req.qty, req.px, req.type, req.tag, req.strategy) == (BUY, 100, 15000, LIMIT, "entry", "test")
    assert req.model_id == 99 and req.book_recv_ns == NOW - 5 * MS and req.created_ns == NOW
    assert VALID.match(req.client_id)
    assert pos.orders[req.client_id].status == PENDING_NEW and pos.open_lots() == (100, 0)
    req2 = risk.check(buy(100, 15000), book(), NOW, sig)
    assert req2.client_id != req.client_id and risk.approved == 2


@pytest.mark.parametrize(
    "cfg, ok, bad, reason",
    [
        ({"max_order_qty": 1.0}, buy(100), buy(101), "max_order_qty"),
        ({"max_order_notional_usdt": 300.0}, buy(200), buy(201), "max_order_notional"),  # 150 USDT/SOL
        ({"max_position": 1.0}, buy(100), buy(101), "max_position"),
        ({"max_position_notional_usdt": 150.1}, buy(100), buy(101), "max_position_notional"),
        ({"price_band_bps": 50.0}, buy(100, 14930), buy(100, 14920), "price_band"),  # 46.8 / 53.5 bps
        ({}, buy(4), buy(3), "min_notional"),  # 6.0 / 4.5 USDT, MIN_NOTIONAL 5
        ({}, buy(100, 15000), buy(100, 15800), "percent_price"),  # above mid × 1.05
        ({}, buy(100, 15000, tif=GTX), buy(0), "bad_intent"),
        ({}, Place(SELL, 100, 0, type=MARKET), Place(SELL, 100, 0, type=LIMIT), "bad_intent"),
        ({}, buy(100, tif=IOC), buy(100, tif="DAY"), "bad_intent"),
    ],
)
def test_each_limit_blocks_exactly_past_its_threshold(cfg, ok, bad, reason):
    risk, _ = make(**cfg)
    assert refused(risk.check(bad, book(), NOW), reason)
    assert approved(risk.check(ok, book(), NOW))
    assert risk.refusals[reason] == 1 and sum(risk.refusals.values()) == 1


def test_position_limit_counts_open_and_in_flight_orders_on_the_same_side():
    risk, _ = make(max_position=2.0)  # 200 lots
    assert approved(risk.check(buy(150), book(), NOW))  # in flight, not filled
    assert refused(risk.check(buy(60), book(), NOW), "max_position")  # 150 + 60 could fill
    assert approved(risk.check(buy(50), book(), NOW))
    assert approved(risk.check(sell(150), book(), NOW))  # the other side: worst case −150
    assert refused(risk.check(sell(60), book(), NOW), "max_position")  # −150 − 60
    # a filled long: a sell that only reduces passes whatever the limit, a flip past it does not
    risk2, pos2 = make(max_position=1.0)
    pos2.on_fill(fill(BUY, 100, 15000, trade_id=1))
    assert refused(risk2.check(buy(1), book(), NOW), "max_position")
    assert approved(risk2.check(sell(200), book(), NOW))  # → −100: within 100
    assert refused(risk2.check(sell(1), book(), NOW), "max_position")  # 100 − 200 − 1


def test_open_order_limit_and_cancels_still_pass():
    risk, pos = make(max_open_orders=3)
    ids = [risk.check(buy(100, 15000 - i), book(), NOW).client_id for i in range(3)]
    assert refused(risk.check(buy(100, 14990), book(), NOW), "max_open_orders")
    c = risk.check(Cancel(ids[0], tag="pull"), book(), NOW)
    assert isinstance(c, CancelRequest) and c.client_id == ids[0]
    assert refused(risk.check(Cancel("nobody"), book(), NOW), "unknown_order")
    pos.on_update(update(ids[0], "CANCELED", order_id=1, event_ms=2, px=15000))
    assert approved(risk.check(buy(100, 14990), book(), NOW))


@pytest.mark.parametrize(
    "rec, reason",
    [
        (book(flags=0), "invalid_book"),
        (book(recv_ns=NOW - 2_001 * MS), "stale_book"),
        (book(bid=15001, ask=15001), "invalid_book"),
        (book(bid=0), "invalid_book"),
        (None, "invalid_book"),
    ],
)
def test_no_order_on_an_invalid_or_stale_book_but_cancels_go(rec, reason):
    risk, _ = make()
    first = risk.check(buy(100), book(), NOW)
    assert refused(risk.check(buy(100), rec, NOW), reason)
    assert refused(risk.check(sell(100), rec, NOW), reason)
    assert isinstance(risk.check(Cancel(first.client_id), rec, NOW), CancelRequest)
    assert approved(risk.check(buy(100), book(recv_ns=NOW - 1_999 * MS), NOW))


def test_a_book_on_another_grid_is_refused():
    risk, _ = make()
    rec = book()
    rec["tick"] = 0.1
    assert refused(risk.check(buy(100), rec, NOW), "tick_mismatch")


def test_signal_guard_blocks_entries_on_stale_or_flagged_signals_but_not_exits():
    risk, pos = make(needs_signal=True)
    fresh = signal(0.1, 0.2, 0.7, publish_ns=NOW - 10 * MS)
    for sig in (None, signal(0.1, 0.2, 0.7, publish_ns=NOW - 1_001 * MS),
                signal(0.1, 0.2, 0.7, publish_ns=NOW, flags=SIGNAL_WARMUP),
                signal(0.1, 0.2, 0.7, publish_ns=NOW, flags=SIGNAL_NO_MODEL)):
        assert refused(risk.check(buy(100), book(), NOW, sig), "stale_signal")
    assert risk.refusals["stale_signal"] == 4
    assert approved(risk.check(buy(100), book(), NOW, fresh))
    pos.on_fill(fill(BUY, 100, 15000, trade_id=1))
    pos.on_update(update(next(iter(pos.orders)), "FILLED", 100, event_ms=5))
    exit_ = risk.check(sell(100, reduce_only=True, tag="exit_stop"), book(), NOW, None)  # inference is dead
    assert isinstance(exit_, OrderRequest) and exit_.model_id == 0


def test_reduce_only_that_would_not_reduce_is_refused():
    risk, pos = make()
    assert refused(risk.check(sell(100, reduce_only=True), book(), NOW), "not_reducing")  # flat
    pos.on_fill(fill(BUY, 100, 15000, trade_id=1))
    assert approved(risk.check(sell(60, reduce_only=True), book(), NOW))
    assert refused(risk.check(sell(60, reduce_only=True), book(), NOW), "not_reducing")  # 60 + 60 > 100


def test_rate_limiter_refuses_orders_past_the_budget_and_refills_with_time():
    risk, _ = make(orders_per_10s=10, rate_limit_fraction=1.0, rate_burst_fraction=0.5)  # burst 5, 0.5/s
    ids = [risk.check(buy(100, 15000 - i), book(), NOW).client_id for i in range(5)]
    assert refused(risk.check(buy(100), book(), NOW), "rate_orders")
    assert isinstance(risk.check(Cancel(ids[0]), book(), NOW), CancelRequest)  # cancels do not count
    soon = NOW + 1_000 * MS
    assert refused(risk.check(buy(100), book(recv_ns=soon), soon), "rate_orders")  # half a token back
    later = NOW + 2_000 * MS
    assert approved(risk.check(buy(100), book(recv_ns=later), later))


def test_modify_checks_the_new_price_and_quantity():
    risk, pos = make(max_position=2.0)
    req = risk.check(buy(100, 15000), book(), NOW)
    assert refused(risk.check(Modify(req.client_id, 150, 14999), book(), NOW), "bad_intent")  # not acked yet
    pos.on_update(update(req.client_id, NEW, order_id=5, event_ms=2))
    mod = risk.check(Modify(req.client_id, 150, 14999, tag="requote"), book(), NOW)
    assert isinstance(mod, ModifyRequest) and (mod.side, mod.qty, mod.px) == (BUY, 150, 14999)
    assert refused(risk.check(Modify(req.client_id, 201, 14999), book(), NOW), "max_position")
    assert refused(risk.check(Modify(req.client_id, 150, 13000), book(), NOW), "price_band")
    assert refused(risk.check(Modify("nobody", 1, 1), book(), NOW), "unknown_order")


# ------------------------------------------------------------------------------- engine state


def falling_book(mid_drop_ticks: int, now_ns: int = NOW) -> object:
    return book(bid=15000 - mid_drop_ticks, ask=15001 - mid_drop_ticks, recv_ns=now_ns)


def long_100(**cfg) -> tuple[RiskManager, Positions]:
    risk, pos = make(daily_loss_reduce_usdt=0.5, daily_loss_halt_usdt=2.0, drawdown_reduce_usdt=10.0,
                     drawdown_halt_usdt=20.0, **cfg)
    pos.on_fill(fill(BUY, 100, 15000, 0.0, trade_id=1))  # 1 SOL long at 150.00: 0.01 USDT per tick
    risk.update(NOW, book())
    return risk, pos


def test_daily_loss_moves_running_to_reducing_then_halted_with_cancel_all_and_flatten():
    risk, pos = long_100()
    assert risk.state == RUNNING
    assert risk.update(NOW, falling_book(59)) == () and risk.state == REDUCING  # −0.585 USDT
    assert "daily loss" in risk.reason
    assert refused(risk.check(buy(100, 14941), falling_book(59), NOW), "reducing")
    assert refused(risk.check(sell(150, 14942), falling_book(59), NOW), "reducing")  # a flip adds risk
    part = risk.check(sell(50, 14942), falling_book(59), NOW)  # reducing: passes
    assert isinstance(part, OrderRequest)
    out = risk.update(NOW, falling_book(210))  # −2.095 USDT
    assert risk.state == HALTED
    assert isinstance(out[0], CancelAllRequest)
    flat = out[1]
    assert isinstance(flat, OrderRequest)
    assert (flat.side, flat.qty, flat.type, flat.reduce_only, flat.tag) == (SELL, 100, MARKET, True, "flatten")
    assert refused(risk.check(sell(50, 14791, reduce_only=True), falling_book(210), NOW), "halted")
    assert isinstance(risk.check(Cancel(part.client_id), falling_book(210), NOW), CancelRequest)
    assert risk.update(NOW + 5_000 * MS, falling_book(210, NOW + 5_000 * MS)) == ()  # flatten in flight
    pos.on_rejected(Rejected(flat.client_id, -2019, "margin", 1))
    again = risk.update(NOW + 5_000 * MS, falling_book(210, NOW + 5_000 * MS))
    assert len(again) == 1 and again[0].tag == "flatten" and again[0].client_id != flat.client_id


def test_drawdown_from_the_peak_halts_and_flatten_can_be_off():
    risk, pos = make(drawdown_reduce_usdt=0.5, drawdown_halt_usdt=1.0, flatten_on_halt=False)
    pos.on_fill(fill(BUY, 100, 15000, 0.0, trade_id=1))
    risk.update(NOW, falling_book(-80))  # +0.8 USDT: the peak
    assert risk.state == RUNNING and risk.peak_pnl == pytest.approx(0.805)
    risk.update(NOW, falling_book(-20))  # +0.205: 0.6 below the peak
    assert risk.state == REDUCING and "drawdown" in risk.reason
    out = risk.update(NOW, falling_book(25))  # −0.245: 1.05 below the peak
    assert risk.state == HALTED and len(out) == 1 and isinstance(out[0], CancelAllRequest)
    assert risk.update(NOW + 10_000 * MS, falling_book(25, NOW + 10_000 * MS)) == ()  # no flatten


def test_reducing_on_daily_loss_lifts_the_next_utc_day_halted_does_not():
    risk, _ = long_100()
    risk.update(NOW, falling_book(59))
    assert risk.state == REDUCING
    tomorrow = NOW + 86_400 * 1_000 * MS
    risk.update(tomorrow, falling_book(59, tomorrow))
    assert risk.state == RUNNING and risk.daily_pnl == pytest.approx(0.0)
    risk.halt("operator", tomorrow)
    risk.update(tomorrow * 2, falling_book(59, tomorrow * 2))
    assert risk.state == HALTED


def test_kill_switch_halts_cancels_and_flattens():
    risk, _ = long_100()
    out = risk.kill("file data/KILL", NOW, book())
    assert risk.killed and risk.state == HALTED and "kill switch: file data/KILL" in risk.reason
    assert isinstance(out[0], CancelAllRequest) and out[1].reduce_only and out[1].qty == 100
    assert risk.kill("again", NOW, book()) == []  # already halted: nothing twice


def test_flatten_waits_for_a_valid_book():
    risk, _ = long_100(halt_retry_ms=100.0)
    out = risk.halt("test", NOW, book(flags=0))
    assert len(out) == 1  # the cancel-all goes, the flatten does not on an invalid book
    assert risk.update(NOW + 50 * MS, book(recv_ns=NOW + 50 * MS)) == ()  # not before the retry period
    (flat,) = risk.update(NOW + 100 * MS, book(recv_ns=NOW + 100 * MS))
    assert flat.tag == "flatten" and flat.side == SELL


def test_cancel_all_always_goes_and_refusals_are_counted_by_reason():
    risk, _ = make(weight_per_min=2, rate_limit_fraction=1.0, rate_burst_fraction=0.5)  # 1 weight at once
    assert isinstance(risk.check(CancelAll("x"), book(), NOW), CancelAllRequest)
    assert isinstance(risk.check(CancelAll("y"), book(), NOW), CancelAllRequest)  # past the weight budget
    risk.check(buy(0), book(), NOW)
    risk.check(buy(100), book(flags=0), NOW)
    s = risk.summary()
    assert s["refusals"] == {"bad_intent": 1, "invalid_book": 1} and s["refused"] == 2
    assert set(risk.refusals) == set(REASONS)


def test_inconsistent_loss_limits_are_refused_at_construction():
    pos = Positions(TICK, LOT)
    with pytest.raises(ValueError, match=r"daily_loss_reduce_usdt \(9.0\) must be <= daily_loss_halt_usdt"):
        RiskManager(dataclasses.replace(LOOSE, daily_loss_reduce_usdt=9.0, daily_loss_halt_usdt=1.0),
                    FILTERS, pos, ClientIds(start_ns=1))


def test_book_helper_is_valid():
    assert int(book()["flags"]) & BOOK_VALID


def test_resting_orders_are_pulled_once_when_the_book_goes_stale():
    risk, pos = make()
    req = risk.check(buy(100), book(), NOW)
    assert risk.update(NOW, book()) == ()  # pending only: nothing rests yet
    pos.on_update(update(req.client_id, NEW, order_id=3, event_ms=2))
    assert risk.update(NOW + 1_000 * MS, book()) == ()  # 1 s old: fine
    later = NOW + 2_500 * MS
    (c,) = risk.update(later, book())  # 2.5 s old: stale
    assert isinstance(c, CancelAllRequest) and c.tag == "stale_book"
    assert risk.update(later + MS, book()) == ()  # once per episode
    assert risk.update(later, book(recv_ns=later)) == ()  # fresh again: the episode ends
    (c2,) = risk.update(later, book(recv_ns=later, flags=0))  # out of sync: a new episode
    assert c2.tag == "invalid_book" and risk.stale_cancels == 2
    quiet, qpos = make(cancel_on_stale_book=False)
    r2 = quiet.check(buy(100), book(), NOW)
    qpos.on_update(update(r2.client_id, NEW, order_id=4, event_ms=2))
    assert quiet.update(later, book()) == ()


def test_an_exit_is_never_stuck_behind_the_fat_finger_limits():
    risk, pos = make(max_order_qty=0.5, max_order_notional_usdt=50.0)
    pos.on_fill(fill(BUY, 100, 15000, trade_id=1))  # 1 SOL long, more than one order may carry
    assert refused(risk.check(buy(100), book(), NOW), "max_order_qty")
    assert approved(risk.check(sell(100, reduce_only=True, tag="exit_stop"), book(), NOW))
    assert refused(risk.check(sell(40), book(), NOW), "max_order_notional")  # 60 USDT, and not reducing now


def test_reducing_cancels_resting_orders_that_would_grow_the_position():
    risk, pos = long_100()
    bid = risk.check(buy(50, 15000), book(), NOW)  # would grow the long
    ask = risk.check(sell(50, 15002), book(), NOW)  # would reduce it
    late = risk.check(buy(20, 14999), book(), NOW)  # still pending when REDUCING starts
    for i, r in enumerate((bid, ask)):
        pos.on_update(update(r.client_id, NEW, order_id=20 + i, side=r.side, qty=r.qty, px=r.px, event_ms=2))
    out = risk.update(NOW, falling_book(59))
    assert risk.state == REDUCING
    assert [(c.client_id, c.tag) for c in out] == [(bid.client_id, "reducing")]
    assert risk.update(NOW, falling_book(59)) == ()  # asked once
    pos.on_update(update(late.client_id, NEW, order_id=30, qty=20, px=14999, event_ms=3))
    (c,) = risk.update(NOW, falling_book(59))
    assert isinstance(c, CancelRequest) and c.client_id == late.client_id


def _state(risk: RiskManager, pos: Positions) -> tuple:
    tokens = tuple(b.tokens for b in risk.limiter.orders + risk.limiter.weight)
    return dict(risk.refusals), risk.approved, risk.last_refusal, dict(pos.orders), pos.open_lots(), tokens


def test_a_rehearsal_answers_as_check_would_and_changes_nothing():
    risk, pos = make(orders_per_10s=10)  # ORDERS budget 8 per 10 s, a burst of 4
    twin, _ = make(orders_per_10s=10)
    sig = signal(0.1, 0.2, 0.7, publish_ns=NOW, model_id=7)
    before = _state(risk, pos)
    for _ in range(20):  # far more than the order budget: nothing is spent
        r = risk.rehearse(buy(100, 15000, tag="entry"), book(), NOW, sig)
        assert isinstance(r, OrderRequest) and r.client_id == REHEARSAL_ID
        assert (r.side, r.qty, r.px, r.tag, r.model_id, r.created_ns) == (BUY, 100, 15000, "entry", 7, NOW)
    assert refused(risk.rehearse(buy(3), book(), NOW, sig), "min_notional")
    assert refused(risk.rehearse(buy(100), book(recv_ns=NOW - 2_001 * MS), NOW, sig), "stale_book")
    assert _state(risk, pos) == before  # no refusal counted, nothing registered, no token spent
    # the real door afterwards: the same ids and the same budget as a manager that never rehearsed
    got = [risk.check(buy(100, 15000), book(), NOW, sig) for _ in range(5)]
    want = [twin.check(buy(100, 15000), book(), NOW, sig) for _ in range(5)]
    assert [type(g) for g in got] == [type(w) for w in want] == [OrderRequest] * 4 + [Refused]
    assert [g.client_id for g in got[:4]] == [w.client_id for w in want[:4]]
    assert got[4].reason == "rate_orders" and risk.refusals["rate_orders"] == 1


def test_housekeeping_marks_the_position_with_any_valid_two_sided_book_fresh_or_not():
    """`update` reads the record once for the stale check and the mark: a fresh book marks, and so
    does a BOOK_VALID two-sided one that is old or on another grid; one out of sync, one-sided or
    missing leaves the mark where it was."""
    risk, _ = make(stale_book_ms=100.0)
    risk.update(NOW, book(15000, 15002, recv_ns=NOW))
    assert risk.mark_px == 15001.0
    risk.update(NOW + 10_000 * MS, book(15010, 15012, recv_ns=NOW))  # 10 s old: stale, still a mark
    assert risk.mark_px == 15011.0 and risk.book_problem(book(recv_ns=NOW), NOW + 10_000 * MS) == "stale_book"
    off_grid = book(15020, 15022, recv_ns=NOW)
    off_grid["tick"] = TICK * 10
    assert risk.book_problem(off_grid, NOW) == "tick_mismatch"
    risk.update(NOW, off_grid)
    assert risk.mark_px == 15021.0
    for bad in (book(15030, 15032, recv_ns=NOW, flags=0), book(0, 15032, recv_ns=NOW),
                book(15040, 15040, recv_ns=NOW), None):
        risk.update(NOW, bad)
        assert risk.mark_px == 15021.0
