"""The gateway against the real simulator server over real sockets (WS API, user stream, REST)."""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests

from hftbot.exec.filters import SymbolFilters
from hftbot.exec.gateway import RECONCILED, Gateway, GatewayError
from hftbot.exec.messages import (
    BUY,
    CANCELED,
    FILLED,
    GTC,
    GTX,
    LIMIT,
    MARKET,
    NEW,
    SELL,
    Fill,
    OrderRequest,
    OrderUpdate,
    Rejected,
    VenuePosition,
)
from hftbot.exec.signing import Signer
from hftbot.exec.transport import Units
from hftbot.sim import auth
from tests.exec.conftest import signer_for, venue_of, wait_for

_n = iter(range(1, 1_000_000))


def req(
    side: int,
    qty: int,
    px: int = 0,
    type: str = LIMIT,
    tif: str = GTC,
    reduce_only: bool = False,
    cid: str | None = None,
) -> OrderRequest:
    return OrderRequest(
        client_id=cid or f"t{next(_n)}-{time.time_ns() % 10**9}",
        side=side,
        qty=qty,
        px=px,
        type=type,
        tif=tif,
        reduce_only=reduce_only,
        tag="test",
        strategy="test",
        model_id=0,
        book_recv_ns=0,
        created_ns=time.time_ns(),
    )


def touch(sim) -> tuple[int, int]:
    return sim.call(lambda: (sim.venue.engine.best_bid, sim.venue.engine.best_ask))


def venue_lots(sim) -> int:
    return sim.call(lambda: sim.venue.account.position.lots)


def venue_open(sim) -> list[str]:
    return sim.call(lambda: [o.client_id for o in sim.venue.engine.open_orders()])


def updates(events, cid: str, status: str | None = None) -> list[OrderUpdate]:
    return [e for e in events if type(e) is OrderUpdate and e.client_id == cid and status in (None, e.status)]


# -- units and signatures ------------------------------------------------------------------------


def test_units_are_exact_decimal_strings() -> None:
    u = Units(SymbolFilters.from_tick_lot("SOLUSDT", "0.0100", "0.001"))
    assert u.px(15012) == "150.12" and u.px(1) == "0.01" and u.qty(1) == "0.001" and u.qty(2500) == "2.500"
    assert u.px(15012) == "150.12"  # cached
    assert (
        u.ticks("150.12") == 15012 and u.lots("2.5") == 2500 and u.lots("0") == 0 and u.lots("-0.007") == -7
    )
    with pytest.raises(ValueError, match="not a multiple"):
        u.ticks("150.123")
    whole = Units(SymbolFilters.from_tick_lot("X", "0.1", "1"))
    assert whole.qty(7) == "7" and whole.px(10) == "1.0"


def test_hmac_and_ed25519_signatures_verify_at_the_venue() -> None:
    ring = auth.KeyRing()
    params = {"symbol": "SOLUSDT", "side": "BUY", "quantity": "0.10", "timestamp": 1, "reduceOnly": True}
    for kind in ("hmac", "ed25519"):
        s = signer_for(kind)
        signed = s.sign_ws({**params, "apiKey": s.api_key})
        assert ring.verify(s.api_key, auth.ws_payloads(signed), signed["signature"]), kind
        query = s.sign_rest(params)
        payload, sig = auth.rest_payload(query, "")
        assert ring.verify(s.api_key, [payload], sig), kind
        tampered = query.replace("0.10", "0.11")
        payload, sig = auth.rest_payload(tampered, "")
        assert not ring.verify(s.api_key, [payload], sig), kind
        assert "***" in repr(s) and s.api_key not in repr(s)
    # the USDⓈ-M docs' HMAC example (general info, "SIGNED Endpoint Examples")
    doc = Signer("k", hmac_secret="2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9")
    text = (
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
        "&recvWindow=5000&timestamp=1591702613943"
    )
    assert doc.sign(text) == "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"


