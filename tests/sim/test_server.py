"""Protocol conformance over real sockets: REST, streams, WS API, user stream, errors, faults."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from urllib.parse import urlencode

import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hftbot.sim import auth
from hftbot.sim.venue import Faults, Limits, VenueSettings
from tests.sim.conftest import start_server

KEY = {"X-MBX-APIKEY": auth.TEST_API_KEY}


def signed_query(params: dict, secret: str = auth.TEST_API_SECRET, ts_offset_ms: int = 0) -> str:
    q = urlencode({**params, "timestamp": int(time.time() * 1000) + ts_offset_ms})
    return q + "&signature=" + auth.sign_hmac(secret, q)


def rest(sim, method: str, path: str, params: dict | None = None, signed: bool = False, **kw):
    url = sim.urls["rest"] + path
    if signed:
        url += "?" + signed_query(params or {}, **kw)
    elif params:
        url += "?" + urlencode(params)
    return requests.request(method, url, headers=KEY, timeout=5)


def place(sim, **p):
    base = {"symbol": "SOLUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.10"}
    return rest(sim, "POST", "/fapi/v1/order", {**base, **p}, signed=True)


def best(sim) -> tuple[float, float]:
    d = rest(sim, "GET", "/fapi/v1/depth", {"symbol": "SOLUSDT", "limit": 5}).json()
    return float(d["bids"][0][0]), float(d["asks"][0][0])


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


# -- REST market data -------------------------------------------------------------------------


def test_time_exchange_info_and_depth_shapes(sim) -> None:
    r = rest(sim, "GET", "/fapi/v1/time")
    assert r.status_code == 200 and abs(r.json()["serverTime"] - time.time() * 1000) < 5000
    info = rest(sim, "GET", "/fapi/v1/exchangeInfo").json()
    (s,) = info["symbols"]
    filters = {f["filterType"]: f for f in s["filters"]}
    assert s["symbol"] == "SOLUSDT" and filters["PRICE_FILTER"]["tickSize"] == "0.01"
    assert filters["LOT_SIZE"]["stepSize"] == "0.01" and filters["MIN_NOTIONAL"]["notional"] == "5"
    d = rest(sim, "GET", "/fapi/v1/depth", {"symbol": "SOLUSDT", "limit": 1000})
    body = d.json()
    assert set(body) == {"lastUpdateId", "E", "T", "bids", "asks"}
    assert len(body["bids"]) > 50 and float(body["bids"][0][0]) < float(body["asks"][0][0])
    assert d.headers["X-MBX-USED-WEIGHT-1M"] == "22"  # time 1 + exchangeInfo 1 + depth(1000) 20


def test_depth_errors_have_codes(sim) -> None:
    r = rest(sim, "GET", "/fapi/v1/depth", {"symbol": "BTCUSDT"})
    assert r.status_code == 400 and r.json()["code"] == -1121
    r = rest(sim, "GET", "/fapi/v1/depth", {"symbol": "SOLUSDT", "limit": 7})
    assert r.status_code == 400 and r.json()["code"] == -1130
    r = rest(sim, "GET", "/fapi/v1/nothing")
    assert r.status_code == 404


# -- streams ------------------------------------------------------------------------------------


def test_combined_stream_diff_chain_syncs_with_rest_snapshot(sim) -> None:
    async def go():
        url = sim.urls["ws"] + "/public/stream?streams=solusdt@depth@100ms"
        async with connect(url) as ws:
            buf = [json.loads(await ws.recv()) for _ in range(3)]
            loop = asyncio.get_running_loop()
            snap = await loop.run_in_executor(
                None, lambda: rest(sim, "GET", "/fapi/v1/depth", {"symbol": "SOLUSDT", "limit": 1000}).json()
            )
            for _ in range(15):
                buf.append(json.loads(await ws.recv()))
            return snap, buf

    snap, buf = run(go())
    assert all(m["stream"] == "solusdt@depth@100ms" for m in buf)
    data = [m["data"] for m in buf]
    for a, b in itertools.pairwise(data):
        assert b["pu"] == a["u"]
    last = snap["lastUpdateId"]
    usable = [d for d in data if d["u"] >= last]
    assert usable and usable[0]["U"] <= last <= usable[0]["u"]


def test_wrong_route_is_acknowledged_but_silent(sim) -> None:
    async def go():
        async with connect(sim.urls["ws"] + "/public/ws") as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["solusdt@aggTrade"], "id": 1}))
            ack = json.loads(await ws.recv())
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 1.5)
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
            lst = json.loads(await ws.recv())
        async with connect(sim.urls["ws"] + "/market/ws/solusdt@aggTrade") as ws:
            trade = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return ack, lst, trade

    ack, lst, trade = run(go())
    assert ack == {"result": None, "id": 1}
    assert lst == {"result": ["solusdt@aggTrade"], "id": 2}
    assert trade["e"] == "aggTrade" and set(trade) >= {"a", "p", "q", "f", "l", "T", "m"}


def test_control_ids_are_echoed_with_their_json_type(sim) -> None:
    """uuid4 strings (the official SDK), integers (ccxt) and null are accepted and echoed as sent;
    other JSON types, negative and bool ids are refused with code 2."""
    uid = "0b0c6a5e-3f1d-4c61-9a57-1f7f5c1e2a9b"

    async def go():
        out = []
        async with connect(sim.urls["ws"] + "/public/ws") as ws:
            for msg in (
                {"method": "SUBSCRIBE", "params": ["solusdt@bookTicker"], "id": uid},
                {"method": "LIST_SUBSCRIPTIONS", "id": 7},
                {"method": "GET_PROPERTY", "params": ["combined"], "id": uid + "-p"},
                {"method": "SET_PROPERTY", "params": ["combined", True], "id": None},
                {"method": "UNSUBSCRIBE", "params": ["solusdt@bookTicker"], "id": "u"},
                {"method": "LIST_SUBSCRIPTIONS", "id": 2**63},
            ):
                await ws.send(json.dumps(msg))
                while True:  # skip market data until the reply
                    r = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if "id" in r:
                        out.append(r)
                        break
                await asyncio.sleep(0.12)  # under 10 incoming messages a second
            for bad in (1.5, -1, True, {"a": 1}, [1]):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": bad}))
                while True:
                    r = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if "id" in r or "error" in r:
                        out.append(r)
                        break
                await asyncio.sleep(0.12)  # under 10 incoming messages a second
        async with connect(sim.urls["ws_api"]) as api:
            await api.send(json.dumps({"id": uid, "method": "time", "params": {}}))
            out.append(json.loads(await api.recv()))
            await api.send(json.dumps({"id": 42, "method": "time", "params": {}}))
            out.append(json.loads(await api.recv()))
        return out

    sub, lst, prop, setp, unsub, big, *rest_ = run(go())
    bad, api_str, api_int = rest_[:5], rest_[5], rest_[6]
    assert sub == {"result": None, "id": uid}
    assert lst == {"result": ["solusdt@bookTicker"], "id": 7}
    assert prop == {"result": False, "id": uid + "-p"}
    assert setp == {"result": None, "id": None}
    assert unsub == {"result": None, "id": "u"}
    assert big == {"result": [], "id": 2**63}
    assert all(b == {"error": {"code": 2, "msg": "Invalid request: invalid id"}, "id": None} for b in bad)
    assert api_str["id"] == uid and api_str["status"] == 200
    assert api_int["id"] == 42 and isinstance(api_int["id"], int)


def test_partial_depth_and_book_ticker_shapes(sim) -> None:
    async def go():
        url = sim.urls["ws"] + "/public/stream?streams=solusdt@depth5@100ms/solusdt@bookTicker"
        got: dict[str, dict] = {}
        async with connect(url) as ws:
            while len(got) < 2:
                m = json.loads(await ws.recv())
                got[m["stream"]] = m["data"]
        return got

    got = run(go())
    p = got["solusdt@depth5@100ms"]
    assert p["e"] == "depthUpdate" and len(p["b"]) == 5 and len(p["a"]) == 5 and {"U", "u", "pu"} <= set(p)
    t = got["solusdt@bookTicker"]
    assert t["e"] == "bookTicker" and float(t["b"]) < float(t["a"]) and {"u", "B", "A", "T", "E"} <= set(t)


def test_more_than_ten_messages_a_second_disconnects(sim) -> None:
    async def go():
        async with connect(sim.urls["ws"] + "/public/ws") as ws:
            for i in range(12):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            with pytest.raises(ConnectionClosed) as err:
                for _ in range(50):
                    await asyncio.wait_for(ws.recv(), 5)
            return err.value.rcvd.code

    assert run(go()) == 1008


# -- signed REST ----------------------------------------------------------------------------------


def test_signature_timestamp_and_key_checks(sim) -> None:
    r = rest(sim, "GET", "/fapi/v2/balance", {}, signed=True)
    assert r.status_code == 200 and r.json()[0]["asset"] == "USDT"
    r = rest(sim, "GET", "/fapi/v2/balance", {}, signed=True, secret="wrong")
    assert r.status_code == 400 and r.json()["code"] == -1022
    r = rest(sim, "GET", "/fapi/v2/balance", {}, signed=True, ts_offset_ms=-10_000)
    assert r.status_code == 400 and r.json()["code"] == -1021
    r = rest(sim, "GET", "/fapi/v2/balance", {}, signed=True, ts_offset_ms=5_000)
    assert r.json()["code"] == -1021
    r = requests.get(sim.urls["rest"] + "/fapi/v2/balance?" + signed_query({}), timeout=5)
    assert r.status_code == 401 and r.json()["code"] == -2014


def test_signature_covers_query_plus_body_as_sent(sim) -> None:
    q = urlencode({"symbol": "SOLUSDT", "side": "BUY", "type": "LIMIT"})
    body = urlencode(
        {"timeInForce": "GTC", "quantity": "0.10", "price": "100.00", "timestamp": int(time.time() * 1000)}
    )
    sig = auth.sign_hmac(auth.TEST_API_SECRET, q + body)
    r = requests.post(
        sim.urls["rest"] + "/fapi/v1/order?" + q,
        data=body + "&signature=" + sig,
        headers={**KEY, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "NEW" and r.headers["X-MBX-ORDER-COUNT-10S"] == "1"


def test_order_lifecycle_and_error_codes(sim) -> None:
    bid, ask = best(sim)
    low = f"{bid - 1:.2f}"
    r = place(sim, price=low, newClientOrderId="life-1")
    assert r.status_code == 200, r.text
    oid = r.json()["orderId"]
    assert place(sim, price=low, newClientOrderId="life-1").json()["code"] == -4116
    q = rest(sim, "GET", "/fapi/v1/order", {"symbol": "SOLUSDT", "orderId": oid}, signed=True).json()
    assert q["status"] == "NEW" and q["price"] == low and q["origQty"] == "0.10"
    c = rest(sim, "DELETE", "/fapi/v1/order", {"symbol": "SOLUSDT", "orderId": oid}, signed=True)
    assert c.json()["status"] == "CANCELED"
    again = rest(sim, "DELETE", "/fapi/v1/order", {"symbol": "SOLUSDT", "orderId": oid}, signed=True)
    assert again.status_code == 400 and again.json()["code"] == -2011
    assert place(sim, price=f"{bid:.3f}1").json()["code"] == -1111
    assert place(sim, price=low, quantity="0.01").json()["code"] == -4164
    assert place(sim, price=f"{ask + 0.5:.2f}", timeInForce="GTX").json()["code"] == -5022
    assert place(sim, price=low, quantity="100000").json()["code"] == -2019
    assert place(sim, price=low, type="STOP").json()["code"] == -4120
    assert place(sim, price=low, timeInForce="XYZ").json()["code"] == -1115
    missing = rest(sim, "POST", "/fapi/v1/order", {"symbol": "SOLUSDT", "side": "BUY"}, signed=True)
    assert missing.json()["code"] == -1102
    assert place(sim, price=low, reduceOnly="true").json()["code"] == -2022


def test_market_order_result_fills_and_position_follows(sim) -> None:
    r = place(sim, type="MARKET", quantity="1.00", newOrderRespType="RESULT", timeInForce=None)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "FILLED" and body["executedQty"] == "1.00"
    pos = rest(sim, "GET", "/fapi/v3/positionRisk", {"symbol": "SOLUSDT"}, signed=True).json()
    assert pos[0]["positionAmt"] == "1.00" and float(pos[0]["entryPrice"]) == pytest.approx(
        float(body["avgPrice"])
    )
    close = place(
        sim, side="SELL", type="MARKET", quantity="1.00", reduceOnly="true", newOrderRespType="RESULT"
    )
    assert close.json()["status"] == "FILLED"
    pos = rest(sim, "GET", "/fapi/v2/positionRisk", {"symbol": "SOLUSDT"}, signed=True).json()
    assert pos[0]["positionAmt"] == "0.00"
    br = rest(sim, "GET", "/fapi/v1/leverageBracket", {"symbol": "SOLUSDT"}, signed=True).json()
    assert br[0]["symbol"] == "SOLUSDT" and br[0]["brackets"][0]["bracket"] == 1


def test_order_rate_limit_answers_1015_with_429() -> None:
    st = start_server(venue=VenueSettings(limits=Limits(orders_10s=3)))
    try:
        bid, _ = best(st)
        codes = [place(st, price=f"{bid - 2:.2f}").status_code for _ in range(4)]
        last = place(st, price=f"{bid - 2:.2f}")
        assert codes[:3] == [200, 200, 200] and last.status_code == 429 and last.json()["code"] == -1015
    finally:
        st.close()


def test_countdown_cancel_all_cancels_open_orders(sim) -> None:
    bid, _ = best(sim)
    oid = place(sim, price=f"{bid - 1:.2f}").json()["orderId"]
    r = rest(
        sim, "POST", "/fapi/v1/countdownCancelAll", {"symbol": "SOLUSDT", "countdownTime": 300}, signed=True
    )
    assert r.json() == {"symbol": "SOLUSDT", "countdownTime": "300"}
    deadline = time.time() + 15
    status = "NEW"
    while time.time() < deadline and status == "NEW":
        time.sleep(0.1)
        status = rest(
            sim, "GET", "/fapi/v1/order", {"symbol": "SOLUSDT", "orderId": oid}, signed=True
        ).json()["status"]
    assert status == "CANCELED"


# -- WS API and user stream ------------------------------------------------------------------------------


def _ws_params(params: dict, key: str = auth.TEST_API_KEY) -> dict:
    p = {**params, "apiKey": key, "timestamp": int(time.time() * 1000)}
    payload = auth.ws_payloads(p)[0]
    if key == auth.TEST_ED25519_API_KEY:
        p["signature"] = auth.sign_ed25519(auth.TEST_ED25519_PRIVATE_PEM, payload)
    else:
        p["signature"] = auth.sign_hmac(auth.TEST_API_SECRET, payload)
    return p


def test_ws_api_orders_with_rate_limits_and_user_stream_events(sim) -> None:
    async def go():
        async with connect(sim.urls["ws_api"]) as api:
            await api.send(
                json.dumps(
                    {"id": "k", "method": "userDataStream.start", "params": {"apiKey": auth.TEST_API_KEY}}
                )
            )
            key = json.loads(await api.recv())["result"]["listenKey"]
            async with connect(sim.urls["ws"] + f"/private/ws?listenKey={key}") as user:
                await api.send(
                    json.dumps({"id": 1, "method": "depth", "params": {"symbol": "SOLUSDT", "limit": 5}})
                )
                depth = json.loads(await api.recv())
                bid = float(depth["result"]["bids"][0][0])
                # JSON-typed parameters (numbers, booleans) are accepted and signed as sent
                params = _ws_params(
                    {
                        "symbol": "SOLUSDT",
                        "side": "BUY",
                        "type": "LIMIT",
                        "timeInForce": "GTC",
                        "quantity": 0.1,
                        "price": round(bid - 1, 2),
                        "reduceOnly": False,
                    }
                )
                await api.send(json.dumps({"id": 2, "method": "order.place", "params": params}))
                placed = json.loads(await api.recv())
                oid = placed["result"]["orderId"]
                await api.send(
                    json.dumps(
                        {
                            "id": 3,
                            "method": "order.status",
                            "params": _ws_params({"symbol": "SOLUSDT", "orderId": oid}),
                        }
                    )
                )
                status = json.loads(await api.recv())
                await api.send(
                    json.dumps(
                        {
                            "id": 4,
                            "method": "order.cancel",
                            "params": _ws_params({"symbol": "SOLUSDT", "orderId": oid}),
                        }
                    )
                )
                cancel = json.loads(await api.recv())
                events = [json.loads(await asyncio.wait_for(user.recv(), 5)) for _ in range(2)]
                bad = _ws_params({"symbol": "SOLUSDT", "orderId": oid})
                bad["signature"] = "0" * 64
                await api.send(json.dumps({"id": 5, "method": "order.status", "params": bad}))
                bad_sig = json.loads(await api.recv())
                await api.send(json.dumps({"id": 6, "method": "account.position", "params": _ws_params({})}))
                positions = json.loads(await api.recv())
        return depth, placed, status, cancel, events, bad_sig, positions

    depth, placed, status, cancel, events, bad_sig, positions = run(go())
    assert depth["status"] == 200 and depth["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
    assert placed["status"] == 200, placed
    assert {r["rateLimitType"] for r in placed["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS"}
    assert status["result"]["status"] == "NEW" and cancel["result"]["status"] == "CANCELED"
    assert [e["o"]["x"] for e in events] == ["NEW", "CANCELED"] and events[0]["e"] == "ORDER_TRADE_UPDATE"
    assert bad_sig["status"] == 400 and bad_sig["error"]["code"] == -1022
    assert positions["result"][0]["symbol"] == "SOLUSDT"


def test_session_logon_with_ed25519_then_unsigned_requests(sim) -> None:
    async def go():
        async with connect(sim.urls["ws_api"]) as api:
            await api.send(json.dumps({"id": 1, "method": "account.balance", "params": {}}))
            before = json.loads(await api.recv())
            hm = _ws_params({})
            await api.send(json.dumps({"id": 2, "method": "session.logon", "params": hm}))
            hmac_logon = json.loads(await api.recv())
            await api.send(
                json.dumps(
                    {"id": 3, "method": "session.logon", "params": _ws_params({}, auth.TEST_ED25519_API_KEY)}
                )
            )
            logon = json.loads(await api.recv())
            await api.send(json.dumps({"id": 4, "method": "account.balance", "params": {}}))
            after = json.loads(await api.recv())
        return before, hmac_logon, logon, after

    before, hmac_logon, logon, after = run(go())
    assert before["status"] == 401 and before["error"]["code"] == -2014
    assert hmac_logon["status"] == 400
    assert logon["status"] == 200 and logon["result"]["apiKey"] == auth.TEST_ED25519_API_KEY
    assert after["status"] == 200 and after["result"][0]["asset"] == "USDT"


def test_listen_key_lifecycle_and_1125(sim) -> None:
    k = rest(sim, "POST", "/fapi/v1/listenKey").json()["listenKey"]
    assert rest(sim, "POST", "/fapi/v1/listenKey").json()["listenKey"] == k  # same key, extended
    assert rest(sim, "PUT", "/fapi/v1/listenKey").status_code == 200
    assert rest(sim, "DELETE", "/fapi/v1/listenKey").status_code == 200
    r = rest(sim, "PUT", "/fapi/v1/listenKey")
    assert r.status_code == 400 and r.json()["code"] == -1125


# -- fault injection -------------------------------------------------------------------------------------


def test_dropped_diff_breaks_the_pu_chain_and_duplicates_repeat() -> None:
    st = start_server(venue=VenueSettings(faults=Faults(drop_diff_every=4, duplicate_diff_every=5)))
    try:

        async def go():
            async with connect(st.urls["ws"] + "/public/ws/solusdt@depth@0ms") as ws:
                return [json.loads(await ws.recv()) for _ in range(40)]

        msgs = run(go())
        gaps = sum(1 for a, b in itertools.pairwise(msgs) if b["pu"] != a["u"] and b != a)
        dups = sum(1 for a, b in itertools.pairwise(msgs) if a == b)
        assert gaps >= 3 and dups >= 3
    finally:
        st.close()


def test_unknown_status_503_still_executes_and_injected_reject_code() -> None:
    st = start_server(venue=VenueSettings(faults=Faults(unknown_status_every=2)))
    try:
        bid, _ = best(st)
        assert place(st, price=f"{bid - 1:.2f}", newClientOrderId="u1").status_code == 200
        r = place(st, price=f"{bid - 1:.2f}", newClientOrderId="u2")
        assert r.status_code == 503
        q = rest(st, "GET", "/fapi/v1/order", {"symbol": "SOLUSDT", "origClientOrderId": "u2"}, signed=True)
        assert q.json()["status"] == "NEW"  # it did execute
        requests.post(
            st.urls["rest"] + "/sim/faults",
            data=json.dumps({"reject_code": -2019, "reject_every": 1}),
            timeout=5,
        )
        r = place(st, price=f"{bid - 1:.2f}")
        assert r.status_code == 400 and r.json()["code"] == -2019
    finally:
        st.close()


def test_listen_key_expiry_sends_event() -> None:
    st = start_server(venue=VenueSettings(faults=Faults(expire_listen_key_after_s=1.0)))
    try:
        key = rest(st, "POST", "/fapi/v1/listenKey").json()["listenKey"]

        async def go():
            async with connect(st.urls["ws"] + f"/private/stream?listenKey={key}") as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 5))

        m = run(go())
        assert m["stream"] == key and m["data"]["e"] == "listenKeyExpired" and m["data"]["listenKey"] == key
        assert rest(st, "PUT", "/fapi/v1/listenKey").json()["code"] == -1125
    finally:
        st.close()


def test_disconnect_fault_closes_market_connections() -> None:
    st = start_server(venue=VenueSettings(faults=Faults(disconnect_after_s=0.5)))
    try:

        async def go():
            async with connect(st.urls["ws"] + "/public/ws/solusdt@bookTicker") as ws:
                t0 = time.monotonic()
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                return time.monotonic() - t0

        assert run(go()) < 10  # after 0.5 s, with room for a loaded machine
    finally:
        st.close()


def test_malformed_input_gets_an_error_and_the_server_keeps_serving(sim) -> None:
    async def go():
        async with connect(sim.urls["ws"] + "/public/ws") as ws:
            await ws.send("{not json")
            bad_json = json.loads(await ws.recv())
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [1, 2], "id": 3}))
            bad_params = json.loads(await ws.recv())
        async with connect(sim.urls["ws_api"]) as api:
            await api.send("]]")
            api_bad = json.loads(await api.recv())
            await api.send(json.dumps({"id": 9, "method": "nope", "params": {}}))
            api_unknown = json.loads(await api.recv())
        reader, writer = await asyncio.open_connection("127.0.0.1", int(sim.urls["rest"].rsplit(":", 1)[1]))
        writer.write(b"GARBAGE\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        return bad_json, bad_params, api_bad, api_unknown, raw

    bad_json, bad_params, api_bad, api_unknown, raw = run(go())
    assert bad_json["error"]["code"] == 3 and bad_params["error"]["code"] == 2 and bad_params["id"] == 3
    assert api_bad["status"] == 400 and api_bad["error"]["code"] == -1000
    assert api_unknown["id"] == 9 and api_unknown["status"] == 400
    assert raw.startswith(b"HTTP/1.1 400")
    assert rest(sim, "GET", "/fapi/v1/time").status_code == 200


def test_modify_fills_and_trade_history(sim) -> None:
    bid, ask = best(sim)
    oid = place(sim, price=f"{bid - 1:.2f}", quantity="0.50").json()["orderId"]
    same = rest(
        sim,
        "PUT",
        "/fapi/v1/order",
        {"symbol": "SOLUSDT", "orderId": oid, "side": "BUY", "quantity": "0.50", "price": f"{bid - 1:.2f}"},
        signed=True,
    )
    assert same.json()["code"] == -5027
    bid, ask = best(sim)
    moved = rest(
        sim,
        "PUT",
        "/fapi/v1/order",
        {
            "symbol": "SOLUSDT",
            "orderId": oid,
            "side": "BUY",
            "quantity": "0.50",
            "price": f"{ask + 0.05:.2f}",
        },
        signed=True,
    )
    assert moved.status_code == 200 and moved.json()["status"] in ("FILLED", "PARTIALLY_FILLED")
    trades = rest(
        sim, "GET", "/fapi/v1/userTrades", {"symbol": "SOLUSDT", "orderId": oid}, signed=True
    ).json()
    assert trades and all(t["orderId"] == oid and not t["maker"] for t in trades)
    assert sum(float(t["qty"]) for t in trades) == pytest.approx(float(moved.json()["executedQty"]))
    for t in trades:  # taker fee, exact to the 8 decimals shown
        assert float(t["commission"]) == pytest.approx(float(t["quoteQty"]) * 0.0005, abs=1e-8)
    orders = rest(sim, "GET", "/fapi/v1/allOrders", {"symbol": "SOLUSDT"}, signed=True).json()
    assert oid in [o["orderId"] for o in orders]


def test_request_weight_limit_answers_1003_then_bans_with_418() -> None:
    st = start_server(venue=VenueSettings(limits=Limits(weight_1m=5, ban_after_429=2)))
    try:
        statuses = [rest(st, "GET", "/fapi/v1/time").status_code for _ in range(9)]
        body = rest(st, "GET", "/fapi/v1/time").json()
        assert statuses[:5] == [200] * 5 and statuses[5:7] == [429, 429] and statuses[7] == 418
        assert body["code"] == -1003 and "banned" in body["msg"]
    finally:
        st.close()


def test_delay_fault_slows_answers() -> None:
    st = start_server(venue=VenueSettings(faults=Faults(delay_ms=300)))
    try:
        t0 = time.monotonic()
        assert rest(st, "GET", "/fapi/v1/time").status_code == 200
        assert time.monotonic() - t0 >= 0.3
    finally:
        st.close()
