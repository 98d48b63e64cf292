"""Binance USDⓈ-M market-data client: routed stream connections, snapshots, and the book driver.

- One connection per route (reference/binance-usdm.md section 0): ``/public`` carries
  ``<sym>@depth<speed>`` and ``<sym>@bookTicker``; ``/market`` carries ``<sym>@aggTrade``.
  Combined streams (``/<route>/stream?streams=a/b``). Base URLs come from the caller (config), so
  the same code serves the local simulator, testnet and mainnet.
- Each connection: websockets keepalive (client ping every ``ping_interval_s``; a missing pong
  within ``ping_timeout_s`` drops it; server pings are answered by the library), a data-staleness
  watchdog (no *data* frame for ``stale_s`` - subscription ACKs do not count - means the route is
  dead or wrong: reconnect), a proactive reconnect before the 24 h cut (``max_age_s`` minus up to
  ``max_age_jitter_s``), and exponential backoff with full jitter on failures. Subscriptions go in
  the URL; with ``subscribe="message"`` they are sent as SUBSCRIBE frames paced under
  ``subscribe_per_s`` (Binance cuts a connection at 10 incoming messages/s).
- The depth book follows `hftbot.feed.sync`: on every (re)connect of ``/public`` the book is
  invalidated (a marker record is published), diffs are buffered, and a snapshot is fetched by REST
  ``/fapi/v1/depth`` (or the WS API ``depth`` method) once diffs are flowing, paced by
  `SnapshotLimiter` inside the request-weight budget; HTTP 429/418 back off as told.

Everything exchange-shaped is decoded by `FeedCore`; this module only moves bytes and time. It must
never publish a book itself, never block the event loop (HTTP runs in a thread), and never retry
faster than its backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import websockets
from websockets.asyncio.client import connect

from hftbot.config import FeedConfig
from hftbot.feed.core import (
    OUT_BOOK,
    OUT_NEED_SNAPSHOT,
    OUT_TRADE,
    FeedCore,
    instrument_from_exchange_info,
    warm_up,
)
from hftbot.feed.decode import EV_DEPTH
from hftbot.feed.sync import SnapshotLimiter

SNAPSHOT_WEIGHT = {5: 2, 10: 2, 20: 2, 50: 2, 100: 5, 500: 10, 1000: 20}


@dataclass(frozen=True)
class FeedSettings(FeedConfig):
    """The `[feed]` config section (every field of `hftbot.config.FeedConfig`, inherited: a
    setting is defined once, there and in defaults.toml), plus where to connect and a few knobs
    only code sets (tests shorten them)."""

    symbol: str = "SOLUSDT"
    rest: str = "https://fapi.binance.com"
    ws: str = "wss://fstream.binance.com"
    ws_api: str = "wss://ws-fapi.binance.com/ws-fapi/v1"
    snapshot_wait_diffs_s: float = 1.0  # wait this long for the first buffered diff before fetching
    open_timeout_s: float = 10.0
    max_frame_bytes: int = 16 << 20

    @classmethod
    def from_config(cls, feed: FeedConfig, symbol: str, endpoints: dict) -> FeedSettings:
        """The section as it is, the runtime symbol and the mode's base URLs."""
        return cls(
            **{f.name: getattr(feed, f.name) for f in fields(FeedConfig)},
            symbol=symbol,
            rest=endpoints["rest"],
            ws=endpoints["ws"],
            ws_api=endpoints.get("ws_api", ""),
        )

    def depth_stream(self) -> str:
        s = self.symbol.lower()
        return f"{s}@depth" if self.depth_speed in ("250ms", "") else f"{s}@depth@{self.depth_speed}"

    def public_streams(self) -> list[str]:
        return [self.depth_stream()] + ([f"{self.symbol.lower()}@bookTicker"] if self.book_ticker else [])

    def market_streams(self) -> list[str]:
        return [f"{self.symbol.lower()}@aggTrade"] if self.trades else []


@dataclass
class ConnStats:
    connects: int = 0
    disconnects: int = 0
    failures: int = 0
    stale_reconnects: int = 0
    age_reconnects: int = 0
    frames: int = 0
    data_frames: int = 0
    last_error: str = ""


def stream_url(base: str, route: str, streams: list[str], subscribe: str = "url") -> str:
    base = base.rstrip("/")
    if subscribe == "message":
        return f"{base}/{route}/stream"
    return f"{base}/{route}/stream?streams={'/'.join(streams)}"


