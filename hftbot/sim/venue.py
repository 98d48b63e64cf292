"""The simulated venue's protocol logic: REST endpoints and WS API methods, without sockets.

`Venue` owns the market (model → matching engine → publisher), the account, API keys, listen
keys, rate limits and fault injection. The server (`hftbot.sim.server`) only moves bytes: it calls
`rest()` / `ws_api()` with what arrived and sends what comes back, and it forwards the market and
user-data messages the venue hands to its two callbacks. Every check the venue makes answers with
the documented Binance error code and HTTP status (see docs/sim.md for the list).

Never does I/O; the wall clock comes in through `clock_ns` so tests and the generator can drive it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import parse_qsl

import orjson

from hftbot.sim import auth
from hftbot.sim.account import Account
from hftbot.sim.market import MarketModel, ModelParams
from hftbot.sim.matching import (
    BUY,
    NEW,
    SELL,
    TRADE,
    FeeModel,
    MatchingEngine,
    Order,
    QueueModel,
    RejectError,
    RiskAverseQueue,
)
from hftbot.sim.streams import MarketPublisher, Message

MS = 1_000_000


class ApiError(Exception):
    """A request the venue refuses: Binance error code, message and HTTP status."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status


def _http_status(code: int) -> int:
    if code in (-1003, -1015):
        return 429
    if code in (-2014, -2015):
        return 401
    return 400


def _err(code: int, msg: str) -> ApiError:
    return ApiError(code, msg, _http_status(code))


@dataclass
class Limits:
    """Rate limits (Binance defaults); tests shrink them to trigger the errors."""

    weight_1m: int = 2400
    orders_10s: int = 300
    orders_1m: int = 1200
    ws_incoming_per_s: int = 10  # market-stream control messages per connection
    ban_after_429: int = 10  # requests refused with 429 in a minute before a 418 ban
    ban_s: float = 120.0


@dataclass
class Faults:
    """Things to break on purpose (all off by default). Counts are 1-based message numbers."""

    drop_diff_every: int = 0  # drop every Nth diff-depth message of each stream (pu gap)
    duplicate_diff_every: int = 0  # send every Nth diff-depth message twice
    disconnect_after_s: float = 0.0  # close market-stream connections after this long
    delay_ms: float = 0.0  # extra delay before market messages and API answers
    unknown_status_every: int = 0  # every Nth order request executes but answers 503 unknown
    expire_listen_key_after_s: float = 0.0  # listen keys expire this soon (0: the real 60 min)
    reject_code: int = 0  # answer order requests with this error code ...
    reject_every: int = 0  # ... every Nth one (1: all)

    @classmethod
    def from_dict(cls, d: dict) -> Faults:
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"sim faults: unknown field(s) {bad}; known: {sorted(known)}")
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in d.items()})


@dataclass
class VenueSettings:
    """How the venue behaves beyond the market model."""

    leverage: int = 20
    wallet_usdt: str = "10000"
    maker_fee: str = "0.0002"
    taker_fee: str = "0.0005"
    queue_model: QueueModel = field(default_factory=RiskAverseQueue)
    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)
    update_id_gap: int = 0  # ids skipped between transactions (as on the real, multi-symbol venue)
    listen_key_validity_s: float = 3600.0
    max_recv_window_ms: int = 60000


_RESP_TYPES = ("ACK", "RESULT")
_ORDER_TYPES = {
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
}
_TIFS = {"GTC", "IOC", "FOK", "GTX", "GTD"}


@dataclass
class _Window:
    interval_ms: int
    start: int = 0
    count: int = 0

    def add(self, now_ms: int, n: int) -> int:
        start = now_ms - now_ms % self.interval_ms
        if start != self.start:
            self.start, self.count = start, 0
        self.count += n
        return self.count

    def peek(self, now_ms: int) -> int:
        return self.count if now_ms - now_ms % self.interval_ms == self.start else 0


@dataclass
class Session:
    """One WS API connection's state (logon)."""

    api_key: str | None = None
    since_ms: int = 0
    connected_ms: int = 0


