"""The simulator's fault injection (issue 13's additions) over real sockets, and its /sim admin hooks."""

from __future__ import annotations

import asyncio
import json
import time

import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hftbot.sim import auth
from hftbot.sim.venue import Faults, Limits, VenueSettings
from tests.sim.conftest import start_server
from tests.sim.test_server import _ws_params, best, place, rest, run


def faults(sim, **f) -> dict:
    r = requests.post(sim.urls["rest"] + "/sim/faults", data=json.dumps(f), timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def orders_report(sim) -> dict:
    return requests.get(sim.urls["rest"] + "/sim/orders", timeout=5).json()


def ws_order(bid: float, cid: str) -> dict:
    return _ws_params(
        {"symbol": "SOLUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.10",
         "price": f"{bid - 1:.2f}", "newClientOrderId": cid}
    )


def test_clock_skew_moves_server_time_and_refuses_our_timestamps(sim) -> None:
    faults(sim, clock_skew_ms=8000)
    server = rest(sim, "GET", "/fapi/v1/time").json()["serverTime"]
    assert 7000 < server - time.time() * 1000 < 9000
    bid, _ = best(sim)
    r = place(sim, price=f"{bid - 1:.2f}")
    assert r.status_code == 400 and r.json()["code"] == -1021  # 8 s late for a 5 s recvWindow
    base = {"symbol": "SOLUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.10"}
    resynced = rest(sim, "POST", "/fapi/v1/order", {**base, "price": f"{bid - 1:.2f}"}, signed=True,
                    ts_offset_ms=8000)
    assert resynced.status_code == 200  # a client that measured the offset again is accepted
    faults(sim, clock_skew_ms=-3000)
    assert place(sim, price=f"{bid - 1:.2f}").json()["code"] == -1021  # 3 s ahead of the venue


def test_rate_limit_fault_says_when_to_retry_on_rest_and_ws_api(sim) -> None:
    faults(sim, rate_limit_every=1, rate_limit_code=-1003, retry_after_ms=2500)
    bid, _ = best(sim)
    r = place(sim, price=f"{bid - 1:.2f}")
    assert r.status_code == 429 and r.json()["code"] == -1003 and r.headers["Retry-After"] == "3"

    async def go():
        async with connect(sim.urls["ws_api"]) as api:
            await api.send(json.dumps({"id": 1, "method": "order.place", "params": ws_order(bid, "r1")}))
            return json.loads(await api.recv())

    ans = run(go())
    assert ans["status"] == 429 and ans["error"]["code"] == -1003
    data = ans["error"]["data"]
    assert 2000 <= data["retryAfter"] - data["serverTime"] <= 2600
    assert orders_report(sim)["orders"] == 0  # refused: nothing executed


def test_the_real_limits_name_the_end_of_the_full_window() -> None:
    st = start_server(venue=VenueSettings(limits=Limits(orders_10s=2)))
    try:
        bid, _ = best(st)
        for _ in range(2):
            assert place(st, price=f"{bid - 2:.2f}").status_code == 200
        r = place(st, price=f"{bid - 2:.2f}")
        assert r.status_code == 429 and r.json()["code"] == -1015
        assert 1 <= int(r.headers["Retry-After"]) <= 10  # the 10 s window's end
    finally:
        st.close()


def test_unknown_status_codes_execute_and_answer_unknown(sim) -> None:
    bid, _ = best(sim)
    for code, status in ((-1006, 500), (-1007, 408), (-1000, 503)):
        faults(sim, unknown_status_every=1, unknown_code=code)
        r = place(sim, price=f"{bid - 1:.2f}", newClientOrderId=f"u{-code}")
        assert (r.status_code, r.json()["code"]) == (status, code)
        assert "nknown" in r.json()["msg"]
    assert len(orders_report(sim)["open"]) == 3  # every one of them executed


def test_ws_api_order_frames_lost_late_or_closed_in_flight(sim) -> None:
    bid, _ = best(sim)

    async def send_and_wait(cid: str, timeout_s: float = 1.0):
        async with connect(sim.urls["ws_api"]) as api:
            await api.send(json.dumps({"id": 1, "method": "order.place", "params": ws_order(bid, cid)}))
            try:
                return json.loads(await asyncio.wait_for(api.recv(), timeout_s))
            except TimeoutError:
                return "timeout"
            except ConnectionClosed:
                return "closed"

    faults(sim, lose_order_every=1)
    assert run(send_and_wait("lost")) == "timeout"
    faults(sim, late_order_every=1, late_order_ms=600)
    assert run(send_and_wait("late", 0.3)) == "timeout"
    assert "late" not in orders_report(sim)["open"]  # not yet at the venue ...
    time.sleep(0.8)
    assert "late" in orders_report(sim)["open"]  # ... and then it is
    faults(sim, close_ws_api_every=1)
    assert run(send_and_wait("closed")) == "closed"
    rep = orders_report(sim)
    assert "closed" in rep["open"] and "lost" not in rep["open"]
    assert rep["fault_counts"] == {"lost": 1, "late": 1, "closed": 1, "user_duplicated": 0, "user_reordered": 0}
    assert [r[1] for r in rep["requests"]].count("order.place") == 2  # lost frames never reach the venue


def test_user_events_duplicated_and_reordered(sim) -> None:
    key = rest(sim, "POST", "/fapi/v1/listenKey").json()["listenKey"]

    async def go(n_events: int):
        async with connect(sim.urls["ws"] + f"/private/ws/{key}") as user:
            await asyncio.sleep(0.1)
            for _ in range(2):
                place(sim, type="MARKET", timeInForce="GTC", quantity="0.04")  # 6 USDT: above the minimum notional
            out = []
            while len(out) < n_events:
                out.append(json.loads(await asyncio.wait_for(user.recv(), 5)))
            return out

    plain = [e["e"] for e in run(go(4))]  # two market orders' events, as the venue sends them
    faults(sim, duplicate_user_every=1)
    events = run(go(2 * len(plain)))
    assert [e["e"] for e in events[::2]] == plain and events[0] == events[1]  # each one twice
    faults(sim, reorder_user_every=1)
    events = run(go(len(plain)))
    kinds = [e["e"] for e in events]
    assert sorted(kinds) == sorted(plain) and kinds != plain  # the same events, another order ...
    trade_times = [(e["o"]["i"], e["o"]["T"]) for e in events if e["e"] == "ORDER_TRADE_UPDATE"]
    assert trade_times == sorted(trade_times)  # ... but events of one kind keep theirs (as on Binance)
    counts = orders_report(sim)["fault_counts"]
    assert counts["user_duplicated"] >= len(plain) and counts["user_reordered"] >= 1


def test_duplicate_client_ids_are_reported(sim) -> None:
    assert place(sim, type="MARKET", timeInForce="GTC", newClientOrderId="twice").status_code == 200
    assert place(sim, type="MARKET", timeInForce="GTC", newClientOrderId="twice").status_code == 200
    rep = orders_report(sim)
    assert rep["duplicates"] == {"twice": 2} and rep["client_ids"] == 1 and rep["orders"] == 2
    assert rep["position_lots"] == 20


def test_disconnect_hook_and_silent_expiry(sim) -> None:
    key = rest(sim, "POST", "/fapi/v1/listenKey").json()["listenKey"]

    async def go():
        async with connect(sim.urls["ws"] + f"/private/ws/{key}") as user, connect(sim.urls["ws_api"]) as api:
            await asyncio.sleep(0.1)
            r = requests.post(sim.urls["rest"] + "/sim/disconnect", data='{"route": "private"}', timeout=5)
            assert r.json()["closed"] == 1
            try:
                await asyncio.wait_for(user.recv(), 5)
                user_dropped = False
            except ConnectionClosed:
                user_dropped = True
            await api.send(json.dumps({"id": 1, "method": "ping", "params": {}}))
            alive = json.loads(await api.recv())["status"] == 200  # other routes untouched
            return user_dropped, alive

    assert run(go()) == (True, True)
    assert requests.post(sim.urls["rest"] + "/sim/disconnect", data='{"route": "moon"}', timeout=5).status_code == 400
    r = requests.post(sim.urls["rest"] + "/sim/expireListenKey", data='{"silent": true}', timeout=5)
    assert r.status_code == 200
    assert rest(sim, "PUT", "/fapi/v1/listenKey").json()["code"] == -1125  # learnt from the keep-alive


def test_countdown_cancels_are_counted() -> None:
    st = start_server()
    try:
        bid, _ = best(st)
        place(st, price=f"{bid - 2:.2f}")
        rest(st, "POST", "/fapi/v1/countdownCancelAll", {"symbol": "SOLUSDT", "countdownTime": 200}, signed=True)
        time.sleep(0.6)
        rep = orders_report(st)
        assert rep["open"] == [] and rep["countdown_cancels"] == 1
    finally:
        st.close()


def test_new_fault_fields_are_the_configs() -> None:
    f = Faults()
    for name in ("clock_skew_ms", "rate_limit_every", "rate_limit_code", "retry_after_ms", "lose_order_every",
                 "late_order_every", "late_order_ms", "close_ws_api_every", "duplicate_user_every",
                 "reorder_user_every", "unknown_code"):
        assert hasattr(f, name)
    assert f.rate_limit_code == -1015 and f.unknown_code == -1000 and auth.TEST_API_KEY