def backoff_delay(attempt: int, lo: float, hi: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform(lo, min(hi, lo * 2**attempt))."""
    cap = min(hi, lo * (2 ** min(attempt, 30)))
    return rng.uniform(lo, max(lo, cap))


class StreamConnection:
    """One routed websocket connection that keeps itself alive and hands frames to `on_frame`.

    `on_frame(recv_ns, frame_bytes) -> bool` returns True for a data frame (feeds the watchdog).
    """

    def __init__(
        self,
        name: str,
        url: str,
        streams: list[str],
        settings: FeedSettings,
        on_frame: Callable[[int, bytes], bool],
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        log: logging.Logger | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.streams = streams
        self.s = settings
        self.on_frame = on_frame
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.log = log or logging.getLogger(f"hftbot.feed.{name}")
        self.rng = rng or random.Random()
        self.stats = ConnStats()
        self.connected = asyncio.Event()
        self._ids = itertools.count(1)

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            healthy = await self._session(stop)
            if stop.is_set():
                break
            attempt = 0 if healthy else attempt + 1
            delay = backoff_delay(attempt, self.s.backoff_min_s, self.s.backoff_max_s, self.rng)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _subscribe(self, ws) -> None:
        """SUBSCRIBE frames, a few streams each, paced under the per-connection message limit."""
        gap = 1.0 / self.s.subscribe_per_s
        for k in range(0, len(self.streams), 50):
            await ws.send(
                json.dumps({"method": "SUBSCRIBE", "params": self.streams[k : k + 50], "id": next(self._ids)})
            )
            await asyncio.sleep(gap)

    async def _session(self, stop: asyncio.Event) -> bool:
        """One connection's life; True when it delivered data (so backoff starts over)."""
        loop = asyncio.get_running_loop()
        got_data = False
        try:
            async with connect(
                self.url,
                ping_interval=self.s.ping_interval_s,
                ping_timeout=self.s.ping_timeout_s,
                open_timeout=self.s.open_timeout_s,
                close_timeout=1.0,
                max_size=self.s.max_frame_bytes,
                compression=None,
                proxy=None,
            ) as ws:
                self.stats.connects += 1
                self.connected.set()
                if self.on_connect:
                    self.on_connect()
                if self.s.subscribe == "message":
                    await self._subscribe(ws)
                expire = loop.time() + self.s.max_age_s - self.rng.uniform(0, self.s.max_age_jitter_s)
                last_data = loop.time()
                stop_wait = asyncio.ensure_future(stop.wait())
                recv = None
                try:
                    while True:
                        now = loop.time()
                        if now >= expire:
                            self.stats.age_reconnects += 1
                            self.log.info("%s: proactive reconnect before the 24 h cut", self.name)
                            return got_data
                        if now - last_data >= self.s.stale_s:
                            self.stats.stale_reconnects += 1
                            self.log.warning(
                                "%s: no data for %.1f s: reconnecting", self.name, now - last_data
                            )
                            return got_data
                        timeout = min(expire - now, self.s.stale_s - (now - last_data))
                        recv = asyncio.ensure_future(ws.recv(decode=False))
                        done, _ = await asyncio.wait(
                            {recv, stop_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                        )
                        if recv not in done:
                            recv.cancel()
                            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                                await recv
                            if stop_wait in done:
                                return got_data
                            continue
                        frame = recv.result()
                        recv_ns = time.time_ns()
                        self.stats.frames += 1
                        if isinstance(frame, str):
                            frame = frame.encode()
                        if self.on_frame(recv_ns, frame):
                            self.stats.data_frames += 1
                            last_data = loop.time()
                            got_data = True
                finally:
                    stop_wait.cancel()
                    if recv is not None and not recv.done():
                        recv.cancel()
                    elif recv is not None and not recv.cancelled():
                        recv.exception()  # retrieved: a closed socket is handled below, not logged
        except websockets.ConnectionClosed as e:
            self.stats.last_error = f"closed: {e}"
            self.log.warning("%s: connection closed: %s", self.name, e)
        except (TimeoutError, OSError, websockets.InvalidHandshake, websockets.InvalidURI) as e:
            self.stats.failures += 1
            self.stats.last_error = f"{type(e).__name__}: {e}"
            self.log.warning("%s: connect failed: %s", self.name, self.stats.last_error)
        finally:
            if self.connected.is_set():
                self.connected.clear()
                self.stats.disconnects += 1
                if self.on_disconnect:
                    self.on_disconnect()
        return got_data


class SnapshotError(RuntimeError):
    def __init__(self, msg: str, retry_after_s: float = 0.0) -> None:
        super().__init__(msg)
        self.retry_after_s = retry_after_s


def _http_get(url: str, timeout: float) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "hftbot"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        retry = float(e.headers.get("Retry-After") or 0) if e.headers else 0.0
        if e.code in (418, 429):
            retry = max(retry, 60.0)
        raise SnapshotError(f"HTTP {e.code} from {url}", retry) from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise SnapshotError(f"{type(e).__name__}: {e} ({url})") from None


async def fetch_rest(settings: FeedSettings, path: str) -> bytes:
    return await asyncio.to_thread(_http_get, settings.rest.rstrip("/") + path, settings.snapshot_timeout_s)


async def fetch_ws_api_depth(settings: FeedSettings) -> bytes:
    """WS API `depth`: the response frame (`result` holds the snapshot; the decoder descends)."""
    async with connect(
        settings.ws_api,
        open_timeout=settings.snapshot_timeout_s,
        compression=None,
        max_size=settings.max_frame_bytes,
        proxy=None,
    ) as ws:
        params = {"symbol": settings.symbol.upper(), "limit": settings.snapshot_limit}
        await ws.send(json.dumps({"id": 1, "method": "depth", "params": params}))
        frame = await asyncio.wait_for(ws.recv(decode=False), settings.snapshot_timeout_s)
    if isinstance(frame, str):
        frame = frame.encode()
    body = json.loads(frame)
    if body.get("status") != 200:
        retry = 60.0 if body.get("status") in (418, 429) else 0.0
        raise SnapshotError(f"WS API depth failed: {body.get('status')} {body.get('error')}", retry)
    return frame


@dataclass
class FeedStats:
    snapshot_requests: int = 0
    snapshot_failures: int = 0
    published_books: int = 0
    published_trades: int = 0
    markers: int = 0
    extra: dict = field(default_factory=dict)


class BinanceFeed:
    """Drives a FeedCore from the routed streams and snapshots; calls the publish callbacks."""

    def __init__(
        self,
        settings: FeedSettings,
        core: FeedCore,
        publish_book: Callable[[FeedCore], None],
        publish_trade: Callable[[FeedCore], None],
        record_raw: Callable[[int, str, bytes], None] | None = None,
        log: logging.Logger | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.s = settings
        self.core = core
        self.publish_book = publish_book
        self.publish_trade = publish_trade
        self.record_raw = record_raw
        self.log = log or logging.getLogger("hftbot.feed")
        self.rng = rng or random.Random()
        self.stats = FeedStats()
        self.limiter = SnapshotLimiter(
            SNAPSHOT_WEIGHT.get(settings.snapshot_limit, 20),
            settings.snapshot_budget_per_min,
            settings.snapshot_min_interval_s,
        )
        self._need_snapshot = asyncio.Event()
        self._diff_seen = asyncio.Event()
        pub, mkt = settings.public_streams(), settings.market_streams()
        self.public = StreamConnection(
            "public",
            stream_url(settings.ws, "public", pub, settings.subscribe),
            pub,
            settings,
            self._on_public,
            self._on_public_connect,
            self._on_public_disconnect,
            self.log,
            self.rng,
        )
        self.market = (
            StreamConnection(
                "market",
                stream_url(settings.ws, "market", mkt, settings.subscribe),
                mkt,
                settings,
                self._on_market,
                None,
                None,
                self.log,
                self.rng,
            )
            if settings.trades
            else None
        )

    # -- frames -------------------------------------------------------------------------------------
    def _handle(self, out: int) -> None:
        if out & OUT_BOOK:
            self.publish_book(self.core)
            if self.core.book_rec["flags"] & 1:
                self.stats.published_books += 1
            else:
                self.stats.markers += 1
        if out & OUT_TRADE:
            self.publish_trade(self.core)
            self.stats.published_trades += 1
        if out & OUT_NEED_SNAPSHOT:
            self._need_snapshot.set()

    def _on_public(self, recv_ns: int, frame: bytes) -> bool:
        if self.record_raw is not None:
            self.record_raw(recv_ns, "", frame)
        self._handle(self.core.on_frame(recv_ns, frame))
        event = self.core.last_event()
        if event == EV_DEPTH and not self.core.sync.synced:
            self._diff_seen.set()
        return event != 0

    def _on_market(self, recv_ns: int, frame: bytes) -> bool:
        if self.record_raw is not None:
            self.record_raw(recv_ns, "", frame)
        self._handle(self.core.on_frame(recv_ns, frame))
        return self.core.last_event() != 0

    def _on_public_connect(self) -> None:
        self._diff_seen.clear()
        self._handle(self.core.reset(time.time_ns()))  # every (re)connect: resync from scratch

    def _on_public_disconnect(self) -> None:
        self._diff_seen.clear()
        self._handle(self.core.reset(time.time_ns()) & ~OUT_NEED_SNAPSHOT)

    # -- snapshots ----------------------------------------------------------------------------------
    async def _snapshot_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await _wait_any(self._need_snapshot, stop)
            if stop.is_set():
                return
            await _wait_any(self.public.connected, stop)
            # the procedure buffers diffs first; do not ask for a snapshot before they flow
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._diff_seen.wait(), self.s.snapshot_wait_diffs_s)
            delay = self.limiter.delay(loop.time())
            if delay > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            if not self.core.sync.needs_snapshot or not self.public.connected.is_set():
                self._need_snapshot.clear()
                continue
            self._need_snapshot.clear()
            self.limiter.record(loop.time())
            self.stats.snapshot_requests += 1
            try:
                frame = await self.fetch_snapshot()
            except SnapshotError as e:
                self.stats.snapshot_failures += 1
                self.log.warning("depth snapshot failed: %s", e)
                if e.retry_after_s:
                    self.limiter.last = loop.time() + e.retry_after_s
                self._need_snapshot.set()
                continue
            recv_ns = time.time_ns()
            if self.record_raw is not None:
                self.record_raw(recv_ns, f"{self.s.symbol.lower()}@depthSnapshot", frame)
            out = self.core.on_snapshot_frame(recv_ns, frame)
            self._handle(out)
            if self.core.sync.synced:
                self.limiter.success()
            if out & OUT_NEED_SNAPSHOT:
                self._need_snapshot.set()

    async def fetch_snapshot(self) -> bytes:
        if self.s.snapshot_source == "ws_api":
            return await fetch_ws_api_depth(self.s)
        return await fetch_rest(
            self.s, f"/fapi/v1/depth?symbol={self.s.symbol.upper()}&limit={self.s.snapshot_limit}"
        )

    async def load_instrument(self) -> None:
        """Tick and lot from exchangeInfo (unless the core already has them)."""
        if self.core.instrument is not None:
            return
        body = await fetch_rest(self.s, "/fapi/v1/exchangeInfo")
        self.core.set_instrument(instrument_from_exchange_info(json.loads(body), self.s.symbol))

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(warm_up, self.core.levels)
        attempt = 0
        while self.core.instrument is None and not stop.is_set():
            try:
                await self.load_instrument()
            except (SnapshotError, ValueError) as e:
                self.log.warning("exchangeInfo: %s", e)
                attempt += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        stop.wait(),
                        backoff_delay(attempt, self.s.backoff_min_s, self.s.backoff_max_s, self.rng),
                    )
        tasks = [asyncio.create_task(self.public.run(stop)), asyncio.create_task(self._snapshot_loop(stop))]
        if self.market is not None:
            tasks.append(asyncio.create_task(self.market.run(stop)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def counters(self) -> dict[str, int]:
        c = dict(self.core.counters())
        c.update(
            snapshot_requests=self.stats.snapshot_requests,
            snapshot_failures=self.stats.snapshot_failures,
            published_books=self.stats.published_books,
            markers=self.stats.markers,
            published_trades=self.stats.published_trades,
        )
        for conn in (self.public, self.market):
            if conn is not None:
                st = conn.stats
                c.update(
                    {
                        f"{conn.name}_connects": st.connects,
                        f"{conn.name}_failures": st.failures,
                        f"{conn.name}_stale": st.stale_reconnects,
                        f"{conn.name}_age": st.age_reconnects,
                    }
                )
        c["stale"] = c.get("public_stale", 0) + c.get("market_stale", 0)
        return c


async def _wait_any(event: asyncio.Event, stop: asyncio.Event) -> None:
    if event.is_set() or stop.is_set():
        return
    a = asyncio.ensure_future(event.wait())
    b = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        a.cancel()
        b.cancel()
