"""The order gateway: the only place on the client side that speaks Binance's order protocol.

Approved `OrderRequest`s go out as WS API `order.place` / `order.cancel` / `order.modify` frames;
what the venue says comes back as `OrderUpdate`, `Fill`, `Rejected`, `VenuePosition`,
`RateLimited` and `RateUsage` (hftbot.exec.messages), from the WS API answers and the user data
stream alike. The same code runs against the simulator, the mirror venue of replay/paper, the
testnet and Binance: only the URLs and the credentials differ.

Threads, and why. The send path is the latency that matters (signal read → order frame written on
the socket; target p99 ≤ 200 µs), so the caller's thread builds the frame and writes it itself on a
synchronous websocket (`websockets.sync`, TCP_NODELAY): no queue, no hand-off, no event loop
between the decision and `sendall`. Everything else runs beside it:

- the WS API reader: answers, matched to requests by id; normalised off the hot thread;
- the user-stream reader: ORDER_TRADE_UPDATE / ACCOUNT_UPDATE / listenKeyExpired; on a drop or an
  expiry it gets a new listenKey and reconnects;
- housekeeping: server-time offset, listenKey keep-alive, the `countdownCancelAll` dead-man switch
  (REST), request timeouts, reconnecting the WS API, the reconciliations, and the timed work the
  readers hand it (a -1021 retry after the time resync, a settle query asked again later).

Readers only normalise and append to an inbox; `poll()`, on the caller's thread, applies them to
the gateway's view of our orders, drops duplicates (fills by `(order_id, trade_id)`, order updates
that are not newer than what is known), counts the faults (`self.faults`, a
`hftbot.exec.faults.FaultLog`) and returns the events. So the state that risk and positions read
is touched by one thread only.

Faults (issue 13; what each is and what is done is the table in `hftbot.exec.faults`, which
`classify` applies — no decision by code is made here outside it):

- Unknown outcome (503, -1006/-1007, no answer in `request_timeout_s`, the WS API socket closed
  with the request in flight): settled by `order.status` on the client id, never by a resend. A
  -2013 answer is believed only after `settle_attempts` queries `settle_retry_ms` apart (the query
  may overtake the order); then the order never arrived (`Rejected`, request "place"). An order
  concluded absent that the venue reports later is revived. A settled order that has fills gets
  them from `userTrades?orderId=` at once.
- -1021 / -5028: the server-time offset is measured again (at most once a second) and the request
  resent once with a fresh timestamp and signature; blocking calls and REST the same.
- Rate limits (429 / 418, -1003 / -1015 / -1008): a `RateLimited` event with the venue's retry
  time (`error.data.retryAfter`, the REST `Retry-After`) for the risk manager's backoff; every WS
  API answer's `rateLimits` and every REST answer's `X-MBX-*` counts as `RateUsage`.
- Streams: a dropped user stream, `listenKeyExpired` or -1125 on the keep-alive → a new listenKey,
  reconnect; a dropped WS API → reconnect and log on again. Either way `syncing` is true from the
  drop until a full reconciliation (position, open orders, every fill since the last one seen,
  paged by `fromId`) has been applied by `poll()`: the executor holds trading meanwhile.

Other decisions written down:

- Auth: with an Ed25519 key the WS API session is logged on once (`session.logon`) and order frames
  carry no signature; with an HMAC key every request is signed. REST (countdown, open orders,
  trades) is signed with the same key (Ed25519 over REST is UNVERIFIED on fapi; the simulator
  accepts it).
- At start: exchangeInfo (tick, step), server time, logon, listenKey and user stream *first*
  (nothing is missed), then optionally cancel what a previous run left resting, then the snapshot
  (`account.position`, `openOrders`, the newest trade id). Fills at or before the snapshot's
  position time are already in it and are not applied again.
- On stop the listenKey is not deleted: one key serves every client of the account, and a DELETE
  would cut the others' streams. The dead-man countdown is switched off after the final cancel.

Secrets never reach a log: the `Signer` masks them and frames are never logged.
"""

from __future__ import annotations

import heapq
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
from hftbot.exec.faults import DEAD, FaultLog, classify
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
    RateLimited,
    RateUsage,
    Rejected,
    VenuePosition,
)
from hftbot.exec.ratelimit import usage_from_headers
from hftbot.exec.signing import ED25519, Signer
from hftbot.exec.transport import (
    MAYBE_SENT,
    GatewayError,
    RestClient,
    Units,
    WarmSocket,
    encode_frame,
    frame_writer,
)

UNKNOWN_CODES = (-1006, -1007)  # execution status unknown (plus any HTTP 503)
RECONCILED = "RECONCILED"  # exec_type of an OrderUpdate that comes from a snapshot, not an event
MAX_FILL_KEYS = 200_000
TRADES_PAGE = 1000  # userTrades rows per request (Binance's maximum)
MAX_TRADES_FETCH = 100_000  # rows one reconciliation reads at most
_AUTH_KEYS = ("timestamp", "recvWindow", "signature", "apiKey")
# fault phases (applied to the FaultLog by poll, on the caller's thread)
OBSERVE, RECOVER, FAIL, EVENT = "observe", "recover", "fail", "event"


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
    update_ms: int = 0  # venue time of the newest event applied


