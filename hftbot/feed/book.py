"""The local L2 book kernel: a tick-indexed ladder per side, integer lots, numba.

Each side is a dense array of quantities indexed by ``price_ticks - base`` (``width`` slots,
default 2**20: +-52k USD of BTCUSDT at a 0.1 tick), with the best index tracked: an update is one
store, deleting the best scans to the next occupied slot (a few slots near the touch), and top-N
reads the occupied slots from the best outwards. Levels outside the window - far from the touch,
or after a move of more than width/2 ticks - go to a small sorted overflow array per side (the
farthest level is dropped and counted in ``S_DROPPED`` if it fills; the exchange snapshot itself
stops at 1000 levels). Top-N and best bid/ask merge ladder and overflow, so a level is found
wherever it lives. The base is set from the first price after ``clear()`` (the snapshot).

Why not sorted arrays: real diff streams touch levels thousands of ticks away (the BTCUSDT
capture grows to ~5,000 levels a side), and shifting them costs tens of microseconds per event.
Why not a dict: Python objects per level, and sorting for top-N.

Every update is validated before anything is applied (price a positive multiple of the tick,
quantity a non-negative multiple of the lot), so a bad message leaves the book untouched.
Values come in as fixed-point 1e-8 integers from `hftbot.feed.decode`.

This module must never do I/O, never use floats for prices, and never guess at a bad level.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from hftbot.records import book_dtype, book_levels

# book array rows: the ladders use all `width` columns, the overflow the first `overflow` ones
R_BID_LAD = 0
R_ASK_LAD = 1
R_BID_KEY = 2  # overflow bids: +ticks ascending (best last)
R_BID_QTY = 3
R_ASK_KEY = 4  # overflow asks: -ticks ascending (best last)
R_ASK_QTY = 5
ROWS = 6

# state slots
S_NB = 0  # bid levels (ladder + overflow)
S_NA = 1
S_DROPPED = 2  # overflow levels dropped because it was full
S_CROSSED = 3  # applied events after which best bid >= best ask
S_BAD = 4  # index of the first bad level in the last rejected update
S_BASE = 5  # price (ticks) of ladder slot 0
S_INIT = 6  # 1 once the base is set
S_BB = 7  # best bid ladder index, -1 if none
S_BA = 8  # best ask ladder index, width if none
S_LNB = 9  # bid levels in the ladder
S_LNA = 10
S_ONB = 11  # bid levels in the overflow
S_ONA = 12
S_LO = 13  # lowest ladder index ever written since clear (to clear cheaply)
S_HI = 14
S_OCAP = 15  # overflow capacity
STATE_SIZE = 16

OK = 0
E_TICK = -10  # price not a positive multiple of the tick
E_LOT = -11  # quantity negative or not a multiple of the lot

DEFAULT_WIDTH = 1 << 20
DEFAULT_OVERFLOW = 16384

# word offsets into a book record viewed as int64 (all fields are 8 bytes)
O_EVENT, O_TXN, O_RECV, O_PUBLISH, O_UPDATE, O_FLAGS, O_BID_PX, O_BID_QTY, O_ASK_PX, O_ASK_QTY = range(10)


def record_offsets(dtype: np.dtype) -> np.ndarray:
    """Word offsets of the fields the kernel writes, for a book dtype of any depth."""
    names = (
        "event_ms",
        "txn_ms",
        "recv_ns",
        "publish_ns",
        "update_id",
        "flags",
        "bid_px",
        "bid_qty",
        "ask_px",
        "ask_qty",
    )
    out = np.empty(len(names), dtype=np.int64)
    for k, name in enumerate(names):
        off = dtype.fields[name][1]
        if off % 8:
            raise ValueError(f"book dtype field {name} is not 8-byte aligned")
        out[k] = off // 8
    return out


@nb.njit(cache=True)
def _find(keys, n, key):
    """First index in keys[:n] with keys[i] >= key (keys ascending)."""
    if n > 0 and keys[n - 1] < key:
        return n
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(cache=True)
def _ovf_set(book, st, kr, qr, ns, key, qty):
    """Set one overflow level (rows kr/qr, count slot ns); qty 0 deletes. Returns the count delta."""
    keys = book[kr]
    qtys = book[qr]
    n = st[ns]
    pos = _find(keys, n, key)
    if pos < n and keys[pos] == key:
        if qty == 0:
            for j in range(pos, n - 1):
                keys[j] = keys[j + 1]
                qtys[j] = qtys[j + 1]
            st[ns] = n - 1
            return -1
        qtys[pos] = qty
        return 0
    if qty == 0:
        return 0  # removing an unknown level is normal (step 8 of the procedure)
    if n == st[S_OCAP]:
        st[S_DROPPED] += 1
        if pos == 0:
            return 0  # the new level is itself the farthest from the touch
        for j in range(0, pos - 1):
            keys[j] = keys[j + 1]
            qtys[j] = qtys[j + 1]
        keys[pos - 1] = key
        qtys[pos - 1] = qty
        return 0
    for j in range(n, pos, -1):
        keys[j] = keys[j - 1]
        qtys[j] = qtys[j - 1]
    keys[pos] = key
    qtys[pos] = qty
    st[ns] = n + 1
    return 1


@nb.njit(cache=True)
def _quotient(v, unit, inv):
    """v // unit, exact. Why not plain ``//``: a 64-bit idiv costs ~40 cycles on these CPUs and a
    level needs two (price/tick, qty/lot) in the validation pass and two when applied - a third
    of a 600-level update. A multiply by the float reciprocal is right for every value the
    decoder can produce (< 1e18, the product is exact to well under 0.5); the integer check
    catches anything else and falls back to the division."""
    q = np.int64(v * inv + 0.5)
    if q * unit != v:
        q = v // unit
    return q


@nb.njit(cache=True)
def _apply_bids(book, st, lv, n, tick_u, lot_u):
    """Set n validated (price, qty) bid rows of lv; qty 0 deletes.

    One loop over the levels with the ladder code inline: numba passes arrays to a called
    function with two atomic refcount operations, which per level cost more than the update.
    """
    width = book.shape[1]
    inv_tick = 1.0 / tick_u
    inv_lot = 1.0 / lot_u
    for k in range(n):
        px = _quotient(lv[k, 0], tick_u, inv_tick)
        qty = _quotient(lv[k, 1], lot_u, inv_lot)
        if st[S_INIT] == 0:
            st[S_BASE] = px - width // 2
            st[S_INIT] = 1
        i = px - st[S_BASE]
        if i < 0 or i >= width:
            st[S_NB] += _ovf_set(book, st, R_BID_KEY, R_BID_QTY, S_ONB, px, qty)
            continue
        old = book[R_BID_LAD, i]
        if qty > 0:
            if old == 0:
                st[S_LNB] += 1
                st[S_NB] += 1
                if i < st[S_LO]:
                    st[S_LO] = i
                if i > st[S_HI]:
                    st[S_HI] = i
            book[R_BID_LAD, i] = qty
            if i > st[S_BB]:
                st[S_BB] = i
        elif old != 0:
            book[R_BID_LAD, i] = 0
            st[S_LNB] -= 1
            st[S_NB] -= 1
            if i == st[S_BB]:
                j = i - 1
                if st[S_LNB] == 0:
                    j = -1
                else:
                    while j >= 0 and book[R_BID_LAD, j] == 0:
                        j -= 1
                st[S_BB] = j


@nb.njit(cache=True)
def _apply_asks(book, st, lv, n, tick_u, lot_u):
    """The mirror of `_apply_bids`: the best ask is the lowest ladder index."""
    width = book.shape[1]
    inv_tick = 1.0 / tick_u
    inv_lot = 1.0 / lot_u
    for k in range(n):
        px = _quotient(lv[k, 0], tick_u, inv_tick)
        qty = _quotient(lv[k, 1], lot_u, inv_lot)
        if st[S_INIT] == 0:
            st[S_BASE] = px - width // 2
            st[S_INIT] = 1
        i = px - st[S_BASE]
        if i < 0 or i >= width:
            st[S_NA] += _ovf_set(book, st, R_ASK_KEY, R_ASK_QTY, S_ONA, -px, qty)
            continue
        old = book[R_ASK_LAD, i]
        if qty > 0:
            if old == 0:
                st[S_LNA] += 1
                st[S_NA] += 1
                if i < st[S_LO]:
                    st[S_LO] = i
                if i > st[S_HI]:
                    st[S_HI] = i
            book[R_ASK_LAD, i] = qty
            if i < st[S_BA]:
                st[S_BA] = i
        elif old != 0:
            book[R_ASK_LAD, i] = 0
            st[S_LNA] -= 1
            st[S_NA] -= 1
            if i == st[S_BA]:
                j = i + 1
                if st[S_LNA] == 0:
                    j = width
                else:
                    while j < width and book[R_ASK_LAD, j] == 0:
                        j += 1
                st[S_BA] = j


@nb.njit(cache=True)
def _validate(lv, n, tick_u, lot_u, st):
    inv_tick = 1.0 / tick_u
    inv_lot = 1.0 / lot_u
    for k in range(n):
        px = lv[k, 0]
        qty = lv[k, 1]
        if px <= 0 or _quotient(px, tick_u, inv_tick) * tick_u != px:
            st[S_BAD] = k
            return E_TICK
        if qty < 0 or _quotient(qty, lot_u, inv_lot) * lot_u != qty:
            st[S_BAD] = k
            return E_LOT
    return OK


@nb.njit(cache=True)
def best_bid(book, st):
    """(ticks, lots) of the best bid; (0, 0) if the side is empty."""
    px = np.int64(0)
    qty = np.int64(0)
    if st[S_BB] >= 0:
        px = st[S_BASE] + st[S_BB]
        qty = book[R_BID_LAD, st[S_BB]]
    n = st[S_ONB]
    if n > 0 and book[R_BID_KEY, n - 1] > px:
        px = book[R_BID_KEY, n - 1]
        qty = book[R_BID_QTY, n - 1]
    return px, qty


@nb.njit(cache=True)
def best_ask(book, st):
    """(ticks, lots) of the best ask; (0, 0) if the side is empty."""
    px = np.int64(0)
    qty = np.int64(0)
    width = book.shape[1]
    if st[S_BA] < width:
        px = st[S_BASE] + st[S_BA]
        qty = book[R_ASK_LAD, st[S_BA]]
    n = st[S_ONA]
    if n > 0 and (px == 0 or -book[R_ASK_KEY, n - 1] < px):
        px = -book[R_ASK_KEY, n - 1]
        qty = book[R_ASK_QTY, n - 1]
    return px, qty


@nb.njit(cache=True)
def apply_levels(book, st, bids, nbids, asks, nasks, tick_u, lot_u):
    """Apply absolute (price, qty) updates given in fixed 1e-8 units; all-or-nothing."""
    r = _validate(bids, nbids, tick_u, lot_u, st)
    if r != OK:
        return r
    r = _validate(asks, nasks, tick_u, lot_u, st)
    if r != OK:
        return r
    _apply_bids(book, st, bids, nbids, tick_u, lot_u)
    _apply_asks(book, st, asks, nasks, tick_u, lot_u)
    bp, _ = best_bid(book, st)
    ap, _ = best_ask(book, st)
    if bp > 0 and ap > 0 and bp >= ap:
        st[S_CROSSED] += 1
    return OK


@nb.njit(cache=True)
def clear(book, st):
    """Empty the book (before a snapshot); zeroes only the ladder slots ever written."""
    if st[S_HI] >= st[S_LO]:
        book[R_BID_LAD, st[S_LO] : st[S_HI] + 1] = 0
        book[R_ASK_LAD, st[S_LO] : st[S_HI] + 1] = 0
    cap = st[S_OCAP]
    for k in range(STATE_SIZE):
        st[k] = 0
    st[S_OCAP] = cap
    st[S_BB] = -1
    st[S_BA] = book.shape[1]
    st[S_LO] = book.shape[1]
    st[S_HI] = -1


@nb.njit(cache=True)
def write_top(book, st, rec, offs, levels):
    """Write the best `levels` of each side into a book record viewed as int64 words."""
    base = st[S_BASE]
    width = book.shape[1]
    ob = offs[O_BID_PX]
    obq = offs[O_BID_QTY]
    oa = offs[O_ASK_PX]
    oaq = offs[O_ASK_QTY]
    # bids: merge the ladder (from the best down) with the overflow (from its end down)
    i = st[S_BB]
    left = st[S_LNB]
    j = st[S_ONB] - 1
    for k in range(levels):
        lp = base + i if left > 0 and i >= 0 else np.int64(0)
        op = book[R_BID_KEY, j] if j >= 0 else np.int64(0)
        if lp == 0 and op == 0:
            rec[ob + k] = 0
            rec[obq + k] = 0
        elif lp >= op:
            rec[ob + k] = lp
            rec[obq + k] = book[R_BID_LAD, i]
            left -= 1
            i -= 1
            if left > 0:
                while i >= 0 and book[R_BID_LAD, i] == 0:
                    i -= 1
        else:
            rec[ob + k] = op
            rec[obq + k] = book[R_BID_QTY, j]
            j -= 1
    # asks: ladder from the best up, overflow keys are -price ascending (best last)
    i = st[S_BA]
    left = st[S_LNA]
    j = st[S_ONA] - 1
    for k in range(levels):
        lp = base + i if left > 0 and i < width else np.int64(0)
        op = -book[R_ASK_KEY, j] if j >= 0 else np.int64(0)
        if lp == 0 and op == 0:
            rec[oa + k] = 0
            rec[oaq + k] = 0
        elif op == 0 or (lp != 0 and lp <= op):
            rec[oa + k] = lp
            rec[oaq + k] = book[R_ASK_LAD, i]
            left -= 1
            i += 1
            if left > 0:
                while i < width and book[R_ASK_LAD, i] == 0:
                    i += 1
        else:
            rec[oa + k] = op
            rec[oaq + k] = book[R_ASK_QTY, j]
            j -= 1


@nb.njit(cache=True)
def apply_and_write(book, st, hdr, bids, asks, tick_u, lot_u, rec, offs, levels, recv_ns, flags):
    """One depth event end to end: validate, apply, write the top-N record (header included)."""
    r = apply_levels(book, st, bids, hdr[6], asks, hdr[7], tick_u, lot_u)
    if r != OK:
        return r
    rec[offs[O_EVENT]] = hdr[0]
    rec[offs[O_TXN]] = hdr[1]
    rec[offs[O_RECV]] = recv_ns
    rec[offs[O_UPDATE]] = hdr[3]
    rec[offs[O_FLAGS]] = flags
    write_top(book, st, rec, offs, levels)
    return OK


class Book:
    """A book for one instrument: tick/lot in 1e-8 units, numba arrays inside."""

    def __init__(
        self, tick_u: int, lot_u: int, width: int = DEFAULT_WIDTH, overflow: int = DEFAULT_OVERFLOW
    ) -> None:
        if tick_u <= 0 or lot_u <= 0:
            raise ValueError(f"tick and lot must be > 0 (1e-8 units), got tick={tick_u} lot={lot_u}")
        if width < 2 or overflow < 1 or overflow > width:
            raise ValueError(f"book width {width} / overflow {overflow} out of range")
        self.tick_u = int(tick_u)
        self.lot_u = int(lot_u)
        self.book = np.zeros((ROWS, width), dtype=np.int64)  # untouched pages cost no memory
        self.st = np.zeros(STATE_SIZE, dtype=np.int64)
        self.st[S_OCAP] = overflow
        clear(self.book, self.st)

    @property
    def tick(self) -> float:
        return self.tick_u / 1e8

    @property
    def lot(self) -> float:
        return self.lot_u / 1e8

    def clear(self) -> None:
        clear(self.book, self.st)

    def apply(self, bids: np.ndarray, asks: np.ndarray) -> int:
        """Apply (price, qty) rows in 1e-8 units; returns OK or E_TICK/E_LOT (book unchanged)."""
        return int(
            apply_levels(self.book, self.st, bids, len(bids), asks, len(asks), self.tick_u, self.lot_u)
        )

    def _side(
        self, lad_row: int, key_row: int, qty_row: int, n_slot: int, sign: int
    ) -> list[tuple[int, int]]:
        idx = np.flatnonzero(self.book[lad_row])
        base = int(self.st[S_BASE])
        levels = [(base + int(i), int(self.book[lad_row, i])) for i in idx]
        n = int(self.st[n_slot])
        levels += [(sign * int(self.book[key_row, i]), int(self.book[qty_row, i])) for i in range(n)]
        return levels

    def bids(self) -> list[tuple[int, int]]:
        """(ticks, lots) best first - for tests and tools, not the hot path."""
        return sorted(self._side(R_BID_LAD, R_BID_KEY, R_BID_QTY, S_ONB, 1), reverse=True)

    def asks(self) -> list[tuple[int, int]]:
        return sorted(self._side(R_ASK_LAD, R_ASK_KEY, R_ASK_QTY, S_ONA, -1))

    def best(self) -> tuple[int, int, int, int]:
        """(bid ticks, bid lots, ask ticks, ask lots); zeros for an empty side."""
        bp, bq = best_bid(self.book, self.st)
        ap, aq = best_ask(self.book, self.st)
        return int(bp), int(bq), int(ap), int(aq)

    def top(self, levels: int) -> np.ndarray:
        """A fresh book record with the top `levels` (header fields zero)."""
        rec = np.zeros((), dtype=book_dtype(levels))
        rec["tick"] = self.tick
        rec["lot"] = self.lot
        words = rec.reshape(1).view(np.int64)
        write_top(self.book, self.st, words, record_offsets(rec.dtype), book_levels(rec.dtype))
        return rec
