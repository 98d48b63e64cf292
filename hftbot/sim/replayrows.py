"""Market event rows for the matching engine from captures and raw recordings (replay input).

The book is rebuilt by the documented futures procedure (`hftbot.feed.sync.DepthSync`, the feed's
own state machine): each snapshot becomes an EV_CLEAR row and one EV_LEVEL row per level, each
applied diff one EV_LEVEL row per level (bids, then asks; the last row of a message carries
MF_LAST), each trade one EV_TRADE row with the taker's side. bookTicker frames are skipped: they
carry nothing the diffs do not. Rows are in receive order, `exch_ns` is the exchange's event time
(depth) or trade time, `recv_ns` the local receive time; prices in ticks, quantities in lots.

Tick and lot are given, or inferred at the first snapshot as the feed does (greatest common
divisor of the snapshot's and the buffered diffs' prices and quantities). A level that is not a
whole number of ticks or lots is an error naming the file and frame, never a rounded row.

Speed: the common frames - a diff that continues the `pu` chain while in sync, a trade, a
control reply - never leave compiled code (`build_rows`, one numba loop over a block's frames, the
feed fast path's pattern). Every other case (out of sync, a snapshot, a gap, an error, a level off
the grid, a full buffer) hands the frame back to the Python `frame`, the one definition of what
each case means; the kernel only ever does what `frame` would do, and a test holds the two equal.

Reads files; never changes them. The rows are what `MatchingEngine.run` and a backtest consume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numba as nb
import numpy as np

from hftbot.feed import decode as d
from hftbot.feed.capture import Block, CaptureError, iter_blocks
from hftbot.feed.core import Instrument
from hftbot.feed.sync import Action, DepthSync
from hftbot.sim.kernels import (
    EV_CLEAR,
    EV_LEVEL,
    EV_TRADE,
    M_EXCH_NS,
    M_FLAGS,
    M_KIND,
    M_PX,
    M_QTY,
    M_RECV_NS,
    M_SIDE,
    MARKET_EVENT_DTYPE,
    MEF,
    MF_LAST,
)

BUY = 1
SELL = -1
MS = 1_000_000

# build_rows state words (int64): what it reads, then what it counts
ST_SYNCED, ST_LAST_U, ST_TICK, ST_LOT, ST_WHY, ST_DIFFS, ST_TRADES, ST_EARLY_TRADES = range(8)
ST_SIZE = 8
WHY_FRAME, WHY_ROOM = 1, 2  # why build_rows stopped: a frame for `frame`, or rows past the buffer


@nb.njit(cache=True)
def _emit_levels(buf, n, lv, m, side, exch_ns, recv_ns, tick, lot):
    for k in range(m):
        buf[n, M_EXCH_NS] = exch_ns
        buf[n, M_RECV_NS] = recv_ns
        buf[n, M_KIND] = EV_LEVEL
        buf[n, M_SIDE] = side
        buf[n, M_PX] = lv[k, 0] // tick
        buf[n, M_QTY] = lv[k, 1] // lot
        buf[n, M_FLAGS] = 0
        n += 1
    return n


@nb.njit(cache=True)
def _off_grid(lv, m, tick, lot):
    """Levels among lv[:m] that `_levels` refuses (off the tick/lot grid, price <= 0, qty < 0)."""
    bad = 0
    for k in range(m):
        bad += lv[k, 0] <= 0 or lv[k, 1] < 0 or lv[k, 0] % tick != 0 or lv[k, 1] % lot != 0
    return bad


@nb.njit(cache=True)
def build_rows(data, starts, ends, nss, idx, k0, hdr, bids, asks, buf, n, st):
    """Rows of frames idx[k0:] of one block into buf[n:] while each is a common case.

    Returns (k, n): k is where in `idx` it stopped (len(idx): all done; else st[ST_WHY] says why),
    n the rows now in buf. In sync (st[ST_SYNCED]) a diff whose pu is st[ST_LAST_U] becomes its
    level rows and moves ST_LAST_U; a trade becomes its row (out of sync: only counted, as
    `frame` does); control replies and tickers are nothing. Anything else stops the loop."""
    cap = buf.shape[0]
    tick = st[ST_TICK]
    lot = st[ST_LOT]
    for k in range(k0, idx.shape[0]):
        j = idx[k]
        a = starts[j]
        kind = d.scan(data[a : ends[j]], ends[j] - a, hdr, bids, asks)
        if kind == d.K_OTHER or kind == d.K_BOOK_TICKER:
            continue
        if kind == d.K_TRADE:
            if not st[ST_SYNCED]:
                st[ST_EARLY_TRADES] += 1
                continue
            px = hdr[d.H_PX]
            qty = hdr[d.H_QTY]
            if px % tick or qty % lot:
                st[ST_WHY] = WHY_FRAME
                return k, n
            if n + 1 > cap:
                st[ST_WHY] = WHY_ROOM
                return k, n
            buf[n, M_EXCH_NS] = hdr[d.H_T] * MS
            buf[n, M_RECV_NS] = nss[j]
            buf[n, M_KIND] = EV_TRADE
            buf[n, M_SIDE] = SELL if hdr[d.H_MAKER] else BUY
            buf[n, M_PX] = px // tick
            buf[n, M_QTY] = qty // lot
            buf[n, M_FLAGS] = MF_LAST
            n += 1
            st[ST_TRADES] += 1
            continue
        if kind != d.K_DEPTH or not st[ST_SYNCED] or hdr[d.H_PREV] != st[ST_LAST_U]:
            st[ST_WHY] = WHY_FRAME
            return k, n
        nb_, na = hdr[d.H_NB], hdr[d.H_NA]
        if _off_grid(bids, nb_, tick, lot) or _off_grid(asks, na, tick, lot):
            st[ST_WHY] = WHY_FRAME
            return k, n
        if n + nb_ + na > cap:
            st[ST_WHY] = WHY_ROOM
            return k, n
        n0 = n
        e = hdr[d.H_E] * MS
        n = _emit_levels(buf, n, bids, nb_, BUY, e, nss[j], tick, lot)
        n = _emit_levels(buf, n, asks, na, SELL, e, nss[j], tick, lot)
        if n > n0:
            buf[n - 1, M_FLAGS] = MF_LAST
        st[ST_LAST_U] = hdr[d.H_LAST]
        st[ST_DIFFS] += 1
    return idx.shape[0], n


@dataclass
class MarketRows:
    """Replay rows and what building them found."""

    rows: np.ndarray  # MARKET_EVENT_DTYPE
    tick_u: int  # 1e-8 units
    lot_u: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def tick(self) -> float:
        return self.tick_u / d.FIXED

    @property
    def lot(self) -> float:
        return self.lot_u / d.FIXED

    @property
    def level_rows(self) -> int:
        return int(np.count_nonzero(self.rows["kind"] == EV_LEVEL))

    def px_range(self) -> tuple[int, int]:
        """Lowest and highest price (ticks) of any level or trade: what `MatchingEngine.fit` needs."""
        px = self.rows["px"][self.rows["kind"] != EV_CLEAR]
        if not len(px):
            raise ValueError("market rows: no levels or trades")
        return int(px.min()), int(px.max())


_HEAD = 64  # RowBuilder.frame looks for the stream name in a frame's first 64 bytes


def row_frames(blk: Block, i0: int, i1: int) -> np.ndarray:
    """Indices of frames i0..i1 that are not bookTicker (they carry nothing the diffs do not),
    found in one vectorised pass (`np.strings.find` over the frames' first bytes) instead of a
    Python call per frame."""
    starts, ends = blk.starts[i0:i1], blk.ends[i0:i1]
    if not len(starts):
        return np.zeros(0, np.int64)
    off = np.arange(_HEAD)
    head = blk.data[np.minimum(starts[:, None] + off, len(blk.data) - 1)]
    head[off >= (ends - starts)[:, None]] = 0  # past a short frame's end
    ticker = np.strings.find(np.ascontiguousarray(head).view(f"S{_HEAD}").ravel(), b"bookTicker") >= 0
    return np.flatnonzero(~ticker) + i0


class _Builder:
    def __init__(self, inst: Instrument | None) -> None:
        self.inst = inst
        self.sync = DepthSync()
        self.dec = d.FrameDecoder()
        self.buf = np.zeros((1 << 16, MEF), dtype=np.int64)  # rows as int64 words, grown by doubling
        self.n = 0
        self.counts = {
            "snapshots": 0,
            "diffs": 0,
            "trades": 0,
            "trades_before_book": 0,
            "gaps": 0,
            "dropped": 0,
        }

    def frames(self, blk: Block, idx: np.ndarray) -> None:
        """`frame` for each of blk's frames `idx` (ascending): the common cases in `build_rows`, the
        rest here. The sync state goes in and comes back, so either side may take the next frame."""
        st = np.zeros(ST_SIZE, np.int64)
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        k, m = 0, len(idx)
        while k < m:
            inst, sync = self.inst, self.sync
            st[:] = 0
            st[ST_SYNCED] = sync.synced and inst is not None
            st[ST_LAST_U] = sync.last_u
            if inst is not None:
                st[ST_TICK], st[ST_LOT] = inst.tick_u, inst.lot_u
            k, self.n = build_rows(blk.data, blk.starts, blk.ends, blk.nss, idx, k, self.dec.hdr,
                                   self.dec.lv[0], self.dec.lv[1], self.buf, self.n, st)
            sync.last_u = int(st[ST_LAST_U])
            self.counts["diffs"] += int(st[ST_DIFFS])
            self.counts["trades"] += int(st[ST_TRADES])
            self.counts["trades_before_book"] += int(st[ST_EARLY_TRADES])
            if k >= m:
                return
            if st[ST_WHY] == WHY_ROOM:
                self._room(len(self.buf))  # doubles; the frame is taken again by the kernel
                continue
            j = int(idx[k])
            self.frame(int(blk.nss[j]), blk.frame(j), f"{blk.source} frame {j}")
            k += 1

    def _room(self, m: int) -> None:
        if self.n + m > len(self.buf):
            grown = np.zeros((max(2 * len(self.buf), self.n + m), MEF), dtype=np.int64)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown

    def _levels(self, lv: np.ndarray, side: int, exch_ns: int, recv_ns: int, where: str) -> None:
        inst = self.inst
        assert inst is not None
        m = len(lv)
        if not m:
            return
        px, qty = lv[:, 0], lv[:, 1]
        if (px % inst.tick_u).any() or (qty % inst.lot_u).any() or (px <= 0).any() or (qty < 0).any():
            raise CaptureError(
                f"{where}: a level is not a whole number of ticks ({inst.tick_u}) and lots ({inst.lot_u})"
            )
        self._room(m)
        out = self.buf[self.n : self.n + m]
        out[:, M_EXCH_NS] = exch_ns
        out[:, M_RECV_NS] = recv_ns
        out[:, M_KIND] = EV_LEVEL
        out[:, M_SIDE] = side
        out[:, M_PX] = px // inst.tick_u
        out[:, M_QTY] = qty // inst.lot_u
        out[:, M_FLAGS] = 0
        self.n += m

    def _row(self, exch_ns: int, recv_ns: int, kind: int, side: int, px: int, qty: int, flags: int) -> None:
        self._room(1)
        self.buf[self.n] = (exch_ns, recv_ns, kind, side, px, qty, flags)
        self.n += 1

    def _message(self, exch_ns: int, recv_ns: int, where: str) -> None:
        h = self.dec.hdr
        n0 = self.n
        self._levels(self.dec.bids[: h[d.H_NB]], BUY, exch_ns, recv_ns, where)
        self._levels(self.dec.asks[: h[d.H_NA]], SELL, exch_ns, recv_ns, where)
        if self.n > n0:
            self.buf[self.n - 1, M_FLAGS] = MF_LAST

    def _diff(self, recv_ns: int, frame: bytes, where: str) -> None:
        h = self.dec.hdr
        act = self.sync.on_diff(int(h[d.H_FIRST]), int(h[d.H_LAST]), int(h[d.H_PREV]), (recv_ns, frame))
        if act in (Action.APPLY, Action.APPLY_FIRST):
            self.counts["diffs"] += 1
            self._message(int(h[d.H_E]) * MS, recv_ns, where)
        elif act == Action.RESYNC:
            self.counts["gaps"] += 1
        elif act == Action.DROP:
            self.counts["dropped"] += 1

    def _snapshot(self, recv_ns: int, where: str) -> None:
        h = self.dec.hdr
        bids = self.dec.bids[: h[d.H_NB]].copy()
        asks = self.dec.asks[: h[d.H_NA]].copy()
        pending = self.sync.on_snapshot(int(h[d.H_LAST_ID]))
        if self.inst is None:
            px, qty = [bids[:, 0], asks[:, 0]], [bids[:, 1], asks[:, 1]]
            for _, _, _, (_, fr) in pending:
                if self.dec.decode(fr) == d.K_DEPTH:
                    px += [self.dec.bids[: h[d.H_NB], 0].copy(), self.dec.asks[: h[d.H_NA], 0].copy()]
                    qty += [self.dec.bids[: h[d.H_NB], 1].copy(), self.dec.asks[: h[d.H_NA], 1].copy()]
            self.inst = Instrument.infer(np.concatenate(px), np.concatenate(qty))
        self.counts["snapshots"] += 1
        n0 = self.n
        self._row(recv_ns, recv_ns, EV_CLEAR, 0, 0, 0, 0)  # a REST snapshot has no event time
        self._levels(bids, BUY, recv_ns, recv_ns, where)
        self._levels(asks, SELL, recv_ns, recv_ns, where)
        if self.n > n0:
            self.buf[self.n - 1, M_FLAGS] = MF_LAST
        for _, _, _, (ns, fr) in pending:
            if self.dec.decode(fr) == d.K_DEPTH:
                self._diff(ns, fr, f"{where} (buffered)")

    def frame(self, recv_ns: int, frame: bytes, where: str) -> None:
        if b"bookTicker" in frame[:64]:  # the stream name (or event type) comes first: skip undecoded
            return
        kind = self.dec.decode(frame)
        if kind < 0:
            raise CaptureError(f"{where}: {d.error_text(kind)}")
        h = self.dec.hdr
        if kind == d.K_DEPTH:
            self._diff(recv_ns, frame, where)
        elif kind == d.K_SNAPSHOT:
            self._snapshot(recv_ns, where)
        elif kind == d.K_TRADE:
            if self.inst is None or not self.sync.synced:
                self.counts["trades_before_book"] += 1
                return
            px, qty = int(h[d.H_PX]), int(h[d.H_QTY])
            if px % self.inst.tick_u or qty % self.inst.lot_u:
                raise CaptureError(f"{where}: trade price/quantity not a whole number of ticks/lots")
            taker = SELL if h[d.H_MAKER] else BUY  # `m`: the buyer is the maker, so the taker sold
            self._row(
                int(h[d.H_T]) * MS,
                recv_ns,
                EV_TRADE,
                taker,
                px // self.inst.tick_u,
                qty // self.inst.lot_u,
                MF_LAST,
            )
            self.counts["trades"] += 1


class RowBuilder(_Builder):
    """`load_rows` one piece at a time: give it frames in order (`frame`), take the rows built so far
    (`take`). The sync state carries over, so a diff chain runs across pieces; memory is bounded by
    what is taken at once (the backtester's chunks), not by the recording."""

    def __init__(self, tick: str | None = None, lot: str | None = None) -> None:
        super().__init__(Instrument.from_strings(tick, lot) if tick and lot else None)

    def take(self) -> np.ndarray:
        """The rows built since the last take (MARKET_EVENT_DTYPE), in order."""
        rows = self.buf[: self.n].copy().view(MARKET_EVENT_DTYPE).reshape(self.n)
        self.n = 0
        return rows


def load_rows(
    paths: list[Path | str] | Path | str, tick: str | None = None, lot: str | None = None
) -> MarketRows:
    """Rows for every book change and trade under `paths` (`.gz` captures, raw recordings or folders)."""
    inst = Instrument.from_strings(tick, lot) if tick and lot else None
    b = _Builder(inst)
    for block in iter_blocks(paths):
        b.frames(block, row_frames(block, 0, len(block)))
    if b.inst is None:
        raise CaptureError(f"{paths}: no depth snapshot: cannot build a book")
    rows = b.buf[: b.n].copy().view(MARKET_EVENT_DTYPE).reshape(b.n)
    b.counts["gaps"] = b.sync.gaps
    return MarketRows(rows, b.inst.tick_u, b.inst.lot_u, b.counts)
