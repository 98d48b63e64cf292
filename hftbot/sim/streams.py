"""Binance USDⓈ-M market-data messages built from the matching engine's change log.

One `MarketPublisher` per symbol turns each drained `Changes` into the JSON the venue streams:
diff depth at each speed (`@depth@0ms`, `@depth@100ms`, `@depth` = 250 ms, `@depth@500ms`) with a
per-stream `U`/`u`/`pu` chain, partial depth (`@depth5/10/20[@100ms|@500ms]`), `bookTicker` and
`aggTrade`; and the REST/WS-API depth snapshot. The server and the offline generator both use it,
so a recording holds exactly what a socket would have carried.

Update ids: every engine transaction has its own id; a diff window covers the ids U..u of the
transactions in it and `pu` is the previous message's `u` on that stream. A snapshot taken at id L
is the book after every transaction ≤ L, so the message with U ≤ L ≤ u always exists (or L was the
`u` of the last message): a client following the documented procedure syncs exactly.

Pure formatting: no I/O, no clock (times are passed in, in ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from hftbot.sim.matching import BUY, SELL, Changes, MatchingEngine

DIFF_SPEEDS_MS = {"": 250, "@100ms": 100, "@250ms": 250, "@500ms": 500, "@0ms": 0}
PARTIAL_LEVELS = (5, 10, 20)


def decimals_of(step: float) -> int:
    """Decimal places of a tick or lot size (0.01 -> 2, 1 -> 0, 0.001 -> 3)."""
    s = f"{step:.10f}".rstrip("0").rstrip(".")
    return len(s.split(".")[1]) if "." in s else 0


@dataclass
class Formatter:
    """Integer ticks and lots to the exact decimal strings Binance sends."""

    tick: float
    lot: float

    def __post_init__(self) -> None:
        self.pdec = decimals_of(self.tick)
        self.qdec = decimals_of(self.lot)
        self.tick_units = round(self.tick * 10**self.pdec)
        self.lot_units = round(self.lot * 10**self.qdec)
        self._pdiv = 10**self.pdec
        self._qdiv = 10**self.qdec
        self._px_cache: dict[int, str] = {}
        self._qty_cache: dict[int, str] = {}

    @staticmethod
    def _fmt(units: int, dec: int, div: int) -> str:
        if dec == 0:
            return str(units)
        sign = "-" if units < 0 else ""
        units = abs(units)
        return f"{sign}{units // div}.{units % div:0{dec}d}"

    def px(self, ticks: int) -> str:
        s = self._px_cache.get(ticks)
        if s is None:
            s = self._fmt(ticks * self.tick_units, self.pdec, self._pdiv)
            if len(self._px_cache) > 100_000:
                self._px_cache.clear()
            self._px_cache[ticks] = s
        return s

    def qty(self, lots: int) -> str:
        s = self._qty_cache.get(lots)
        if s is None:
            s = self._fmt(lots * self.lot_units, self.qdec, self._qdiv)
            if len(self._qty_cache) > 100_000:
                self._qty_cache.clear()
            self._qty_cache[lots] = s
        return s

    def parse_px(self, text: str) -> int | None:
        """Decimal string to ticks; None when it is not a whole number of ticks."""
        return _parse_units(text, self.pdec, self.tick_units)

    def parse_qty(self, text: str) -> int | None:
        return _parse_units(text, self.qdec, self.lot_units)


def _parse_units(text: str, dec: int, step_units: int) -> int | None:
    text = text.strip()
    if not text or text[0] in "+-":
        neg = text.startswith("-")
        text = text[1:] if text[:1] in "+-" else text
    else:
        neg = False
    whole, _, frac = text.partition(".")
    if not whole:
        whole = "0"
    if not (whole.isdigit() and (frac == "" or frac.isdigit())):
        raise ValueError(f"not a decimal number: {text!r}")
    frac = frac.rstrip("0")
    if len(frac) > dec:
        return None
    units = int(whole) * 10**dec + (int(frac.ljust(dec, "0")) if dec else 0)
    if units % step_units:
        return None
    v = units // step_units
    return -v if neg else v


@dataclass
class _DiffStream:
    speed_ms: int
    last_u: int = 0  # `u` of the last message sent on this stream (its next `pu`)
    prev_u: int = 0  # `pu` of the last message sent (a partial-depth message repeats it)
    first: int = 0  # first update id pending (0: nothing pending)
    last: int = 0
    bids: dict[int, None] = field(default_factory=dict)
    asks: dict[int, None] = field(default_factory=dict)
    due_ms: int = 0  # next window end (speeds > 0)
    start_u: int = 0  # the book's update id when the stream started: its first message's U


@dataclass
class Message:
    """One stream message: the stream name (lowercase symbol) and its payload JSON text."""

    stream: str
    payload: bytes


class MarketPublisher:
    """Builds every market-data message of one symbol from the engine's change log."""

    def __init__(self, engine: MatchingEngine, symbol: str, speeds_ms: tuple[int, ...] = (0, 100, 250, 500)):
        self.engine = engine
        self.symbol = symbol.upper()
        self.lsym = symbol.lower()
        self.fmt = Formatter(engine.tick, engine.lot)
        self.ticker_name = f"{self.lsym}@bookTicker"
        self.agg_name = f"{self.lsym}@aggTrade"
        self.diff = {s: _DiffStream(s) for s in speeds_ms}
        self._last_top: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._agg_id = 1
        self.partial_wanted: set[tuple[int, int]] = set()  # (levels, speed) someone listens to
        self.trade_wanted = False  # `<symbol>@trade` (undocumented on USDⓈ-M; ccxt uses it)
        self.agg_wanted = True  # the server turns these off until someone subscribes (saves CPU)
        self.ticker_wanted = True
        self.messages = 0

    # -- names -----------------------------------------------------------------------------

    def diff_name(self, speed_ms: int) -> str:
        return {250: f"{self.lsym}@depth", 0: f"{self.lsym}@depth@0ms"}.get(
            speed_ms, f"{self.lsym}@depth@{speed_ms}ms"
        )

    def partial_name(self, levels: int, speed_ms: int) -> str:
        return f"{self.lsym}@depth{levels}" + ("" if speed_ms == 250 else f"@{speed_ms}ms")

    def want_speed(self, speed_ms: int) -> None:
        """Start keeping a diff stream (the server starts them when someone subscribes).

        Its first message starts at the book's current update id, so a snapshot taken right
        after the subscription is still straddled by the first diff.
        """
        if speed_ms not in self.diff:
            self.diff[speed_ms] = _DiffStream(speed_ms, start_u=self.engine.update_id)

    # -- the change log ----------------------------------------------------------------------

    def on_changes(self, ch: Changes, event_ms: int, txn_ms: int) -> list[Message]:
        """Messages due immediately (`@0ms` diffs, bookTicker, aggTrade) for one drain."""
        out: list[Message] = []
        if ch.first_update_id:
            for st in self.diff.values():
                if not st.first:
                    st.first = st.start_u or ch.first_update_id
                    st.start_u = 0
                st.last = ch.last_update_id
                sb, sa = st.bids, st.asks
                for p in ch.bids:
                    sb[p] = None
                for p in ch.asks:
                    sa[p] = None
            zero = self.diff.get(0)
            if zero is not None:
                out.append(self._flush_diff(zero, event_ms, txn_ms))
        for pr in ch.prints:
            aid = self._agg_id  # ids advance whether or not anyone listens
            self._agg_id += 1
            if not (self.agg_wanted or self.trade_wanted):
                continue
            q = self.fmt.qty(pr.qty)
            payload = (
                b'{"e":"aggTrade","E":%d,"a":%d,"s":"%s","p":"%s","q":"%s","nq":"%s","f":%d,"l":%d,"T":%d,"m":%s}'
                % (
                    event_ms,
                    aid,
                    self.symbol.encode(),
                    self.fmt.px(pr.px).encode(),
                    q.encode(),
                    q.encode(),
                    pr.first_id,
                    pr.last_id,
                    pr.time_ns // 1_000_000,
                    b"false" if pr.taker_buy else b"true",
                )
            )
            if self.agg_wanted:
                out.append(Message(self.agg_name, payload))
            if self.trade_wanted:
                trade = (
                    b'{"e":"trade","E":%d,"T":%d,"s":"%s","t":%d,"p":"%s","q":"%s","X":"MARKET","m":%s}'
                    % (
                        event_ms,
                        pr.time_ns // 1_000_000,
                        self.symbol.encode(),
                        pr.last_id,
                        self.fmt.px(pr.px).encode(),
                        q.encode(),
                        b"false" if pr.taker_buy else b"true",
                    )
                )
                out.append(Message(f"{self.lsym}@trade", trade))
        eng = self.engine
        top = (eng.best_bid, eng.bids.get(eng.best_bid, 0), eng.best_ask, eng.asks.get(eng.best_ask, 0))
        if ch.first_update_id and top != self._last_top and self.ticker_wanted:
            self._last_top = top
            f = self.fmt
            payload = (
                f'{{"e":"bookTicker","u":{ch.last_update_id},"s":"{self.symbol}","b":"{f.px(top[0])}",'
                f'"B":"{f.qty(top[1])}","a":"{f.px(top[2])}","A":"{f.qty(top[3])}","T":{txn_ms},"E":{event_ms}}}'
            ).encode()
            out.append(Message(self.ticker_name, payload))
        self.messages += len(out)
        return out

    def due(self, now_ms: int, txn_ms: int) -> list[Message]:
        """Windowed diff and partial-depth messages whose period ended by `now_ms`."""
        out: list[Message] = []
        for speed, st in self.diff.items():
            if speed == 0:
                continue
            if not st.due_ms:
                st.due_ms = now_ms - now_ms % speed + speed
            if now_ms < st.due_ms:
                continue
            st.due_ms = now_ms - now_ms % speed + speed
            if not st.first:
                continue
            first, last = st.first, st.last
            out.append(self._flush_diff(st, now_ms, txn_ms))
            for levels, pspeed in self.partial_wanted:
                if pspeed == speed:
                    out.append(self._partial(levels, speed, first, last, st.prev_u, now_ms, txn_ms))
        self.messages += len(out)
        return out

    def _flush_diff(self, st: _DiffStream, event_ms: int, txn_ms: int) -> Message:
        eng, f = self.engine, self.fmt
        bids = ",".join(f'["{f.px(p)}","{f.qty(eng.bids.get(p, 0))}"]' for p in sorted(st.bids, reverse=True))
        asks = ",".join(f'["{f.px(p)}","{f.qty(eng.asks.get(p, 0))}"]' for p in sorted(st.asks))
        pu = st.last_u
        payload = (
            f'{{"e":"depthUpdate","E":{event_ms},"T":{txn_ms},"s":"{self.symbol}","U":{st.first},'
            f'"u":{st.last},"pu":{pu},"b":[{bids}],"a":[{asks}]}}'
        ).encode()
        st.prev_u = pu
        st.last_u = st.last
        st.first = 0
        st.bids = {}
        st.asks = {}
        return Message(self.diff_name(st.speed_ms), payload)

    def _partial(
        self, levels: int, speed: int, first: int, last: int, pu: int, event_ms: int, txn_ms: int
    ) -> Message:
        eng, f = self.engine, self.fmt
        bids = ",".join(f'["{f.px(p)}","{f.qty(q)}"]' for p, q in eng.depth(BUY, levels))
        asks = ",".join(f'["{f.px(p)}","{f.qty(q)}"]' for p, q in eng.depth(SELL, levels))
        payload = (
            f'{{"e":"depthUpdate","E":{event_ms},"T":{txn_ms},"s":"{self.symbol}","U":{first},'
            f'"u":{last},"pu":{pu},"b":[{bids}],"a":[{asks}]}}'
        ).encode()
        return Message(self.partial_name(levels, speed), payload)

    def snapshot(self, limit: int, event_ms: int, txn_ms: int) -> dict:
        """The REST / WS-API depth snapshot as a dict (lastUpdateId = the last applied update)."""
        eng, f = self.engine, self.fmt
        return {
            "lastUpdateId": eng.update_id,
            "E": event_ms,
            "T": txn_ms,
            "bids": [[f.px(p), f.qty(q)] for p, q in eng.depth(BUY, limit)],
            "asks": [[f.px(p), f.qty(q)] for p, q in eng.depth(SELL, limit)],
        }

    def snapshot_json(self, limit: int, event_ms: int, txn_ms: int) -> bytes:
        return orjson.dumps(self.snapshot(limit, event_ms, txn_ms))


def combined(stream: str, payload: bytes) -> bytes:
    """The `/stream?streams=` wrapper, built without re-serialising the payload."""
    return b'{"stream":"%s","data":%s}' % (stream.encode(), payload)
