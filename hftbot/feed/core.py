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

Bookticker checks: every bookTicker whose ``u`` equals the ``u`` of the last applied diff must
equal the rebuilt best bid/ask price and quantity exactly (counted in ``ticker_checks`` and
``ticker_mismatches``; the first mismatches are kept in ``mismatch_samples``).

It must never do I/O, never publish a book as valid while out of sync, and never raise on bad
exchange input: malformed frames are counted (``malformed``) and the last error text kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hftbot.feed import decode as d
from hftbot.feed.book import OK, Book, record_offsets
from hftbot.feed.book import apply_and_write as _apply_and_write
from hftbot.feed.sync import Action, DepthSync
from hftbot.records import BOOK_REPLAY, BOOK_RESYNC, BOOK_VALID, TRADE_DTYPE, book_dtype

OUT_BOOK = 1
OUT_TRADE = 2
OUT_NEED_SNAPSHOT = 4


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
                return Instrument.from_strings(filters["PRICE_FILTER"]["tickSize"],
                                               filters["LOT_SIZE"]["stepSize"])
            except KeyError as e:
                raise ValueError(f"exchangeInfo for {symbol} lacks filter field {e}") from None
    raise ValueError(f"exchangeInfo has no symbol {symbol!r}")


class FeedCore:
    """One symbol's book and trades, from raw frames."""

    def __init__(self, levels: int = 10, instrument: Instrument | None = None, replay: bool = False,
                 check_tickers: bool = False, capacity: int = 8192) -> None:
        self.levels = levels
        self.instrument = instrument
        self.capacity = capacity
        self.dec = d.FrameDecoder()
        self.sync = DepthSync()
        self.book: Book | None = Book(instrument.tick_u, instrument.lot_u, capacity) if instrument else None
        self.base_flags = BOOK_REPLAY if replay else 0
        self.check_tickers = check_tickers
        self.book_rec = np.zeros((), dtype=book_dtype(levels))
        self._words = self.book_rec.reshape(1).view(np.int64)
        self._offs = record_offsets(self.book_rec.dtype)
        self.trade_rec = np.zeros((), dtype=TRADE_DTYPE)
        self._set_units()
        self._pending_resync_flag = False
        self._burst = False
        # counters
        self.depth_msgs = 0
        self.depth_applied = 0
        self.snapshots = 0
        self.ticker_msgs = 0
        self.ticker_checks = 0
        self.ticker_mismatches = 0
        self.trades = 0
        self.trades_skipped = 0  # arrived before tick/lot were known, or off-tick
        self.malformed = 0
        self.rejected = 0  # well-formed diffs with an off-tick/off-lot level (forced resync)
        self.other = 0
        self.last_error = ""
        self.mismatch_samples: list[dict] = []

    # -- helpers ------------------------------------------------------------------------------------
    def _set_units(self) -> None:
        if self.instrument:
            tick, lot = self.instrument.tick_u / 1e8, self.instrument.lot_u / 1e8
            self.book_rec["tick"] = tick
            self.book_rec["lot"] = lot
            self.trade_rec["tick"] = tick
            self.trade_rec["lot"] = lot

    @property
    def gaps(self) -> int:
        return self.sync.gaps

    @property
    def resyncs(self) -> int:
        return self.sync.resyncs

    def _marker(self, recv_ns: int) -> int:
        """A book record without BOOK_VALID: readers drop their window."""
        w = self._words
        w[self._offs[2]] = recv_ns
        w[self._offs[5]] = self.base_flags
        w[self._offs[6]:] = 0
        self._pending_resync_flag = True
        return OUT_BOOK

    def _error(self, kind: int, frame) -> None:
        self.malformed += 1
        pos = int(self.dec.hdr[d.H_ERRPOS])
        snippet = bytes(frame[max(0, pos - 20):pos + 20]).decode("utf-8", "replace")
        self.last_error = f"{d.error_text(kind)} at byte {pos}: ...{snippet}..."

    def reset(self, recv_ns: int) -> int:
        """A reconnect: the book is invalid until a new snapshot; returns OUT_BOOK (marker)."""
        self.sync.reset()
        return self._marker(recv_ns) | OUT_NEED_SNAPSHOT

    # -- frames -------------------------------------------------------------------------------------
    def on_frame(self, recv_ns: int, frame: bytes | bytearray | memoryview | np.ndarray) -> int:
        """Decode and act on one frame; returns OUT_* bits."""
        kind = self.dec.decode(frame)
        if kind == d.K_DEPTH:
            return self._on_depth(recv_ns, frame)
        if kind == d.K_BOOK_TICKER:
            self.ticker_msgs += 1
            if self.check_tickers:
                self._check_ticker()
            return 0
        if kind == d.K_TRADE:
            return self._on_trade(recv_ns)
        if kind == d.K_SNAPSHOT:
            return self._on_snapshot(recv_ns)
        if kind == d.K_OTHER:
            self.other += 1
            return 0
        self._error(kind, frame)
        return 0

    def on_snapshot_frame(self, recv_ns: int, frame: bytes) -> int:
        """A REST/WS-API depth body; a malformed one counts and leaves the machine waiting."""
        kind = self.dec.decode(frame)
        if kind != d.K_SNAPSHOT:
            if kind >= 0:
                kind = d.E_MISSING
            self._error(kind, frame)
            return OUT_NEED_SNAPSHOT
        return self._on_snapshot(recv_ns)

    def _on_depth(self, recv_ns: int, frame) -> int:
        self.depth_msgs += 1
        h = self.dec.hdr
        state_before = self.sync.state
        act = self.sync.on_diff(int(h[d.H_FIRST]), int(h[d.H_LAST]), int(h[d.H_PREV]),
                                (recv_ns, bytes(frame)) if not self.sync.synced else None)
        if act == Action.APPLY or act == Action.APPLY_FIRST:
            return self._apply(recv_ns, act == Action.APPLY_FIRST)
        if act == Action.RESYNC:
            return self._marker(recv_ns) | OUT_NEED_SNAPSHOT
        if act == Action.BUFFER and state_before != self.sync.state:
            return self._marker(recv_ns) | OUT_NEED_SNAPSHOT
        return OUT_NEED_SNAPSHOT if self.sync.needs_snapshot else 0

    def _apply(self, recv_ns: int, first: bool) -> int:
        flags = self.base_flags | BOOK_VALID
        if first:
            self._pending_resync_flag = True
        if self._pending_resync_flag:
            flags |= BOOK_RESYNC
        assert self.book is not None and self.instrument is not None
        r = _apply_and_write(self.book.book, self.book.st, self.dec.hdr, self.dec.bids, self.dec.asks,
                             self.instrument.tick_u, self.instrument.lot_u, self._words, self._offs,
                             self.levels, recv_ns, flags)
        if r != OK:
            # an off-tick level: the book cannot follow this event; resync rather than guess
            self.rejected += 1
            self.last_error = f"depth u={int(self.dec.hdr[d.H_LAST])}: level not on tick/lot (code {r})"
            self.sync.reset()
            return self._marker(recv_ns) | OUT_NEED_SNAPSHOT
        if not self._burst:
            self._pending_resync_flag = False
        self.depth_applied += 1
        self.book_rec["publish_ns"] = time.time_ns()
        return OUT_BOOK

    def _on_snapshot(self, recv_ns: int) -> int:
        h = self.dec.hdr
        nbids, nasks = int(h[d.H_NB]), int(h[d.H_NA])
        bids, asks = self.dec.bids[:nbids].copy(), self.dec.asks[:nasks].copy()
        self.snapshots += 1
        pending = self.sync.on_snapshot(int(h[d.H_LAST_ID]))
        if self.instrument is None:
            px = [bids[:, 0], asks[:, 0]]
            qty = [bids[:, 1], asks[:, 1]]
            for _, _, _, (_, fr) in pending:
                if self.dec.decode(fr) == d.K_DEPTH:
                    b = self.dec.bids[: self.dec.hdr[d.H_NB]].copy()
                    a = self.dec.asks[: self.dec.hdr[d.H_NA]].copy()
                    px += [b[:, 0], a[:, 0]]
                    qty += [b[:, 1], a[:, 1]]
            self.instrument = Instrument.infer(np.concatenate(px), np.concatenate(qty))
            self.book = Book(self.instrument.tick_u, self.instrument.lot_u, self.capacity)
            self._set_units()
        assert self.book is not None
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
                out |= self._on_depth_replayed(ns, fr)
        finally:
            self._burst = False
        if out & OUT_BOOK and self.book_rec["flags"] & BOOK_VALID:
            self._pending_resync_flag = False
        if self.sync.needs_snapshot:
            out |= OUT_NEED_SNAPSHOT
        return out

    def _on_depth_replayed(self, recv_ns: int, frame) -> int:
        self.depth_msgs -= 1  # already counted when it was buffered
        return self._on_depth(recv_ns, frame)

    def _check_ticker(self) -> None:
        h = self.dec.hdr
        if not self.sync.synced or int(h[d.H_LAST]) != self.sync.last_u or self.book is None:
            return
        self.ticker_checks += 1
        t, lt = self.instrument.tick_u, self.instrument.lot_u
        got = (int(h[d.H_BID]), int(h[d.H_BID_QTY]), int(h[d.H_ASK]), int(h[d.H_ASK_QTY]))
        bb, bq, ab, aq = self.book.best()
        mine = (bb * t, bq * lt, ab * t, aq * lt)
        if got != mine:
            self.ticker_mismatches += 1
            if len(self.mismatch_samples) < 10:
                self.mismatch_samples.append({
                    "u": int(h[d.H_LAST]),
                    "ticker": [v / 1e8 for v in got],
                    "book": [v / 1e8 for v in mine],
                })

    def _on_trade(self, recv_ns: int) -> int:
        h = self.dec.hdr
        inst = self.instrument
        if inst is None or h[d.H_PX] % inst.tick_u or h[d.H_QTY] % inst.lot_u:
            self.trades_skipped += 1
            return 0
        tr = self.trade_rec
        tr["event_ms"] = h[d.H_E]
        tr["trade_ms"] = h[d.H_T]
        tr["recv_ns"] = recv_ns
        tr["trade_id"] = h[d.H_TRADE_ID]
        tr["px"] = h[d.H_PX] // inst.tick_u
        tr["qty"] = h[d.H_QTY] // inst.lot_u
        tr["buyer_is_maker"] = h[d.H_MAKER]
        tr["publish_ns"] = time.time_ns()
        self.trades += 1
        return OUT_TRADE

    def counters(self) -> dict[str, int]:
        """Integer counters for heartbeats, the check report and the bench."""
        return {
            "depth_msgs": self.depth_msgs,
            "depth_applied": self.depth_applied,
            "gaps": self.sync.gaps,
            "resyncs": self.sync.resyncs,
            "stale_snapshots": self.sync.stale_snapshots,
            "dropped": self.sync.dropped,
            "snapshots": self.snapshots,
            "ticker_msgs": self.ticker_msgs,
            "ticker_checks": self.ticker_checks,
            "ticker_mismatches": self.ticker_mismatches,
            "trades": self.trades,
            "trades_skipped": self.trades_skipped,
            "malformed": self.malformed,
            "rejected": self.rejected,
            "levels_dropped": int(self.book.st[2]) if self.book else 0,
            "crossed": int(self.book.st[3]) if self.book else 0,
        }

