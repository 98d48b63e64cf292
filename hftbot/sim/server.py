"""The simulator's network face: Binance USDⓈ-M streams, REST and WS API on one loopback port.

One `websockets` 17 asyncio server. WebSocket upgrades go to websockets as usual; any other HTTP
request (REST: GET, POST, PUT, DELETE, with form bodies and keep-alive) is answered by a small
HTTP/1.1 responder on the same connection. Why not websockets' `process_request` hook for REST:
websockets 17 refuses requests with a body ("unsupported request body") and closes the connection
after every hook response, and real clients (ccxt) POST form bodies. `process_request` is still
used, to refuse WebSocket paths the venue does not serve (404, as Binance does).

Routes: `/public`, `/market`, `/private` each with `/ws`, `/ws/<streams>` and `/stream?streams=`
(a stream on the wrong route is acknowledged and stays silent, as on the real venue; no route
means `/public`), `/private/ws?listenKey=` and `/private/stream?listenKey=`, the WS API at
`/ws-fapi/v1`, and REST under `/fapi/...` (see `hftbot.sim.routing`). Test hooks under `/sim/`
(status, faults) are not part of Binance's API.

All protocol decisions live in `hftbot.sim.venue.Venue`; this module only moves bytes, keeps
subscriptions and runs the clock. It must never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import random
import re
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN

from hftbot.bench.common import percentiles_us
from hftbot.config import SimConfig
from hftbot.sim.faults import Faults
from hftbot.sim.market import ModelParams
from hftbot.sim.matching import ConstantLatency, LatencyModel
from hftbot.sim.routing import Session
from hftbot.sim.streams import PARTIAL_LEVELS, Message, combined
from hftbot.sim.venue import Venue, VenueSettings

log = logging.getLogger("hftbot.sim")

_STREAM_RE = re.compile(r"^([a-z0-9]+)@(depth(5|10|20)?(@(0|100|250|500)ms)?|bookticker|aggtrade|trade)$")
_ROUTES = ("public", "market", "private")
MAX_QUEUE = 10_000  # messages buffered per client before it is cut off as too slow
HEAD_TIMEOUT_S = 30.0  # a new connection must send its request head within this
MAX_BUFFER_BYTES = 8 << 20  # unsent bytes per client before it is cut off as too slow


@dataclass
class ServerSettings:
    """Network-side behaviour: where to listen and the latency the venue adds.

    Host, port and the constant latencies come from the `[sim]` config section (a setting is
    defined once, in `hftbot.config.SimConfig` and `defaults.toml`); `latency` takes a model
    object instead (jitter, in tests and benchmarks); keepalive is Binance's and only code sets it.
    """

    sim: SimConfig = field(default_factory=SimConfig)
    latency: LatencyModel | None = None  # None: constant delays from sim.*_latency_ms
    ping_interval_s: float = 180.0  # Binance pings every 3 minutes
    ping_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.latency is None:
            self.latency = LatencyModel(
                market_data=ConstantLatency(int(self.sim.market_data_latency_ms * 1e6)),
                order_entry=ConstantLatency(int(self.sim.order_latency_ms * 1e6)),
            )

    @property
    def host(self) -> str:
        return self.sim.host

    @property
    def port(self) -> int:
        return self.sim.port  # 0: any free port


def valid_request_id(rid: object) -> bool:
    """A control message id Binance accepts: an unsigned integer (ccxt), a string (the official SDK
    sends uuid4 strings) or null. The reply echoes it with its JSON type."""
    if rid is None or isinstance(rid, str):
        return True
    return isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 1 << 64


def stream_route(name: str) -> str | None:
    """Which route serves a stream name ("public" or "market"), None when unknown."""
    m = _STREAM_RE.match(name.lower())
    if not m:
        return None
    return "market" if m.group(2) == "aggtrade" else "public"


def diff_speed(name: str) -> int | None:
    """The window (ms) a diff or partial depth stream needs, None for other streams."""
    m = re.match(r"^[a-z0-9]+@depth(?:5|10|20)?(?:@(0|100|250|500)ms)?$", name)
    if not m:
        return None
    return int(m.group(1)) if m.group(1) else 250


def canonical(name: str) -> str:
    """Binance stream names are case-insensitive in the symbol; we publish camelCase kinds."""
    low = name.lower()
    if low.endswith("@bookticker"):
        return low[: -len("bookticker")] + "bookTicker"
    if low.endswith("@aggtrade"):
        return low[: -len("aggtrade")] + "aggTrade"
    return low


class _Client:
    """One market-data or user-data connection: its subscriptions and its send queue."""

    def __init__(self, server: SimServer, conn: ServerConnection, route: str, combined_mode: bool) -> None:
        self.server = server
        self.conn = conn
        self.route = route
        self.combined = combined_mode
        self.streams: list[str] = []  # as subscribed (LIST_SUBSCRIPTIONS)
        self.queue: deque[tuple[int, bytes]] = deque()
        self.wake = asyncio.Event()
        self.incoming: deque[float] = deque()
        self.closed = False

    def push(self, stream: str, payload: bytes) -> None:
        if self.closed:
            return
        data = combined(stream, payload) if self.combined else payload
        server = self.server
        if not self.queue and server.direct_ok():
            # the hot path: frame and write now, no task switch (websockets' Sans-I/O API)
            conn = self.conn
            if conn.protocol.state is not OPEN:
                return
            conn.protocol.send_text(data)
            conn.send_data()
            server.sent += 1
            due = server.venue.event_ns
            if due:
                server.delays_ns.append(time.time_ns() - due)
            if conn.transport.get_write_buffer_size() > MAX_BUFFER_BYTES:
                self._cut_off()
            return
        if len(self.queue) >= MAX_QUEUE:
            self._cut_off()
            return
        self.queue.append((server.venue.event_ns or time.time_ns(), data))
        self.wake.set()

    def _cut_off(self) -> None:
        self.closed = True
        asyncio.get_running_loop().create_task(self.conn.close(1008, "Client too slow"))

    async def writer(self) -> None:
        venue = self.server.venue
        md = self.server.settings.latency.market_data
        try:
            while not self.closed:
                await self.wake.wait()
                self.wake.clear()
                while self.queue:
                    extra = md.sample_ns(self.server.rng.random()) / 1e9
                    extra += venue.settings.faults.delay_ms / 1000.0
                    if extra > 0:
                        wait = self.queue[0][0] / 1e9 + extra - time.time_ns() / 1e9
                        if wait > 0:
                            await asyncio.sleep(wait)
                    due_ns, data = self.queue.popleft()
                    await self.conn.send(data, text=True)
                    self.server.sent += 1
                    self.server.delays_ns.append(time.time_ns() - due_ns)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True


def _is_upgrade(head: bytes) -> bool:
    h = head.lower()
    return b"\r\nupgrade:" in h and b"websocket" in h


class _Conn(ServerConnection):
    """A websockets connection that answers plain HTTP requests itself (see the module docstring)."""

    sim: SimServer  # set on the per-server subclass

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._mode = ""  # "", "ws" or "http"
        self._head = bytearray()
        self._http: _Http | None = None
        # websockets' own open timeout is off (keep-alive HTTP lives inside its handshake), so a
        # peer that never sends a request head is dropped here
        self._idle = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_S, self._head_timeout)

    def _head_timeout(self) -> None:
        if not self._mode:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._mode == "ws":
            super().data_received(data)
            return
        if self._mode == "http":
            assert self._http is not None
            self._http.feed(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 65536:
                self.transport.close()
            return
        buf = bytes(self._head)
        self._head = bytearray()
        self._idle.cancel()
        if _is_upgrade(buf[:end]):
            self._mode = "ws"
            super().data_received(buf)
        else:
            self._mode = "http"
            self._http = _Http(self.sim, self.transport, self._upgrade)
            self._http.feed(buf)

    def _upgrade(self, buf: bytes) -> None:
        """A keep-alive HTTP connection asks for a WebSocket (aiohttp reuses pooled connections)."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self._mode = "ws"
        super().data_received(buf)

    def connection_lost(self, exc: Exception | None) -> None:
        self._idle.cancel()
        if self._http is not None:
            self._http.close()
        super().connection_lost(exc)