# -- orders over real sockets --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
def test_place_modify_cancel(sim, make_gateway, kind) -> None:
    gw = make_gateway(kind)
    assert gw._logged_on is (kind == "ed25519")
    bid, _ = touch(sim)
    r = req(BUY, 10, bid - 20)
    assert gw.place(r) > 0
    wait_for(gw, lambda ev: updates(ev, r.client_id, NEW))
    assert r.client_id in venue_open(sim) and gw.orders[r.client_id].status == NEW
    gw.modify(r.client_id, 12, bid - 25)
    ev = wait_for(gw, lambda ev: any(u.px == bid - 25 and u.qty == 12 for u in updates(ev, r.client_id)))
    assert not [e for e in ev if type(e) is Rejected]
    assert sim.call(lambda: sim.venue.engine.open_order(r.client_id).px) == bid - 25
    gw.cancel(r.client_id)
    ev = wait_for(gw, lambda ev: updates(ev, r.client_id, CANCELED))
    time.sleep(0.1)  # the stream's copy of CANCELED, too
    ev += gw.poll()
    assert len(updates(ev, r.client_id, CANCELED)) == 1  # answer + stream event: reported once
    assert r.client_id not in gw.orders and venue_open(sim) == []


@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
def test_fills_arrive_once_and_position_equals_the_venues(sim, make_gateway, kind) -> None:
    gw = make_gateway(kind)
    orders = [req(BUY, 10, type=MARKET), req(BUY, 5, type=MARKET), req(SELL, 4, type=MARKET)]
    for r in orders:
        assert gw.place(r) > 0
    want = 10 + 5 - 4
    ev = wait_for(gw, lambda ev: gw.local_lots == want and gw.position.lots == want)
    fills = [e for e in ev if type(e) is Fill]
    trades = sim.call(lambda: list(sim.venue._trades))
    assert sorted((f.order_id, f.trade_id) for f in fills) == sorted((t["orderId"], t["id"]) for t in trades)
    assert sum(f.qty for f in fills) == 19 and all(f.fee > 0 and not f.maker for f in fills)
    assert all(f.client_id in {r.client_id for r in orders} for f in fills)
    for r in orders:
        assert len(updates(ev, r.client_id, FILLED)) == 1
    assert gw.orders == {}
    assert venue_lots(sim) == want
    # a reconciliation reads the fills after the newest one seen (fromId): none; every fill of
    # the venue's, read again, is a duplicate
    gw.reconcile()
    time.sleep(0.2)
    again = gw.poll()
    assert [e for e in again if type(e) is Fill] == []
    gw._inbox.extend(gw._fill_of_trade(t) for t in trades)
    assert [e for e in gw.poll() if type(e) is Fill] == []
    assert gw.counters["fill_duplicates"] >= len(fills) and gw.faults.counts["duplicate_fill"] == len(fills)
    assert gw.local_lots == gw.position.lots == venue_lots(sim) == want
    assert [e for e in again if type(e) is VenuePosition][-1].lots == want


def test_post_only_that_would_take_is_rejected(sim, make_gateway) -> None:
    gw = make_gateway()
    _, ask = touch(sim)
    r = req(BUY, 10, ask + 2, tif=GTX)
    gw.place(r)
    ev = wait_for(gw, lambda ev: any(type(e) is Rejected for e in ev))
    (rej,) = [e for e in ev if type(e) is Rejected]
    assert rej.client_id == r.client_id and rej.code == -5022 and rej.request == "place"
    assert r.client_id not in gw.orders


def test_refusals_name_the_request_and_the_code(sim, make_gateway) -> None:
    gw = make_gateway()
    bid, _ = touch(sim)
    gw.place(req(BUY, 10, bid - 30, cid="bad id with spaces"))
    gw.cancel("never-placed")
    ev = wait_for(gw, lambda ev: len([e for e in ev if type(e) is Rejected]) == 2)
    codes = sorted((e.request, e.code) for e in ev if type(e) is Rejected)
    assert codes == [("cancel", -2011), ("place", -4015)]
    assert sim.call(lambda: sim.venue.counters["orders"]) == 0


def test_start_cancels_or_adopts_what_an_earlier_run_left(sim, make_gateway) -> None:
    first = make_gateway()
    bid, _ = touch(sim)
    r1, r2 = req(BUY, 10, bid - 40), req(BUY, 10, bid - 41)
    first.place(r1)
    first.place(r2)
    wait_for(first, lambda ev: len([e for e in ev if type(e) is OrderUpdate]) == 2)
    first._stop.set()  # a run that died: nothing cancelled
    first._ws.close()
    first._user_ws.close()
    adopt = make_gateway(cancel_on_start=False, start=False)
    snap = adopt.start()
    assert sorted(u.client_id for u in snap.open_orders) == sorted([r1.client_id, r2.client_id])
    assert all(u.exec_type == RECONCILED for u in snap.open_orders)
    assert set(adopt.orders) == {r1.client_id, r2.client_id}
    adopt.cancel(r1.client_id)
    wait_for(adopt, lambda ev: updates(ev, r1.client_id, CANCELED))
    fresh = make_gateway(start=False)
    snap = fresh.start()
    assert snap.cancelled_at_start == 1 and snap.open_orders == [] and venue_open(sim) == []


