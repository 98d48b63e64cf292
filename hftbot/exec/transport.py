"""The bytes on the wire for the gateway: a direct WS frame writer, a keep-alive signed REST
client, and the symbol's decimal strings with the send path's cache.

No protocol decisions live here (those are `hftbot.exec.gateway`'s): only how a request becomes
bytes on a socket, fast, and how an answer's decimal strings become ticks and lots. No logging of
frames or queries (they carry signatures).
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN
from websockets.sync.client import ClientConnection

from hftbot.exec.filters import SymbolFilters
from hftbot.exec.signing import Signer

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C speedups
    from websockets.utils import apply_mask

MAYBE_SENT = (ConnectionClosed, OSError)  # a write that failed part-way: the frame may have left


def frame_writer(ws: ClientConnection) -> Callable[[bytes], None]:
    """A writer of whole, masked text frames straight onto the connection's socket.

    Why not `ws.send`: on this send path websockets builds a Frame object, serialises it and walks
    its send context; measured with 10 ms between sends (the execution loop's case: every order
    follows an idle wait, caches cold), `ws.send` took ~200 µs p50 where this took ~120 µs on the
    same socket (the 2-core dev VM under load; `bench exec` measures the send path). It holds the
    connection's own lock (`protocol_mutex`, which websockets takes for its pings, pongs and
    close frames), so frames never interleave, and it checks the protocol is OPEN under it. A
    websockets version without those attributes gets `ws.send` instead. RFC 6455: a client
    frame is masked with a fresh unpredictable key (os.urandom).
    """
    mutex, sock, proto = getattr(ws, "protocol_mutex", None), getattr(ws, "socket", None), ws.protocol
    if mutex is None or sock is None:
        return lambda payload: ws.send(payload, text=True)

    def write(payload: bytes) -> None:
        data = encode_frame(payload)
        with mutex:
            if proto.state is not OPEN:
                raise GatewayError("gateway: WS API not connected", -1001)
            sock.sendall(data)

    return write


def encode_frame(payload: bytes) -> bytes:
    """One whole masked client text frame (RFC 6455 §5.2): header, fresh mask key, masked payload."""
    n = len(payload)
    mask = os.urandom(4)
    if n < 126:
        head = _SHORT_HEADS[n]
    elif n < 65536:
        head = b"\x81\xfe" + n.to_bytes(2, "big")
    else:
        head = b"\x81\xff" + n.to_bytes(8, "big")
    return head + mask + apply_mask(payload, mask)


_SHORT_HEADS = [bytes((0x81, 0x80 | n)) for n in range(126)]  # FIN + text, masked, length < 126


class WarmSocket:
    """A private loopback TCP connection the rehearsal writes to: the kernel's send path kept warm.

    Why: on the 2-core dev VM a 300-byte `sendall` on a loopback TCP socket costs ~90 µs p50 after
    10 ms or more without a socket write by the process, and ~23 µs when a write of the same size
    went through any TCP socket of the process within the last millisecond (measured by hand,
    2026-12-03: the syscall entry, the TCP and loopback code and their data are what go cold). The
    order frame's own socket cannot be written without sending to the venue, so a rehearsal
    writes zeros of the frame's length here instead — never the frame, which may carry a
    signature — and reads them back at once, in the caller's thread: nothing leaves the machine,
    no other thread wakes, the buffers never fill. The listening socket is closed as soon as the
    pair is connected."""

    def __init__(self) -> None:
        lst = socket.create_server(("127.0.0.1", 0))
        try:
            self._tx = socket.create_connection(lst.getsockname(), timeout=2.0)
            try:
                lst.settimeout(2.0)
                self._rx, peer = lst.accept()
            except OSError:
                self._tx.close()
                raise
        finally:
            lst.close()
        if peer != self._tx.getsockname():  # someone else's connection won the race to the port
            self.close()
            raise OSError(f"warm socket: accepted {peer}, not our own {self._tx.getsockname()}")
        self._tx.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the WS API's socket
        self._tx.setblocking(False)
        self._rx.setblocking(False)
        self._zeros = memoryview(bytes(4096))
        self._sink = bytearray(65536)
        self.written = 0  # bytes written and read back (what the tests check)

    def write(self, n: int) -> None:
        """`n` bytes (at most 4096) through the pair; a full buffer skips the write, never waits.
        OSError: the pair is broken (the caller stops using it)."""
        n = min(n, 4096)
        try:
            self._tx.sendall(self._zeros[:n])
            self.written += n
        except BlockingIOError:
            pass
        try:
            while self._rx.recv_into(self._sink):  # what arrived; loopback delivers within send
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        self._tx.close()
        self._rx.close()


class GatewayError(RuntimeError):
    """The gateway cannot do what was asked (not connected, start-up failed, venue refused).

    `retry_after_s`: the venue's `Retry-After` on a 429 / 418 (0: none given)."""

    def __init__(self, msg: str, code: int = 0, status: int = 0, retry_after_s: float = 0.0) -> None:
        super().__init__(msg)
        self.code = code
        self.status = status
        self.retry_after_s = retry_after_s


