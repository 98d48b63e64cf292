"""The order gateway: the only place on the client side that speaks Binance's order protocol.

Approved `OrderRequest`s go out as WS API `order.place` / `order.cancel` / `order.modify` frames;
what the venue says comes back as `OrderUpdate`, `Fill`, `Rejected` and `VenuePosition`
(hftbot.exec.messages), from the WS API answers and the user data stream alike. The same code
runs against the simulator, the mirror venue of replay/paper, the testnet and Binance: only the
URLs and the credentials differ.

Threads, and why. The send path is the latency that matters (signal read → order frame written on
the socket; target p99 ≤ 200 µs), so the caller's thread builds the frame and writes it itself on a
synchronous websocket (`websockets.sync`, TCP_NODELAY): no queue, no hand-off, no event loop
between the decision and `sendall`. Everything else runs beside it:

- the WS API reader: answers, matched to requests by id; normalised off the hot thread;
- the user-stream reader: ORDER_TRADE_UPDATE / ACCOUNT_UPDATE / listenKeyExpired; on a drop or an
  expiry it gets a new listenKey, reconnects and reconciles (positions, open orders, recent fills);
- housekeeping: server-time offset, listenKey keep-alive, the `countdownCancelAll` dead-man switch
  (REST), request timeouts.

Readers only normalise and append to an inbox; `poll()`, on the caller's thread, applies them to
the gateway's view of our orders, drops duplicates (fills by `(order_id, trade_id)`, order updates
that are not newer than what is known) and returns the events. So the state that risk and
positions read is touched by one thread only.

Decisions written down:

- Auth: with an Ed25519 key the WS API session is logged on once (`session.logon`) and order frames
  carry no signature; with an HMAC key every request is signed. REST (countdown, open orders,
  trades) is signed with the same key (Ed25519 over REST is UNVERIFIED on fapi; the simulator
  accepts it).
- Unknown outcome (503 "Unknown error", -1006/-1007, a timed-out request): the order is settled by
  `order.status` on its client id, never by a resend (issue 13 builds the rest of the fault work).
- At start: exchangeInfo (tick, step), server time, logon, listenKey and user stream *first*
  (nothing is missed), then optionally cancel what a previous run left resting, then the snapshot
  (`account.position`, `openOrders`). Fills at or before the snapshot's position time are already
  in it and are not applied again.
- On stop the listenKey is not deleted: one key serves every client of the account, and a DELETE
  would cut the others' streams. The dead-man countdown is switched off after the final cancel.

Secrets never reach a log: the `Signer` masks them and frames are never logged.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import OPEN
from websockets.sync.client import ClientConnection, connect

from hftbot.config import GatewayConfig
from hftbot.exec.filters import SymbolFilters
from hftbot.exec.ids import VALID as CLIENT_ID_RE
from hftbot.exec.messages import (
    BUY,
    FINAL_STATUSES,
    LIMIT,
    MARKET,
    NEW,
    SELL,
    CancelAllRequest,
    CancelRequest,
    Fill,
    ModifyRequest,
    OrderRequest,
    OrderUpdate,
    Rejected,
    VenuePosition,
)
from hftbot.exec.signing import ED25519, Signer
from hftbot.exec.transport import MAYBE_SENT, GatewayError, RestClient, Units, frame_writer

UNKNOWN_CODES = (-1006, -1007)  # execution status unknown (plus any HTTP-like 503)
RECONCILED = "RECONCILED"  # exec_type of an OrderUpdate that comes from a snapshot, not an event
MAX_FILL_KEYS = 200_000


@dataclass(frozen=True)
class VenueUrls:
    """Where the venue is (the mode decides: `hftbot.exec.modes`). Tuning comes from `[gateway]`."""

    symbol: str
    rest: str  # http(s)://host[:port]
    ws_api: str  # ws(s)://host[:port]/ws-fapi/v1
    ws: str  # stream base ws(s)://host[:port]


@dataclass
class VenueOrder:
    """The gateway's view of one of our orders (from our request, then the venue's events)."""

    client_id: str
    side: int
    qty: int
    px: int
    type: str
    tif: str
    reduce_only: bool
    order_id: int = 0
    status: str = "PENDING_NEW"  # until the venue acknowledges it
    filled: int = 0
    sent_ns: int = 0


@dataclass
class _Pending:
    kind: str  # "place" | "cancel" | "modify" | "settle" | "sync"
    client_id: str = ""
    sent_ns: int = 0
    event: threading.Event | None = None
    result: Any = None
    error: tuple[int, int, str] | None = None  # (status, code, msg)


@dataclass(frozen=True)
class _Snapshot:
    """A reconciliation's position in the inbox: applied whatever its time (it was read just now)."""

    position: VenuePosition


