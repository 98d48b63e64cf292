"""Real third-party clients, unmodified, pointed at the simulator's URLs.

The official `binance-futures-connector` (REST `UMFutures`, `UMFuturesWebsocketClient`) and ccxt
`binanceusdm` (REST, and ccxt.pro for streams, the WS API and the user stream) must work as they
do against Binance: only base URLs and the documented test keys change.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest

from hftbot.sim import auth

SYMBOL = "SOL/USDT:USDT"


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