@dataclass
class _Request:
    method: str
    target: str
    headers: dict[str, str]
    body: str


class _Http:
    """A minimal HTTP/1.1 server side: Content-Length bodies, keep-alive, answers in order."""

    def __init__(self, sim: SimServer, transport: asyncio.Transport, upgrade) -> None:
        self.sim = sim
        self.transport = transport
        self.upgrade = upgrade
        self.buf = bytearray()
        self.requests: asyncio.Queue[_Request | None] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._serve())
        sim._http_tasks.add(self.task)
        self.task.add_done_callback(sim._http_tasks.discard)
        sim._http_conns.add(self)

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if _is_upgrade(bytes(self.buf[:end])):
                rest, self.buf = bytes(self.buf), bytearray()
                self.upgrade(rest)
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, _ = lines[0].split(" ", 2)
            except ValueError:
                self._send(400, b'{"code":-1000,"msg":"Malformed HTTP request line."}', {}, close=True)
                return
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            try:
                n = int(headers.get("content-length", "0") or 0)
            except ValueError:
                n = -1
            if n < 0 or "chunked" in headers.get("transfer-encoding", "").lower():
                self._send(411, b'{"code":-1000,"msg":"Content-Length required."}', {}, close=True)
                return
            if len(self.buf) < end + 4 + n:
                return
            body = bytes(self.buf[end + 4 : end + 4 + n]).decode("utf-8", errors="replace")
            del self.buf[: end + 4 + n]
            self.requests.put_nowait(_Request(method.upper(), target, headers, body))

    async def _serve(self) -> None:
        try:
            while True:
                req = await self.requests.get()
                if req is None:
                    return
                close = req.headers.get("connection", "").lower() == "close"
                status, body, extra = await self.sim.handle_http(req)
                self._send(status, body, extra, close=close)
                if close:
                    return
        except Exception:
            log.exception("sim: HTTP handler failed")
            self.transport.close()

    def _send(self, status: int, body: bytes, extra: dict[str, str], close: bool = False) -> None:
        if self.transport.is_closing():
            return
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json;charset=UTF-8"]
        head.append(f"Content-Length: {len(body)}")
        head.extend(f"{k}: {v}" for k, v in extra.items())
        head.append("Connection: close" if close else "Connection: keep-alive")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self.transport.close()

    def close(self) -> None:
        self.requests.put_nowait(None)
        self.sim._http_conns.discard(self)