@dataclass
class VenueSnapshot:
    """What the venue said at start (or at a reconciliation)."""

    position: VenuePosition
    open_orders: list[OrderUpdate] = field(default_factory=list)
    cancelled_at_start: int = 0
    server_ms: int = 0


class Gateway:
    """WS API order gateway with user data stream, reconciliation and the dead-man switch.

    `start()` connects and returns the venue snapshot; `place` / `cancel` / `modify` write frames
    (caller's thread, returns the send time in ns); `poll()` returns the venue's events since the
    last call; `close()` cancels what rests (if asked) and disconnects.
    """

    def __init__(
        self,
        venue: VenueUrls,
        signer: Signer,
        cfg: GatewayConfig | None = None,
        log: logging.Logger | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.venue = venue
        self.s = cfg = cfg or GatewayConfig()
        self.signer = signer
        self.log = log or logging.getLogger("hftbot.gateway")
        self.clock_ns = clock_ns
        self.symbol = venue.symbol.upper()
        self.units: Units | None = None
        self.exchange_info: dict = {}
        self.rest = RestClient(venue.rest, signer, cfg.request_timeout_s)
        self.time_offset_ms = 0
        self.orders: dict[str, VenueOrder] = {}  # open (or not yet acknowledged) orders by client id
        self.position = VenuePosition(0, 0.0, 0)  # the venue's, as last reported
        self.local_lots = 0  # snapshot + every fill applied since: must equal position.lots
        self.rate_limits: list[dict] = []  # the last `rateLimits` the WS API sent
        self.listen_key = ""
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "sent",
                "acks",
                "rejects",
                "fills",
                "fill_duplicates",
                "updates_stale",
                "unknown",
                "user_reconnects",
                "ws_reconnects",
                "ws_errors",
                "countdown_refresh",
                "countdown_errors",
                "keepalive",
            ),
            0,
        )
        self._ws: ClientConnection | None = None
        self._frame_writer: Callable[[bytes], None] | None = None
        self._user_ws: ClientConnection | None = None
        self._inbox: deque = deque()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._fill_keys: set[tuple[int, int]] = set()
        self._fill_order: deque[tuple[int, int]] = deque()
        self._unknown_ids: deque[str] = deque()
        self._closed: dict[str, None] = {}  # client ids closed recently (late duplicates are dropped)
        self._snapshot_ms = 0
        self._logged_on = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._user_up = threading.Event()
        self._user_reconnect = threading.Event()

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> VenueSnapshot:
        """Connect, log on, start the user stream, reconcile, arm the dead-man switch."""
        s = self.s
        info = self.rest.call("GET", "/fapi/v1/exchangeInfo")
        try:
            self.units = Units(SymbolFilters.from_exchange_info(info, self.symbol))
        except ValueError as e:
            raise GatewayError(f"gateway: {e} (from {self.venue.rest}/fapi/v1/exchangeInfo)") from None
        self.exchange_info = info
        self.sync_time()
        self._connect_ws_api()
        self.listen_key = self.request("userDataStream.start", {"apiKey": self.signer.api_key}, signed=False)[
            "listenKey"
        ]
        self._spawn(self._user_loop, "gateway-user")
        if not self._user_up.wait(s.connect_timeout_s):
            raise GatewayError(
                f"gateway: user data stream at {self.venue.ws} did not connect in {s.connect_timeout_s} s"
            )
        cancelled = 0
        if s.cancel_on_start:
            cancelled = len(
                self.rest.call("GET", "/fapi/v1/openOrders", {"symbol": self.symbol, **self._ts()}, True)
            )
            if cancelled:
                self.rest.call(
                    "DELETE", "/fapi/v1/allOpenOrders", {"symbol": self.symbol, **self._ts()}, True
                )
                self.log.warning("gateway: cancelled %d order(s) an earlier run left resting", cancelled)
        snap = self.reconcile(initial=True)
        snap.cancelled_at_start = cancelled
        if s.countdown_ms:
            self.refresh_countdown()
        self._spawn(self._housekeeping, "gateway-housekeeping")
        return snap

    def close(self, cancel_all: bool = True) -> None:
        """Cancel every resting order (if asked), switch the dead-man off, disconnect. Idempotent."""
        if self._stop.is_set():
            return
        if cancel_all and self.units is not None:
            try:
                self.cancel_all()
            except GatewayError as e:
                self.log.error("gateway: cancel all on close failed: %s", e)
        if self.s.countdown_ms and self.units is not None:
            try:
                self.rest.call(
                    "POST",
                    "/fapi/v1/countdownCancelAll",
                    {"symbol": self.symbol, "countdownTime": 0, **self._ts()},
                    True,
                )
            except GatewayError as e:
                self.log.warning("gateway: could not switch the countdown off: %s", e)
        self._stop.set()
        for ws in (self._ws, self._user_ws):
            if ws is not None:
                ws.close()
        for t in self._threads:
            t.join(2.0)  # readers end with their sockets; a reconnect in progress is abandoned
        self.rest.close()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _connect_ws_api(self) -> None:
        s = self.s
        try:
            ws = connect(
                self.venue.ws_api,
                open_timeout=s.connect_timeout_s,
                compression=None,
                max_size=1 << 22,
                legacy=True,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
            raise GatewayError(f"gateway: cannot connect to the WS API at {self.venue.ws_api}: {e}") from None
        self._ws = ws
        self._frame_writer = frame_writer(ws)
        self._spawn(lambda: self._ws_reader(ws), "gateway-ws-api")
        if self.signer.kind == ED25519:
            params = {"apiKey": self.signer.api_key, "timestamp": self.now_ms()}
            try:
                self.request("session.logon", self.signer.sign_ws(params), signed=False)
            except GatewayError:
                ws.close()  # a connection without its session is not one to trade on
                raise
            self._logged_on = True

    # ------------------------------------------------------------------------------ time

    def now_ms(self) -> int:
        """The venue's clock as we estimate it (local clock + measured offset)."""
        return self.clock_ns() // 1_000_000 + self.time_offset_ms

    def sync_time(self) -> int:
        """Measure the server-time offset (REST /fapi/v1/time, midpoint of the round trip)."""
        t0 = self.clock_ns()
        server = int(self.rest.call("GET", "/fapi/v1/time")["serverTime"])
        t1 = self.clock_ns()
        self.time_offset_ms = server - (t0 + t1) // 2_000_000
        return self.time_offset_ms

    def _ts(self) -> dict:
        return {"timestamp": self.now_ms(), "recvWindow": self.s.recv_window_ms}

    # -------------------------------------------------------------------------- requests

    def _auth(self, params: dict) -> dict:
        """Add what a SIGNED WS API request needs: a timestamp, and the signature unless logged on."""
        params["timestamp"] = self.now_ms()
        params["recvWindow"] = self.s.recv_window_ms
        if not self._logged_on:
            params["apiKey"] = self.signer.api_key
            self.signer.sign_ws(params)
        return params

    def _write(self, rid: int, method: str, params: dict) -> int:
        """Write one request frame; GatewayError: certainly not sent; MAYBE_SENT errors: maybe sent."""
        write = self._frame_writer
        if write is None:
            raise GatewayError("gateway: WS API not connected", -1001)
        write(orjson.dumps({"id": rid, "method": method, "params": params}))
        return self.clock_ns()

    def request(
        self, method: str, params: dict | None = None, signed: bool = True, timeout_s: float | None = None
    ):
        """A blocking WS API call (start-up, housekeeping; never the reader thread): its `result`."""
        params = dict(params or {})
        if signed:
            self._auth(params)
        rid = next(self._ids)
        p = _Pending("sync", event=threading.Event())
        self._pending[rid] = p
        try:
            self._write(rid, method, params)
        except MAYBE_SENT as e:
            self._pending.pop(rid, None)
            raise GatewayError(f"gateway: WS API closed during {method}: {e}", -1001) from None
        if not p.event.wait(self.s.request_timeout_s if timeout_s is None else timeout_s):
            self._pending.pop(rid, None)
            raise GatewayError(f"gateway: {method} got no answer in {self.s.request_timeout_s} s", -1007)
        if p.error is not None:
            status, code, msg = p.error
            raise GatewayError(f"gateway: {method}: {status} {code} {msg}", code, status)
        return p.result

    def send(self, r: OrderRequest | CancelRequest | ModifyRequest | CancelAllRequest) -> int:
        """Send one approved request (the risk manager's output); returns the ns its frame left."""
        if type(r) is OrderRequest:
            return self.place(r)
        if type(r) is CancelRequest:
            return self.cancel(r.client_id)
        if type(r) is ModifyRequest:
            return self.modify(r.client_id, r.qty, r.px, r.side)
        if type(r) is CancelAllRequest:
            return self.cancel_open()
        raise TypeError(f"gateway: cannot send a {type(r).__name__}")

    def place(self, req: OrderRequest) -> int:
        """Write `order.place` for an approved request; returns the ns the frame left (0: refused here)."""
        units = self.units
        if units is None:
            raise GatewayError("gateway: place before start()")
        cid = req.client_id
        if not CLIENT_ID_RE.match(cid) or cid in self.orders:
            self._inbox.append(
                Rejected(
                    cid,
                    -4015 if cid not in self.orders else -4116,
                    f"gateway: client order id {cid!r} invalid or in use",
                    self.now_ms(),
                    "place",
                )
            )
            return 0
        params: dict[str, Any] = {
            "symbol": self.symbol,
            "side": "BUY" if req.side == BUY else "SELL",
            "type": req.type,
            "quantity": units.qty(req.qty),
            "newClientOrderId": cid,
        }
        if req.type == LIMIT:
            params["price"] = units.px(req.px)
            params["timeInForce"] = req.tif
        elif req.type != MARKET:
            self._inbox.append(
                Rejected(
                    cid, -1116, f"gateway: order type {req.type!r} not supported", self.now_ms(), "place"
                )
            )
            return 0
        if req.reduce_only:
            params["reduceOnly"] = "true"
        self._auth(params)
        rid = next(self._ids)
        order = VenueOrder(cid, req.side, req.qty, req.px, req.type, req.tif, req.reduce_only)
        self.orders[cid] = order
        self._pending[rid] = _Pending("place", cid, self.clock_ns())
        try:
            sent = self._write(rid, "order.place", params)
        except GatewayError as e:  # certainly not sent
            self._pending.pop(rid, None)
            del self.orders[cid]
            self._inbox.append(Rejected(cid, e.code, str(e), self.now_ms(), "place"))
            return 0
        except MAYBE_SENT as e:
            # the frame may or may not have left: settle it later by its client id, never resend
            self.log.error("gateway: order.place %s: WS API closed while sending: %s", cid, e)
            self._pending.pop(rid, None)
            self._unknown(cid)
            return 0
        order.sent_ns = sent
        self.counters["sent"] += 1
        return sent

    def cancel(self, client_id: str) -> int:
        """Write `order.cancel` by client order id; returns the send ns (0: not sent)."""
        params = self._auth({"symbol": self.symbol, "origClientOrderId": client_id})
        return self._send_async("cancel", client_id, "order.cancel", params)

    def modify(self, client_id: str, qty: int, px: int, side: int = 0) -> int:
        """Write `order.modify` (LIMIT only; the order loses its queue place at the venue)."""
        o = self.orders.get(client_id)
        if o is None or self.units is None or (side and side != o.side):
            self._inbox.append(
                Rejected(
                    client_id, -2013, "gateway: modify of an order not open here", self.now_ms(), "modify"
                )
            )
            return 0
        params = self._auth(
            {
                "symbol": self.symbol,
                "origClientOrderId": client_id,
                "side": "BUY" if o.side == BUY else "SELL",
                "quantity": self.units.qty(qty),
                "price": self.units.px(px),
            }
        )
        return self._send_async("modify", client_id, "order.modify", params)

    def _send_async(self, kind: str, client_id: str, method: str, params: dict) -> int:
        rid = next(self._ids)
        self._pending[rid] = _Pending(
            kind, client_id, self.clock_ns()
        )  # before the write: the answer may beat us
        try:
            sent = self._write(rid, method, params)
        except GatewayError as e:
            self._pending.pop(rid, None)
            self._inbox.append(Rejected(client_id, e.code, f"{method} not sent: {e}", self.now_ms(), kind))
            return 0
        except MAYBE_SENT:
            self._pending.pop(rid, None)
            self._unknown(client_id)
            return 0
        self.counters["sent"] += 1
        return sent

    def cancel_open(self) -> int:
        """`order.cancel` for every order open here (WS API frames, no waiting); the last send ns."""
        sent = 0
        for cid, o in list(self.orders.items()):
            if o.status != "PENDING_NEW" or o.sent_ns:
                sent = self.cancel(cid) or sent
        return sent

    def cancel_all(self) -> None:
        """Cancel every open order of the symbol (REST DELETE allOpenOrders; blocking)."""
        self.rest.call("DELETE", "/fapi/v1/allOpenOrders", {"symbol": self.symbol, **self._ts()}, True)

    def refresh_countdown(self) -> None:
        """Re-arm the dead-man switch: the venue cancels all our orders `countdown_ms` from now."""
        self.rest.call(
            "POST",
            "/fapi/v1/countdownCancelAll",
            {"symbol": self.symbol, "countdownTime": self.s.countdown_ms, **self._ts()},
            True,
        )
        self.counters["countdown_refresh"] += 1

    def _unknown(self, client_id: str) -> None:
        """A request whose outcome we cannot know: mark the order UNKNOWN (both ways) and ask."""
        self.counters["unknown"] += 1
        self._unknown_ids.append(client_id)
        self._settle_later(client_id)

    def has_unknown(self) -> bool:
        return bool(self._unknown_ids)

    def take_unknown(self) -> list[str]:
        """Client ids whose outcome became unknown since the last call (positions marks them)."""
        out = []
        while self._unknown_ids:
            out.append(self._unknown_ids.popleft())
        return out

    def _settle_later(self, client_id: str) -> None:
        """Unknown outcome: ask the venue about the order by its client id (never resend it)."""
        rid = next(self._ids)
        self._pending[rid] = _Pending("settle", client_id)
        try:
            self._write(
                rid, "order.status", self._auth({"symbol": self.symbol, "origClientOrderId": client_id})
            )
        except (*MAYBE_SENT, GatewayError):
            self._pending.pop(rid, None)  # the reconciliation after the reconnect settles it

    # --------------------------------------------------------------------------- readers

    def _ws_reader(self, ws: ClientConnection) -> None:
        try:
            for msg in ws:
                try:
                    self._on_answer(orjson.loads(msg))
                except Exception:  # a malformed answer must not kill the reader
                    self.counters["ws_errors"] += 1
                    self.log.exception("gateway: bad WS API answer")
        except ConnectionClosed:
            pass
        finally:
            self._logged_on = False  # a new connection must log on again
            if not self._stop.is_set():
                self.log.error("gateway: WS API connection closed: reconnecting")
            for rid, p in list(self._pending.items()):
                if self._pending.pop(rid, None) is None:
                    continue
                if p.event is not None:  # wake blocked callers
                    p.error = (0, -1001, "WS API connection closed")
                    p.event.set()
                elif (
                    p.kind != "settle"
                ):  # sent, unanswered: settled by the reconciliation after the reconnect
                    self.counters["unknown"] += 1
                    self._unknown_ids.append(p.client_id)

    def _on_answer(self, obj: dict) -> None:
        if "rateLimits" in obj:
            self.rate_limits = obj["rateLimits"]
        p = self._pending.pop(obj.get("id"), None)
        if p is None:
            return
        status = obj.get("status", 0)
        err = obj.get("error")
        if p.event is not None:
            if err is not None or status != 200:
                err = err or {}
                p.error = (status, err.get("code", 0), err.get("msg", ""))
            else:
                p.result = obj.get("result")
            p.event.set()
            return
        now = self.now_ms()
        if err is None and status == 200:
            res = obj["result"]
            if p.kind == "place":
                self.counters["acks"] += 1
            self._inbox.append(self._update_from_order(res, _EXEC_OF_KIND.get(p.kind, NEW)))
            return
        err = err or {}
        code, msg = int(err.get("code", 0)), str(err.get("msg", ""))
        if status == 503 or code in UNKNOWN_CODES:
            if p.kind == "settle":  # still unknown: try again later
                self._settle_later(p.client_id)
                return
            self.log.warning(
                "gateway: %s %s: outcome unknown (%s %s): querying it", p.kind, p.client_id, status, code
            )
            self._unknown(p.client_id)
            return
        if p.kind == "settle":
            if code == -2013 and p.client_id in self.orders:
                # the order never reached the book: the request whose outcome was unknown failed
                self._inbox.append(
                    Rejected(p.client_id, code, f"settled after an unknown outcome: {msg}", now, "place")
                )
            else:
                self.log.error("gateway: order.status %s failed: %s %s", p.client_id, code, msg)
            return
        self.counters["rejects"] += 1
        self._inbox.append(Rejected(p.client_id, code, msg, now, p.kind))
        if p.kind == "cancel" and code == -2011 and p.client_id in self.orders:
            self._settle_later(p.client_id)  # filled or gone meanwhile: learn its final state

    def _update_from_order(self, o: dict, exec_type: str) -> OrderUpdate:
        """An order object (WS API result, REST openOrders) as an OrderUpdate."""
        u = self.units
        assert u is not None
        return OrderUpdate(
            client_id=o["clientOrderId"],
            order_id=int(o["orderId"]),
            status=o["status"],
            exec_type=exec_type,
            side=BUY if o["side"] == "BUY" else SELL,
            qty=u.lots(o["origQty"]),
            px=u.ticks(o["price"]),
            filled=u.lots(o["executedQty"]),
            event_ms=int(o.get("updateTime") or 0),
        )

    def _user_url(self) -> str:
        return self.venue.ws.rstrip("/") + self.s.user_stream_path.format(listen_key=self.listen_key)

    def _user_loop(self) -> None:
        """Keep the user data stream up; after a drop or an expiry, renew and reconcile."""
        s = self.s
        first = True
        while not self._stop.is_set():
            try:
                if not first:
                    self.listen_key = self.request(
                        "userDataStream.start", {"apiKey": self.signer.api_key}, signed=False
                    )["listenKey"]
                ws = connect(
                    self._user_url(), open_timeout=s.connect_timeout_s, compression=None, legacy=True
                )
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError, GatewayError) as e:
                self.log.error("gateway: user data stream: %s", e)
                self._stop.wait(s.reconnect_backoff_s)
                continue
            self._user_ws = ws
            self._user_reconnect.clear()
            if not first:
                self.counters["user_reconnects"] += 1
                try:
                    self.reconcile()
                except GatewayError as e:
                    self.log.error("gateway: reconciliation after the user stream reconnect failed: %s", e)
            first = False
            self._user_up.set()
            try:
                for msg in ws:
                    try:
                        if self._on_user_event(orjson.loads(msg)):
                            break  # listenKeyExpired
                    except Exception:
                        self.counters["ws_errors"] += 1
                        self.log.exception("gateway: bad user data event")
            except ConnectionClosed:
                pass
            ws.close()
            if not self._stop.is_set():
                self.log.warning("gateway: user data stream ended: reconnecting with a new listenKey")
                self._stop.wait(s.reconnect_backoff_s)

    def _on_user_event(self, ev: dict) -> bool:
        """Normalise one user data event into the inbox; True when the stream must be renewed."""
        kind = ev.get("e")
        if kind == "ORDER_TRADE_UPDATE":
            o = ev["o"]
            if o.get("s", "").upper() != self.symbol:
                return False
            u = self.units
            assert u is not None
            side = BUY if o["S"] == "BUY" else SELL
            cid, oid, t = o["c"], int(o["i"]), int(o["T"])
            if o["x"] == "TRADE":
                fee = float(o.get("n") or 0.0)
                self._inbox.append(
                    Fill(cid, oid, int(o["t"]), side, u.lots(o["l"]), u.ticks(o["L"]), fee, bool(o["m"]), t)
                )
            self._inbox.append(
                OrderUpdate(
                    cid, oid, o["X"], o["x"], side, u.lots(o["q"]), u.ticks(o["p"]), u.lots(o["z"]), t
                )
            )
        elif kind == "ACCOUNT_UPDATE":
            for p in ev.get("a", {}).get("P", []):
                if p.get("s", "").upper() == self.symbol and p.get("ps", "BOTH") == "BOTH":
                    lots = self.units.lots(p["pa"]) if self.units else 0
                    self._inbox.append(
                        VenuePosition(lots, float(p["ep"]), int(ev.get("T") or ev.get("E") or 0))
                    )
        elif kind == "listenKeyExpired":
            self.log.warning("gateway: listenKey expired")
            return True
        return False

    # ---------------------------------------------------------------------- reconciliation

    def reconcile(self, initial: bool = False) -> VenueSnapshot:
        """Snapshot position and open orders; queue what changed (plus recent fills) as events."""
        rows = self.request("account.position", {"symbol": self.symbol})
        pos = VenuePosition(0, 0.0, 0)
        for r in rows:
            if r.get("symbol", "").upper() == self.symbol and r.get("positionSide", "BOTH") == "BOTH":
                pos = VenuePosition(
                    self.units.lots(r["positionAmt"]),
                    float(r["entryPrice"]),
                    int(r.get("updateTime") or 0),
                )
        opened = self.rest.call("GET", "/fapi/v1/openOrders", {"symbol": self.symbol, **self._ts()}, True)
        updates = [self._update_from_order(o, RECONCILED) for o in opened]
        snap = VenueSnapshot(pos, updates, server_ms=self.now_ms())
        if initial:
            # the start state: adopted as is (poll() applies it before anything later)
            self._snapshot_ms = pos.time_ms
            self.position = pos
            self.local_lots = pos.lots
            for up in updates:
                self.orders[up.client_id] = VenueOrder(
                    up.client_id,
                    up.side,
                    up.qty,
                    up.px,
                    LIMIT,
                    "GTC",
                    False,
                    up.order_id,
                    up.status,
                    up.filled,
                )
            return snap
        trades = self.rest.call(
            "GET", "/fapi/v1/userTrades", {"symbol": self.symbol, "limit": 1000, **self._ts()}, True
        )
        u = self.units
        for t in trades:
            side = BUY if t["side"] == "BUY" else SELL
            self._inbox.append(
                Fill(
                    "",
                    int(t["orderId"]),
                    int(t["id"]),
                    side,
                    u.lots(t["qty"]),
                    u.ticks(t["price"]),
                    float(t["commission"]),
                    bool(t["maker"]),
                    int(t["time"]),
                )
            )
        venue_open = {up.client_id for up in updates}
        self._inbox.extend(updates)
        for cid in [c for c in self.orders if c not in venue_open]:
            self._settle_later(cid)  # we think it is open, the venue does not list it
        self._inbox.append(_Snapshot(pos))
        return snap

    # ------------------------------------------------------------------------------ events

    def poll(self) -> list[OrderUpdate | Fill | Rejected | VenuePosition]:
        """Every venue event since the last call, duplicates and stale updates removed."""
        out: list = []
        inbox = self._inbox
        while inbox:
            ev = inbox.popleft()
            if type(ev) is Fill:
                key = (ev.order_id, ev.trade_id)
                if key in self._fill_keys or ev.time_ms <= self._snapshot_ms:
                    self.counters["fill_duplicates"] += 1
                    continue
                self._remember_fill(key)
                if not ev.client_id:  # recovered from userTrades: name the order if we know it
                    cid = next((c for c, o in self.orders.items() if o.order_id == ev.order_id), "")
                    ev = Fill(
                        cid, ev.order_id, ev.trade_id, ev.side, ev.qty, ev.px, ev.fee, ev.maker, ev.time_ms
                    )
                self.local_lots += ev.qty if ev.side == BUY else -ev.qty
                self.counters["fills"] += 1
            elif type(ev) is OrderUpdate:
                if not self._apply_update(ev):
                    self.counters["updates_stale"] += 1
                    continue
            elif type(ev) is VenuePosition:
                if ev.time_ms < self.position.time_ms:
                    continue  # the stream's news is older than what we know
                self.position = ev
            elif type(ev) is _Snapshot:  # taken just now: newer than anything before it
                ev = self.position = ev.position
            elif type(ev) is Rejected and ev.request == "place":
                o = self.orders.get(ev.client_id)
                if o is not None and o.status == "PENDING_NEW":
                    del self.orders[ev.client_id]
            out.append(ev)
        return out

    def _remember_fill(self, key: tuple[int, int]) -> None:
        self._fill_keys.add(key)
        self._fill_order.append(key)
        if len(self._fill_order) > MAX_FILL_KEYS:
            self._fill_keys.discard(self._fill_order.popleft())

    def _apply_update(self, ev: OrderUpdate) -> bool:
        """Fold an update into our view of the order; False when it tells nothing new."""
        o = self.orders.get(ev.client_id)
        if o is None:
            if ev.exec_type != RECONCILED or ev.status in FINAL_STATUSES or ev.client_id in self._closed:
                return False  # a late duplicate of a closed order, or an order that is not ours
            o = VenueOrder(ev.client_id, ev.side, ev.qty, ev.px, LIMIT, "GTC", False)
            self.orders[ev.client_id] = o
        newer = (
            ev.filled > o.filled
            or (ev.status in FINAL_STATUSES)
            or (o.status == "PENDING_NEW")
            or (ev.filled == o.filled and (ev.qty, ev.px) != (o.qty, o.px) and ev.exec_type == "AMENDMENT")
        )
        if not newer or ev.filled < o.filled:
            return False
        o.order_id = ev.order_id or o.order_id
        o.status, o.filled, o.qty, o.px = ev.status, ev.filled, ev.qty, ev.px
        if ev.status in FINAL_STATUSES:
            del self.orders[ev.client_id]
            self._closed[ev.client_id] = None
            if len(self._closed) > MAX_FILL_KEYS:
                del self._closed[next(iter(self._closed))]
        return True

    def status(self) -> dict[str, int]:
        """Integer counters for the heartbeat and the summary."""
        return {**self.counters, "open_orders": len(self.orders), "venue_lots": self.position.lots}

    # ------------------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        s = self.s
        now = time.monotonic()
        next_countdown = now + s.countdown_refresh_s
        next_keepalive = now + s.listen_key_keepalive_s
        next_sync = now + s.time_sync_s
        next_ws, ws_backoff = now, s.reconnect_backoff_s
        while not self._stop.wait(0.1):
            now = time.monotonic()
            ws = self._ws
            if (ws is None or ws.protocol.state is not OPEN) and now >= next_ws:
                try:
                    self._connect_ws_api()
                    self.counters["ws_reconnects"] += 1
                    self.reconcile()  # settles what was in flight, reports the position
                    ws_backoff = s.reconnect_backoff_s
                except GatewayError as e:
                    self.log.error("gateway: WS API reconnect failed (%s): next try in %.1f s", e, ws_backoff)
                    next_ws, ws_backoff = now + ws_backoff, min(ws_backoff * 2, 5.0)
                continue
            try:
                if s.countdown_ms and now >= next_countdown:
                    next_countdown = now + s.countdown_refresh_s
                    try:
                        self.refresh_countdown()
                    except GatewayError as e:
                        self.counters["countdown_errors"] += 1
                        self.log.error("gateway: countdownCancelAll refresh failed: %s", e)
                if now >= next_keepalive:
                    next_keepalive = now + s.listen_key_keepalive_s
                    try:
                        self.request("userDataStream.ping", {"apiKey": self.signer.api_key}, signed=False)
                        self.counters["keepalive"] += 1
                    except GatewayError as e:
                        self.log.error("gateway: listenKey keep-alive failed (%s): renewing the stream", e)
                        if self._user_ws is not None:
                            self._user_ws.close()
                if now >= next_sync:
                    next_sync = now + s.time_sync_s
                    self.sync_time()
                self._expire_pending()
            except GatewayError as e:
                self.log.error("gateway: housekeeping: %s", e)

    def _expire_pending(self) -> None:
        """Requests unanswered past the timeout have an unknown outcome: settle them by query."""
        limit = self.clock_ns() - int(self.s.request_timeout_s * 1e9)
        for rid, p in list(self._pending.items()):
            if p.event is None and p.sent_ns and p.sent_ns < limit and self._pending.pop(rid, None) is p:
                self.log.warning("gateway: %s %s unanswered: querying it", p.kind, p.client_id)
                self._unknown(p.client_id)


_EXEC_OF_KIND = {"place": NEW, "cancel": "CANCELED", "modify": "AMENDMENT", "settle": RECONCILED}
