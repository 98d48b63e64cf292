"""A scripted Binance-like server on 127.0.0.1 for feed tests: real websockets, real HTTP.

Diff event k (k = 1, 2, ...) has U = 10k-9, u = 10k, pu = 10(k-1) and changes a few levels; the
reference book after event k is known exactly. A snapshot "at k" holds the book after event k-1
with lastUpdateId = 10k-5, so event k is the one that straddles it. Each /public connection plays
its own script of steps; each REST depth request serves the next snapshot of a list.
"""

from __future__ import annotations

import asyncio
import http
import json
import time

from websockets.asyncio.server import serve

SYM = "TESTUSDT"
BASE_BIDS = {p: 5000 for p in range(98000, 98021)}  # ticks of 0.01 -> lots of 0.001
BASE_ASKS = {p: 5000 for p in range(98021, 98042)}


def event_levels(k: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    bids = [(98020 - (k * 7) % 20, (k % 4) * 1000), (98000 + (k * 3) % 21, 1000 + k)]
    asks = [(98021 + (k * 5) % 20, ((k + 1) % 4) * 1000), (98041 - (k * 11) % 21, 2000 + k)]
    return bids, asks


def book_after(k: int) -> tuple[dict[int, int], dict[int, int]]:
    bids, asks = dict(BASE_BIDS), dict(BASE_ASKS)
    for j in range(1, k + 1):
        b, a = event_levels(j)
        for side, lv in ((bids, b), (asks, a)):
            for p, q in lv:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
    return bids, asks


def _fmt(levels) -> list[list[str]]:
    return [[f"{p / 100:.2f}", f"{q / 1000:.3f}"] for p, q in levels]


def depth_frame(k: int) -> str:
    b, a = event_levels(k)
    data = {
        "e": "depthUpdate",
        "E": 1_700_000_000_000 + k,
        "T": 1_700_000_000_000 + k,
        "s": SYM,
        "U": 10 * k - 9,
        "u": 10 * k,
        "pu": 10 * (k - 1),
        "b": _fmt(b),
        "a": _fmt(a),
    }
    return json.dumps({"stream": f"{SYM.lower()}@depth@100ms", "data": data})


def ticker_frame(k: int) -> str:
    data = {
        "e": "bookTicker",
        "u": 10 * k,
        "s": SYM,
        "b": "980.00",
        "B": "1.000",
        "a": "980.21",
        "A": "1.000",
        "T": 1,
        "E": 1,
    }
    return json.dumps({"stream": f"{SYM.lower()}@bookTicker", "data": data})


def snapshot_body(k: int) -> str:
    bids, asks = book_after(k - 1)
    return json.dumps(
        {
            "lastUpdateId": 10 * k - 5,
            "E": 1,
            "T": 1,
            "bids": _fmt(sorted(bids.items(), reverse=True)),
            "asks": _fmt(sorted(asks.items())),
        }
    )


EXCHANGE_INFO = json.dumps(
    {
        "symbols": [
            {
                "symbol": SYM,
                "filters": [
                    {"filterType": "PRICE_FILTER", "tickSize": "0.01"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.001"},
                ],
            }
        ]
    }
)


class ScriptedServer:
    """`public_scripts[i]` is played on the i-th /public connection. Steps:
    ("ev", k) diff event k; ("raw", text) any frame; ("snap", n) wait until n snapshots were served;
    ("close",) close the connection; ("sleep", s). /market answers nothing (a silent route)."""

    def __init__(self, public_scripts: list[list[tuple]], snapshots: list[int]) -> None:
        self.public_scripts = public_scripts
        self.snapshots = snapshots
        self.served = 0
        self.received: list[tuple[float, dict]] = []
        self.public_conns = 0
        self.market_conns = 0
        self.snap_event = asyncio.Condition()
        self.server = None
        self.port = 0

    @property
    def urls(self) -> dict[str, str]:
        return {
            "rest": f"http://127.0.0.1:{self.port}",
            "ws": f"ws://127.0.0.1:{self.port}",
            "ws_api": f"ws://127.0.0.1:{self.port}/ws-fapi/v1",
        }

    async def _http(self, connection, request):
        path = request.path
        if path.startswith("/fapi/v1/depth"):
            k = self.snapshots[min(self.served, len(self.snapshots) - 1)]
            async with self.snap_event:
                self.served += 1
                self.snap_event.notify_all()
            return connection.respond(http.HTTPStatus.OK, snapshot_body(k))
        if path.startswith("/fapi/v1/exchangeInfo"):
            return connection.respond(http.HTTPStatus.OK, EXCHANGE_INFO)
        if path.startswith("/public") or path.startswith("/market"):
            return None
        return connection.respond(http.HTTPStatus.NOT_FOUND, "no such path")

    async def _handler(self, ws) -> None:
        path = ws.request.path
        if path.startswith("/market"):
            self.market_conns += 1
            await ws.wait_closed()  # acknowledged route, but nothing ever arrives
            return
        script = self.public_scripts[min(self.public_conns, len(self.public_scripts) - 1)]
        self.public_conns += 1
        listener = asyncio.ensure_future(self._listen(ws))
        for step in script:
            if step[0] == "ev":
                await ws.send(depth_frame(step[1]))
            elif step[0] == "tk":
                await ws.send(ticker_frame(step[1]))
            elif step[0] == "raw":
                await ws.send(step[1])
            elif step[0] == "snap":
                async with self.snap_event:
                    await asyncio.wait_for(self.snap_event.wait_for(lambda n=step[1]: self.served >= n), 20)
                await asyncio.sleep(0.05)  # let the client load it
            elif step[0] == "sleep":
                await asyncio.sleep(step[1])
            elif step[0] == "close":
                await ws.close()
                listener.cancel()
                return
        await ws.wait_closed()
        listener.cancel()

    async def _listen(self, ws) -> None:
        """Record what the client sends (SUBSCRIBE frames), with arrival times."""
        try:
            async for msg in ws:
                self.received.append((time.monotonic(), json.loads(msg)))
        except Exception:  # the connection ends: nothing more to record
            return

    async def __aenter__(self) -> ScriptedServer:
        self.server = await serve(self._handler, "127.0.0.1", 0, process_request=self._http, compression=None)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()


RAW_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class NoPongServer:
    """A bare RFC 6455 server over asyncio streams that pings the client, checks its pong, keeps
    sending bookTicker frames, and never answers the client's pings."""

    def __init__(self) -> None:
        self.connections = 0
        self.pongs_ok = 0
        self.port = 0

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import base64
        import hashlib

        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            key = next(
                ln.split(b":", 1)[1].strip()
                for ln in head.split(b"\r\n")
                if ln.lower().startswith(b"sec-websocket-key")
            )
            accept = base64.b64encode(hashlib.sha1(key + RAW_GUID).digest())
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            writer.write(b"\x89\x04ping")  # server ping, payload "ping"
            await writer.drain()
            reader_task = asyncio.ensure_future(self._read_pong(reader))
            k = 1
            while not writer.is_closing():
                body = ticker_frame(k).encode()
                writer.write(bytes([0x81, 126]) + len(body).to_bytes(2, "big") + body)
                await writer.drain()
                k += 1
                await asyncio.sleep(0.05)
                if reader_task.done():
                    break
        except (ConnectionError, asyncio.IncompleteReadError, StopIteration):
            pass
        finally:
            writer.close()

    async def _read_pong(self, reader: asyncio.StreamReader) -> None:
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            mask = await reader.readexactly(4)
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(n)))
            if b0 & 0x0F == 0xA and payload == b"ping":
                self.pongs_ok += 1
            if b0 & 0x0F == 0x8:
                return  # the client closes: its ping went unanswered

    async def __aenter__(self) -> NoPongServer:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()
