"""Frames in, records out: decoder + sync machine + book kernel, shared by live feed, replay and check.

`FeedCore.on_frame(recv_ns, frame_bytes)` decodes one raw frame and returns what became ready:
``OUT_BOOK`` (``core.book_rec`` holds a book record: valid after an applied diff, or a marker
without ``BOOK_VALID`` when sync was lost), ``OUT_TRADE`` (``core.trade_rec``), and
``OUT_NEED_SNAPSHOT`` (the caller should fetch one, within its weight budget).

Tick and lot: given from exchangeInfo when online. For capture files (no exchangeInfo) they are
inferred at the first snapshot as the greatest common divisor of every snapshot price (and of every
non-zero quantity) together with the buffered diffs: with a thousand levels a side this is the
instrument's tick/step in practice (BTCUSDT: 0.1 and 0.001). A later level that is not a multiple
is rejected whole and forces a resync (never a silently wrong book); `check --tick/--lot` overrides.

Bookticker checks: a bookTicker must equal the rebuilt best bid/ask price and quantity exactly
when the book stands at its ``u``: at once when ``u`` is the last applied diff's ``u``, or, for a
ticker ahead of the book, after the diff that ends on its ``u`` (held until then, dropped when a
diff passes it; see `hftbot.feed.fastpath`). Counted in ``ticker_checks`` (``ticker_checks_held``
of them held first) and ``ticker_mismatches``; ``check_tickers="resync"`` (the live feed) also
treats a mismatch as a lost book: a marker, then a new snapshot.

It must never do I/O, never publish a book as valid while out of sync, and never raise on bad
exchange input: malformed frames are counted (``malformed``) and the last error text kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hftbot.feed import decode as d
from hftbot.feed import fastpath as fp
from hftbot.feed.book import DEFAULT_WIDTH, OK, Book, record_offsets
from hftbot.feed.book import apply_and_write as _apply_and_write
from hftbot.feed.sync import Action, DepthSync, State
from hftbot.records import BOOK_REPLAY, BOOK_RESYNC, BOOK_VALID, TRADE_DTYPE, book_dtype

OUT_BOOK = 1
OUT_TRADE = 2
OUT_NEED_SNAPSHOT = 4

_time_ns = time.time_ns
_step_bytes = fp.step_bytes
_step_addr = fp.step_addr
_R_BOOK = fp.R_BOOK
_R_TRADE = fp.R_TRADE
_R_NONE = fp.R_NONE
_T_PUBLISH = fp.T_PUBLISH
_U8 = np.dtype(np.uint8)
# check_tickers: False (off), True (compare and count: `feed check`), "resync" (the live feed)
_CHECK_MODES = {False: fp.CHECK_OFF, True: fp.CHECK_COUNT, "resync": fp.CHECK_RESYNC}
_HELD_US = slice(fp.W_HELD, fp.W_HELD + fp.HOLD_MAX * fp.HELD_WORDS, fp.HELD_WORDS)


@dataclass(frozen=True)
class Instrument:
    """Tick and lot as integers of 1e-8 (exact), from exchangeInfo or inferred from a snapshot."""

    tick_u: int
    lot_u: int

    @classmethod
    def from_strings(cls, tick_size: str, step_size: str) -> Instrument:
        """From exchangeInfo PRICE_FILTER.tickSize / LOT_SIZE.stepSize strings."""
        tick, lot = d.parse_decimal(tick_size), d.parse_decimal(step_size)
        if tick <= 0 or lot <= 0:
            raise ValueError(f"tickSize {tick_size!r} and stepSize {step_size!r} must be > 0")
        return cls(tick, lot)

    @classmethod
    def infer(cls, prices: np.ndarray, quantities: np.ndarray) -> Instrument:
        """GCD of the prices and of the non-zero quantities (1e-8 units)."""
        px = prices[prices > 0]
        qty = quantities[quantities > 0]
        if not len(px) or not len(qty):
            raise ValueError("cannot infer tick/lot from an empty snapshot")
        return cls(int(np.gcd.reduce(px)), int(np.gcd.reduce(qty)))


def instrument_from_exchange_info(info: dict, symbol: str) -> Instrument:
    """Tick/lot of `symbol` from a parsed /fapi/v1/exchangeInfo body; names what is missing."""
    for s in info.get("symbols", []):
        if s.get("symbol", "").upper() == symbol.upper():
            filters = {f.get("filterType"): f for f in s.get("filters", [])}
            try:
                return Instrument.from_strings(
                    filters["PRICE_FILTER"]["tickSize"], filters["LOT_SIZE"]["stepSize"]
                )
            except KeyError as e:
                raise ValueError(f"exchangeInfo for {symbol} lacks filter field {e}") from None
    raise ValueError(f"exchangeInfo has no symbol {symbol!r}")


def _words(records: np.ndarray) -> np.ndarray:
    """A 1-d record array as a 2-d int64 view (every field of our records is 8 bytes)."""
    if records.dtype == np.int64:
        return records
    return records.reshape(len(records), 1).view(np.int64)


def _adopt(buf: np.ndarray, current: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """`buf` takes over from the record buffer `current` (its content copied): (buf, int64 words)."""
    if buf.dtype != current.dtype or buf.shape != ():
        raise ValueError(f"bind: {what} record buffer has a different dtype or shape")
    buf[...] = current
    return buf, buf.reshape(1).view(np.int64)


class FeedCore:
    """One symbol's book and trades, from raw frames."""

    def __init__(
        self,
        levels: int = 10,
        instrument: Instrument | None = None,
        replay: bool = False,
        check_tickers: bool | str = False,
        width: int = DEFAULT_WIDTH,
    ) -> None:
        self.levels = levels
        self.width = width
        self.ws = np.zeros(fp.WS_SIZE, dtype=np.int64)
        self.dec = d.FrameDecoder(hdr=self.ws[: d.HEADER_SIZE])
        self.sync = DepthSync()
        self.instrument: Instrument | None = None
        self.book = Book(1, 1, width)  # replaced once tick/lot are known
        self.base_flags = BOOK_REPLAY if replay else 0
        self.book_rec = np.zeros((), dtype=book_dtype(levels))
        self.rec_words = self.book_rec.reshape(1).view(np.int64)
        self.trade_rec = np.zeros((), dtype=TRADE_DTYPE)
        self.trade_words = self.trade_rec.reshape(1).view(np.int64)
        ws = self.ws
        ws[fp.W_FLAGS] = self.base_flags | BOOK_VALID
        ws[fp.W_CHECK] = _CHECK_MODES[check_tickers]
        ws[fp.W_LEVELS] = levels
        ws[fp.W_OFFS : fp.W_OFFS + 10] = record_offsets(self.book_rec.dtype)
        self._offs = ws[fp.W_OFFS : fp.W_OFFS + 10]
        self._pub = int(self._offs[3])  # word offset of publish_ns (a plain int store is cheapest)
        self._ctx = fp.Ctx()
        self._ctx_addr = self._ctx.addr
        self._point_ctx()
        if instrument is not None:
            self.set_instrument(instrument)
        self._burst = False
        self.depth_slow = 0
        self.snapshots = 0
        self.trades_skipped = 0  # arrived before tick/lot were known, or off-tick
        self.malformed = 0
        self.rejected = 0  # well-formed diffs with an off-tick/off-lot level (forced resync)
        self.other = 0
        self.last_error = ""

    def bind(self, book_rec: np.ndarray | None = None, trade_rec: np.ndarray | None = None) -> None:
        """Build records in place in these 0-d buffers (e.g. `RingWriter.staging`, saving a copy)."""
        if book_rec is not None:
            self.book_rec, self.rec_words = _adopt(book_rec, self.book_rec, "book")
        if trade_rec is not None:
            self.trade_rec, self.trade_words = _adopt(trade_rec, self.trade_rec, "trade")
        self._point_ctx()

    def _point_ctx(self) -> None:
        """Re-point the raw-pointer fast path after any of its arrays was replaced."""
        self._ctx.set(self.ws, self.dec.lv, self.book.book, self.book.st, self.rec_words, self.trade_words)

    def set_instrument(self, inst: Instrument) -> None:
        self.instrument = inst
        self.book = Book(inst.tick_u, inst.lot_u, self.width)
        self.ws[fp.W_TICK] = inst.tick_u
        self.ws[fp.W_LOT] = inst.lot_u
        tick, lot = inst.tick_u / 1e8, inst.lot_u / 1e8
        for rec in (self.book_rec, self.trade_rec):
            rec["tick"] = tick
            rec["lot"] = lot
        self._point_ctx()

    # -- counters -----------------------------------------------------------------------------------
    @property
    def depth_applied(self) -> int:
        return int(self.ws[fp.W_APPLIED])

    @property
    def ticker_checks(self) -> int:
        return int(self.ws[fp.W_TICKER_CHECKS])

    @property
    def ticker_mismatches(self) -> int:
        return int(self.ws[fp.W_TICKER_MISMATCHES])

    @property
    def gaps(self) -> int:
        return self.sync.gaps

    @property
    def resyncs(self) -> int:
        return self.sync.resyncs

    def counters(self) -> dict[str, int]:
        """Integer counters for heartbeats, the check report and the bench."""
        ws = self.ws
        return {
            "depth_msgs": int(ws[fp.W_DEPTH_MSGS]),
            "depth_applied": int(ws[fp.W_APPLIED]),
            "gaps": self.sync.gaps,
            "resyncs": self.sync.resyncs,
            "stale_snapshots": self.sync.stale_snapshots,
            "dropped": self.sync.dropped,
            "snapshots": self.snapshots,
            "ticker_msgs": int(ws[fp.W_TICKERS]),
            "ticker_checks": int(ws[fp.W_TICKER_CHECKS]),
            "ticker_checks_held": int(ws[fp.W_TICKER_HELD_CHECKS]),
            "ticker_mismatches": int(ws[fp.W_TICKER_MISMATCHES]),
            "trades": int(ws[fp.W_TRADES]),
            "trades_skipped": self.trades_skipped,
            "malformed": self.malformed,
            "rejected": self.rejected,
            "levels_dropped": int(self.book.st[2]),
            "crossed": int(self.book.st[3]),
        }

    @property
    def synced(self) -> bool:
        return self.sync.synced

    @property
    def last_update_id(self) -> int:
        """`u` of the last applied diff (0 before the first sync)."""
        return int(self.ws[fp.W_LAST_U]) if self.sync.synced else int(self.sync.last_u)

    def last_event(self) -> int:
        """Event type (decode.EV_*) of the last frame scanned; 0 for replies, errors, snapshots."""
        return int(self.ws[d.H_EVENT])

    # -- the hot path -------------------------------------------------------------------------------
    def on_frame(self, recv_ns: int, frame: bytes | bytearray | memoryview | np.ndarray) -> int:
        """Decode and act on one frame; returns OUT_* bits (records in book_rec / trade_rec)."""
        # The kernel is called through its C entry point (`fastpath.step_c`): the arrays it works
        # on are addressed through ctx, so the call converts four scalars instead of numba
        # type-checking nine arguments, and bytes are passed without building an ndarray.
        if type(frame) is bytes:
            buf = None
            r = _step_bytes(frame, len(frame), self._ctx_addr, recv_ns)
        else:
            buf = frame if isinstance(frame, np.ndarray) else np.frombuffer(frame, dtype=np.uint8)
            if buf.dtype == _U8 and buf.ndim == 1 and buf.flags.c_contiguous:
                r = _step_addr(buf.ctypes.data, buf.shape[0], self._ctx_addr, recv_ns)
            else:
                r = self._step_array(buf, recv_ns)
        if r == _R_BOOK:
            self.rec_words[self._pub] = _time_ns()
            return OUT_BOOK
        if r == _R_TRADE:
            self.trade_words[_T_PUBLISH] = _time_ns()
            return OUT_TRADE
        if r == _R_NONE:
            return 0
        if r == fp.R_REJECT:
            return self._reject(recv_ns)
        if r == fp.R_MISMATCH:
            return self._mismatch(recv_ns)
        if buf is None:
            buf = np.frombuffer(frame, dtype=np.uint8)
        return self._slow(recv_ns, buf, r - fp.SLOW)

    def _step_array(self, buf: np.ndarray, recv_ns: int) -> int:
        """The dispatcher call, for arrays the C entry cannot take (strided, other dtypes)."""
        if buf.flags.writeable:
            buf = buf.view()
            buf.flags.writeable = False
        return fp.step(
            buf,
            buf.shape[0],
            self.ws,
            self.dec.lv,
            self.book.book,
            self.book.st,
            self.rec_words,
            self.trade_words,
            recv_ns,
        )

    def _slow(self, recv_ns: int, buf: np.ndarray, kind: int) -> int:
        if kind == d.E_TOO_MANY_LEVELS:
            kind = self.dec.decode(buf)  # grows the scratch arrays and scans again
        if self.sync.state == State.SYNCED:
            self.sync.last_u = int(self.ws[fp.W_LAST_U])
        try:
            if kind == d.K_DEPTH:
                return self._on_depth(recv_ns, buf)
            if kind == d.K_TRADE:
                self.trades_skipped += 1
                return 0
            if kind == d.K_SNAPSHOT:
                return self._on_snapshot(recv_ns)
            if kind == d.K_OTHER:
                self.other += 1
                return 0
            if kind == d.K_BOOK_TICKER:
                return 0
            self._error(kind, buf)
            return 0
        finally:
            self.ws[fp.W_STATE] = fp.STATE_SYNCED if self.sync.state == State.SYNCED else 0
            self.ws[fp.W_LAST_U] = self.sync.last_u
            self._point_ctx()  # the decoder may have grown its level arrays

    def on_snapshot_frame(self, recv_ns: int, frame: bytes) -> int:
        """A REST/WS-API depth body; a malformed one counts and leaves the machine waiting."""
        buf = np.frombuffer(frame, dtype=np.uint8)
        kind = self.dec.decode(buf)
        if kind != d.K_SNAPSHOT:
            self._point_ctx()  # the decoder may have grown its level arrays
            self._error(kind if kind < 0 else d.E_MISSING, buf)
            return OUT_NEED_SNAPSHOT
        return self._slow(recv_ns, buf, kind)

    def reset(self, recv_ns: int) -> int:
        """A reconnect: the book is invalid until a new snapshot; returns a marker record."""
        self.sync.reset()
        self.ws[fp.W_STATE] = 0
        return self._marker(recv_ns) | OUT_NEED_SNAPSHOT

    # -- the slow path ------------------------------------------------------------------------------
    def _marker(self, recv_ns: int) -> int:
        """A book record without BOOK_VALID: readers drop their window."""
        w = self.rec_words
        w[self._offs[2]] = recv_ns
        w[self._offs[5]] = self.base_flags
        w[self._offs[6] :] = 0
        self.ws[fp.W_PENDING] = 1
        self.ws[_HELD_US] = 0  # held tickers wait for a book that is gone
        self.ws[fp.W_HELD_N] = 0
        self.rec_words[self._pub] = time.time_ns()
        return OUT_BOOK

    def _error(self, kind: int, buf: np.ndarray) -> None:
        self.malformed += 1
        pos = int(self.ws[d.H_ERRPOS])
        snippet = bytes(buf[max(0, pos - 20) : pos + 20]).decode("utf-8", "replace")
        self.last_error = f"{d.error_text(kind)} at byte {pos}: ...{snippet}..."

    def _reject(self, recv_ns: int) -> int:
        # an off-tick level: the book cannot follow this event; resync rather than guess
        self.rejected += 1
        self.last_error = f"depth u={int(self.ws[d.H_LAST])}: level not on tick/lot"
        self.sync.reset()
        self.ws[fp.W_STATE] = 0
        return self._marker(recv_ns) | OUT_NEED_SNAPSHOT

    def _mismatch(self, recv_ns: int) -> int:
        # a bookTicker disagrees with the book at its own u: the book is wrong, take a new one
        self.last_error = f"bookTicker u={int(self.ws[fp.W_MISMATCH_U])}: best bid/ask differ from the book"
        self.sync.reset()
        self.ws[fp.W_STATE] = 0
        return self._marker(recv_ns) | OUT_NEED_SNAPSHOT

    def _on_depth(self, recv_ns: int, buf: np.ndarray) -> int:
        self.ws[fp.W_DEPTH_MSGS] += 1
        h = self.ws
        state_before = self.sync.state
        item = (recv_ns, bytes(buf))  # kept if buffered (also after a gap while in sync)
        act = self.sync.on_diff(int(h[d.H_FIRST]), int(h[d.H_LAST]), int(h[d.H_PREV]), item)
        if act == Action.APPLY or act == Action.APPLY_FIRST:
            return self._apply(recv_ns, act == Action.APPLY_FIRST)
        if act == Action.RESYNC:
            return self._marker(recv_ns) | OUT_NEED_SNAPSHOT
        if act == Action.BUFFER and state_before != self.sync.state:
            return self._marker(recv_ns) | OUT_NEED_SNAPSHOT
        return OUT_NEED_SNAPSHOT if self.sync.needs_snapshot else 0

    def _apply(self, recv_ns: int, first: bool) -> int:
        ws = self.ws
        if first:
            ws[fp.W_PENDING] = 1
        flags = self.base_flags | BOOK_VALID | (BOOK_RESYNC if ws[fp.W_PENDING] else 0)
        r = _apply_and_write(
            self.book.book,
            self.book.st,
            ws,
            self.dec.lv[0],
            self.dec.lv[1],
            self.book.tick_u,
            self.book.lot_u,
            self.rec_words,
            self._offs,
            self.levels,
            recv_ns,
            flags,
        )
        if r != OK:
            return self._reject(recv_ns)
        if not self._burst:
            ws[fp.W_PENDING] = 0
        ws[fp.W_APPLIED] += 1
        if ws[fp.W_HELD_N]:
            ws[fp.W_LAST_U] = ws[d.H_LAST]
            if not fp.check_held(ws, self.book.book, self.book.st) and ws[fp.W_CHECK] == fp.CHECK_RESYNC:
                return self._mismatch(recv_ns)
        self.rec_words[self._pub] = time.time_ns()
        return OUT_BOOK

    def _on_snapshot(self, recv_ns: int) -> int:
        h = self.ws
        nbids, nasks = int(h[d.H_NB]), int(h[d.H_NA])
        bids, asks = self.dec.bids[:nbids].copy(), self.dec.asks[:nasks].copy()
        self.snapshots += 1
        pending = self.sync.on_snapshot(int(h[d.H_LAST_ID]))
        if self.instrument is None:
            px = [bids[:, 0], asks[:, 0]]
            qty = [bids[:, 1], asks[:, 1]]
            for _, _, _, (_, fr) in pending:
                if self.dec.decode(fr) == d.K_DEPTH:
                    b = self.dec.bids[: h[d.H_NB]].copy()
                    a = self.dec.asks[: h[d.H_NA]].copy()
                    px += [b[:, 0], a[:, 0]]
                    qty += [b[:, 1], a[:, 1]]
            try:
                self.set_instrument(Instrument.infer(np.concatenate(px), np.concatenate(qty)))
            except ValueError as e:
                self.last_error = f"snapshot: {e}"
                self.sync.reset()
                return self._marker(recv_ns) | OUT_NEED_SNAPSHOT
        self.book.clear()
        if self.book.apply(bids, asks) != OK:
            self.rejected += 1
            self.last_error = "snapshot has a level not on tick/lot"
            self.sync.reset()
            return self._marker(recv_ns) | OUT_NEED_SNAPSHOT
        # Buffered events are applied in one burst; only the final state is returned (one record,
        # flagged BOOK_RESYNC): intermediate books of a burst were never current for any reader.
        out = 0
        self._burst = True
        try:
            for _, _, _, (ns, fr) in pending:
                self.dec.decode(fr)
                self.ws[fp.W_DEPTH_MSGS] -= 1  # counted when it was buffered
                out |= self._on_depth(ns, np.frombuffer(fr, dtype=np.uint8))
        finally:
            self._burst = False
        if out & OUT_BOOK and self.book_rec["flags"] & BOOK_VALID:
            self.ws[fp.W_PENDING] = 0
        if self.sync.needs_snapshot:
            out |= OUT_NEED_SNAPSHOT
        return out

    # -- batches (replay, check, bench) -------------------------------------------------------------
    def run(
        self,
        data: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        nss: np.ndarray,
        i0: int,
        i1: int,
        out_books: np.ndarray,
        out_trades: np.ndarray,
        on_slow=None,
    ) -> tuple[int, int, int]:
        """Process frames i0..i1 of `data` through the fast path, collecting records.

        Returns (next index, books collected, trades collected); stops early when an output
        array is full. A frame needing the slow path is handled here; its record (a marker
        or a resynced book) is appended too. `on_slow(i, out_bits)` is told about each.
        Not with ``check_tickers="resync"``: a frame the batch stops on is scanned again here,
        which a diff applied before its held ticker's mismatch must not be.
        """
        if self.ws[fp.W_CHECK] == fp.CHECK_RESYNC:
            raise ValueError("FeedCore.run: check_tickers='resync' is for on_frame callers")
        if data.flags.writeable:
            data = data.view()
            data.flags.writeable = False
        counts = np.zeros(2, dtype=np.int64)
        bw = _words(out_books)
        tw = _words(out_trades)
        i = i0
        while i < i1:
            i = fp.run_batch(
                data,
                starts,
                ends,
                nss,
                i,
                i1,
                self.ws,
                self.dec.lv,
                self.book.book,
                self.book.st,
                self.rec_words,
                self.trade_words,
                bw,
                tw,
                counts,
            )
            if i >= i1 or counts[0] >= len(bw) or counts[1] >= len(tw):
                break
            frame = data[starts[i] : ends[i]]
            out = self.on_frame(int(nss[i]), frame)  # rescans; the slow path is rare
            if on_slow is not None:
                on_slow(i, out)
            if out & OUT_BOOK:
                bw[counts[0]] = self.rec_words
                counts[0] += 1
            if out & OUT_TRADE:
                tw[counts[1]] = self.trade_words
                counts[1] += 1
            i += 1
        return i, int(counts[0]), int(counts[1])


