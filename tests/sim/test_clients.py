"""Real third-party clients, unmodified, pointed at the simulator's URLs.

The official SDK `binance-sdk-derivatives-trading-usds-futures` (REST, WebSocket streams on the
`/market`, `/public` and `/private` routes, WS API; it sends uuid4 string ids), its legacy
predecessor `binance-futures-connector` (REST `UMFutures`, `UMFuturesWebsocketClient`) and ccxt
`binanceusdm` (REST, and ccxt.pro for streams, the WS API and the user stream; integer ids) must
work as they do against Binance: only base URLs and the documented test keys change.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest

from hftbot.sim import auth

SYMBOL = "SOL/USDT:USDT"


def _sdk(urls: dict):
    """The official SDK pointed at the simulator: each of its three configurations takes a base URL
    (the stream client appends `/stream` and then the route, `/public/stream` etc., itself)."""
    from binance_common.configuration import (
        ConfigurationRestAPI,
        ConfigurationWebSocketAPI,
        ConfigurationWebSocketStreams,
    )
    from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (
        DerivativesTradingUsdsFutures,
    )

    keys = {"api_key": auth.TEST_API_KEY, "api_secret": auth.TEST_API_SECRET}
    return DerivativesTradingUsdsFutures(
        # retries=0: a timed-out order must not be sent twice behind the test's back
        config_rest_api=ConfigurationRestAPI(**keys, base_path=urls["rest"], retries=0, timeout=10_000),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=urls["ws"]),
        config_ws_api=ConfigurationWebSocketAPI(**keys, stream_url=urls["ws_api"]),
    )


def _wait_user_stream(served) -> None:
    """Until the server holds the user-data subscription (clients do not wait for the ACK)."""
    for _ in range(200):
        if served.status()["user_streams"]:
            return
        time.sleep(0.05)
    raise AssertionError("the user-data subscription never reached the server")


def test_official_sdk_conformance_steps(served) -> None:
    """Against `python -m hftbot.sim serve`: exchange info, time, depth, the diff stream's U/u/pu
    chain synced to a snapshot, a GTX order placed and cancelled, a market fill seen in the user
    stream and in the position, then flattened."""
    from binance_sdk_derivatives_trading_usds_futures.rest_api.models import (
        NewOrderReduceOnlyEnum,
        NewOrderSideEnum,
        NewOrderTimeInForceEnum,
        NewOrderTypeEnum,
    )

    client = _sdk(served.urls)
    r = client.rest_api
    assert abs(r.check_server_time().data().server_time - time.time() * 1000) < 5000
    (info,) = r.exchange_information().data().symbols
    filters = {f.filter_type: f for f in info.filters}
    assert info.symbol == "SOLUSDT" and filters["PRICE_FILTER"].tick_size == "0.01"
    assert filters["LOT_SIZE"].step_size == "0.01"
    book = r.order_book(symbol="SOLUSDT", limit=5).data()
    assert len(book.bids) == 5 and float(book.bids[0][0]) < float(book.asks[0][0])
    key = r.start_user_data_stream().data().listen_key

    async def go():
        conn = await client.websocket_streams.create_connection()
        diffs, user = [], []
        try:
            h = await conn.diff_book_depth_streams(symbol="solusdt", update_speed="100ms")
            h.on("message", diffs.append)
            u = await conn.user_data(listenKey=key)
            u.on("message", user.append)
            await asyncio.to_thread(_wait_user_stream, served)  # its SUBSCRIBE carried a string id
            await asyncio.sleep(0.5)
            snap = r.order_book(symbol="SOLUSDT", limit=1000).data()
            bid = float(snap.bids[0][0])
            gtx = r.new_order(
                symbol="SOLUSDT",
                side=NewOrderSideEnum.BUY,
                type=NewOrderTypeEnum.LIMIT,
                time_in_force=NewOrderTimeInForceEnum.GTX,
                quantity=0.1,
                price=round(bid - 1, 2),
            ).data()
            cancelled = r.cancel_order(symbol="SOLUSDT", order_id=gtx.order_id).data()
            fill = r.new_order(
                symbol="SOLUSDT", side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.MARKET, quantity=0.1
            ).data()
            for _ in range(400):  # (a busy machine: diffs after the snapshot may take seconds to come)
                after_snap = sum(d.u >= snap.last_update_id for d in diffs)
                if sum(_trade(e, fill.order_id) for e in user) and after_snap >= 6:
                    break
                await asyncio.sleep(0.05)
            (pos,) = r.position_information_v3(symbol="SOLUSDT").data()
            flat = r.new_order(
                symbol="SOLUSDT",
                side=NewOrderSideEnum.SELL,
                type=NewOrderTypeEnum.MARKET,
                quantity=0.1,
                reduce_only=NewOrderReduceOnlyEnum.TRUE,
            ).data()
            after = r.position_information_v3(symbol="SOLUSDT").data()
            return snap, diffs, user, gtx, cancelled, fill, pos, flat, after
        finally:
            await conn.close_connection(close_session=True)

    snap, diffs, user, gtx, cancelled, fill, pos, flat, after = asyncio.run(asyncio.wait_for(go(), 60))
    # the documented sync: drop u < lastUpdateId, the first kept straddles it, then pu == previous u
    kept = [d for d in diffs if d.u >= snap.last_update_id]
    assert kept and kept[0].U <= snap.last_update_id <= kept[0].u
    assert len(diffs) >= 6 and all(b.pu == a.u and a.u < b.U for a, b in itertools.pairwise(diffs))
    assert gtx.status == "NEW" and gtx.time_in_force == "GTX" and cancelled.status == "CANCELED"
    states = [_order(e) for e in user if _order(e) is not None]
    assert ("NEW", gtx.order_id) in [(o.X, o.i) for o in states]
    assert ("CANCELED", gtx.order_id) in [(o.X, o.i) for o in states]
    assert any(_trade(e, fill.order_id) for e in user)
    assert pos.position_amt == "0.10" and float(pos.entry_price) > 0
    assert flat.reduce_only is True and after == []


def _order(event):
    """The ORDER_TRADE_UPDATE order body of a parsed user-stream event, else None."""
    inner = getattr(event, "actual_instance", None)
    o = getattr(inner, "o", None)
    return o if getattr(o, "X", None) is not None else None


def _trade(event, order_id: int) -> bool:
    o = _order(event)
    return o is not None and o.i == order_id and o.x == "TRADE"


def test_official_sdk_ws_api_places_and_cancels_with_string_ids(served) -> None:
    async def go():
        api = await _sdk(served.urls).websocket_api.create_connection()
        try:
            book = await api.order_book(symbol="SOLUSDT", limit=5)
            bid = float(book.data().result.additional_properties["bids"][0][0])
            placed = await api.new_order(
                symbol="SOLUSDT", side="BUY", type="LIMIT", time_in_force="GTX", quantity=0.1, price=bid - 1
            )
            done = await api.cancel_order(symbol="SOLUSDT", order_id=placed.data().result.order_id)
            return book.data(), placed.data(), done.data()
        finally:
            await api.close_connection(close_session=True)

    book, placed, done = asyncio.run(asyncio.wait_for(go(), 60))
    assert isinstance(book.id, str) and len(book.id) == 36  # a uuid4, echoed as a string
    assert placed.status == 200 and placed.result.status == "NEW" and placed.result.time_in_force == "GTX"
    assert done.result.status == "CANCELED" and done.result.order_id == placed.result.order_id


def test_binance_connector_rest_trades_and_reads_account(sim) -> None:
    from binance.um_futures import UMFutures

    c = UMFutures(key=auth.TEST_API_KEY, secret=auth.TEST_API_SECRET, base_url=sim.urls["rest"])
    assert abs(c.time()["serverTime"] - time.time() * 1000) < 5000
    assert c.exchange_info()["symbols"][0]["symbol"] == "SOLUSDT"
    bid = float(c.depth("SOLUSDT", limit=5)["bids"][0][0])
    o = c.new_order(
        symbol="SOLUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity=0.1, price=round(bid - 1, 2)
    )
    assert o["status"] == "NEW"
    assert c.query_order(symbol="SOLUSDT", orderId=o["orderId"])["status"] == "NEW"
    assert c.cancel_order(symbol="SOLUSDT", orderId=o["orderId"])["status"] == "CANCELED"
    assert len(c.new_listen_key()["listenKey"]) == 64
    assert c.get_position_risk(symbol="SOLUSDT") == []  # v3: only symbols with a position or order
    assert c.leverage_brackets(symbol="SOLUSDT")[0]["symbol"] == "SOLUSDT"
    assert c.balance()[0]["asset"] == "USDT"


def test_binance_connector_websocket_streams_diffs_and_user_data(sim) -> None:
    from binance.um_futures import UMFutures
    from binance.websocket.um_futures.websocket_client import UMFuturesWebsocketClient

    got: list[dict] = []
    user: list[dict] = []
    md = UMFuturesWebsocketClient(
        stream_url=sim.urls["ws"] + "/public", on_message=lambda _, m: got.append(json.loads(m))
    )
    c = UMFutures(key=auth.TEST_API_KEY, secret=auth.TEST_API_SECRET, base_url=sim.urls["rest"])
    key = c.new_listen_key()["listenKey"]
    ud = UMFuturesWebsocketClient(
        stream_url=sim.urls["ws"] + "/private", on_message=lambda _, m: user.append(json.loads(m))
    )
    try:
        md.diff_book_depth(symbol="solusdt", speed=100)
        ud.user_data(listen_key=key)
        deadline = time.time() + 10
        while time.time() < deadline and (sum("U" in m for m in got) < 3 or not user):
            time.sleep(0.1)
            if not any("e" in m for m in user) and user:
                bid = float(c.depth("SOLUSDT", limit=5)["bids"][0][0])
                c.new_order(
                    symbol="SOLUSDT",
                    side="BUY",
                    type="LIMIT",
                    timeInForce="GTC",
                    quantity=0.1,
                    price=round(bid - 1, 2),
                )
                user.append({"placed": True})
    finally:
        md.stop()
        ud.stop()
    diffs = [m for m in got if m.get("e") == "depthUpdate"]
    assert got[0] == {"result": None, "id": got[0]["id"]}
    assert len(diffs) >= 3 and all(b["pu"] == a["u"] for a, b in itertools.pairwise(diffs))
    assert any(m.get("e") == "ORDER_TRADE_UPDATE" for m in user) or any("placed" in m for m in user)


def _ccxt_urls(ex, urls: dict) -> None:
    api = ex.urls["api"]
    for k, v in list(api.items()):
        if isinstance(v, str) and "fapi.binance.com" in v:
            api[k] = v.replace("https://fapi.binance.com", urls["rest"])
    if isinstance(api.get("ws"), dict):
        api["ws"]["linear"] = urls["ws"] + "/ws"
        api["ws"]["ws-api"]["linear"] = urls["ws_api"]


def _ccxt_config() -> dict:
    # fetchCurrencies would call the spot wallet API (sapi), which a futures venue does not serve
    return {
        "apiKey": auth.TEST_API_KEY,
        "secret": auth.TEST_API_SECRET,
        "options": {"fetchCurrencies": False},
    }


def test_ccxt_rest_loads_markets_and_trades(sim) -> None:
    ccxt = pytest.importorskip("ccxt")
    ex = ccxt.binanceusdm(_ccxt_config())
    _ccxt_urls(ex, sim.urls)
    markets = ex.load_markets()
    m = markets[SYMBOL]
    assert m["precision"]["price"] == 0.01 and m["limits"]["cost"]["min"] == 5
    assert abs(ex.fetch_time() - time.time() * 1000) < 5000
    ob = ex.fetch_order_book(SYMBOL, 5)
    o = ex.create_order(SYMBOL, "limit", "buy", 0.1, ob["bids"][0][0] - 1)
    assert o["status"] == "open"
    assert ex.fetch_order(o["id"], SYMBOL)["status"] == "open"
    assert ex.cancel_order(o["id"], SYMBOL)["status"] == "canceled"
    mkt = ex.create_order(SYMBOL, "market", "buy", 0.5)
    assert ex.fetch_order(mkt["id"], SYMBOL)["status"] == "closed"
    (pos,) = ex.fetch_positions([SYMBOL])
    assert pos["contracts"] == 0.5 and pos["side"] == "long"
    assert ex.fetch_balance()["USDT"]["total"] < 10000  # the taker fee was paid
    assert ex.fetch_leverage_tiers([SYMBOL])[SYMBOL][0]["maxLeverage"] == 75


def test_ccxt_pro_streams_book_and_trades_over_ws_api(sim) -> None:
    pytest.importorskip("ccxt")
    import ccxt.pro as ccxtpro

    async def go():
        ex = ccxtpro.binanceusdm(_ccxt_config())
        _ccxt_urls(ex, sim.urls)
        try:
            await ex.load_markets()
            for _ in range(3):
                ob = await asyncio.wait_for(ex.watch_order_book(SYMBOL), 15)
            trades = await asyncio.wait_for(ex.watch_trades(SYMBOL), 15)
            o = await asyncio.wait_for(
                ex.create_order_ws(SYMBOL, "limit", "buy", 0.1, ob["bids"][0][0] - 1), 15
            )
            watch = asyncio.ensure_future(ex.watch_orders(SYMBOL))
            for _ in range(100):  # until ccxt's user-data connection is subscribed on the server
                if sim.server.user_subs:
                    break
                await asyncio.sleep(0.05)
            c = await asyncio.wait_for(ex.cancel_order_ws(o["id"], SYMBOL), 15)
            seen = await asyncio.wait_for(watch, 15)
            return ob, trades, o, c, seen
        finally:
            await ex.close()

    ob, trades, o, c, seen = asyncio.run(go())
    assert ob["bids"][0][0] < ob["asks"][0][0] and ob["nonce"] > 0
    assert trades and trades[0]["price"] > 0
    assert o["status"] == "open" and c["status"] == "canceled"
    assert seen[-1]["status"] == "canceled"


def test_ccxt_conformance_steps(served) -> None:
    """Against `python -m hftbot.sim serve`, ccxt.pro (integer ids): exchange info (markets), time,
    depth, the diff stream (ccxt syncs it to a snapshot and raises on any U/u/pu break), a GTX
    (post-only) order placed and cancelled, a market fill seen in the user stream and in the
    position, then flattened."""
    pytest.importorskip("ccxt")
    import ccxt.pro as ccxtpro

    async def go():
        ex = ccxtpro.binanceusdm(_ccxt_config())
        _ccxt_urls(ex, served.urls)
        seen: list[dict] = []

        async def collect() -> None:
            while True:
                seen.extend(await ex.watch_orders(SYMBOL))

        watcher = None
        try:
            markets = await ex.load_markets()
            server_ms = await ex.fetch_time()
            snap = await ex.fetch_order_book(SYMBOL, 5)
            nonces = []
            for _ in range(6):
                nonces.append((await asyncio.wait_for(ex.watch_order_book(SYMBOL), 15))["nonce"])
            watcher = asyncio.ensure_future(collect())
            await asyncio.to_thread(_wait_user_stream, served)
            bid = snap["bids"][0][0]
            gtx = await ex.create_order(SYMBOL, "limit", "buy", 0.1, bid - 1, {"postOnly": True})
            cancelled = await ex.cancel_order(gtx["id"], SYMBOL)
            fill = await ex.create_order(SYMBOL, "market", "buy", 0.1)
            for _ in range(200):
                if any(o["id"] == fill["id"] and o["filled"] == 0.1 for o in seen):
                    break
                await asyncio.sleep(0.05)
            (pos,) = await ex.fetch_positions([SYMBOL])
            flat = await ex.create_order(SYMBOL, "market", "sell", 0.1, None, {"reduceOnly": True})
            after = await ex.fetch_positions([SYMBOL])
            return markets, server_ms, snap, nonces, gtx, cancelled, fill, seen, pos, flat, after
        finally:
            if watcher is not None:
                watcher.cancel()
            await ex.close()

    markets, server_ms, snap, nonces, gtx, cancelled, fill, seen, pos, flat, after = asyncio.run(
        asyncio.wait_for(go(), 90)
    )
    assert markets[SYMBOL]["precision"]["price"] == 0.01 and markets[SYMBOL]["limits"]["cost"]["min"] == 5
    assert abs(server_ms - time.time() * 1000) < 5000
    assert len(snap["bids"]) == 5 and snap["bids"][0][0] < snap["asks"][0][0]
    # the book's nonce is the final u of the last diff applied: it only moves forward
    assert all(b >= a for a, b in itertools.pairwise(nonces)) and nonces[-1] > nonces[0], nonces
    assert gtx["status"] == "open" and gtx["postOnly"] and gtx["timeInForce"] == "PO"
    assert cancelled["status"] == "canceled"
    assert (gtx["id"], "canceled") in {(o["id"], o["status"]) for o in seen}  # ccxt updates in place
    assert any(o["id"] == fill["id"] and o["status"] == "closed" and o["filled"] == 0.1 for o in seen)
    assert pos["contracts"] == 0.1 and pos["side"] == "long"
    assert flat["reduceOnly"] is True and not [p for p in after if p["contracts"]]