class Venue:
    """One symbol's simulated exchange: market, account, and the API in front of them."""

    def __init__(
        self,
        params: ModelParams | None = None,
        settings: VenueSettings | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.params = params or ModelParams()
        self.settings = settings or VenueSettings()
        self.clock_ns = clock_ns
        p, s = self.params, self.settings
        self.symbol = p.symbol.upper()
        self.engine = MatchingEngine(
            tick=p.tick,
            lot=p.lot,
            fees=FeeModel(Decimal(s.maker_fee), Decimal(s.taker_fee)),
            queue=s.queue_model,
        )
        self.engine.update_gap = s.update_id_gap
        self.model = MarketModel(p, self.engine, start_ns=clock_ns())
        self.pub = MarketPublisher(self.engine, p.symbol, speeds_ms=())  # speeds start on subscription
        self.fmt = self.pub.fmt
        self.account = Account(
            Decimal(repr(p.tick)), Decimal(repr(p.lot)), Decimal(s.wallet_usdt), s.leverage
        )
        self.keys = auth.KeyRing()
        self.on_market: Callable[[Message], None] = lambda m: None
        self.on_user: Callable[[str, bytes], None] = lambda key, payload: None
        self._listen_key: str | None = None
        self._listen_expiry_ms = 0
        self._listen_counter = 0
        self._weight = _Window(60_000)
        self._orders_10s = _Window(10_000)
        self._orders_1m = _Window(60_000)
        self._refused = _Window(60_000)
        self._banned_until_ms = 0
        self._order_requests = 0
        self._countdown_ms = 0  # countdownCancelAll deadline (0: off)
        self.event_ns = 0  # when the messages now being handed to on_market were due (publish delay)
        self._trades: list[dict] = []  # our fills, as GET /fapi/v1/userTrades shows them
        self.counters = {"requests": 0, "errors": 0, "orders": 0, "events": 0}

    # -- clock & market -----------------------------------------------------------------------

    def now_ms(self) -> int:
        return self.clock_ns() // MS

    def mark(self) -> int:
        """Mark price in ticks: the mid (rounded down), or the one side left."""
        e = self.engine
        if e.best_bid and e.best_ask:
            return (e.best_bid + e.best_ask) // 2
        return e.best_bid or e.best_ask or round(self.params.start_price / self.params.tick)

    def advance(self, now_ns: int | None = None) -> int:
        """Apply every model event due by `now_ns` and publish; returns ns until the next thing due."""
        now_ns = self.clock_ns() if now_ns is None else now_ns
        model = self.model
        n = 0
        while True:
            t = model.next_event_ns()
            self._flush_windows(min(t, now_ns))
            if t > now_ns:
                break
            model.step()
            self._publish(t)
            n += 1
            if n > 100_000:  # far behind (a paused process): skip ahead rather than spin forever
                break
        self.counters["events"] += n
        self._check_countdown(now_ns // MS)
        self._check_listen_key(now_ns // MS)
        next_window = min(
            (st.due_ms for s, st in self.pub.diff.items() if s and st.due_ms), default=now_ns // MS + 100
        )
        return max(0, min(model.next_event_ns() - now_ns, next_window * MS - now_ns))

    def _flush_windows(self, t_ns: int) -> None:
        ms = t_ns // MS
        txn = self.model.time_ns // MS
        msgs = self.pub.due(ms, txn)
        if msgs:
            self.event_ns = ms * MS  # a window's messages are due when it ends
            for m in msgs:
                self.on_market(m)

    def _publish(self, event_ns: int) -> None:
        ch = self.engine.drain()
        if ch is None:
            return
        now = self.clock_ns()
        ms = event_ns // MS
        self.event_ns = event_ns
        for m in self.pub.on_changes(ch, now // MS, ms):
            self.on_market(m)
        if ch.order_events:
            self._user_events(ch.order_events, now // MS)

    # -- user data ---------------------------------------------------------------------------------

    def _order_json(self, o: Order) -> dict:
        f = self.fmt
        avg = (o.cum_quote / (Decimal(o.filled) * self.account.lot)) if o.filled else Decimal(0)
        return {
            "orderId": o.order_id,
            "symbol": self.symbol,
            "status": o.status,
            "clientOrderId": o.client_id,
            "price": f.px(o.px),
            "avgPrice": _dec(avg, 8),
            "origQty": f.qty(o.qty),
            "executedQty": f.qty(o.filled),
            "cumQty": f.qty(o.filled),
            "cumQuote": _dec(o.cum_quote, 5),
            "timeInForce": o.tif,
            "type": o.type,
            "reduceOnly": o.reduce_only,
            "closePosition": False,
            "side": "BUY" if o.side == BUY else "SELL",
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": o.type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": o.time_ns // MS,
            "updateTime": o.update_ns // MS,
        }

    def _user_events(self, events: list, now_ms: int) -> None:
        key = self._listen_key
        fills = False
        for ev in events:
            o = ev.order
            f = self.fmt
            realized = Decimal(0)
            if ev.exec_type == TRADE:
                realized = self.account.apply_fill(o.side, ev.last_qty, ev.last_px, ev.fee, ev.time_ns // MS)
                fills = True
                self._trades.append(self._trade_json(ev, realized))
                if len(self._trades) > 100_000:
                    del self._trades[:50_000]
            avg = (o.cum_quote / (Decimal(o.filled) * self.account.lot)) if o.filled else Decimal(0)
            payload = {
                "e": "ORDER_TRADE_UPDATE",
                "E": now_ms,
                "T": ev.time_ns // MS,
                "o": {
                    "s": self.symbol,
                    "c": o.client_id,
                    "S": "BUY" if o.side == BUY else "SELL",
                    "o": o.type,
                    "f": o.tif,
                    "q": f.qty(o.qty),
                    "p": f.px(o.px),
                    "ap": _dec(avg, 8),
                    "sp": "0",
                    "x": ev.exec_type,
                    "X": ev.status,
                    "i": o.order_id,
                    "l": f.qty(ev.last_qty),
                    "z": f.qty(o.filled),
                    "L": f.px(ev.last_px) if ev.last_qty else "0",
                    "n": _dec(ev.fee, 8) if ev.exec_type == TRADE else "0",
                    "N": "USDT",
                    "T": ev.time_ns // MS,
                    "t": ev.trade_id,
                    "b": "0",
                    "a": "0",
                    "m": ev.maker,
                    "R": o.reduce_only,
                    "wt": "CONTRACT_PRICE",
                    "ot": o.type,
                    "ps": "BOTH",
                    "cp": False,
                    "rp": _dec(realized, 8),
                    "pP": False,
                    "si": 0,
                    "ss": 0,
                    "V": "EXPIRE_MAKER",
                    "pm": "NONE",
                    "gtd": 0,
                    "er": str(ev.expire_reason),
                },
            }
            if key:
                self.on_user(key, orjson.dumps(payload))
        if fills and key:
            self.on_user(key, orjson.dumps(self._account_update(now_ms)))

    def _trade_json(self, ev, realized: Decimal) -> dict:
        o, f = ev.order, self.fmt
        quote = Decimal(ev.last_px * ev.last_qty) * self.account.tick * self.account.lot
        return {
            "buyer": o.side == BUY,
            "commission": _dec(ev.fee, 8),
            "commissionAsset": "USDT",
            "id": ev.trade_id,
            "maker": ev.maker,
            "orderId": o.order_id,
            "price": f.px(ev.last_px),
            "qty": f.qty(ev.last_qty),
            "quoteQty": _dec(quote, 8),
            "realizedPnl": _dec(realized, 8),
            "side": "BUY" if o.side == BUY else "SELL",
            "positionSide": "BOTH",
            "symbol": self.symbol,
            "time": ev.time_ns // MS,
        }

    def _account_update(self, now_ms: int) -> dict:
        acc, pos = self.account, self.account.position
        return {
            "e": "ACCOUNT_UPDATE",
            "E": now_ms,
            "T": now_ms,
            "a": {
                "m": "ORDER",
                "B": [{"a": "USDT", "wb": _dec(acc.wallet, 8), "cw": _dec(acc.wallet, 8), "bc": "0"}],
                "P": [
                    {
                        "s": self.symbol,
                        "pa": self.fmt.qty(pos.lots),
                        "ep": _dec(pos.entry, 8),
                        "bep": _dec(pos.entry, 8),
                        "cr": _dec(pos.realized, 8),
                        "up": _dec(acc.unrealized(self.mark()), 8),
                        "mt": "cross",
                        "iw": "0",
                        "ps": "BOTH",
                    }
                ],
            },
        }

    # -- listen key ---------------------------------------------------------------------------------

    def _listen_validity_ms(self) -> int:
        f = self.settings.faults.expire_listen_key_after_s
        return int((f if f > 0 else self.settings.listen_key_validity_s) * 1000)

    def listen_key_start(self) -> str:
        now = self.now_ms()
        if self._listen_key is None:
            self._listen_counter += 1
            seed = f"{self.params.seed}:{self._listen_counter}".encode()
            self._listen_key = hashlib.sha256(seed).hexdigest()
        self._listen_expiry_ms = now + self._listen_validity_ms()
        return self._listen_key

    def listen_key_ping(self, key: str | None = None) -> str:
        if self._listen_key is None or (key and key != self._listen_key):
            raise _err(-1125, "This listenKey does not exist.")
        self._listen_expiry_ms = self.now_ms() + self._listen_validity_ms()
        return self._listen_key

    def listen_key_stop(self, key: str | None = None) -> None:
        if self._listen_key is None or (key and key != self._listen_key):
            raise _err(-1125, "This listenKey does not exist.")
        self._listen_key = None

    def listen_key_valid(self, key: str) -> bool:
        return key == self._listen_key

    def expire_listen_key(self) -> None:
        """Expire the active key now (fault injection, and the 60-minute rule)."""
        key = self._listen_key
        if key is None:
            return
        now = self.now_ms()
        self.on_user(key, orjson.dumps({"e": "listenKeyExpired", "E": now, "listenKey": key}))
        self._listen_key = None

    def _check_listen_key(self, now_ms: int) -> None:
        if self._listen_key is not None and now_ms >= self._listen_expiry_ms:
            self.expire_listen_key()

    # -- countdownCancelAll -------------------------------------------------------------------------

    def _check_countdown(self, now_ms: int) -> None:
        if self._countdown_ms and now_ms >= self._countdown_ms:
            self._countdown_ms = 0
            self._cancel_all(self.clock_ns())

    def _cancel_all(self, now_ns: int) -> int:
        orders = self.engine.open_orders()
        if not orders:
            return 0
        self.engine.begin()
        for o in orders:
            self.engine.cancel_order(o, now_ns)
        self._publish(now_ns)
        return len(orders)

    # -- rate limits -----------------------------------------------------------------------------------

    def _charge(self, weight: int, orders: bool, now_ms: int) -> None:
        lim = self.settings.limits
        if now_ms < self._banned_until_ms:
            raise ApiError(-1003, f"Way too many requests; IP banned until {self._banned_until_ms}.", 418)
        used = self._weight.add(now_ms, weight)
        if used > lim.weight_1m:
            if self._refused.add(now_ms, 1) > lim.ban_after_429:
                self._banned_until_ms = now_ms + int(lim.ban_s * 1000)
                raise ApiError(-1003, f"Way too many requests; IP banned until {self._banned_until_ms}.", 418)
            raise _err(
                -1003,
                f"Too many requests; current limit of IP(127.0.0.1) is {lim.weight_1m} requests per "
                "minute. Please use the websocket for live updates to avoid polling the API.",
            )
        if orders:
            c10 = self._orders_10s.add(now_ms, 1)
            c1m = self._orders_1m.add(now_ms, 1)
            if c10 > lim.orders_10s or c1m > lim.orders_1m:
                raise _err(
                    -1015, f"Too many new orders; current limit is {lim.orders_10s} orders per 10 SECOND."
                )

    def rate_limits(self, now_ms: int, orders: bool) -> list[dict]:
        lim = self.settings.limits
        out = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": lim.weight_1m,
                "count": self._weight.peek(now_ms),
            }
        ]
        if orders:
            out += [
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 10,
                    "limit": lim.orders_10s,
                    "count": self._orders_10s.peek(now_ms),
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": lim.orders_1m,
                    "count": self._orders_1m.peek(now_ms),
                },
            ]
        return out

    def rate_headers(self, now_ms: int, orders: bool) -> dict[str, str]:
        h = {"X-MBX-USED-WEIGHT-1M": str(self._weight.peek(now_ms))}
        if orders:
            h["X-MBX-ORDER-COUNT-10S"] = str(self._orders_10s.peek(now_ms))
            h["X-MBX-ORDER-COUNT-1M"] = str(self._orders_1m.peek(now_ms))
        return h

    # -- auth --------------------------------------------------------------------------------------------

    def _check_time(self, params: dict, now_ms: int) -> None:
        ts = params.get("timestamp")
        if ts is None or ts == "":
            raise _err(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        try:
            ts = int(ts)
        except (TypeError, ValueError):
            raise _err(
                -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            ) from None
        rw = params.get("recvWindow", 5000)
        try:
            rw = int(rw)
        except (TypeError, ValueError):
            raise _err(
                -1102, "Mandatory parameter 'recvWindow' was not sent, was empty/null, or malformed."
            ) from None
        if rw <= 0 or rw > self.settings.max_recv_window_ms:
            raise _err(-1131, f"recvWindow must be less than {self.settings.max_recv_window_ms}.")
        if ts >= now_ms + 1000:
            raise _err(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now_ms - ts > rw:
            raise _err(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _check_key(self, api_key: str | None) -> str:
        if not api_key:
            raise _err(-2014, "API-key format invalid.")
        if not self.keys.known(api_key):
            raise _err(-2015, "Invalid API-key, IP, or permissions for action.")
        return api_key

    # -- REST ----------------------------------------------------------------------------------------

    def rest(self, method: str, target: str, body: str, headers: dict[str, str]) -> tuple[int, bytes, dict]:
        """Answer one HTTP request: (status, JSON body, extra headers). Never raises."""
        self.counters["requests"] += 1
        path, _, query = target.partition("?")
        now = self.now_ms()
        orders = False
        try:
            ctype = headers.get("content-type", "")
            if body and "json" in ctype:
                raise _err(-1102, "Request body must be application/x-www-form-urlencoded.")
            params: dict[str, str] = {}
            for text in (query, body):
                for k, v in parse_qsl(text, keep_blank_values=True):
                    params[k] = v
            route = _REST.get((method, path))
            if route is None:
                if any(p == path for _, p in _REST):
                    raise ApiError(-1000, f"Method {method} is not allowed on {path}.", 405)
                raise ApiError(-5000, f"Path {path}, Method {method} is invalid", 404)
            weight, security, fn, orders = route
            if security in ("SIGNED", "KEY"):
                key = self._check_key(headers.get("x-mbx-apikey"))
            if security == "SIGNED":
                payload, sig = auth.rest_payload(query, body)
                if not sig:
                    raise _err(
                        -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
                    )
                self._check_time(params, now)
                if not self.keys.verify(key, [payload], sig):
                    raise _err(-1022, "Signature for this request is not valid.")
            if callable(weight):
                weight = weight(params)
            self._charge(weight, orders, now)
            result = fn(self, params)
            status = 200
            out = orjson.dumps(result)
        except ApiError as e:
            self.counters["errors"] += 1
            status = e.status
            out = orjson.dumps({"code": e.code, "msg": e.msg})
        except _UnknownStatus:
            status = 503
            out = orjson.dumps(
                {"code": -1000, "msg": "Unknown error, please check your request or try again later."}
            )
        return status, out, self.rate_headers(now, orders)

    # -- WS API ----------------------------------------------------------------------------------------

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
            rid = req.get("id")
            method = req.get("method")
            params = req.get("params") or {}
            if not isinstance(method, str) or not isinstance(params, dict):
                raise _err(-1102, "Mandatory parameter 'method' was not sent, was empty/null, or malformed.")
            if "returnRateLimits" in params:  # part of the signed payload: read it, keep it
                show_limits = params["returnRateLimits"] not in (False, "false")
            name = method.split("/", 1)[1] if method.startswith("v2/") else method
            route = _WS.get(name)
            if route is None:
                raise ApiError(-1000, f"Unknown method '{method}'.", 400)
            weight, security, fn, orders = route
            if security in ("SIGNED", "KEY"):
                has_sig = "signature" in params
                if security == "SIGNED" and session.api_key and not has_sig and "apiKey" not in params:
                    pass  # authenticated by session.logon
                else:
                    key = self._check_key(params.get("apiKey"))
                    if security == "SIGNED":
                        if not has_sig:
                            raise _err(
                                -1102,
                                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
                            )
                        self._check_time(params, now)
                        if not self.keys.verify(key, auth.ws_payloads(params), str(params["signature"])):
                            raise _err(-1022, "Signature for this request is not valid.")
            if name == "session.logon":
                result = self._session_logon(params, session, now)
            elif name in ("session.status", "session.logout"):
                result = self._session_status(session, now, logout=name == "session.logout")
            else:
                if callable(weight):
                    weight = weight(params)
                self._charge(weight, orders, now)
                params = {k: _param_str(v) for k, v in params.items()}
                result = fn(self, params)
            resp: dict = {"id": rid, "status": 200, "result": result}
        except ApiError as e:
            self.counters["errors"] += 1
            resp = {"id": rid, "status": e.status, "error": {"code": e.code, "msg": e.msg}}
        except _UnknownStatus:
            resp = {
                "id": rid,
                "status": 503,
                "error": {
                    "code": -1000,
                    "msg": "Unknown error, please check your request or try again later.",
                },
            }
        if show_limits:
            resp["rateLimits"] = self.rate_limits(now, orders)
        return orjson.dumps(resp)

    def _session_logon(self, params: dict, session: Session, now: int) -> dict:
        key = self._check_key(params.get("apiKey"))
        if key not in self.keys.ed25519:
            raise _err(-4056, "HMAC_SHA256 API key is not supported.")
        if "signature" not in params:
            raise _err(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        self._check_time(params, now)
        if not self.keys.verify(key, auth.ws_payloads(params), str(params["signature"])):
            raise _err(-1022, "Signature for this request is not valid.")
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

    # -- endpoints (shared by REST and WS API; params are strings) -------------------------------

    def _symbol(self, params: dict, required: bool = True) -> str | None:
        sym = params.get("symbol")
        if not sym:
            if required:
                raise _err(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            return None
        if sym.upper() != self.symbol:
            raise _err(-1121, "Invalid symbol.")
        return sym

    def ep_ping(self, params: dict) -> dict:
        return {}

    def ep_time(self, params: dict) -> dict:
        return {"serverTime": self.now_ms()}

    def ep_depth(self, params: dict) -> dict:
        self._symbol(params)
        limit = _int_param(params, "limit", 500)
        if limit not in (5, 10, 20, 50, 100, 500, 1000):
            raise _err(-1130, f"Invalid data sent for a parameter: limit={limit}.")
        now = self.now_ms()
        return self.pub.snapshot(limit, now, self.model.time_ns // MS)

    def ep_book_ticker(self, params: dict) -> dict | list:
        e, f = self.engine, self.fmt
        one = {
            "symbol": self.symbol,
            "bidPrice": f.px(e.best_bid),
            "bidQty": f.qty(e.bids.get(e.best_bid, 0)),
            "askPrice": f.px(e.best_ask),
            "askQty": f.qty(e.asks.get(e.best_ask, 0)),
            "time": self.now_ms(),
            "lastUpdateId": e.update_id,
        }
        if self._symbol(params, required=False):
            return one
        return [one]

    def ep_exchange_info(self, params: dict) -> dict:
        return exchange_info(self.params, self.settings, self.now_ms())

    def ep_commission(self, params: dict) -> dict:
        self._symbol(params)
        fees = self.engine.fees
        return {
            "symbol": self.symbol,
            "makerCommissionRate": str(fees.maker),
            "takerCommissionRate": str(fees.taker),
        }

    def _parse_order(self, params: dict) -> Order:
        self._symbol(params)
        side_s = params.get("side")
        if not side_s:
            raise _err(-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        if side_s not in ("BUY", "SELL"):
            raise _err(-1117, "Invalid side.")
        typ = params.get("type")
        if not typ:
            raise _err(-1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed.")
        if typ not in _ORDER_TYPES:
            raise _err(-1116, "Invalid orderType.")
        if typ not in ("LIMIT", "MARKET"):
            raise _err(
                -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints."
            )
        ps = params.get("positionSide", "BOTH")
        if ps != "BOTH":
            raise _err(-4061, "Order's position side does not match user's setting.")
        tif = params.get("timeInForce", "GTC" if typ == "MARKET" else "")
        if typ == "LIMIT":
            if not tif:
                raise _err(
                    -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."
                )
            if tif not in _TIFS:
                raise _err(-1115, "Invalid timeInForce.")
            if tif == "GTD":
                raise _err(-1115, "Invalid timeInForce.")  # not simulated
        elif "price" in params and params["price"] not in ("", "0"):
            raise _err(-1106, "Parameter 'price' sent when not required.")
        qty = self._qty(params)
        px = self._price(params) if typ == "LIMIT" else 0
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        cid = params.get("newClientOrderId") or f"sim{self.engine._next_order_id}"
        if len(cid) > 36:
            raise _err(-4015, "Client order id is not valid.")
        return Order(
            order_id=0,
            client_id=cid,
            side=BUY if side_s == "BUY" else SELL,
            type=typ,
            tif=tif or "GTC",
            px=px,
            qty=qty,
            time_ns=self.clock_ns(),
            reduce_only=reduce_only,
        )

    def _qty(self, params: dict, name: str = "quantity") -> int:
        text = params.get(name)
        if not text:
            raise _err(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        try:
            lots = self.fmt.parse_qty(text)
        except ValueError:
            raise _err(
                -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            ) from None
        if lots is None:
            raise _err(-1111, "Precision is over the maximum defined for this asset.")
        if lots <= 0:
            raise _err(-4003, "Quantity less than or equal to zero.")
        if lots > int(1_000_000 / self.params.lot):
            raise _err(-4005, "Quantity greater than max quantity.")
        return lots

    def _price(self, params: dict) -> int:
        text = params.get("price")
        if not text:
            raise _err(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        try:
            ticks = self.fmt.parse_px(text)
        except ValueError:
            raise _err(
                -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed."
            ) from None
        if ticks is None:
            raise _err(-1111, "Precision is over the maximum defined for this asset.")
        if ticks <= 0:
            raise _err(-4013, "Price less than min price.")
        return ticks

    def _check_filters(self, o: Order) -> None:
        mark = self.mark()
        if o.type == "LIMIT":
            if o.side == BUY and o.px > mark * 1.05:
                raise _err(-4016, f"Limit price can't be higher than {self.fmt.px(int(mark * 1.05))}.")
            if o.side == SELL and o.px < mark * 0.95:
                raise _err(-4024, f"Limit price can't be lower than {self.fmt.px(int(mark * 0.95) + 1)}.")
        ref = o.px if o.type == "LIMIT" else mark
        notional = Decimal(ref * o.qty) * self.account.tick * self.account.lot
        pos = self.account.position.lots
        if o.reduce_only:
            if pos == 0 or (pos > 0) == (o.side == BUY):
                raise _err(-2022, "ReduceOnly Order is rejected.")
            if o.qty > abs(pos):
                o.qty = abs(pos)
            return
        if notional < Decimal("5"):
            raise _err(-4164, "Order's notional must be no smaller than 5 (unless you choose reduce only).")
        # initial margin of the position this order could open, against what is available
        open_margin = Decimal(0)
        for r in self.engine.open_orders():
            open_margin += Decimal(r.px * r.remaining) * self.account.tick * self.account.lot
        open_margin /= self.account.leverage
        signed_after = pos + (o.qty if o.side == BUY else -o.qty)
        growth = max(0, abs(signed_after) - abs(pos))
        need = Decimal(ref * growth) * self.account.tick * self.account.lot / self.account.leverage
        if need > 0 and need > self.account.available(mark, open_margin):
            raise _err(-2019, "Margin is insufficient.")

    def _maybe_fault(self) -> bool:
        """Order-request faults: raise the configured reject; True when the answer must be 503."""
        f = self.settings.faults
        self._order_requests += 1
        n = self._order_requests
        if f.reject_code and f.reject_every and n % f.reject_every == 0:
            raise _err(f.reject_code, f"Rejected by fault injection (code {f.reject_code}).")
        return bool(f.unknown_status_every and n % f.unknown_status_every == 0)

    def ep_order_new(self, params: dict) -> dict:
        unknown = self._maybe_fault()
        o = self._parse_order(params)
        resp_type = params.get("newOrderRespType", "ACK")
        if resp_type not in _RESP_TYPES:
            raise _err(
                -1102, "Mandatory parameter 'newOrderRespType' was not sent, was empty/null, or malformed."
            )
        if self.engine.open_order(o.client_id) is not None:
            raise _err(-4116, "ClientOrderId is duplicated.")
        if len(self.engine.open_orders()) >= 200:
            raise _err(-2025, "Reach max open order limit.")
        self._check_filters(o)
        o.order_id = self.engine.new_order_id()
        now = self.clock_ns()
        self.engine.begin()
        try:
            self.engine.place(o)
        except RejectError as e:  # raised before any change: no update id was used
            raise _err(e.code, e.msg) from None
        ack = self._order_json(o)
        if resp_type == "ACK":
            ack.update(status=NEW, executedQty=self.fmt.qty(0), cumQty=self.fmt.qty(0), cumQuote="0.00000")
            ack["avgPrice"] = "0.00"
        self._publish(now)
        self.counters["orders"] += 1
        if unknown:
            raise _UnknownStatus()
        return ack

    def _find(self, params: dict) -> Order:
        self._symbol(params)
        oid = params.get("orderId")
        cid = params.get("origClientOrderId")
        if not oid and not cid:
            raise _err(-1102, "Either orderId or origClientOrderId must be sent.")
        o = None
        if oid:
            try:
                o = self.engine.orders.get(int(oid))
            except ValueError:
                raise _err(
                    -1102, "Mandatory parameter 'orderId' was not sent, was empty/null, or malformed."
                ) from None
        else:
            o = self.engine.open_order(cid) or next(
                (x for x in reversed(self.engine.orders.values()) if x.client_id == cid), None
            )
        if o is None:
            raise _err(-2013, "Order does not exist.")
        return o

    def ep_order_cancel(self, params: dict) -> dict:
        try:
            o = self._find(params)
        except ApiError as e:
            if e.code == -2013:
                raise _err(-2011, "Unknown order sent.") from None
            raise
        if not o.is_open:
            raise _err(-2011, "Unknown order sent.")
        now = self.clock_ns()
        self.engine.begin()
        self.engine.cancel_order(o, now)
        self._publish(now)
        return self._order_json(o)

    def ep_order_get(self, params: dict) -> dict:
        return self._order_json(self._find(params))

    def ep_order_modify(self, params: dict) -> dict:
        unknown = self._maybe_fault()
        o = self._find(params)
        side = params.get("side")
        if side not in ("BUY", "SELL") or (BUY if side == "BUY" else SELL) != o.side:
            raise _err(-1117, "Invalid side.")
        qty = self._qty(params)
        px = self._price(params)
        if not o.is_open:
            raise _err(-2013, "Order does not exist.")
        if o.modify_count >= 10_000:
            raise _err(-5026, "Exceed maximum modify order limit.")
        probe = Order(0, o.client_id, o.side, o.type, o.tif, px, qty, 0)
        self._check_filters(probe)
        now = self.clock_ns()
        self.engine.begin()
        try:
            self.engine.modify_order(o, px, qty, now)
        except RejectError as e:  # raised before any change
            raise _err(e.code, e.msg) from None
        self._publish(now)
        if unknown:
            raise _UnknownStatus()
        return self._order_json(o)

    def ep_open_orders(self, params: dict) -> list:
        self._symbol(params, required=False)
        return [self._order_json(o) for o in self.engine.open_orders()]

    def ep_open_order(self, params: dict) -> dict:
        o = self._find(params)
        if not o.is_open:
            raise _err(-2013, "Order does not exist.")
        return self._order_json(o)

    def ep_all_orders(self, params: dict) -> list:
        self._symbol(params)
        limit = min(1000, _int_param(params, "limit", 500) or 500)
        start = _int_param(params, "orderId", 0) or 0
        rows = [o for o in self.engine.orders.values() if o.order_id >= start]
        return (
            [self._order_json(o) for o in rows[:limit]]
            if start
            else [self._order_json(o) for o in rows[-limit:]]
        )

    def ep_user_trades(self, params: dict) -> list:
        self._symbol(params)
        limit = min(1000, _int_param(params, "limit", 500) or 500)
        oid = _int_param(params, "orderId", None)
        from_id = _int_param(params, "fromId", None)
        rows = self._trades
        if oid is not None:
            rows = [t for t in rows if t["orderId"] == oid]
        if from_id is not None:
            rows = [t for t in rows if t["id"] >= from_id]
            return rows[:limit]
        return rows[-limit:]

    def ep_cancel_all(self, params: dict) -> dict:
        self._symbol(params)
        self._cancel_all(self.clock_ns())
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def ep_countdown(self, params: dict) -> dict:
        self._symbol(params)
        ms = _int_param(params, "countdownTime", None)
        if ms is None or ms < 0:
            raise _err(
                -1102, "Mandatory parameter 'countdownTime' was not sent, was empty/null, or malformed."
            )
        self._countdown_ms = self.now_ms() + ms if ms else 0
        return {"symbol": self.symbol, "countdownTime": str(ms)}

    def ep_listen_key_new(self, params: dict) -> dict:
        return {"listenKey": self.listen_key_start()}

    def ep_listen_key_ping(self, params: dict) -> dict:
        return {"listenKey": self.listen_key_ping(params.get("listenKey"))}

    def ep_listen_key_stop(self, params: dict) -> dict:
        self.listen_key_stop(params.get("listenKey"))
        return {}

    def _position_v2(self) -> dict:
        acc, pos, f = self.account, self.account.position, self.fmt
        mark = self.mark()
        notional = Decimal(pos.lots) * acc.lot * Decimal(mark) * acc.tick
        return {
            "symbol": self.symbol,
            "positionAmt": f.qty(pos.lots),
            "entryPrice": _dec(pos.entry, 8),
            "breakEvenPrice": _dec(pos.entry, 8),
            "markPrice": _dec(Decimal(mark) * acc.tick, 8),
            "unRealizedProfit": _dec(acc.unrealized(mark), 8),
            "liquidationPrice": "0",
            "leverage": str(acc.leverage),
            "maxNotionalValue": "1000000",
            "marginType": "cross",
            "isolatedMargin": "0.00000000",
            "isAutoAddMargin": "false",
            "positionSide": "BOTH",
            "notional": _dec(notional, 8),
            "isolatedWallet": "0",
            "updateTime": pos.update_ms,
        }

    def _position_v3(self) -> dict:
        v2 = self._position_v2()
        acc = self.account
        im = acc.initial_margin(self.mark())
        return {
            "symbol": v2["symbol"],
            "positionSide": "BOTH",
            "positionAmt": v2["positionAmt"],
            "entryPrice": v2["entryPrice"],
            "breakEvenPrice": v2["breakEvenPrice"],
            "markPrice": v2["markPrice"],
            "unRealizedProfit": v2["unRealizedProfit"],
            "liquidationPrice": "0",
            "isolatedMargin": "0",
            "notional": v2["notional"],
            "marginAsset": "USDT",
            "isolatedWallet": "0",
            "initialMargin": _dec(im, 8),
            "maintMargin": _dec(im / 4, 8),
            "positionInitialMargin": _dec(im, 8),
            "openOrderInitialMargin": "0",
            "adl": 0,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": v2["updateTime"],
        }

    def ep_position_v2(self, params: dict) -> list:
        self._symbol(params, required=False)
        return [self._position_v2()]

    def ep_position_v3(self, params: dict) -> list:
        self._symbol(params, required=False)
        if self.account.position.lots == 0 and not self.engine.open_orders():
            return []
        return [self._position_v3()]

    def _balance_row(self) -> dict:
        acc = self.account
        mark = self.mark()
        avail = acc.available(mark)
        return {
            "accountAlias": "SimAcct",
            "asset": "USDT",
            "balance": _dec(acc.wallet, 8),
            "crossWalletBalance": _dec(acc.wallet, 8),
            "crossUnPnl": _dec(acc.unrealized(mark), 8),
            "availableBalance": _dec(avail, 8),
            "maxWithdrawAmount": _dec(avail, 8),
            "marginAvailable": True,
            "updateTime": self.now_ms(),
        }

    def ep_balance(self, params: dict) -> list:
        return [self._balance_row()]

    def ep_account(self, params: dict) -> dict:
        acc = self.account
        mark = self.mark()
        row = self._balance_row()
        upnl = acc.unrealized(mark)
        return {
            "totalInitialMargin": _dec(acc.initial_margin(mark), 8),
            "totalMaintMargin": "0",
            "totalWalletBalance": row["balance"],
            "totalUnrealizedProfit": row["crossUnPnl"],
            "totalMarginBalance": _dec(acc.wallet + upnl, 8),
            "totalPositionInitialMargin": _dec(acc.initial_margin(mark), 8),
            "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": row["balance"],
            "totalCrossUnPnl": row["crossUnPnl"],
            "availableBalance": row["availableBalance"],
            "maxWithdrawAmount": row["maxWithdrawAmount"],
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "feeTier": 0,
            "updateTime": 0,
            "multiAssetsMargin": False,
            "assets": [
                {
                    "asset": "USDT",
                    "walletBalance": row["balance"],
                    "unrealizedProfit": row["crossUnPnl"],
                    "marginBalance": _dec(acc.wallet + upnl, 8),
                    "maintMargin": "0",
                    "initialMargin": _dec(acc.initial_margin(mark), 8),
                    "positionInitialMargin": _dec(acc.initial_margin(mark), 8),
                    "openOrderInitialMargin": "0",
                    "crossWalletBalance": row["balance"],
                    "crossUnPnl": row["crossUnPnl"],
                    "availableBalance": row["availableBalance"],
                    "maxWithdrawAmount": row["maxWithdrawAmount"],
                    "marginAvailable": True,
                    "updateTime": self.now_ms(),
                }
            ],
            "positions": [self._position_v3()] if self.account.position.lots else [],
        }

    def ep_leverage_bracket(self, params: dict) -> list:
        self._symbol(params, required=False)
        caps = [(75, 5000, 0.005), (50, 50000, 0.01), (25, 250000, 0.02), (10, 1000000, 0.05)]
        brackets, floor, cum = [], 0, 0.0
        for i, (lev, cap, mmr) in enumerate(caps, 1):
            if i > 1:
                cum += floor * (mmr - caps[i - 2][2])
            brackets.append(
                {
                    "bracket": i,
                    "initialLeverage": lev,
                    "notionalCap": cap,
                    "notionalFloor": floor,
                    "maintMarginRatio": mmr,
                    "cum": round(cum, 8),
                }
            )
            floor = cap
        return [{"symbol": self.symbol, "notionalCoef": 1.0, "brackets": brackets}]

    def ep_leverage(self, params: dict) -> dict:
        self._symbol(params)
        lev = _int_param(params, "leverage", None)
        if lev is None or not 1 <= lev <= 125:
            raise _err(-4028, f"Leverage {params.get('leverage')} is not valid")
        self.account.leverage = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": self.symbol}

    def ep_margin_type(self, params: dict) -> dict:
        self._symbol(params)
        if params.get("marginType", "").upper() == "CROSSED":
            raise _err(-4046, "No need to change margin type.")
        raise _err(-4048, "Margin type cannot be changed if there exists position.")

    def ep_dual(self, params: dict) -> dict:
        return {"dualSidePosition": False}

    def ep_multi_assets(self, params: dict) -> dict:
        return {"multiAssetsMargin": False}

    def ep_rate_limit_order(self, params: dict) -> list:
        lim = self.settings.limits
        return [
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": lim.orders_10s},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": lim.orders_1m},
        ]


class _UnknownStatus(Exception):
    """Fault injection: the request executed, but the caller hears 503 'unknown'."""


def _dec(x: Decimal, places: int) -> str:
    return f"{x.quantize(Decimal(1).scaleb(-places)):f}"


def _param_str(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _int_param(params: dict, name: str, default: int | None) -> int | None:
    v = params.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise _err(
            -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        ) from None


def _depth_weight(params: dict) -> int:
    try:
        limit = int(params.get("limit", 500))
    except ValueError:
        return 2
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def exchange_info(p: ModelParams, s: VenueSettings, now_ms: int) -> dict:
    """`GET /fapi/v1/exchangeInfo` for the one simulated symbol."""
    from hftbot.sim.streams import Formatter, decimals_of

    f = Formatter(p.tick, p.lot)
    sym = p.symbol.upper()
    base = sym[:-4] if sym.endswith("USDT") else sym[:-3]
    lim = s.limits
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": lim.weight_1m,
            },
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": lim.orders_1m},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": lim.orders_10s},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [
            {
                "symbol": sym,
                "pair": sym,
                "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000,
                "status": "TRADING",
                "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000",
                "baseAsset": base,
                "quoteAsset": "USDT",
                "marginAsset": "USDT",
                "pricePrecision": decimals_of(p.tick),
                "quantityPrecision": decimals_of(p.lot),
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "underlyingType": "COIN",
                "underlyingSubType": ["Layer-1"],
                "settlePlan": 0,
                "triggerProtect": "0.0500",
                "liquidationFee": "0.012500",
                "marketTakeBound": "0.05",
                "maxMoveOrderLimit": 10000,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": f.px(1),
                        "maxPrice": "100000",
                        "tickSize": f.px(1),
                    },
                    {"filterType": "LOT_SIZE", "minQty": f.qty(1), "maxQty": "1000000", "stepSize": f.qty(1)},
                    {
                        "filterType": "MARKET_LOT_SIZE",
                        "minQty": f.qty(1),
                        "maxQty": "5000",
                        "stepSize": f.qty(1),
                    },
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    {
                        "filterType": "PERCENT_PRICE",
                        "multiplierUp": "1.0500",
                        "multiplierDown": "0.9500",
                        "multiplierDecimal": "4",
                    },
                ],
                "orderTypes": ["LIMIT", "MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
                "permissionSets": ["GRID", "COPY"],
            }
        ],
    }


# (method, path) -> (weight, security, handler, counts as an order)
_REST: dict[tuple[str, str], tuple] = {
    ("GET", "/fapi/v1/ping"): (1, "NONE", Venue.ep_ping, False),
    ("GET", "/fapi/v1/time"): (1, "NONE", Venue.ep_time, False),
    ("GET", "/fapi/v1/exchangeInfo"): (1, "NONE", Venue.ep_exchange_info, False),
    ("GET", "/fapi/v1/depth"): (_depth_weight, "NONE", Venue.ep_depth, False),
    ("GET", "/fapi/v1/ticker/bookTicker"): (2, "NONE", Venue.ep_book_ticker, False),
    ("POST", "/fapi/v1/order"): (0, "SIGNED", Venue.ep_order_new, True),
    ("PUT", "/fapi/v1/order"): (0, "SIGNED", Venue.ep_order_modify, True),
    ("DELETE", "/fapi/v1/order"): (1, "SIGNED", Venue.ep_order_cancel, False),
    ("GET", "/fapi/v1/order"): (1, "SIGNED", Venue.ep_order_get, False),
    ("GET", "/fapi/v1/openOrders"): (1, "SIGNED", Venue.ep_open_orders, False),
    ("GET", "/fapi/v1/openOrder"): (1, "SIGNED", Venue.ep_open_order, False),
    ("GET", "/fapi/v1/allOrders"): (5, "SIGNED", Venue.ep_all_orders, False),
    ("GET", "/fapi/v1/userTrades"): (5, "SIGNED", Venue.ep_user_trades, False),
    ("DELETE", "/fapi/v1/allOpenOrders"): (1, "SIGNED", Venue.ep_cancel_all, False),
    ("POST", "/fapi/v1/countdownCancelAll"): (10, "SIGNED", Venue.ep_countdown, False),
    ("POST", "/fapi/v1/listenKey"): (1, "KEY", Venue.ep_listen_key_new, False),
    ("PUT", "/fapi/v1/listenKey"): (1, "KEY", Venue.ep_listen_key_ping, False),
    ("DELETE", "/fapi/v1/listenKey"): (1, "KEY", Venue.ep_listen_key_stop, False),
    ("GET", "/fapi/v2/positionRisk"): (5, "SIGNED", Venue.ep_position_v2, False),
    ("GET", "/fapi/v3/positionRisk"): (5, "SIGNED", Venue.ep_position_v3, False),
    ("GET", "/fapi/v1/leverageBracket"): (1, "SIGNED", Venue.ep_leverage_bracket, False),
    ("GET", "/fapi/v2/balance"): (5, "SIGNED", Venue.ep_balance, False),
    ("GET", "/fapi/v3/balance"): (5, "SIGNED", Venue.ep_balance, False),
    ("GET", "/fapi/v2/account"): (5, "SIGNED", Venue.ep_account, False),
    ("GET", "/fapi/v3/account"): (5, "SIGNED", Venue.ep_account, False),
    ("GET", "/fapi/v1/commissionRate"): (20, "SIGNED", Venue.ep_commission, False),
    ("POST", "/fapi/v1/leverage"): (1, "SIGNED", Venue.ep_leverage, False),
    ("POST", "/fapi/v1/marginType"): (1, "SIGNED", Venue.ep_margin_type, False),
    ("GET", "/fapi/v1/positionSide/dual"): (30, "SIGNED", Venue.ep_dual, False),
    ("GET", "/fapi/v1/multiAssetsMargin"): (30, "SIGNED", Venue.ep_multi_assets, False),
    ("GET", "/fapi/v1/rateLimit/order"): (1, "SIGNED", Venue.ep_rate_limit_order, False),
}

# WS API method -> (weight, security, handler, counts as an order)
_WS: dict[str, tuple] = {
    "depth": (_depth_weight, "NONE", Venue.ep_depth, False),
    "ticker.book": (2, "NONE", Venue.ep_book_ticker, False),
    "time": (1, "NONE", Venue.ep_time, False),
    "ping": (1, "NONE", Venue.ep_ping, False),
    "session.logon": (2, "NONE", None, False),
    "session.status": (2, "NONE", None, False),
    "session.logout": (2, "NONE", None, False),
    "order.place": (0, "SIGNED", Venue.ep_order_new, True),
    "order.modify": (1, "SIGNED", Venue.ep_order_modify, True),
    "order.cancel": (1, "SIGNED", Venue.ep_order_cancel, False),
    "order.status": (1, "SIGNED", Venue.ep_order_get, False),
    "account.position": (5, "SIGNED", Venue.ep_position_v2, False),
    "account.balance": (5, "SIGNED", Venue.ep_balance, False),
    "account.status": (5, "SIGNED", Venue.ep_account, False),
    "userDataStream.start": (1, "KEY", Venue.ep_listen_key_new, False),
    "userDataStream.ping": (1, "KEY", Venue.ep_listen_key_ping, False),
    "userDataStream.stop": (1, "KEY", Venue.ep_listen_key_stop, False),
}
