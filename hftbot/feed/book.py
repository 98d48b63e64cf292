"""The local L2 book kernel: integer ticks and lots, numba, no Python objects per level.

Each side is a sorted int64 array of price keys with a parallel quantity array, best level LAST:
bids keyed by +ticks ascending, asks by -ticks ascending (so one code path serves both). Binance
updates hit the touch most of the time, so an insert or delete there shifts only a few slots;
lookups are a binary search. Unlike a dense tick-indexed ladder this needs no recentring and
handles any price range (a 1000-level snapshot spans thousands of ticks), and top-N extraction is
a copy of the last N slots. Capacity is fixed; when a side is full the level farthest from the
touch is dropped and counted (`S_DROPPED`) - the exchange snapshot itself stops at 1000 levels.

Every update is validated before anything is applied (price a positive multiple of the tick,
quantity a non-negative multiple of the lot), so a bad message leaves the book untouched.
Values come in as fixed-point 1e-8 integers from `hftbot.feed.decode`.

This module must never do I/O, never use floats for prices, and never guess at a bad level.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from hftbot.records import book_dtype, book_levels

# book array rows
R_BID_KEY = 0
R_BID_QTY = 1
R_ASK_KEY = 2
R_ASK_QTY = 3

# state slots
S_NB = 0
S_NA = 1
S_DROPPED = 2  # levels dropped because a side was full
S_CROSSED = 3  # applied events after which best bid >= best ask
S_BAD = 4  # index of the first bad level in the last rejected update
STATE_SIZE = 8

OK = 0
E_TICK = -10  # price not a positive multiple of the tick
E_LOT = -11  # quantity negative or not a multiple of the lot

DEFAULT_CAPACITY = 8192

# word offsets into a book record viewed as int64 (all fields are 8 bytes)
O_EVENT, O_TXN, O_RECV, O_PUBLISH, O_UPDATE, O_FLAGS, O_BID_PX, O_BID_QTY, O_ASK_PX, O_ASK_QTY = range(10)


def record_offsets(dtype: np.dtype) -> np.ndarray:
    """Word offsets of the fields the kernel writes, for a book dtype of any depth."""
    names = ("event_ms", "txn_ms", "recv_ns", "publish_ns", "update_id", "flags",
             "bid_px", "bid_qty", "ask_px", "ask_qty")
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
    lo = 0
    hi = n
    # the touch is at the end; most updates are near it, so try the top slots first
    if n > 0 and keys[n - 1] < key:
        return n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(cache=True)
def _set(book, st, kr, qr, ns, key, qty):
    """Set one level on one side (rows kr/qr, count slot ns); qty 0 deletes."""
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
        else:
            qtys[pos] = qty
        return
    if qty == 0:
        return  # removing an unknown level is normal (step 8 of the procedure)
    cap = keys.shape[0]
    if n == cap:
        st[S_DROPPED] += 1
        if pos == 0:
            return  # the new level is itself the farthest from the touch
        for j in range(0, pos - 1):
            keys[j] = keys[j + 1]
            qtys[j] = qtys[j + 1]
        keys[pos - 1] = key
        qtys[pos - 1] = qty
        return
    for j in range(n, pos, -1):
        keys[j] = keys[j - 1]
        qtys[j] = qtys[j - 1]
    keys[pos] = key
    qtys[pos] = qty
    st[ns] = n + 1


@nb.njit(cache=True)
def _validate(lv, n, tick_u, lot_u, st):
    for k in range(n):
        px = lv[k, 0]
        qty = lv[k, 1]
        if px <= 0 or px % tick_u != 0:
            st[S_BAD] = k
            return E_TICK
        if qty < 0 or qty % lot_u != 0:
            st[S_BAD] = k
            return E_LOT
    return OK


@nb.njit(cache=True)
def apply_levels(book, st, bids, nbids, asks, nasks, tick_u, lot_u):
    """Apply absolute (price, qty) updates given in fixed 1e-8 units; all-or-nothing."""
    r = _validate(bids, nbids, tick_u, lot_u, st)
    if r != OK:
        return r
    r = _validate(asks, nasks, tick_u, lot_u, st)
    if r != OK:
        return r
    for k in range(nbids):
        _set(book, st, R_BID_KEY, R_BID_QTY, S_NB, bids[k, 0] // tick_u, bids[k, 1] // lot_u)
    for k in range(nasks):
        _set(book, st, R_ASK_KEY, R_ASK_QTY, S_NA, -(asks[k, 0] // tick_u), asks[k, 1] // lot_u)
    nb_ = st[S_NB]
    na_ = st[S_NA]
    if nb_ > 0 and na_ > 0 and book[R_BID_KEY, nb_ - 1] >= -book[R_ASK_KEY, na_ - 1]:
        st[S_CROSSED] += 1
    return OK


@nb.njit(cache=True)
def clear(st):
    st[S_NB] = 0
    st[S_NA] = 0


@nb.njit(cache=True)
def write_top(book, st, rec, offs, levels):
    """Copy the best `levels` of each side into a book record viewed as int64 words."""
    nb_ = st[S_NB]
    na_ = st[S_NA]
    ob = offs[O_BID_PX]
    obq = offs[O_BID_QTY]
    oa = offs[O_ASK_PX]
    oaq = offs[O_ASK_QTY]
    for k in range(levels):
        if k < nb_:
            rec[ob + k] = book[R_BID_KEY, nb_ - 1 - k]
            rec[obq + k] = book[R_BID_QTY, nb_ - 1 - k]
        else:
            rec[ob + k] = 0
            rec[obq + k] = 0
        if k < na_:
            rec[oa + k] = -book[R_ASK_KEY, na_ - 1 - k]
            rec[oaq + k] = book[R_ASK_QTY, na_ - 1 - k]
        else:
            rec[oa + k] = 0
            rec[oaq + k] = 0


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

    def __init__(self, tick_u: int, lot_u: int, capacity: int = DEFAULT_CAPACITY) -> None:
        if tick_u <= 0 or lot_u <= 0:
            raise ValueError(f"tick and lot must be > 0 (1e-8 units), got tick={tick_u} lot={lot_u}")
        self.tick_u = int(tick_u)
        self.lot_u = int(lot_u)
        self.book = np.zeros((4, capacity), dtype=np.int64)
        self.st = np.zeros(STATE_SIZE, dtype=np.int64)

    @property
    def tick(self) -> float:
        return self.tick_u / 1e8

    @property
    def lot(self) -> float:
        return self.lot_u / 1e8

    def clear(self) -> None:
        clear(self.st)

    def apply(self, bids: np.ndarray, asks: np.ndarray) -> int:
        """Apply (price, qty) rows in 1e-8 units; returns OK or E_TICK/E_LOT (book unchanged)."""
        return int(apply_levels(self.book, self.st, bids, len(bids), asks, len(asks),
                                self.tick_u, self.lot_u))

    def bids(self) -> list[tuple[int, int]]:
        """(ticks, lots) best first - for tests and tools, not the hot path."""
        n = int(self.st[S_NB])
        return [(int(self.book[R_BID_KEY, i]), int(self.book[R_BID_QTY, i])) for i in range(n - 1, -1, -1)]

    def asks(self) -> list[tuple[int, int]]:
        n = int(self.st[S_NA])
        return [(int(-self.book[R_ASK_KEY, i]), int(self.book[R_ASK_QTY, i])) for i in range(n - 1, -1, -1)]

    def best(self) -> tuple[int, int, int, int]:
        """(bid ticks, bid lots, ask ticks, ask lots); zeros for an empty side."""
        nb_, na_ = int(self.st[S_NB]), int(self.st[S_NA])
        b = self.book
        return (
            int(b[R_BID_KEY, nb_ - 1]) if nb_ else 0,
            int(b[R_BID_QTY, nb_ - 1]) if nb_ else 0,
            int(-b[R_ASK_KEY, na_ - 1]) if na_ else 0,
            int(b[R_ASK_QTY, na_ - 1]) if na_ else 0,
        )

    def top(self, levels: int) -> np.ndarray:
        """A fresh book record with the top `levels` (header fields zero)."""
        rec = np.zeros((), dtype=book_dtype(levels))
        rec["tick"] = self.tick
        rec["lot"] = self.lot
        words = rec.reshape(1).view(np.int64)
        write_top(self.book, self.st, words, record_offsets(rec.dtype), book_levels(rec.dtype))
        return rec