class Units:
    """The wire's decimal strings of a symbol, from its `SymbolFilters`, with the send path's cache.

    `SymbolFilters.px_str` is exact but takes ~4 µs (Decimal); an order frame needs a price and a
    quantity, so the strings are cached per tick and lot count (bounded).
    """

    def __init__(self, filters: SymbolFilters) -> None:
        self.filters = filters
        self._px: dict[int, str] = {}
        self._qty: dict[int, str] = {}

    def px(self, ticks: int) -> str:
        s = self._px.get(ticks)
        if s is None:
            s = self.filters.px_str(ticks)
            if len(self._px) < 100_000:
                self._px[ticks] = s
        return s

    def qty(self, lots: int) -> str:
        s = self._qty.get(lots)
        if s is None:
            s = self.filters.qty_str(lots)
            if len(self._qty) < 100_000:
                self._qty[lots] = s
        return s

    def ticks(self, text: str) -> int:
        """A venue price string as ticks (FilterError, a ValueError, when it is off the grid)."""
        return self.filters.parse_px(text)

    def lots(self, text: str) -> int:
        """A venue quantity as lots; signed (a position amount may be negative)."""
        text = text.strip()
        if text.startswith("-"):
            return -self.filters.parse_qty(text[1:])
        return self.filters.parse_qty(text)


class RestClient:
    """A keep-alive HTTP(S) connection for the few REST calls (countdown, open orders, trades)."""

    def __init__(self, base: str, signer: Signer, timeout_s: float) -> None:
        u = urlsplit(base)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise GatewayError(f"gateway: REST base URL must be http(s)://host[:port], got {base!r}")
        self.https = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.https else 80)
        self.signer = signer
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self.last_headers: dict[str, str] = {}  # of the last answer (X-MBX-* used counts, Retry-After)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout_s)
        return self._conn

    def call(self, method: str, path: str, params: dict | None = None, signed: bool = False) -> Any:
        """One request; returns the parsed JSON or raises GatewayError(code, status)."""
        params = dict(params or {})
        query = self.signer.sign_rest(params) if signed else "&".join(f"{k}={v}" for k, v in params.items())
        target = f"{path}?{query}" if query else path
        headers = {"X-MBX-APIKEY": self.signer.api_key} if signed else {}
        with self.lock:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    conn.request(method, target, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    self.last_headers = dict(resp.getheaders())
                    break
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    self._conn = None
                    if attempt:  # the keep-alive connection may have gone stale: one fresh try
                        raise GatewayError(f"gateway: REST {method} {path} failed: {e}") from None
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            raise GatewayError(
                f"gateway: REST {method} {path} answered {resp.status} with non-JSON {body[:80]!r}",
                status=resp.status,
            ) from None
        if resp.status != 200:
            code = data.get("code", 0) if isinstance(data, dict) else 0
            msg = data.get("msg", "") if isinstance(data, dict) else ""
            try:
                retry = float(resp.getheader("Retry-After") or 0)
            except ValueError:
                retry = 0.0
            raise GatewayError(
                f"gateway: REST {method} {path}: {resp.status} {code} {msg}", code, resp.status, retry
            )
        return data

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
