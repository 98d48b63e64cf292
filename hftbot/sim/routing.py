"""Request routing: REST requests and WS API frames → authentication, rate limits → an endpoint.

`Router.rest(method, target, body, headers)` and `Router.ws_api(frame, session)` take what arrived
and return what to send, never raising: every refusal is Binance's error body with its code and
HTTP status. The pipeline is the same for both faces: parse the parameters (REST: query plus
form body; WS API: the `params` object, values turned into the strings a query would carry),
find the route (method and path, or WS API method with an optional `v2/` prefix), check the
API key and, for SIGNED routes, the timestamp / recvWindow and the signature (HMAC or Ed25519 over
the payload as sent; a WS API session authenticated by `session.logon` may omit them), charge the
request's weight (and one order for order requests), then call the endpoint.

The route tables name each endpoint's weight, security and whether it counts as an order; the
endpoints live with their job (`marketdata`, `orders`, `positions`, `userstream`, `ratelimit`).
Pure: the time comes in through `now_ms`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import parse_qsl

import orjson

from hftbot.sim import auth
from hftbot.sim.errors import UNKNOWN_MSG, ApiError, UnknownStatus, api_error, mandatory, param_str
from hftbot.sim.marketdata import MarketDesk, depth_weight
from hftbot.sim.orders import OrderDesk
from hftbot.sim.positions import AccountDesk
from hftbot.sim.ratelimit import RateLimiter
from hftbot.sim.userstream import ListenKeys

Endpoint = Callable[[dict], object]


class Route(NamedTuple):
    weight: int | Callable[[dict], int]  # a function of the parameters for depth
    security: str  # NONE | KEY (API key) | SIGNED (key, timestamp and signature)
    endpoint: Endpoint | None  # None: handled by the router (WS API session methods)
    order: bool  # counts on the ORDERS limits


def rest_routes(m: MarketDesk, o: OrderDesk, a: AccountDesk, k: ListenKeys, rl: RateLimiter) -> dict:
    """(method, path) → Route."""
    return {
        ("GET", "/fapi/v1/ping"): Route(1, "NONE", m.ep_ping, False),
        ("GET", "/fapi/v1/time"): Route(1, "NONE", m.ep_time, False),
        ("GET", "/fapi/v1/exchangeInfo"): Route(1, "NONE", m.ep_exchange_info, False),
        ("GET", "/fapi/v1/depth"): Route(depth_weight, "NONE", m.ep_depth, False),
        ("GET", "/fapi/v1/ticker/bookTicker"): Route(2, "NONE", m.ep_book_ticker, False),
        ("POST", "/fapi/v1/order"): Route(0, "SIGNED", o.ep_new, True),
        ("PUT", "/fapi/v1/order"): Route(0, "SIGNED", o.ep_modify, True),
        ("DELETE", "/fapi/v1/order"): Route(1, "SIGNED", o.ep_cancel, False),
        ("GET", "/fapi/v1/order"): Route(1, "SIGNED", o.ep_get, False),
        ("GET", "/fapi/v1/openOrders"): Route(1, "SIGNED", o.ep_open_orders, False),
        ("GET", "/fapi/v1/openOrder"): Route(1, "SIGNED", o.ep_open_order, False),
        ("GET", "/fapi/v1/allOrders"): Route(5, "SIGNED", o.ep_all_orders, False),
        ("GET", "/fapi/v1/userTrades"): Route(5, "SIGNED", o.ep_user_trades, False),
        ("DELETE", "/fapi/v1/allOpenOrders"): Route(1, "SIGNED", o.ep_cancel_all, False),
        ("POST", "/fapi/v1/countdownCancelAll"): Route(10, "SIGNED", o.ep_countdown, False),
        ("POST", "/fapi/v1/listenKey"): Route(1, "KEY", k.ep_new, False),
        ("PUT", "/fapi/v1/listenKey"): Route(1, "KEY", k.ep_ping, False),
        ("DELETE", "/fapi/v1/listenKey"): Route(1, "KEY", k.ep_stop, False),
        ("GET", "/fapi/v2/positionRisk"): Route(5, "SIGNED", a.ep_position_v2, False),
        ("GET", "/fapi/v3/positionRisk"): Route(5, "SIGNED", a.ep_position_v3, False),
        ("GET", "/fapi/v1/leverageBracket"): Route(1, "SIGNED", a.ep_leverage_bracket, False),
        ("GET", "/fapi/v2/balance"): Route(5, "SIGNED", a.ep_balance, False),
        ("GET", "/fapi/v3/balance"): Route(5, "SIGNED", a.ep_balance, False),
        ("GET", "/fapi/v2/account"): Route(5, "SIGNED", a.ep_account, False),
        ("GET", "/fapi/v3/account"): Route(5, "SIGNED", a.ep_account, False),
        ("GET", "/fapi/v1/commissionRate"): Route(20, "SIGNED", a.ep_commission, False),
        ("POST", "/fapi/v1/leverage"): Route(1, "SIGNED", a.ep_leverage, False),
        ("POST", "/fapi/v1/marginType"): Route(1, "SIGNED", a.ep_margin_type, False),
        ("GET", "/fapi/v1/positionSide/dual"): Route(30, "SIGNED", a.ep_dual, False),
        ("GET", "/fapi/v1/multiAssetsMargin"): Route(30, "SIGNED", a.ep_multi_assets, False),
        ("GET", "/fapi/v1/rateLimit/order"): Route(1, "SIGNED", rl.ep_rate_limit_order, False),
    }


def ws_routes(m: MarketDesk, o: OrderDesk, a: AccountDesk, k: ListenKeys) -> dict:
    """WS API method → Route."""
    return {
        "depth": Route(depth_weight, "NONE", m.ep_depth, False),
        "ticker.book": Route(2, "NONE", m.ep_book_ticker, False),
        "time": Route(1, "NONE", m.ep_time, False),
        "ping": Route(1, "NONE", m.ep_ping, False),
        "session.logon": Route(2, "NONE", None, False),
        "session.status": Route(2, "NONE", None, False),
        "session.logout": Route(2, "NONE", None, False),
        "order.place": Route(0, "SIGNED", o.ep_new, True),
        "order.modify": Route(1, "SIGNED", o.ep_modify, True),
        "order.cancel": Route(1, "SIGNED", o.ep_cancel, False),
        "order.status": Route(1, "SIGNED", o.ep_get, False),
        "account.position": Route(5, "SIGNED", a.ep_position_v2, False),
        "account.balance": Route(5, "SIGNED", a.ep_balance, False),
        "account.status": Route(5, "SIGNED", a.ep_account, False),
        "userDataStream.start": Route(1, "KEY", k.ep_new, False),
        "userDataStream.ping": Route(1, "KEY", k.ep_ping, False),
        "userDataStream.stop": Route(1, "KEY", k.ep_stop, False),
    }


@dataclass
class Session:
    """One WS API connection's state (logon)."""

    api_key: str | None = None
    since_ms: int = 0
    connected_ms: int = 0