@dataclass
class _Pending:
    kind: str  # "place" | "cancel" | "modify" | "settle" | "sync"
    client_id: str = ""
    sent_ns: int = 0
    event: threading.Event | None = None
    result: Any = None
    error: tuple[int, int, str] | None = None  # (status, code, msg)
    method: str = ""  # place / cancel / modify: what to resend after a -1021
    params: dict | None = None
    retried: bool = False  # the one resend after a -1021
    attempt: int = 0  # settle: which query this is (-2013 is believed at `settle_attempts`)
    fault: str = ""  # settle: the fault kind it settles


@dataclass(frozen=True)
class _Fault:
    """A fault a reader or housekeeping saw; `poll()` applies it to the FaultLog."""

    kind: str
    phase: str  # OBSERVE | RECOVER | FAIL | EVENT
    key: str
    t_ns: int


@dataclass(frozen=True)
class _Snapshot:
    """A reconciliation's position in the inbox: applied whatever its time (it was read just now);
    `gens`: the stream faults (source, generation) this reconciliation ends."""

    position: VenuePosition
    gens: tuple[tuple[str, int], ...] = ()


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
        self.faults = FaultLog()  # caller's thread only (poll applies what the threads saw)
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "sent",
                "acks",
                "rejects",
                "fills",
                "fill_duplicates",
                "updates_stale",
                "snapshot_position_stale",
                "unknown",
                "settle_missing",
                "settled_absent",
                "revived",
                "retries_1021",
                "time_resyncs",
                "rate_limited",
                "user_reconnects",
                "ws_reconnects",
                "reconciliations",
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
        self._absent: dict[str, None] = {}  # settled as "never arrived": revived if the venue reports them
        # unknown outcomes whose query could not be sent (client id → fault kind): the next
        # reconciliation settles them (the order may have left `orders` meanwhile, filled)
        self._resettle: dict[str, str] = {}
        self._snapshot_ms = 0
        self._last_trade_id = 0  # the newest fill seen: a reconciliation reads every fill after it
        self._logged_on = False
        self._synced_ns = 0  # when the clock offset was last measured (a -1021 of a request sent after it
        # is the clock drifting again; one sent before it is already answered by that resync)
        self._key_dead = False  # the keep-alive said -1125: the stream renewal is a listen_key fault
        self._syncs: dict[str, int] = {}  # stream fault source → generation waiting for reconciliation
        self._sync_gen = 0
        self._sync_lock = threading.Lock()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []  # (monotonic due, seq, work)
        self._timer_seq = itertools.count()
        self._timer_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # housekeeping has timed work or a reconciliation to run
        self._threads: list[threading.Thread] = []
        self._user_up = threading.Event()
        self._warm: WarmSocket | None = None  # the rehearsal's own socket pair (`gateway.warm_socket`)
        self._warm_failed = False

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
            cancelled = len(self._rest("GET", "/fapi/v1/openOrders", {"symbol": self.symbol}))
            if cancelled:
                self._rest("DELETE", "/fapi/v1/allOpenOrders", {"symbol": self.symbol})
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
                self._rest("POST", "/fapi/v1/countdownCancelAll", {"symbol": self.symbol, "countdownTime": 0})
            except GatewayError as e:
                self.log.warning("gateway: could not switch the countdown off: %s", e)
        self._stop.set()
        self._wake.set()
        for ws in (self._ws, self._user_ws):
            if ws is not None:
                ws.close()
        for t in self._threads:
            t.join(2.0)  # readers end with their sockets; a reconnect in progress is abandoned
        self.rest.close()
        if self._warm is not None:
            self._warm.close()
            self._warm = None

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
            for attempt in (0, 1):
                sent_ns = self.clock_ns()
                params = {"apiKey": self.signer.api_key, "timestamp": self.now_ms()}
                try:
                    self.request("session.logon", self.signer.sign_ws(params), signed=False)
                    break
                except GatewayError as e:
                    if not attempt and classify(e.status, e.code) == "timestamp":  # the clock moved
                        self._inbox.append(_Fault("timestamp", OBSERVE, "session.logon", sent_ns))
                        self._resync(sent_ns)
                        continue
                    ws.close()  # a connection without its session is not one to trade on
                    raise
            if attempt:
                self._inbox.append(_Fault("timestamp", RECOVER, "session.logon", self.clock_ns()))
            self._logged_on = True

    def _ws_ready(self) -> bool:
        ws = self._ws
        return ws is not None and ws.protocol.state is OPEN and (self.signer.kind != ED25519 or self._logged_on)

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
        self._synced_ns = t1
        return self.time_offset_ms

    def _resync(self, sent_ns: int = 0) -> None:
        """-1021 for a request sent at `sent_ns`: measure the offset again, unless it was measured
        after that request left (a burst of -1021 answers resyncs once)."""
        if not sent_ns or self._synced_ns <= sent_ns:
            self.counters["time_resyncs"] += 1
            old = self.time_offset_ms
            self.sync_time()
            self.log.warning("gateway: -1021: server-time offset %d ms → %d ms", old, self.time_offset_ms)

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
        """A blocking WS API call (start-up, housekeeping; never a reader thread): its `result`.

        A signed call refused with -1021 is sent once more after the clock is resynced."""
        for attempt in (0, 1):
            sent = dict(params or {})
            if signed:
                self._auth(sent)
            rid = next(self._ids)
            p = _Pending("sync", sent_ns=self.clock_ns(), event=threading.Event())
            self._pending[rid] = p
            try:
                self._write(rid, method, sent)
            except MAYBE_SENT as e:
                self._pending.pop(rid, None)
                raise GatewayError(f"gateway: WS API closed during {method}: {e}", -1001) from None
            wait = self.s.request_timeout_s if timeout_s is None else timeout_s
            if not p.event.wait(wait):
                self._pending.pop(rid, None)
                raise GatewayError(f"gateway: {method} got no answer in {wait} s", -1007)
            if p.error is not None:
                status, code, msg = p.error
                if signed and not attempt and classify(status, code) == "timestamp":
                    self._inbox.append(_Fault("timestamp", OBSERVE, method, self.clock_ns()))
                    self._resync(p.sent_ns)
                    continue
                if attempt:
                    self._inbox.append(_Fault("timestamp", FAIL, method, self.clock_ns()))
                raise GatewayError(f"gateway: {method}: {status} {code} {msg}", code, status)
            if attempt:
                self._inbox.append(_Fault("timestamp", RECOVER, method, self.clock_ns()))
            return p.result
        raise AssertionError("unreachable")

    def _rest(self, method: str, path: str, params: dict, signed: bool = True) -> Any:
        """A REST call (signed: timestamp added); one resend after a -1021 resync; the answer's
        used counts and rate-limit refusals go to the inbox."""
        for attempt in (0, 1):
            sent_ns = self.clock_ns()
            try:
                data = self.rest.call(method, path, {**params, **self._ts()} if signed else params, signed)
            except GatewayError as e:
                self._usage(self.rest.last_headers)
                kind = classify(e.status, e.code, path)
                if kind == "rate_limit":
                    retry_at = self.now_ms() + int(e.retry_after_s * 1000) if e.retry_after_s else 0
                    self._rate_limited(e.code, e.status, retry_at, path)
                if signed and not attempt and kind == "timestamp":
                    self._inbox.append(_Fault("timestamp", OBSERVE, path, self.clock_ns()))
                    self._resync(sent_ns)
                    continue
                if attempt:
                    self._inbox.append(_Fault("timestamp", FAIL, path, self.clock_ns()))
                raise
            self._usage(self.rest.last_headers)
            if attempt:
                self._inbox.append(_Fault("timestamp", RECOVER, path, self.clock_ns()))
            return data
        raise AssertionError("unreachable")

    def _usage(self, headers: dict[str, str]) -> None:
        used = usage_from_headers(headers) if headers else ()
        if used:
            self._inbox.append(RateUsage((), tuple(used)))

    def _rate_limited(self, code: int, status: int, retry_at_ms: int, request: str) -> None:
        self.counters["rate_limited"] += 1
        now = self.clock_ns()
        weight = code == -1003 or status == 418
        self._inbox.append(RateLimited(code, status, retry_at_ms, weight, request))
        self._inbox.append(_Fault("rate_limit", OBSERVE, "", now))
        self.log.warning(
            "gateway: rate limit on %s (%s %s): backing off until %s", request, status, code, retry_at_ms or "?"
        )

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
        params = self._place_params(req, units)
        if params is None:
            self._inbox.append(
                Rejected(
                    cid, -1116, f"gateway: order type {req.type!r} not supported", self.now_ms(), "place"
                )
            )
            return 0
        self._auth(params)
        rid = next(self._ids)
        order = VenueOrder(cid, req.side, req.qty, req.px, req.type, req.tif, req.reduce_only)
        self.orders[cid] = order
        self._pending[rid] = _Pending("place", cid, self.clock_ns(), method="order.place", params=params)
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

    def _place_params(self, req: OrderRequest, units: Units) -> dict[str, Any] | None:
        """`order.place`'s parameters before the timestamp and signature (None: a type not sent)."""
        params: dict[str, Any] = {
            "symbol": self.symbol,
            "side": "BUY" if req.side == BUY else "SELL",
            "type": req.type,
            "quantity": units.qty(req.qty),
            "newClientOrderId": req.client_id,
        }
        if req.type == LIMIT:
            params["price"] = units.px(req.px)
            params["timeInForce"] = req.tif
        elif req.type != MARKET:
            return None
        if req.reduce_only:
            params["reduceOnly"] = "true"
        return params

    def rehearse(self, req: OrderRequest) -> int:
        """What `place` does to build the frame of `req` (parameters, timestamp, signature, JSON,
        mask) and nothing after it: no frame written, nothing registered, no id drawn. The
        execution loop rehearses while idle to keep the send path in the caches (docs/exec.md
        "Rehearsal"). With `gateway.warm_socket`, as many zeros as the frame has bytes then go
        through a private loopback pair (`transport.WarmSocket`), so the kernel's side of the
        write is warm too. Returns the frame's length; 0 when not connected or not sendable."""
        units = self.units
        if units is None or self._frame_writer is None or not CLIENT_ID_RE.match(req.client_id):
            return 0
        params = self._place_params(req, units)
        if params is None:
            return 0
        self._auth(params)
        VenueOrder(req.client_id, req.side, req.qty, req.px, req.type, req.tif, req.reduce_only)
        _Pending("place", req.client_id, self.clock_ns(), method="order.place", params=params)
        n = len(encode_frame(orjson.dumps({"id": 0, "method": "order.place", "params": params})))
        if self.s.warm_socket and not self._warm_failed:
            try:
                if self._warm is None:
                    self._warm = WarmSocket()
                self._warm.write(n)
            except OSError as e:  # a rehearsal never stops trading: without the pair from now on
                if self._warm is not None:
                    self._warm.close()
                self._warm, self._warm_failed = None, True
                self.log.warning("gateway: warm socket broke or could not open (%s): rehearsals build "
                                 "frames only", e)
        return n

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
        # registered before the write: the answer may beat us
        self._pending[rid] = _Pending(kind, client_id, self.clock_ns(), method=method, params=params)
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
        self._rest("DELETE", "/fapi/v1/allOpenOrders", {"symbol": self.symbol})

    def refresh_countdown(self) -> None:
        """Re-arm the dead-man switch: the venue cancels all our orders `countdown_ms` from now."""
        self._rest(
            "POST", "/fapi/v1/countdownCancelAll", {"symbol": self.symbol, "countdownTime": self.s.countdown_ms}
        )
        self.counters["countdown_refresh"] += 1

    # ------------------------------------------------------------------------ unknown outcomes

    def _unknown(self, client_id: str) -> None:
        """A request whose outcome we cannot know: mark the order UNKNOWN (both ways) and ask."""
        self.counters["unknown"] += 1
        self._unknown_ids.append(client_id)
        self._inbox.append(_Fault("unknown_outcome", OBSERVE, client_id, self.clock_ns()))
        self._settle_later(client_id)

    def has_unknown(self) -> bool:
        return bool(self._unknown_ids)

    def take_unknown(self) -> list[str]:
        """Client ids whose outcome became unknown since the last call (positions marks them)."""
        out = []
        while self._unknown_ids:
            out.append(self._unknown_ids.popleft())
        return out

    def _settle_later(self, client_id: str, attempt: int = 1, fault: str = "unknown_outcome") -> None:
        """Ask the venue about the order by its client id (never resend it): query number `attempt`."""
        rid = next(self._ids)
        self._pending[rid] = _Pending("settle", client_id, self.clock_ns(), attempt=attempt, fault=fault)
        try:
            self._write(
                rid, "order.status", self._auth({"symbol": self.symbol, "origClientOrderId": client_id})
            )
        except (*MAYBE_SENT, GatewayError):
            self._pending.pop(rid, None)  # the reconciliation after the reconnect settles it
            self._resettle[client_id] = fault

    def _settle_again(self, p: _Pending, attempt: int, delay_s: float) -> None:
        self._later(delay_s, lambda: self._settle_later(p.client_id, attempt, p.fault))

    def _later(self, delay_s: float, work: Callable[[], None]) -> None:
        """Hand `work` to the housekeeping thread, `delay_s` from now (readers never block)."""
        with self._timer_lock:
            heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._timer_seq), work))
        self._wake.set()

    def _retry(self, p: _Pending) -> None:
        """After -1021 (housekeeping thread): resync the clock, resend once, freshly signed."""
        try:
            self._resync(p.sent_ns)
        except GatewayError as e:
            self.log.error("gateway: time resync after -1021 failed: %s", e)
        params = {k: v for k, v in (p.params or {}).items() if k not in _AUTH_KEYS}
        self._auth(params)
        rid = next(self._ids)
        self._pending[rid] = _Pending(
            p.kind, p.client_id, self.clock_ns(), method=p.method, params=params, retried=True
        )
        self.counters["retries_1021"] += 1
        try:
            self._write(rid, p.method, params)
        except GatewayError as e:  # not connected: not sent
            self._pending.pop(rid, None)
            self._inbox.append(Rejected(p.client_id, e.code, f"{p.method} not resent: {e}", self.now_ms(), p.kind))
            self._inbox.append(_Fault("timestamp", FAIL, p.client_id, self.clock_ns()))
        except MAYBE_SENT:
            self._pending.pop(rid, None)
            self._inbox.append(_Fault("timestamp", RECOVER, p.client_id, self.clock_ns()))
            self._unknown(p.client_id)

    def _fetch_order_trades(self, order_id: int) -> None:
        """A settled order with fills: its fills from REST (duplicates are dropped by poll)."""
        try:
            rows = self._rest("GET", "/fapi/v1/userTrades", {"symbol": self.symbol, "orderId": order_id})
        except GatewayError as e:
            self.log.error("gateway: fills of settled order %d: %s", order_id, e)
            return
        self._inbox.extend(self._fill_of_trade(t) for t in rows)

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
                self._begin_sync("ws_api")
            for rid, p in list(self._pending.items()):
                if self._pending.pop(rid, None) is None:
                    continue
                if p.event is not None:  # wake blocked callers
                    p.error = (0, -1001, "WS API connection closed")
                    p.event.set()
                else:  # sent, unanswered: settled by the reconciliation after the reconnect
                    self._end_retry(p, self.clock_ns())
                    if p.kind != "settle":
                        self.counters["unknown"] += 1
                        self._unknown_ids.append(p.client_id)
                        self._inbox.append(_Fault("unknown_outcome", OBSERVE, p.client_id, self.clock_ns()))
                    self._resettle[p.client_id] = p.fault or "unknown_outcome"

    def _on_answer(self, obj: dict) -> None:
        limits = obj.get("rateLimits")
        if limits:
            self.rate_limits = limits
            self._inbox.append(RateUsage(tuple(limits)))
        p = self._pending.pop(obj.get("id"), None)
        if p is None:
            return
        status = obj.get("status", 0)
        err = obj.get("error")
        ok = err is None and status == 200
        code, msg = (0, "") if ok else (int((err or {}).get("code", 0)), str((err or {}).get("msg", "")))
        kind = "" if ok else classify(status, code, p.kind)
        if kind == "rate_limit":
            data = (err or {}).get("data")
            retry_at = int(data.get("retryAfter") or 0) if isinstance(data, dict) else 0
            self._rate_limited(code, status, retry_at, p.kind if p.event is None else "sync")
        if p.event is not None:
            if not ok:
                p.error = (status, code, msg)
            else:
                p.result = obj.get("result")
            p.event.set()
            return
        now_ns = self.clock_ns()
        if p.kind == "settle":
            self._on_settle(p, obj.get("result") if ok else None, status, code, msg, kind, now_ns)
            return
        if ok:
            if p.kind == "place":
                self.counters["acks"] += 1
            self._inbox.append(self._update_from_order(obj["result"], _EXEC_OF_KIND.get(p.kind, NEW)))
            self._end_retry(p, now_ns)
            return
        if kind == "timestamp" and not p.retried and p.params is not None:
            self._inbox.append(_Fault("timestamp", OBSERVE, p.client_id, now_ns))
            self._later(0.0, lambda: self._retry(p))  # refused before execution: one resend is safe
            return
        if kind == "unknown_outcome":
            self.log.warning(
                "gateway: %s %s: outcome unknown (%s %s): querying it", p.kind, p.client_id, status, code
            )
            self._end_retry(p, now_ns)
            self._unknown(p.client_id)
            return
        self.counters["rejects"] += 1
        self._end_retry(p, now_ns, failed=kind == "timestamp")  # still -1021 after the resync: gave up
        if kind in DEAD and kind not in ("rate_limit", "timestamp"):
            self._inbox.append(_Fault(kind, EVENT, p.client_id, now_ns))
        self._inbox.append(Rejected(p.client_id, code, msg, now_ns // 1_000_000 + self.time_offset_ms, p.kind))
        if kind == "unknown_order" and p.client_id in self.orders:
            self._inbox.append(_Fault("unknown_order", OBSERVE, p.client_id, now_ns))
            self._settle_later(p.client_id, fault="unknown_order")  # filled or gone meanwhile: learn its state

    def _end_retry(self, p: _Pending, now_ns: int, failed: bool = False) -> None:
        """The resend after a -1021 was answered (or its fate became an unknown outcome of its own):
        the `timestamp` episode ends."""
        if p.retried:
            self._inbox.append(_Fault("timestamp", FAIL if failed else RECOVER, p.client_id, now_ns))

    def _on_settle(
        self, p: _Pending, result: dict | None, status: int, code: int, msg: str, kind: str, now_ns: int
    ) -> None:
        """The answer to an `order.status` that settles an unknown outcome (reader thread)."""
        cid = p.client_id
        if result is not None:
            self._inbox.append(self._update_from_order(result, RECONCILED))
            if self.units is not None and self.units.lots(result.get("executedQty", "0")) > 0:
                oid = int(result["orderId"])
                self._later(0.0, lambda: self._fetch_order_trades(oid))
            self._inbox.append(_Fault(p.fault, RECOVER, cid, now_ns))
            return
        if code == -2013:
            self.counters["settle_missing"] += 1
            if p.attempt < self.s.settle_attempts:  # the query may have overtaken the order: ask again
                self._settle_again(p, p.attempt + 1, self.s.settle_retry_ms * p.attempt / 1000.0)
                return
            self.counters["settled_absent"] += 1
            self._absent[cid] = None
            if len(self._absent) > MAX_FILL_KEYS:
                del self._absent[next(iter(self._absent))]
            self.log.warning("gateway: %s never reached the venue (-2013 after %d queries)", cid, p.attempt)
            self._inbox.append(
                Rejected(cid, code, f"settled: never arrived ({msg})", now_ns // 1_000_000 + self.time_offset_ms)
            )
            self._inbox.append(_Fault(p.fault, RECOVER, cid, now_ns))
            return
        if kind in ("unknown_outcome", "rate_limit", "timestamp"):  # the query itself failed: ask later
            if kind == "timestamp":
                self._later(0.0, lambda: self._resync(p.sent_ns))
            self._settle_again(p, p.attempt, self.s.settle_retry_ms / 1000.0)
            return
        self.log.error("gateway: order.status %s failed: %s %s", cid, code, msg)
        self._inbox.append(_Fault(p.fault, FAIL, cid, now_ns))

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

    def _fill_of_trade(self, t: dict) -> Fill:
        """A `userTrades` row as a Fill (client id filled in by poll when the order is known)."""
        u = self.units
        assert u is not None
        return Fill(
            "",
            int(t["orderId"]),
            int(t["id"]),
            BUY if t["side"] == "BUY" else SELL,
            u.lots(t["qty"]),
            u.ticks(t["price"]),
            float(t["commission"]),
            bool(t["maker"]),
            int(t["time"]),
        )

    def _user_url(self) -> str:
        return self.venue.ws.rstrip("/") + self.s.user_stream_path.format(listen_key=self.listen_key)

    def _user_loop(self) -> None:
        """Keep the user data stream up; after a drop or an expiry, a new listenKey and reconnect
        (the reconciliation that follows is housekeeping's, once the stream is up again)."""
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
            if not first:
                self.counters["user_reconnects"] += 1
            first = False
            self._user_up.set()
            self._wake.set()  # a reconciliation may be waiting for the stream
            expired = False
            try:
                for msg in ws:
                    try:
                        if self._on_user_event(orjson.loads(msg)):
                            expired = True
                            break
                    except Exception:
                        self.counters["ws_errors"] += 1
                        self.log.exception("gateway: bad user data event")
            except ConnectionClosed:
                pass
            self._user_up.clear()
            ws.close()
            if self._stop.is_set():
                break
            kind = "listen_key" if expired or self._key_dead else "user_stream"
            self._key_dead = False
            self.log.warning("gateway: user data stream ended (%s): reconnecting with a new listenKey", kind)
            self._begin_sync(kind)
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

    def _begin_sync(self, kind: str, count: bool = True) -> None:
        """A stream fault: `syncing` until a reconciliation taken after it has been applied."""
        with self._sync_lock:
            self._sync_gen += 1
            self._syncs[kind] = self._sync_gen
        if count:
            self._inbox.append(_Fault(kind, OBSERVE, "", self.clock_ns()))
        self._wake.set()

    @property
    def syncing(self) -> bool:
        """A stream or connection fault is waiting for its reconciliation: hold trading."""
        return bool(self._syncs)

    def request_reconcile(self, reason: str = "mismatch") -> None:
        """Ask for a full reconciliation (the executor, on a position mismatch); holds like a fault."""
        self._begin_sync(reason, count=False)

    def reconcile(self, initial: bool = False, gens: tuple[tuple[str, int], ...] = ()) -> VenueSnapshot:
        """Snapshot position and open orders; queue what changed (plus every fill since the last
        one seen) as events, then the snapshot marker that ends the stream faults in `gens`."""
        rows = self.request("account.position", {"symbol": self.symbol})
        pos = VenuePosition(0, 0.0, 0)
        for r in rows:
            if r.get("symbol", "").upper() == self.symbol and r.get("positionSide", "BOTH") == "BOTH":
                pos = VenuePosition(
                    self.units.lots(r["positionAmt"]),
                    float(r["entryPrice"]),
                    int(r.get("updateTime") or 0),
                )
        opened = self._rest("GET", "/fapi/v1/openOrders", {"symbol": self.symbol})
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
                    update_ms=up.event_ms,
                )
            newest = self._rest("GET", "/fapi/v1/userTrades", {"symbol": self.symbol, "limit": 1})
            self._last_trade_id = max((int(t["id"]) for t in newest), default=0)
            return snap
        self.counters["reconciliations"] += 1
        self._inbox.extend(self._fill_of_trade(t) for t in self._trades_since())
        venue_open = {up.client_id for up in updates}
        self._inbox.extend(updates)
        now = self.clock_ns()
        for up in updates:  # the venue lists it: an unknown outcome of it is settled
            self._inbox.append(_Fault("unknown_outcome", RECOVER, up.client_id, now))
            self._inbox.append(_Fault("unknown_order", RECOVER, up.client_id, now))
        resettle = {cid: self._resettle.pop(cid, "unknown_outcome") for cid in list(self._resettle)}
        for cid in dict.fromkeys([*self.orders, *resettle]):
            if cid not in venue_open:  # we think it is open (or in flight), the venue does not list it
                self._settle_later(cid, fault=resettle.get(cid, "unknown_outcome"))
        self._inbox.append(_Snapshot(pos, gens))
        return snap

    def _trades_since(self) -> list[dict]:
        """Every fill after the newest one seen (`fromId`, paged); the last 1000 if none was seen."""
        last = self._last_trade_id
        if last <= 0:
            return self._rest("GET", "/fapi/v1/userTrades", {"symbol": self.symbol, "limit": TRADES_PAGE})
        out: list[dict] = []
        while len(out) < MAX_TRADES_FETCH:
            page = self._rest(
                "GET", "/fapi/v1/userTrades", {"symbol": self.symbol, "fromId": last + 1, "limit": TRADES_PAGE}
            )
            out += page
            if len(page) < TRADES_PAGE:
                break
            last = int(page[-1]["id"])
        return out

    # ------------------------------------------------------------------------------ events

    def poll(self) -> list[OrderUpdate | Fill | Rejected | VenuePosition | RateLimited | RateUsage]:
        """Every venue event since the last call, duplicates and stale updates removed."""
        out: list = []
        inbox = self._inbox
        faults = self.faults
        while inbox:
            ev = inbox.popleft()
            t = type(ev)
            if t is Fill:
                key = (ev.order_id, ev.trade_id)
                if key in self._fill_keys:
                    self.counters["fill_duplicates"] += 1
                    faults.event("duplicate_fill")
                    continue
                if ev.time_ms <= self._snapshot_ms:  # in the start snapshot's position already
                    self.counters["fill_duplicates"] += 1
                    continue
                self._remember_fill(key)
                if ev.trade_id > self._last_trade_id:
                    self._last_trade_id = ev.trade_id
                if not ev.client_id:  # recovered from userTrades: name the order if we know it
                    cid = next((c for c, o in self.orders.items() if o.order_id == ev.order_id), "")
                    ev = Fill(
                        cid, ev.order_id, ev.trade_id, ev.side, ev.qty, ev.px, ev.fee, ev.maker, ev.time_ms
                    )
                self.local_lots += ev.qty if ev.side == BUY else -ev.qty
                self.counters["fills"] += 1
            elif t is OrderUpdate:
                if not self._apply_update(ev):
                    self.counters["updates_stale"] += 1
                    continue
            elif t is _Fault:
                self._apply_fault(ev)
                continue
            elif t is VenuePosition:
                if ev.time_ms < self.position.time_ms:
                    continue  # the stream's news is older than what we know
                self.position = ev
            elif t is _Snapshot:
                self._end_syncs(ev.gens)
                # The position was asked for before the open orders and the fills were fetched, so
                # stream news queued meanwhile (a fill, its ACCOUNT_UPDATE) can be newer than it:
                # the venue's own update time decides, as for the stream's positions (ties: the
                # snapshot). Seen as a reconciled 0 lots overwriting a fill's 4 right after it.
                if ev.position.time_ms >= self.position.time_ms:
                    self.position = ev.position
                else:
                    self.counters["snapshot_position_stale"] += 1
                ev = self.position
            elif t is Rejected and ev.request == "place":
                o = self.orders.get(ev.client_id)
                if o is not None and (o.status == "PENDING_NEW" or ev.code == -2013):  # -2013: settled absent
                    del self.orders[ev.client_id]
            out.append(ev)
        return out

    def _apply_fault(self, f: _Fault) -> None:
        faults = self.faults
        if f.phase == OBSERVE:
            faults.observe(f.kind, f.t_ns, f.key)
        elif f.phase == RECOVER:
            faults.recover(f.kind, f.t_ns, f.key)
        elif f.phase == FAIL:
            faults.fail(f.kind, f.key)
        else:
            faults.event(f.kind)

    def _end_syncs(self, gens: tuple[tuple[str, int], ...]) -> None:
        now = self.clock_ns()
        with self._sync_lock:
            ended = [src for src, gen in gens if self._syncs.get(src) == gen]
            for src in ended:
                del self._syncs[src]
        for src in ended:
            if src != "mismatch":  # the executor closes that one when the positions agree
                self.faults.recover(src, now)

    def _remember_fill(self, key: tuple[int, int]) -> None:
        self._fill_keys.add(key)
        self._fill_order.append(key)
        if len(self._fill_order) > MAX_FILL_KEYS:
            self._fill_keys.discard(self._fill_order.popleft())

    def _apply_update(self, ev: OrderUpdate) -> bool:
        """Fold an update into our view of the order; False when it tells nothing new."""
        o = self.orders.get(ev.client_id)
        if o is None:
            if ev.client_id in self._absent and ev.status not in FINAL_STATUSES:
                # settled as "never arrived", and there it is (the venue got it after all)
                del self._absent[ev.client_id]
                self.counters["revived"] += 1
                self.log.warning("gateway: %s, settled as never arrived, is at the venue: revived", ev.client_id)
            elif ev.exec_type != RECONCILED or ev.status in FINAL_STATUSES or ev.client_id in self._closed:
                return False  # a late duplicate of a closed order, or an order that is not ours
            o = VenueOrder(ev.client_id, ev.side, ev.qty, ev.px, LIMIT, "GTC", False)
            self.orders[ev.client_id] = o
        amended = (ev.qty, ev.px) != (o.qty, o.px) and ev.event_ms >= o.update_ms
        newer = (
            ev.filled > o.filled
            or (ev.status in FINAL_STATUSES)
            or (o.status == "PENDING_NEW")
            or (ev.filled == o.filled and amended and ev.exec_type in ("AMENDMENT", RECONCILED))
        )
        if not newer or ev.filled < o.filled:
            return False
        o.order_id = ev.order_id or o.order_id
        o.status, o.filled, o.qty, o.px = ev.status, ev.filled, ev.qty, ev.px
        o.update_ms = max(o.update_ms, ev.event_ms)
        if ev.status in FINAL_STATUSES:
            del self.orders[ev.client_id]
            self._closed[ev.client_id] = None
            if len(self._closed) > MAX_FILL_KEYS:
                del self._closed[next(iter(self._closed))]
            now = self.clock_ns()
            self.faults.recover("unknown_outcome", now, ev.client_id)  # final: nothing left to learn
            self.faults.recover("unknown_order", now, ev.client_id)
        return True

    def status(self) -> dict[str, int]:
        """Integer counters for the heartbeat and the summary."""
        return {
            **self.counters,
            "open_orders": len(self.orders),
            "venue_lots": self.position.lots,
            "syncing": int(self.syncing),
            "unsettled": self.faults.open_count("unknown_outcome"),
        }

    # ------------------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        s = self.s
        now = time.monotonic()
        next_countdown = now + s.countdown_refresh_s
        next_keepalive = now + s.listen_key_keepalive_s
        next_sync = now + s.time_sync_s
        next_ws, ws_backoff = now, s.reconnect_backoff_s
        next_reconcile = now
        while not self._stop.is_set():
            self._wake.wait(self._next_timer_in(0.1))
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            ws = self._ws
            if (ws is None or ws.protocol.state is not OPEN) and now >= next_ws:
                try:
                    self._connect_ws_api()
                    self.counters["ws_reconnects"] += 1
                    ws_backoff = s.reconnect_backoff_s
                except GatewayError as e:
                    self.log.error("gateway: WS API reconnect failed (%s): next try in %.1f s", e, ws_backoff)
                    next_ws, ws_backoff = now + ws_backoff, min(ws_backoff * 2, 5.0)
                continue
            self._run_timers(now)
            try:
                if self._syncs and now >= next_reconcile and self._ws_ready() and self._user_up.is_set():
                    with self._sync_lock:
                        gens = tuple(self._syncs.items())
                    try:
                        self.reconcile(gens=gens)  # settles what was in flight, reports the position
                    except GatewayError as e:
                        next_reconcile = now + s.reconnect_backoff_s
                        self.log.error("gateway: reconciliation failed (%s): next try in %.1f s", e,
                                       s.reconnect_backoff_s)
                if s.countdown_ms and now >= next_countdown:
                    next_countdown = now + s.countdown_refresh_s
                    try:
                        self.refresh_countdown()
                        self._inbox.append(_Fault("dead_man", RECOVER, "", self.clock_ns()))
                    except GatewayError as e:
                        self.counters["countdown_errors"] += 1
                        self._inbox.append(_Fault("dead_man", OBSERVE, "", self.clock_ns()))
                        self.log.error("gateway: countdownCancelAll refresh failed: %s", e)
                if now >= next_keepalive and self._user_up.is_set():  # (a renewal in progress has a new key)
                    next_keepalive = now + s.listen_key_keepalive_s
                    try:
                        self.request("userDataStream.ping", {"apiKey": self.signer.api_key}, signed=False)
                        self.counters["keepalive"] += 1
                    except GatewayError as e:
                        self.log.error("gateway: listenKey keep-alive failed (%s): renewing the stream", e)
                        self._key_dead = classify(e.status, e.code) == "listen_key"
                        if self._user_ws is not None:
                            self._user_ws.close()
                if now >= next_sync:
                    next_sync = now + s.time_sync_s
                    self.sync_time()
                self._expire_pending()
            except GatewayError as e:
                self.log.error("gateway: housekeeping: %s", e)

    def _next_timer_in(self, longest: float) -> float:
        with self._timer_lock:
            if not self._timers:
                return longest
            return max(0.0, min(longest, self._timers[0][0] - time.monotonic()))

    def _run_timers(self, now: float) -> None:
        while True:
            with self._timer_lock:
                if not self._timers or self._timers[0][0] > now:
                    return
                _, _, work = heapq.heappop(self._timers)
            try:
                work()
            except GatewayError as e:
                self.log.error("gateway: %s", e)

    def _expire_pending(self) -> None:
        """Requests unanswered past the timeout have an unknown outcome: settle them by query
        (an unanswered query is asked again)."""
        limit = self.clock_ns() - int(self.s.request_timeout_s * 1e9)
        for rid, p in list(self._pending.items()):
            if p.event is None and p.sent_ns and p.sent_ns < limit and self._pending.pop(rid, None) is p:
                if p.kind == "settle":
                    self._settle_later(p.client_id, p.attempt, p.fault)
                    continue
                self.log.warning("gateway: %s %s unanswered: querying it", p.kind, p.client_id)
                self._end_retry(p, self.clock_ns())
                self._unknown(p.client_id)


_EXEC_OF_KIND = {"place": NEW, "cancel": "CANCELED", "modify": "AMENDMENT", "settle": RECONCILED}