class SimServer:
    """The local exchange: a Venue behind a loopback port. `await start()`, then `await stop()`."""

    def __init__(
        self,
        params: ModelParams | None = None,
        venue_settings: VenueSettings | None = None,
        settings: ServerSettings | None = None,
    ) -> None:
        self.settings = settings or ServerSettings()
        self.venue = Venue(params, venue_settings)
        self.venue.on_market = self._on_market
        self.venue.pub.agg_wanted = self.venue.pub.ticker_wanted = False  # until subscribed
        self.venue.on_user = self._on_user
        self.subs: dict[str, set[_Client]] = {}
        self.user_subs: dict[str, set[_Client]] = {}
        self.clients: set[_Client] = set()
        self.rng = random.Random(self.venue.params.seed)  # latency draws
        self.sent = 0
        self.delays_ns: deque[int] = deque(maxlen=200_000)  # due → written to the socket, per message
        self._diff_counts: dict[str, int] = {}
        self._server: Server | None = None
        self._driver: asyncio.Task | None = None
        self._http_tasks: set[asyncio.Task] = set()
        self._http_conns: set[_Http] = set()
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        conn_cls = type("_SimConn", (_Conn,), {"sim": self})
        s = self.settings
        self._server = await serve(
            self._ws_handler,
            s.host,
            s.port,
            create_connection=conn_cls,
            process_request=self._process_request,
            open_timeout=None,  # HTTP keep-alive connections live inside the "handshake"
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            max_size=1 << 20,
            compression=None,
            close_timeout=2,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self._driver = asyncio.get_running_loop().create_task(self._drive())

    async def stop(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            self._driver = None
        for t in list(self._tasks) + list(self._http_tasks):
            t.cancel()
        for h in list(self._http_conns):  # keep-alive REST connections are not websockets' to close
            h.transport.close()
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(asyncio.shield(self._server.wait_closed()), 2.5)
            except TimeoutError:  # a peer that never answers the close handshake
                pending = list(self._server.handler_tasks)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def urls(self) -> dict[str, str]:
        host = self.settings.host
        return {
            "rest": f"http://{host}:{self.port}",
            "ws": f"ws://{host}:{self.port}",
            "ws_api": f"ws://{host}:{self.port}/ws-fapi/v1",
        }

    async def _drive(self) -> None:
        """Run the market in real time: apply due events, then sleep until the next one."""
        venue = self.venue
        while True:
            wait_ns = venue.advance()
            wait = min(wait_ns / 1e9, 0.05)
            # sleep a little short and let the next pass catch up: timers are ms-grained
            await asyncio.sleep(max(0.0, wait - 0.0005))

    # -- publishing ---------------------------------------------------------------------------------

    def direct_ok(self) -> bool:
        """Messages can be written at once (no latency or delay to model)."""
        md = self.settings.latency.market_data
        return not self.venue.settings.faults.delay_ms and not md.sample_ns(0.0) and not md.sample_ns(0.999)

    def _on_market(self, m: Message) -> None:
        clients = self.subs.get(m.stream)
        if not clients:
            return
        copies = 1
        f = self.venue.settings.faults
        if (f.drop_diff_every or f.duplicate_diff_every) and b'"depthUpdate"' in m.payload[:20]:
            n = self._diff_counts.get(m.stream, 0) + 1
            self._diff_counts[m.stream] = n
            if f.drop_diff_every and n % f.drop_diff_every == 0:
                return
            if f.duplicate_diff_every and n % f.duplicate_diff_every == 0:
                copies = 2
        for c in list(clients):
            for _ in range(copies):
                c.push(m.stream, m.payload)

    def _on_user(self, key: str, payload: bytes) -> None:
        for c in list(self.user_subs.get(key, ())):
            c.push(key, payload)

    # -- HTTP ------------------------------------------------------------------------------------------

    async def handle_http(self, req: _Request) -> tuple[int, bytes, dict]:
        path = req.target.split("?", 1)[0]
        if path.startswith("/sim/"):
            return self._admin(req, path)
        is_order = path.startswith("/fapi/v1/order") and req.method in ("POST", "PUT")
        lat = self.settings.latency.order_entry.sample_ns(self.rng.random()) if is_order else 0
        delay = self.venue.settings.faults.delay_ms / 1000.0
        if lat or delay:
            await asyncio.sleep(lat / 1e9 + delay)
        self.venue.advance()  # the book the order meets is the book of now
        return self.venue.rest(req.method, req.target, req.body, req.headers)

    def _admin(self, req: _Request, path: str) -> tuple[int, bytes, dict]:
        v = self.venue
        if path == "/sim/status" and req.method == "GET":
            body = {
                "port": self.port,
                "clients": len(self.clients),
                "user_streams": sum(len(c) for c in self.user_subs.values()),  # user-data subscriptions
                "sent": self.sent,
                "publish_delay_us": percentiles_us(self.delays_ns),  # due -> written to the socket
                "counters": v.counters,
                "update_id": v.engine.update_id,
                "faults": v.settings.faults.__dict__,
            }
            return 200, orjson.dumps(body), {}
        if path == "/sim/faults" and req.method == "POST":
            try:
                v.settings.faults = Faults.from_dict(orjson.loads(req.body or "{}"))
            except (ValueError, TypeError) as e:
                return 400, orjson.dumps({"code": -1102, "msg": str(e)}), {}
            return 200, orjson.dumps(v.settings.faults.__dict__), {}
        if path == "/sim/resetStats" and req.method == "POST":
            self.delays_ns.clear()
            self.sent = 0
            return 200, b"{}", {}
        if path == "/sim/expireListenKey" and req.method == "POST":
            v.expire_listen_key()
            return 200, b"{}", {}
        return 404, orjson.dumps({"code": -5000, "msg": f"Path {path}, Method {req.method} is invalid"}), {}

    # -- WebSocket -------------------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request):
        parts = urlsplit(request.path)
        path = parts.path.rstrip("/") or "/"
        if path == "/ws-fapi/v1":
            return None
        segs = path.strip("/").split("/")
        if segs and segs[0] in _ROUTES:
            segs = segs[1:]
        if segs and segs[0] in ("ws", "stream"):
            return None
        return conn.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")

    async def _ws_handler(self, conn: ServerConnection) -> None:
        parts = urlsplit(conn.request.path)
        path = parts.path.rstrip("/")
        if path == "/ws-fapi/v1":
            await self._ws_api(conn, parse_qs(parts.query))
            return
        segs = path.strip("/").split("/")
        route = "public"
        if segs[0] in _ROUTES:
            route = segs.pop(0)
        kind = segs.pop(0)  # "ws" or "stream"
        query = parse_qs(parts.query)
        client = _Client(self, conn, route, combined_mode=(kind == "stream"))
        initial: list[str] = []
        if kind == "ws" and segs:
            initial = "/".join(segs).split("/")
        if "streams" in query:
            initial += query["streams"][0].split("/")
        if route == "private":
            for key in query.get("listenKey", []):
                initial.append(key)
        self.clients.add(client)
        writer = asyncio.get_running_loop().create_task(client.writer())
        self._tasks.add(writer)
        writer.add_done_callback(self._tasks.discard)
        killer = None
        f = self.venue.settings.faults
        if f.disconnect_after_s > 0:
            killer = asyncio.get_running_loop().create_task(
                self._disconnect_later(conn, f.disconnect_after_s)
            )
        try:
            self._subscribe(client, [s for s in initial if s])
            async for msg in conn:
                now = time.monotonic()
                client.incoming.append(now)
                while client.incoming and now - client.incoming[0] > 1.0:
                    client.incoming.popleft()
                if len(client.incoming) > self.venue.settings.limits.ws_incoming_per_s:
                    await conn.close(1008, "Too many requests")
                    break
                reply = self._control(client, msg)
                if reply is not None:
                    await conn.send(reply, text=True)
        except ConnectionClosed:
            pass
        finally:
            client.closed = True
            client.wake.set()
            self._unsubscribe(client, list(client.streams))
            self.clients.discard(client)
            if killer is not None:
                killer.cancel()

    async def _disconnect_later(self, conn: ServerConnection, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await conn.close(1001, "Fault injection: disconnect")

    def _control(self, client: _Client, msg: str | bytes) -> bytes | None:
        try:
            req = orjson.loads(msg)
        except orjson.JSONDecodeError:
            return orjson.dumps(
                {"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}}
            )
        if not isinstance(req, dict):
            return orjson.dumps({"error": {"code": 2, "msg": "Invalid request: request must be an object"}})
        rid = req.get("id")
        method = req.get("method")
        params = req.get("params", [])
        if not valid_request_id(rid):
            return orjson.dumps({"error": {"code": 2, "msg": "Invalid request: invalid id"}, "id": None})
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return orjson.dumps(
                    {"error": {"code": 2, "msg": "Invalid request: params must be strings"}, "id": rid}
                )
            (self._subscribe if method == "SUBSCRIBE" else self._unsubscribe)(client, params)
            return orjson.dumps({"result": None, "id": rid})
        if method == "LIST_SUBSCRIPTIONS":
            return orjson.dumps({"result": list(client.streams), "id": rid})
        if method == "SET_PROPERTY":
            if params and params[0] == "combined" and len(params) == 2 and isinstance(params[1], bool):
                client.combined = params[1]
                return orjson.dumps({"result": None, "id": rid})
            return orjson.dumps({"error": {"code": 0, "msg": "Unknown property"}, "id": rid})
        if method == "GET_PROPERTY":
            if params == ["combined"]:
                return orjson.dumps({"result": client.combined, "id": rid})
            return orjson.dumps({"error": {"code": 0, "msg": "Unknown property"}, "id": rid})
        return orjson.dumps(
            {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid}
        )

    def _subscribe(self, client: _Client, names: list[str]) -> None:
        sym = self.venue.symbol.lower()
        for raw in names:
            if raw in client.streams:
                continue
            client.streams.append(raw)
            if client.route == "private" and self.venue.listen_key_valid(raw):
                self.user_subs.setdefault(raw, set()).add(client)
                continue
            name = canonical(raw)
            route = stream_route(name)
            if route is None or route != client.route or not name.startswith(sym + "@"):
                continue  # acknowledged, silent (wrong route or unknown stream)
            self.subs.setdefault(name, set()).add(client)
            speed = diff_speed(name)
            if speed is not None:
                self.venue.pub.want_speed(speed)
            if name.endswith("@trade"):
                self.venue.pub.trade_wanted = True
            elif name.endswith("@aggTrade"):
                self.venue.pub.agg_wanted = True
            elif name.endswith("@bookTicker"):
                self.venue.pub.ticker_wanted = True
            m = re.match(r"^[a-z0-9]+@depth(5|10|20)(?:@(100|250|500)ms)?$", name)
            if m and int(m.group(1)) in PARTIAL_LEVELS:
                self.venue.pub.partial_wanted.add((int(m.group(1)), int(m.group(2) or 250)))

    def _unsubscribe(self, client: _Client, names: list[str]) -> None:
        for raw in names:
            if raw in client.streams:
                client.streams.remove(raw)
            for table in (self.subs, self.user_subs):
                for key in (canonical(raw), raw):
                    s = table.get(key)
                    if s is not None:
                        s.discard(client)
                        if not s:
                            del table[key]

    async def _ws_api(self, conn: ServerConnection, query: dict) -> None:
        venue = self.venue
        session = Session(connected_ms=venue.now_ms())
        lat = self.settings.latency.order_entry
        try:
            async for msg in conn:
                text = msg if isinstance(msg, str) else msg.decode("utf-8", "replace")
                is_order = '"order.place"' in text or '"order.modify"' in text
                delay = venue.settings.faults.delay_ms / 1000.0
                wait = (lat.sample_ns(self.rng.random()) / 1e9 if is_order else 0.0) + delay
                if wait > 0:
                    await asyncio.sleep(wait)
                venue.advance()
                reply = venue.ws_api(msg, session)
                if query.get("returnRateLimits", ["true"])[0] == "false":
                    obj = orjson.loads(reply)
                    obj.pop("rateLimits", None)
                    reply = orjson.dumps(obj)
                await conn.send(reply, text=True)
        except ConnectionClosed:
            pass


def run_loop(coro) -> None:
    """Run a coroutine on a fresh uvloop loop (plain asyncio without uvloop); no global policy change."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a requirement
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


async def serve_forever(server: SimServer, stop: asyncio.Event | None = None) -> None:
    """Start, run until `stop` is set (or forever), then stop cleanly."""
    await server.start()
    try:
        if stop is None:
            await asyncio.Future()
        else:
            await stop.wait()
    finally:
        await server.stop()