_WARM_FRAMES = (
    b'{"lastUpdateId":10,"E":1,"T":1,"bids":[["100.0","1"]],"asks":[["101.0","1"]]}',
    b'{"stream":"x@depth","data":{"e":"depthUpdate","E":2,"T":2,"s":"X","U":9,"u":11,"pu":8,'
    b'"b":[["100.0","2"]],"a":[]}}',
    b'{"stream":"x@depth","data":{"e":"depthUpdate","E":3,"T":3,"s":"X","U":12,"u":12,"pu":11,'
    b'"b":[],"a":[["101.0","0"]]}}',
    b'{"stream":"x@bookTicker","data":{"e":"bookTicker","u":12,"s":"X","b":"100.0","B":"2",'
    b'"a":"0","A":"0","T":3,"E":3}}',
    b'{"stream":"x@aggTrade","data":{"e":"aggTrade","E":4,"a":1,"s":"X","p":"100.0","q":"1",'
    b'"f":1,"l":1,"T":4,"m":true}}',
    b"not json",
)


def warm_up(levels: int = 10) -> None:
    """Compile (or load from the numba cache) every kernel before the first real frame.

    A first call costs seconds on a small core; paying it inside the event loop would stall the
    sockets and trip the staleness watchdog.
    """
    core = FeedCore(levels=levels, check_tickers=True)
    for k, frame in enumerate(_WARM_FRAMES):
        core.on_frame(k, frame)
    fp.check_held(core.ws, core.book.book, core.book.st)  # the slow path's call of it