class Router:
    """Both API faces of the venue, from bytes in to bytes out."""

    def __init__(
        self,
        rest: dict,
        ws: dict,
        keys: auth.KeyRing,
        limiter: RateLimiter,
        max_recv_window_ms: Callable[[], int],
        now_ms: Callable[[], int],
        counters: dict[str, int],
    ) -> None:
        self.rest_table = rest
        self.ws_table = ws
        self.rest_paths = {path for _, path in rest}
        self.keys = keys
        self.limiter = limiter
        self.max_recv_window_ms = max_recv_window_ms
        self.now_ms = now_ms
        self.counters = counters

    # -- authentication -----------------------------------------------------------------------------
    def check_time(self, params: dict, now_ms: int) -> None:
        ts = params.get("timestamp")
        if ts is None or ts == "":
            raise mandatory("timestamp")
        try:
            ts = int(ts)
        except (TypeError, ValueError):
            raise mandatory("timestamp") from None
        try:
            rw = int(params.get("recvWindow", 5000))
        except (TypeError, ValueError):
            raise mandatory("recvWindow") from None
        limit = self.max_recv_window_ms()
        if rw <= 0 or rw > limit:
            raise api_error(-1131, f"recvWindow must be less than {limit}.")
        if ts >= now_ms + 1000:
            raise api_error(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now_ms - ts > rw:
            raise api_error(-1021, "Timestamp for this request is outside of the recvWindow.")

    def check_key(self, api_key: str | None) -> str:
        if not api_key:
            raise api_error(-2014, "API-key format invalid.")
        if not self.keys.known(api_key):
            raise api_error(-2015, "Invalid API-key, IP, or permissions for action.")
        return api_key

    def _charge(self, route: Route, params: dict, now_ms: int) -> None:
        weight = route.weight(params) if callable(route.weight) else route.weight
        self.limiter.charge(weight, route.order, now_ms)

    # -- REST -----------------------------------------------------------------------------------------
    def rest(self, method: str, target: str, body: str, headers: dict[str, str]) -> tuple[int, bytes, dict]:
        """Answer one HTTP request: (status, JSON body, extra headers). Never raises."""
        self.counters["requests"] += 1
        path, _, query = target.partition("?")
        now = self.now_ms()
        orders = False
        try:
            if body and "json" in headers.get("content-type", ""):
                raise api_error(-1102, "Request body must be application/x-www-form-urlencoded.")
            params: dict[str, str] = {}
            for text in (query, body):
                for k, v in parse_qsl(text, keep_blank_values=True):
                    params[k] = v
            route = self.rest_table.get((method, path))
            if route is None:
                if path in self.rest_paths:
                    raise ApiError(-1000, f"Method {method} is not allowed on {path}.", 405)
                raise ApiError(-5000, f"Path {path}, Method {method} is invalid", 404)
            orders = route.order
            if route.security in ("SIGNED", "KEY"):
                key = self.check_key(headers.get("x-mbx-apikey"))
            if route.security == "SIGNED":
                payload, sig = auth.rest_payload(query, body)
                if not sig:
                    raise mandatory("signature")
                self.check_time(params, now)
                if not self.keys.verify(key, [payload], sig):
                    raise api_error(-1022, "Signature for this request is not valid.")
            self._charge(route, params, now)
            status, out = 200, orjson.dumps(route.endpoint(params))
        except ApiError as e:
            self.counters["errors"] += 1
            status, out = e.status, orjson.dumps({"code": e.code, "msg": e.msg})
        except UnknownStatus:
            status, out = 503, orjson.dumps({"code": -1000, "msg": UNKNOWN_MSG})
        return status, out, self.limiter.headers(now, orders)

    # -- WS API ---------------------------------------------------------------------------------------
    def ws_api(self, text: str | bytes, session: Session) -> bytes:
        """Answer one WS API request frame. Never raises."""
        self.counters["requests"] += 1
        now = self.now_ms()
        rid = None
        orders = False
        show_limits = True
        try:
            try:
                req = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise ApiError(-1000, "Invalid JSON request.", 400) from None
            if not isinstance(req, dict):
                raise ApiError(-1000, "Invalid JSON request.", 400)
            rid = req.get("id")  # echoed as sent: integer, string or null
            method = req.get("method")
            params = req.get("params") or {}
            if not isinstance(method, str) or not isinstance(params, dict):
                raise mandatory("method")
            if "returnRateLimits" in params:  # part of the signed payload: read it, keep it
                show_limits = params["returnRateLimits"] not in (False, "false")
            name = method.split("/", 1)[1] if method.startswith("v2/") else method
            route = self.ws_table.get(name)
            if route is None:
                raise ApiError(-1000, f"Unknown method '{method}'.", 400)
            orders = route.order
            if route.security in ("SIGNED", "KEY"):
                self._ws_auth(route, params, session, now)
            if name == "session.logon":
                result = self._session_logon(params, session, now)
            elif name in ("session.status", "session.logout"):
                result = self._session_status(session, now, logout=name == "session.logout")
            else:
                self._charge(route, params, now)
                result = route.endpoint({k: param_str(v) for k, v in params.items()})
            resp: dict = {"id": rid, "status": 200, "result": result}
        except ApiError as e:
            self.counters["errors"] += 1
            resp = {"id": rid, "status": e.status, "error": {"code": e.code, "msg": e.msg}}
        except UnknownStatus:
            resp = {"id": rid, "status": 503, "error": {"code": -1000, "msg": UNKNOWN_MSG}}
        if show_limits:
            resp["rateLimits"] = self.limiter.rate_limits(now, orders)
        return orjson.dumps(resp)

    def _ws_auth(self, route: Route, params: dict, session: Session, now: int) -> None:
        has_sig = "signature" in params
        if route.security == "SIGNED" and session.api_key and not has_sig and "apiKey" not in params:
            return  # authenticated by session.logon
        key = self.check_key(params.get("apiKey"))
        if route.security == "SIGNED":
            self._verify_ws(key, params, now)

    def _verify_ws(self, key: str, params: dict, now: int) -> None:
        if "signature" not in params:
            raise mandatory("signature")
        self.check_time(params, now)
        if not self.keys.verify(key, auth.ws_payloads(params), str(params["signature"])):
            raise api_error(-1022, "Signature for this request is not valid.")

    def _session_logon(self, params: dict, session: Session, now: int) -> dict:
        key = self.check_key(params.get("apiKey"))
        if key not in self.keys.ed25519:
            raise api_error(-4056, "HMAC_SHA256 API key is not supported.")
        self._verify_ws(key, params, now)
        session.api_key = key
        session.since_ms = now
        return self._session_status(session, now)

    def _session_status(self, session: Session, now: int, logout: bool = False) -> dict:
        out = {
            "apiKey": session.api_key,
            "authorizedSince": session.since_ms or None,
            "connectedSince": session.connected_ms,
            "returnRateLimits": True,
            "serverTime": now,
        }
        if logout:
            session.api_key = None
            session.since_ms = 0
            out["apiKey"] = None
            out["authorizedSince"] = None
        return out
