"""Every venue fault of issue 13, injected by the real simulator over real sockets, handled by the
real gateway (and, where the action is the risk manager's, by the real executor without rings).

Each test ends the same way (`consistent`): our open orders are the venue's, our position is the
venue's, the venue saw no client order id twice, and the fault was counted and recovered.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import pytest
import requests

from hftbot.config import RiskConfig
from hftbot.exec.fees import FeeModel
from hftbot.exec.ids import ClientIds
from hftbot.exec.journal import Journal
from hftbot.exec.messages import (
    BUY,
    CANCELED,
    GTX,
    MARKET,
    NEW,
    SELL,
    UNKNOWN,
    Fill,
    Place,
    Refused,
    Rejected,
)
from hftbot.exec.positions import Positions
from hftbot.exec.process import Executor, start_position
from hftbot.exec.ratelimit import parse_rate_limits
from hftbot.exec.risk import HALTED, RiskManager
from hftbot.records import BOOK_VALID, empty_book
from hftbot.sim.venue import Limits, VenueSettings
from tests.exec.conftest import signer_for, venue_of, wait_for
from tests.exec.test_gateway import req, touch, updates, venue_lots, venue_open
from tests.sim.conftest import start_server

LOOSE = RiskConfig(max_position=100.0, max_position_notional_usdt=1e6, max_order_qty=100.0,
                   max_order_notional_usdt=1e6, max_open_orders=100, price_band_bps=1000.0)


def set_faults(sim, **f) -> None:
    r = requests.post(sim.urls["rest"] + "/sim/faults", data=json.dumps(f), timeout=5)
    assert r.status_code == 200, r.text


def report(sim) -> dict:
    return requests.get(sim.urls["rest"] + "/sim/orders", timeout=5).json()


def placed_with(sim, cid: str) -> int:
    return sim.call(lambda: sum(1 for o in sim.venue.engine.orders.values() if o.client_id == cid))


def consistent(gw, sim, timeout_s: float = 10.0, ex: Executor | None = None) -> list:
    """Poll until our orders and position equal the venue's; then no client id was used twice."""
    events: list = []
    end = time.monotonic() + timeout_s
    while True:
        if ex is not None:
            ex.drain_events()
        else:
            events += gw.poll()
        lots = venue_lots(sim)
        ours = ex.positions.position if ex is not None else gw.local_lots
        ok = set(gw.orders) == set(venue_open(sim)) and ours == gw.position.lots == lots and not gw.syncing
        if ex is not None:
            ok = ok and set(ex.positions.orders) == set(gw.orders)
        if ok:
            break
        if time.monotonic() > end:
            raise AssertionError(
                f"not consistent: ours {sorted(gw.orders)} {ours} lots, venue {venue_open(sim)} {lots} lots, "
                f"syncing {gw.syncing}"
            )
        time.sleep(0.01)
    assert report(sim)["duplicates"] == {}
    return events


def book_now(sim) -> object:
    """The venue's touch as a book record received now (what the risk manager checks against)."""
    bid, ask = touch(sim)
    rec = empty_book(10)
    rec["recv_ns"] = rec["publish_ns"] = time.time_ns()
    rec["flags"] = BOOK_VALID
    rec["tick"], rec["lot"] = 0.01, 0.01
    rec["bid_px"] = [bid - i for i in range(10)]
    rec["ask_px"] = [ask + i for i in range(10)]
    rec["bid_qty"] = rec["ask_qty"] = 100
    return rec


def executor(gw, **risk) -> Executor:
    """The real executor around a started gateway: positions, risk (the venue's rate limits), no rings."""
    f = gw.units.filters
    pos = Positions(f.tick, f.lot, FeeModel(), "SOLUSDT", "test", "r")
    start_position(pos, gw.position.lots, gw.position.entry_px, gw.position.time_ms)
    rm = RiskManager(dataclasses.replace(LOOSE, **risk), f, pos, ClientIds(time.time_ns(), salt="t"),
                     strategy="test", now_ns=time.time_ns(),
                     rate_limits=parse_rate_limits(gw.exchange_info["rateLimits"]))
    return Executor(gw, pos, rm, None, Journal(None, None, f.tick, f.lot), logging.getLogger("test.exec"))


def decide(ex: Executor, sim, *intents) -> list:
    """The executor's own door: risk check (the book is the venue's touch, received now), then send."""
    ex.book = book_now(sim)
    out = []
    for it in intents:
        r = ex.risk.check(it, ex.book, time.time_ns(), None)
        out.append(r)
        if not isinstance(r, Refused):
            ex.send(r)
    return out