def test_start_adopts_the_venue_position(sim, make_gateway) -> None:
    first = make_gateway()
    first.place(req(SELL, 7, type=MARKET))
    wait_for(first, lambda ev: first.position.lots == -7)
    second = make_gateway(start=False)
    snap = second.start()
    assert snap.position.lots == -7 and second.local_lots == -7 and snap.position.entry_px > 0


def test_dead_man_switch_cancels_when_refreshes_stop(sim, make_gateway) -> None:
    gw = make_gateway(countdown_ms=1000, countdown_refresh_s=0.2)
    bid, _ = touch(sim)
    r = req(BUY, 10, bid - 50)
    gw.place(r)
    wait_for(gw, lambda ev: updates(ev, r.client_id, NEW))
    time.sleep(1.5)  # refreshed every 0.2 s: still resting past the countdown
    assert venue_open(sim) == [r.client_id] and gw.counters["countdown_refresh"] >= 5
    gw._stop.set()  # the process hangs: no more refreshes
    ev = wait_for(gw, lambda ev: updates(ev, r.client_id, CANCELED), timeout_s=5)
    assert venue_open(sim) == [] and ev


def test_a_reconciled_position_older_than_the_streams_does_not_overwrite_it(sim, make_gateway) -> None:
    """A reconciliation asks for the position first, then the open orders and the fills: a fill
    and its ACCOUNT_UPDATE can reach the inbox before the snapshot does. The venue's update time
    decides (seen in CI: a listenKey renewal's snapshot of 0 lots undid a 4-lot fill)."""
    from hftbot.exec.gateway import _Snapshot
    from hftbot.exec.messages import VenuePosition

    gw = make_gateway()
    gw.place(req(BUY, 4, type=MARKET))
    wait_for(gw, lambda ev: any(type(e) is Fill for e in ev) and gw.position.lots == 4)
    seen = gw.position
    assert seen.time_ms > 0
    gw._inbox.append(_Snapshot(VenuePosition(0, 0.0, seen.time_ms - 1), ()))  # taken before the fill
    out = gw.poll()
    assert gw.position == seen and out[-1] == seen and gw.counters["snapshot_position_stale"] == 1
    newer = VenuePosition(0, 0.0, seen.time_ms + 5)  # the venue closed it since: the snapshot is news
    gw._inbox.append(_Snapshot(newer, ()))
    gw.poll()
    assert gw.position == newer and gw.counters["snapshot_position_stale"] == 1


def test_expired_listen_key_renews_the_stream(sim, make_gateway) -> None:
    gw = make_gateway()
    old = gw.listen_key
    requests.post(sim.urls["rest"] + "/sim/expireListenKey", timeout=5)
    end = time.monotonic() + 10
    while gw.counters["user_reconnects"] == 0 and time.monotonic() < end:
        time.sleep(0.02)
    assert gw.counters["user_reconnects"] == 1
    gw.place(req(BUY, 4, type=MARKET))
    wait_for(gw, lambda ev: any(type(e) is Fill for e in ev) and gw.position.lots == 4)
    assert gw.listen_key and gw.local_lots == venue_lots(sim) == 4
    assert old  # the venue may hand out the same key text again; what matters is the events flow


def test_unknown_outcome_is_settled_by_query_not_resent(sim, make_gateway) -> None:
    gw = make_gateway()
    requests.post(sim.urls["rest"] + "/sim/faults", data=json.dumps({"unknown_status_every": 1}), timeout=5)
    bid, _ = touch(sim)
    r = req(BUY, 10, bid - 30)
    gw.place(r)
    # the stream's NEW and the 503 answer race: wait for both
    wait_for(gw, lambda ev: updates(ev, r.client_id, NEW) and gw.counters["unknown"] == 1)
    assert gw.orders[r.client_id].status == NEW
    placed = sim.call(lambda: [o.client_id for o in sim.venue.engine.orders.values()])
    assert placed.count(r.client_id) == 1


def test_bad_endpoint_fails_with_a_clear_error(sim) -> None:
    v = venue_of(sim)
    gw = Gateway(type(v)(v.symbol, v.rest, "ws://127.0.0.1:1/ws-fapi/v1", v.ws), signer_for("hmac"))
    with pytest.raises(GatewayError, match="cannot connect to the WS API at ws://127.0.0.1:1"):
        gw.start()
    gw.close()