def drain_until(ex: Executor, pred, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while True:
        ex.drain_events()
        if pred():
            return
        if time.monotonic() > end:
            raise AssertionError("condition not met")
        time.sleep(0.005)


# -- unknown outcomes ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [-1000, -1006, -1007])
def test_unknown_outcome_is_settled_by_query_and_counts_until_then(sim, make_gateway, code) -> None:
    gw = make_gateway()
    ex = executor(gw, max_position=0.1, max_open_orders=1)
    set_faults(sim, unknown_status_every=1, unknown_code=code)
    bid, _ = touch(sim)
    (r,) = decide(ex, sim, Place(BUY, 10, bid - 30))
    # while unknown (or once known: open) it holds the position and open-order limits, both ways
    (refused,) = decide(ex, sim, Place(BUY, 10, bid - 31))
    assert isinstance(refused, Refused) and refused.reason in ("max_position", "max_open_orders")
    drain_until(ex, lambda: gw.faults.recovered["unknown_outcome"] == 1)
    assert ex.positions.orders[r.client_id].status in (NEW, UNKNOWN) and gw.orders[r.client_id].status == NEW
    assert placed_with(sim, r.client_id) == 1 and gw.counters["unknown"] == 1  # queried, never resent
    set_faults(sim)
    gw.cancel(r.client_id)
    consistent(gw, sim, ex=ex)
    assert r.client_id not in ex.positions.orders


def test_an_unanswered_order_is_found_by_query(sim, make_gateway) -> None:
    gw = make_gateway(request_timeout_s=0.4)
    set_faults(sim, late_order_every=1, late_order_ms=0)  # executed at once, the answer lost
    bid, _ = touch(sim)
    r = req(BUY, 10, bid - 30)
    gw.place(r)
    wait_for(gw, lambda ev: gw.faults.recovered["unknown_outcome"] == 1)
    assert gw.counters["unknown"] == 1 and gw.counters["settled_absent"] == 0
    assert gw.orders[r.client_id].status == NEW and placed_with(sim, r.client_id) == 1
    set_faults(sim)
    consistent(gw, sim)


def test_a_query_that_overtakes_the_order_is_asked_again_before_concluding(sim, make_gateway) -> None:
    gw = make_gateway(request_timeout_s=0.3, settle_retry_ms=300, settle_attempts=6)
    set_faults(sim, late_order_every=1, late_order_ms=900)  # reaches the book after our first query
    bid, _ = touch(sim)
    r = req(BUY, 10, bid - 30)
    gw.place(r)
    wait_for(gw, lambda ev: gw.faults.recovered["unknown_outcome"] == 1, timeout_s=15)
    assert gw.counters["settle_missing"] >= 1  # -2013 at first ...
    assert gw.counters["settled_absent"] == 0 and gw.orders[r.client_id].status == NEW  # ... then found
    assert placed_with(sim, r.client_id) == 1
    set_faults(sim)
    consistent(gw, sim)


def test_a_lost_order_is_concluded_absent_after_the_second_query(sim, make_gateway) -> None:
    gw = make_gateway(request_timeout_s=0.3, settle_retry_ms=100, settle_attempts=2)
    set_faults(sim, lose_order_every=1)
    bid, _ = touch(sim)
    r = req(BUY, 10, bid - 30)
    gw.place(r)
    ev = wait_for(gw, lambda ev: any(type(e) is Rejected for e in ev))
    (rej,) = [e for e in ev if type(e) is Rejected]
    assert (rej.client_id, rej.code, rej.request) == (r.client_id, -2013, "place")
    assert gw.counters["settle_missing"] == 2 and gw.counters["settled_absent"] == 1
    assert gw.faults.recovered["unknown_outcome"] == 1 and r.client_id not in gw.orders
    assert placed_with(sim, r.client_id) == 0
    assert [q[1] for q in report(sim)["requests"]].count("order.place") == 0  # never resent
    set_faults(sim)
    consistent(gw, sim)


def test_ws_api_closed_with_the_order_in_flight_holds_then_reconciles(sim, make_gateway) -> None:
    gw = make_gateway()
    ex = executor(gw)
    bid, _ = touch(sim)
    set_faults(sim, close_ws_api_every=1, delay_ms=500)  # the delay: the reconciliation takes a while
    (r,) = decide(ex, sim, Place(BUY, 10, bid - 30))
    drain_until(ex, lambda: gw.syncing)
    (held,) = decide(ex, sim, Place(BUY, 10, bid - 31))
    assert isinstance(held, Refused) and held.reason == "reconciling"  # no order until reconciled
    set_faults(sim)
    drain_until(ex, lambda: not gw.syncing and gw.faults.recovered["unknown_outcome"] == 1)
    assert gw.counters["ws_reconnects"] == 1 and gw._logged_on  # a new session, logged on again
    assert gw.faults.recovered["ws_api"] == 1 and gw.orders[r.client_id].status == NEW
    (ok,) = decide(ex, sim, Place(BUY, 10, bid - 31))
    assert not isinstance(ok, Refused)
    consistent(gw, sim, ex=ex)
    assert placed_with(sim, r.client_id) == 1


# -- time ----------------------------------------------------------------------------------------


def test_1021_resyncs_the_offset_and_resends_once_everywhere(sim, make_gateway) -> None:
    gw = make_gateway("hmac")
    set_faults(sim, clock_skew_ms=8000)  # the venue's clock jumps: our offset is 8 s off
    gw.place(req(BUY, 4, type=MARKET))
    wait_for(gw, lambda ev: any(type(e) is Fill for e in ev) and gw.faults.recovered["timestamp"] == 1)
    assert gw.counters["retries_1021"] == 1 and 7_900 < gw.time_offset_ms < 8_100
    set_faults(sim, clock_skew_ms=-4000)
    gw.refresh_countdown()  # REST: refused, resynced, resent
    set_faults(sim, clock_skew_ms=15000)
    gw.reconcile()  # a blocking WS API call and REST
    wait_for(gw, lambda ev: gw.faults.recovered["timestamp"] >= 3)
    assert gw.faults.failed["timestamp"] == 0 and gw.counters["time_resyncs"] >= 3
    consistent(gw, sim)


# -- rate limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [-1015, -1003])
def test_429_backs_off_until_the_venues_retry_time(sim, make_gateway, code) -> None:
    gw = make_gateway()
    ex = executor(gw)
    set_faults(sim, rate_limit_every=1, rate_limit_code=code, retry_after_ms=1500)
    bid, _ = touch(sim)
    (r,) = decide(ex, sim, Place(BUY, 10, bid - 30))
    drain_until(ex, lambda: ex.risk.limiter.paused(time.time_ns()))
    set_faults(sim)
    t0 = time.monotonic()
    (held,) = decide(ex, sim, Place(BUY, 10, bid - 31))
    assert isinstance(held, Refused) and held.reason == "backoff"
    assert ex.risk.limiter.weight_paused is (code == -1003)
    assert r.client_id not in ex.positions.orders  # refused by the venue: dead, nothing resent
    while time.monotonic() - t0 < 10 and isinstance(decide(ex, sim, Place(BUY, 10, bid - 32))[0], Refused):
        time.sleep(0.05)
    assert 0.8 < time.monotonic() - t0 < 10  # not before the ~1.5 s the venue said (and then it does resume)
    ex.housekeeping(time.time_ns())  # the backoff is over: the fault recovered, after ~1.5 s
    f = gw.faults
    assert f.recovered["rate_limit"] == 1 and f.max_ms["rate_limit"] > 1000, f.summary()
    for cid in list(gw.orders):
        gw.cancel(cid)
    consistent(gw, sim, ex=ex)


def test_the_limiter_learns_what_others_used_and_never_hits_the_limit() -> None:
    st = start_server(venue=VenueSettings(limits=Limits(orders_10s=30)))
    from hftbot.exec.gateway import Gateway
    from tests.exec.conftest import gateway_config
    from tests.sim.test_server import place as rest_place

    gw = Gateway(venue_of(st), signer_for("ed25519"), gateway_config())
    try:
        gw.start()
        ex = executor(gw)
        ten_s = next(x for x in ex.risk.limiter.limits if x.kind == "ORDERS" and x.interval_ns == 10 * 10**9)
        assert ten_s.limit == 30  # the venue's own limit, from exchangeInfo
        phase = time.time() % 10
        if phase > 6:  # the venue counts in fixed 10 s windows: all of this inside one
            time.sleep(10 - phase + 0.05)
        bid, _ = touch(st)
        for _ in range(25):  # another client of the same account uses the orders budget
            assert rest_place(st, price=f"{(bid - 3) / 100:.2f}").status_code == 200
        results = []
        for i in range(10):
            results += decide(ex, st, Place(BUY, 10, bid - 30 - i))
            ex.drain_events()
            time.sleep(0.02)
        refused = [r for r in results if isinstance(r, Refused)]
        assert refused and {r.reason for r in refused} == {"rate_orders"}
        assert gw.counters["rate_limited"] == 0 and ex.risk.limiter.learned > 0  # stayed under the limit
    finally:
        gw.close()
        st.close()


# -- rejections mapped to actions ----------------------------------------------------------------


def test_margin_refusal_pauses_entries_and_exits_go_on(sim, make_gateway) -> None:
    gw = make_gateway()
    ex = executor(gw)
    decide(ex, sim, Place(BUY, 10, type=MARKET))
    drain_until(ex, lambda: ex.positions.position == 10)
    set_faults(sim, reject_code=-2019, reject_every=1)
    bid, _ = touch(sim)
    (r,) = decide(ex, sim, Place(BUY, 10, bid - 30))
    drain_until(ex, lambda: r.client_id not in ex.positions.orders)
    set_faults(sim)
    (entry,) = decide(ex, sim, Place(BUY, 10, bid - 30))
    assert isinstance(entry, Refused) and entry.reason == "margin"
    (exit_,) = decide(ex, sim, Place(SELL, 10, type=MARKET, reduce_only=True))
    assert not isinstance(exit_, Refused)
    drain_until(ex, lambda: ex.positions.position == 0)
    assert gw.faults.counts["margin"] == 1
    consistent(gw, sim, ex=ex)


@pytest.mark.parametrize(("code", "kind"), [(-4164, "min_notional"), (-5022, "post_only")])
def test_dead_orders_are_counted_and_never_resent(sim, make_gateway, code, kind) -> None:
    gw = make_gateway()
    ex = executor(gw)
    bid, ask = touch(sim)
    if code == -5022:  # the real thing: a post-only order that would take
        (r,) = decide(ex, sim, Place(BUY, 10, ask + 1, tif=GTX))
    else:
        set_faults(sim, reject_code=code, reject_every=1)
        (r,) = decide(ex, sim, Place(BUY, 10, bid - 30))
    drain_until(ex, lambda: gw.faults.counts[kind] == 1 and r.client_id not in ex.positions.orders)
    assert ex.positions.rejects == {code: 1} and ex.risk.state != HALTED
    assert placed_with(sim, r.client_id) == 0
    set_faults(sim)
    consistent(gw, sim, ex=ex)


def test_precision_refusal_is_a_bug_and_halts(sim, make_gateway) -> None:
    gw = make_gateway()
    ex = executor(gw)
    bid, _ = touch(sim)
    decide(ex, sim, Place(BUY, 10, type=MARKET), Place(BUY, 10, bid - 40))
    drain_until(ex, lambda: ex.positions.position == 10 and len(venue_open(sim)) == 1)
    set_faults(sim, reject_code=-1111, reject_every=1)
    decide(ex, sim, Place(BUY, 10, bid - 30))
    drain_until(ex, lambda: ex.risk.state == HALTED)
    set_faults(sim)  # (the flatten sent with the halt was refused too: HALTED retries it)

    def flat() -> bool:
        ex.book = book_now(sim)
        ex.housekeeping(time.time_ns())
        return ex.positions.position == 0 and not venue_open(sim)

    drain_until(ex, flat)  # cancelled, flattened
    assert "-1111" in ex.risk.reason and gw.faults.counts["precision"] >= 1
    (after,) = decide(ex, sim, Place(BUY, 10, bid - 30))
    assert isinstance(after, Refused) and after.reason == "halted"
    consistent(gw, sim, ex=ex)


def test_cancel_of_an_order_already_gone_reconciles_it(sim, make_gateway) -> None:
    gw = make_gateway()
    bid, _ = touch(sim)
    r = req(BUY, 10, bid - 30)
    gw.place(r)
    wait_for(gw, lambda ev: updates(ev, r.client_id, NEW))
    gw.cancel(r.client_id)
    gw.cancel(r.client_id)  # races the first: -2011 "Unknown order sent"
    ev = wait_for(gw, lambda ev: any(type(e) is Rejected for e in ev) and updates(ev, r.client_id, CANCELED))
    assert [(e.code, e.request) for e in ev if type(e) is Rejected] == [(-2011, "cancel")]
    assert len(updates(ev, r.client_id, CANCELED)) == 1
    # the -2011 is an unknown_order fault, reconciled, when it is handled while the order is still
    # ours (the usual order); when the first cancel's answer was applied first, the order is settled
    # and there is nothing to reconcile or count. Either way every fault counted is recovered.
    wait_for(gw, lambda _: gw.faults.recovered["unknown_order"] == gw.faults.counts["unknown_order"] <= 1)
    time.sleep(0.2)
    gw.poll()
    assert gw.faults.recovered["unknown_order"] == gw.faults.counts["unknown_order"] <= 1
    assert r.client_id not in gw.orders
    consistent(gw, sim)


# -- streams -------------------------------------------------------------------------------------


def test_user_stream_drop_recovers_the_missed_fills_from_the_last_seen(sim, make_gateway) -> None:
    gw = make_gateway(reconnect_backoff_s=0.5)
    gw.place(req(BUY, 4, type=MARKET))
    wait_for(gw, lambda ev: gw.local_lots == 4 == gw.position.lots)
    requests.post(sim.urls["rest"] + "/sim/disconnect", data='{"route": "private"}', timeout=5)
    for _ in range(3):  # filled while nobody listens: only a reconciliation can bring these
        gw.place(req(BUY, 5, type=MARKET))
    assert gw.syncing or wait_for(gw, lambda ev: gw.syncing, timeout_s=3) is not None
    ev = wait_for(gw, lambda ev: not gw.syncing and gw.local_lots == 19, timeout_s=15)
    trades = sim.call(lambda: list(sim.venue._trades))
    assert sorted((f.order_id, f.trade_id) for f in ev if type(f) is Fill) == sorted(
        (t["orderId"], t["id"]) for t in trades[1:]
    )
    assert gw.counters["reconciliations"] >= 1 and gw.faults.recovered["user_stream"] == 1
    consistent(gw, sim)


def test_silent_listen_key_expiry_is_found_by_the_keep_alive(sim, make_gateway) -> None:
    gw = make_gateway(listen_key_keepalive_s=1.0)
    requests.post(sim.urls["rest"] + "/sim/expireListenKey", data='{"silent": true}', timeout=5)
    wait_for(gw, lambda ev: gw.faults.recovered["listen_key"] == 1, timeout_s=10)  # -1125, a new key
    gw.place(req(BUY, 4, type=MARKET))
    wait_for(gw, lambda ev: any(type(e) is Fill for e in ev))
    consistent(gw, sim)


def test_listen_key_expired_event_renews_and_reconciles(sim, make_gateway) -> None:
    gw = make_gateway()
    requests.post(sim.urls["rest"] + "/sim/expireListenKey", timeout=5)
    wait_for(gw, lambda ev: gw.faults.recovered["listen_key"] == 1)
    assert gw.counters["user_reconnects"] == 1 and gw.counters["reconciliations"] == 1
    consistent(gw, sim)


@pytest.mark.parametrize("skew_ms", [0, 8000])
def test_ws_api_drop_logs_on_again_and_reconciles(sim, make_gateway, skew_ms) -> None:
    gw = make_gateway("ed25519")
    bid, _ = touch(sim)
    r = req(BUY, 10, bid - 40)
    gw.place(r)
    wait_for(gw, lambda ev: updates(ev, r.client_id, NEW))
    set_faults(sim, clock_skew_ms=skew_ms)  # 8000: the new session's logon meets -1021 first
    requests.post(sim.urls["rest"] + "/sim/disconnect", data='{"route": "ws_api"}', timeout=5)
    wait_for(gw, lambda ev: gw.faults.recovered["ws_api"] == 1)
    assert gw._logged_on and gw.counters["ws_reconnects"] == 1
    assert gw.faults.recovered["timestamp"] == (1 if skew_ms else 0) and gw.faults.failed["timestamp"] == 0
    gw.place(req(BUY, 4, type=MARKET))
    consistent(gw, sim)


def test_duplicated_and_reordered_user_events_change_nothing(sim, make_gateway) -> None:
    gw = make_gateway()
    ex = executor(gw)
    set_faults(sim, duplicate_user_every=1, reorder_user_every=3)
    for side, qty in ((BUY, 10), (BUY, 5), (SELL, 8), (SELL, 7), (BUY, 4)):
        (r,) = decide(ex, sim, Place(side, qty, type=MARKET))
        assert not isinstance(r, Refused), r
    drain_until(ex, lambda: ex.positions.position == 4 and gw.position.lots == 4)
    trades = sim.call(lambda: list(sim.venue._trades))
    assert ex.positions.fills == len(trades) and gw.faults.counts["duplicate_fill"] >= len(trades)
    fees = sum(float(t["commission"]) for t in trades)
    assert ex.positions.fees == pytest.approx(fees)
    set_faults(sim)
    consistent(gw, sim, ex=ex)
    assert ex.positions.orders == {}