def test_secrets_never_reach_the_logs(sim, make_gateway, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for kind in ("hmac", "ed25519"):
        gw = make_gateway(kind)
        gw.place(req(BUY, 4, type=MARKET))
        wait_for(gw, lambda ev, gw=gw: any(type(e) is Fill for e in ev))
        requests.post(sim.urls["rest"] + "/sim/expireListenKey", timeout=5)  # warnings get logged
        time.sleep(0.3)
        gw.close()
    text = caplog.text + repr(signer_for("hmac")) + repr(signer_for("ed25519"))
    assert "listenKey expired" in text  # the log did capture the gateway
    seed_line = auth.TEST_ED25519_PRIVATE_PEM.splitlines()[1]
    for secret in (auth.TEST_API_SECRET, seed_line, auth.TEST_API_KEY, auth.TEST_ED25519_API_KEY):
        assert secret not in text


def test_a_dropped_ws_api_connection_is_reopened_and_reconciled(sim, make_gateway) -> None:
    gw = make_gateway()
    bid, _ = touch(sim)
    resting = req(BUY, 10, bid - 40)
    gw.place(resting)
    wait_for(gw, lambda ev: updates(ev, resting.client_id, NEW))
    gw._ws.close()  # the connection drops
    end = time.monotonic() + 10
    while gw.counters["ws_reconnects"] == 0 and time.monotonic() < end:
        time.sleep(0.02)
    assert gw.counters["ws_reconnects"] == 1 and gw._logged_on
    gw.place(req(BUY, 4, type=MARKET))  # trading goes on over the new session
    wait_for(gw, lambda ev: gw.position.lots == 4 == gw.local_lots)
    assert gw.orders[resting.client_id].status == NEW  # the reconciliation kept the resting order


def test_frames_written_past_websockets_are_whole_at_every_length(sim) -> None:
    import orjson
    from websockets.sync.client import connect

    from hftbot.exec.transport import frame_writer

    ws = connect(sim.urls["ws_api"], legacy=True, compression=None)
    try:
        write = frame_writer(ws)
        for rid, pad in ((1, 0), (2, 90), (3, 500), (4, 70_000)):  # 7-bit, 16-bit and 64-bit lengths
            write(orjson.dumps({"id": rid, "method": "ping", "params": {}, "pad": "x" * pad}))
            answer = orjson.loads(ws.recv(timeout=10))
            assert answer["id"] == rid and answer["status"] == 200
    finally:
        ws.close()


def test_keep_alive_holds_a_short_lived_listen_key(sim, make_gateway) -> None:
    requests.post(
        sim.urls["rest"] + "/sim/faults", data=json.dumps({"expire_listen_key_after_s": 1.5}), timeout=5
    )
    gw = make_gateway(listen_key_keepalive_s=1.0)
    time.sleep(3.2)  # two expiries' worth
    assert gw.counters["keepalive"] >= 2 and gw.counters["user_reconnects"] == 0
    gw.place(req(BUY, 4, type=MARKET))
    wait_for(gw, lambda ev: any(type(e) is Fill for e in ev))  # the same stream still delivers


def test_the_server_time_offset_is_measured_and_used(sim) -> None:
    skewed = Gateway(venue_of(sim), signer_for("hmac"), clock_ns=lambda: time.time_ns() - 10_000_000_000)
    try:
        skewed.start()  # our clock is 10 s late: every signed request would be refused without the offset
        assert 9_900 < skewed.time_offset_ms < 10_100
        skewed.place(req(BUY, 4, type=MARKET))
        wait_for(skewed, lambda ev: any(type(e) is Fill for e in ev))
        skewed.time_offset_ms = 0  # forget it: the venue refuses the timestamp (-1021), the gateway
        skewed.place(req(BUY, 4, type=MARKET))  # measures the offset again and resends once
        f = skewed.faults
        ev = wait_for(skewed, lambda ev: any(type(e) is Fill for e in ev) and f.recovered["timestamp"] == 1)
        assert [e for e in ev if type(e) is Rejected] == []
        assert 9_900 < skewed.time_offset_ms < 10_100 and skewed.counters["retries_1021"] == 1
        assert f.counts["timestamp"] == 1 and f.recovered["timestamp"] == 1 and not f.is_open("timestamp", "")
    finally:
        skewed.close()


@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
def test_a_rehearsal_builds_the_frame_and_sends_nothing(sim, make_gateway, kind) -> None:
    gw = make_gateway(kind)
    bid, _ = touch(sim)
    r = req(BUY, 10, bid - 20, tif=GTX, cid="rehearsal")
    sent, pending, orders = gw.counters["sent"], dict(gw._pending), dict(gw.orders)
    n = gw.rehearse(r)
    # header (2) + mask key (4) + the JSON of a signed or session request: well past a bare frame
    assert n > 6 + len('{"id":0,"method":"order.place","params":{}}')
    assert gw.counters["sent"] == sent and gw._pending == pending and gw.orders == orders
    time.sleep(0.2)
    assert not [e for e in gw.poll() if getattr(e, "client_id", "") == "rehearsal"]
    assert venue_open(sim) == []
    real = req(BUY, 10, bid - 20, tif=GTX)  # and the connection still carries real orders
    assert gw.place(real) > 0
    wait_for(gw, lambda ev: updates(ev, real.client_id, NEW))
    assert venue_open(sim) == [real.client_id]
    assert gw.rehearse(req(BUY, 10, bid - 20, type="STOP")) == 0  # a type place would refuse


def test_a_rehearsal_warms_its_own_socket_pair_with_zeros_and_never_the_venues(sim, make_gateway) -> None:
    """`gateway.warm_socket`: each rehearsal puts the frame's length in zeros through a private
    loopback pair, read back at once; the venue sees nothing; close() closes the pair. Off: no pair."""
    gw = make_gateway("hmac")  # HMAC: the frame carries a signature, which must not be what is written
    bid, _ = touch(sim)
    n = gw.rehearse(req(BUY, 10, bid - 20, tif=GTX, cid="rehearsal"))
    warm = gw._warm
    assert warm is not None and warm.written == n
    for _ in range(2000):  # far more than the socket buffers hold: each write is read back
        gw.rehearse(req(BUY, 10, bid - 20, tif=GTX, cid="rehearsal"))
    assert warm.written == 2001 * n
    with pytest.raises(BlockingIOError):
        warm._rx.recv(1)  # nothing left unread in the pair
    assert bytes(warm._zeros[:n]) == bytes(n)  # what goes through it: zeros, never the signed frame
    time.sleep(0.2)
    assert not [e for e in gw.poll() if getattr(e, "client_id", "") == "rehearsal"]
    assert venue_open(sim) == []
    gw.close()
    assert gw._warm is None and warm._tx.fileno() == -1 and warm._rx.fileno() == -1

    off = make_gateway("ed25519", warm_socket=False)
    assert off.rehearse(req(BUY, 10, bid - 20, tif=GTX, cid="rehearsal")) > 0
    assert off._warm is None


def test_a_broken_warm_socket_is_dropped_and_rehearsals_and_orders_go_on(sim, make_gateway, caplog) -> None:
    gw = make_gateway("ed25519")
    bid, _ = touch(sim)
    n = gw.rehearse(req(BUY, 10, bid - 20, tif=GTX, cid="rehearsal"))
    gw._warm._rx.close()  # the pair breaks under it
    with caplog.at_level("WARNING"):
        assert gw.rehearse(req(BUY, 10, bid - 20, tif=GTX, cid="rehearsal")) == n
    assert gw._warm is None and gw._warm_failed and "warm socket broke" in caplog.text
    assert gw.rehearse(req(BUY, 10, bid - 20, tif=GTX, cid="rehearsal")) == n  # frames only now
    real = req(BUY, 10, bid - 20, tif=GTX)
    assert gw.place(real) > 0
    wait_for(gw, lambda ev: updates(ev, real.client_id, NEW))


def test_the_venues_duplicate_check_holds_a_bounded_number_of_client_ids(sim, make_gateway, monkeypatch) -> None:
    """The simulator counts client ids to catch a resent order; over days of quoting that count
    must not grow without end (the oldest half goes at MAX_PLACED, here 4)."""
    import hftbot.sim.orders as desk

    monkeypatch.setattr(desk, "MAX_PLACED", 4)
    gw = make_gateway("ed25519")
    bid, _ = touch(sim)
    sent = [req(BUY, 10, bid - 30 - i) for i in range(7)]
    for r in sent:
        assert gw.place(r) > 0
        wait_for(gw, lambda ev, r=r: updates(ev, r.client_id, NEW))
    placed = sim.call(lambda: list(sim.venue.orders.placed))
    assert len(placed) <= 4 and placed[-1] == sent[-1].client_id  # the newest are the ones kept
    assert sim.call(lambda: sim.venue.orders.duplicate_ids) == 0
    assert sorted(venue_open(sim)) == sorted(r.client_id for r in sent)  # forgetting ids touched no order
