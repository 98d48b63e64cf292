"""The per-frame hot path in one numba call: scan, then (in sync) apply + write the record.

Python costs about a microsecond per call on a small core, so the common cases never leave
compiled code: a diff that continues the ``pu`` chain is applied and its top-N record written; a
bookTicker is counted (and checked against the book when asked); a trade record is filled. Every
other case - out of sync, snapshots, errors, control replies - returns ``SLOW + kind`` and
`hftbot.feed.core.FeedCore` handles it with the already-scanned header. `run_batch` loops this
over many frames of one buffer (replay, check, bench), collecting records for `publish_many`.

State lives in one int64 work array ``ws`` (the scanner header first, then the W_* slots) so the
call passes few arguments. This module must never hold state of its own or do I/O.

BookTicker checks. A bookTicker is compared with the rebuilt book when the book stands at the
ticker's ``u``: at once when ``u`` is the last applied diff's ``u``; when it is ahead of the book
(on ``@depth@100ms`` the ticker comes first and the diff batch that ends on its ``u`` up to 100 ms
later; on ``@0ms`` the two race) it is held in one of ``HOLD_MAX`` slots and compared after the
diff that ends on its ``u``, or dropped when a diff passes it. A full hold replaces its oldest
ticker (the newest is the one a coming diff may end on). The cost on a depth message is one load
and branch while nothing is held; with tickers held, a loop over ``HOLD_MAX`` slots.
"""

from __future__ import annotations

import ctypes

import numba as nb
import numpy as np
from numba import types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from hftbot.feed import decode as d
from hftbot.feed.book import OK, apply_and_write, best_ask, best_bid
from hftbot.records import BOOK_RESYNC, TRADE_DTYPE

# ws slots after the scanner header
W_STATE = 24  # 2 = in sync (fast path allowed); anything else sends depth to the slow path
W_LAST_U = 25
W_FLAGS = 26  # flags of a valid record (BOOK_VALID | BOOK_REPLAY?)
W_PENDING = 27  # 1: the next valid record carries BOOK_RESYNC
W_CHECK = 28  # 1: check bookTickers against the book
W_TICKER_CHECKS = 29
W_TICKER_MISMATCHES = 30
W_APPLIED = 31
W_TICK = 32  # 0 until known
W_LOT = 33
W_LEVELS = 34
W_DEPTH_MSGS = 35
W_TICKERS = 36
W_TRADES = 37
W_OFFS = 38  # 10 book record word offsets (hftbot.feed.book.record_offsets)
W_MISMATCH_U = 48  # u of the first mismatching ticker
W_HELD_N = 49  # tickers held until the book reaches their u (0..HOLD_MAX)
W_TICKER_HELD_CHECKS = 50  # of W_TICKER_CHECKS, those made on a held ticker
W_HELD = 52  # HOLD_MAX slots of HELD_WORDS: u (0: empty), bid, bid qty, ask, ask qty (1e-8 units)
HOLD_MAX = 4
HELD_WORDS = 5
WS_SIZE = W_HELD + HOLD_MAX * HELD_WORDS

# W_CHECK values
CHECK_OFF = 0
CHECK_COUNT = 1  # compare and count (feed check: the report is the verdict)
CHECK_RESYNC = 2  # compare, count, and a mismatch invalidates the book (live feed); on_frame only

R_NONE = 0
R_BOOK = 1  # rec holds a new valid book record
R_TRADE = 2  # trec holds a new trade record
R_REJECT = 3  # an in-sync diff with an off-tick level: the slow path resyncs
R_MISMATCH = 4  # (CHECK_RESYNC) a bookTicker disagrees with the book: the slow path resyncs
SLOW = 100  # SLOW + kind (decode.K_* or E_*): the slow path decides

STATE_SYNCED = 2

_T = {name: TRADE_DTYPE.fields[name][1] // 8 for name in TRADE_DTYPE.names}
T_EVENT, T_TRADE_MS, T_RECV, T_PUBLISH, T_ID, T_PX, T_QTY, T_MAKER = (
    _T["event_ms"],
    _T["trade_ms"],
    _T["recv_ns"],
    _T["publish_ns"],
    _T["trade_id"],
    _T["px"],
    _T["qty"],
    _T["buyer_is_maker"],
)
TRADE_WORDS = TRADE_DTYPE.itemsize // 8


@nb.njit(cache=True)
def _ticker_check(ws, book, bst, u, bid, bid_qty, ask, ask_qty):
    """Compare one ticker (1e-8 units) with the book's best bid/ask; counts; True when equal."""
    ws[W_TICKER_CHECKS] += 1
    t = ws[W_TICK]
    lt = ws[W_LOT]
    bp, bq = best_bid(book, bst)
    ap, aq = best_ask(book, bst)
    ok = bp > 0 and ap > 0 and bp * t == bid and bq * lt == bid_qty and ap * t == ask and aq * lt == ask_qty
    if not ok:
        if ws[W_TICKER_MISMATCHES] == 0:
            ws[W_MISMATCH_U] = u
        ws[W_TICKER_MISMATCHES] += 1
    return ok


@nb.njit(cache=True)
def _hold_ticker(ws):
    """Keep the scanned ticker (its u is ahead of the book): an empty slot, else the oldest one."""
    k = 0
    oldest = ws[W_HELD]
    for j in range(HOLD_MAX):
        u = ws[W_HELD + j * HELD_WORDS]
        if u == 0:
            k = j
            ws[W_HELD_N] += 1
            break
        if u < oldest:
            oldest = u
            k = j
    o = W_HELD + k * HELD_WORDS
    ws[o] = ws[d.H_LAST]
    ws[o + 1] = ws[d.H_BID]
    ws[o + 2] = ws[d.H_BID_QTY]
    ws[o + 3] = ws[d.H_ASK]
    ws[o + 4] = ws[d.H_ASK_QTY]


@nb.njit(cache=True)
def check_held(ws, book, bst):
    """After a diff was applied: compare the held tickers whose u it ends on, drop those it passed.

    Returns False when one of them disagrees with the book."""
    last = ws[W_LAST_U]
    ok = True
    for j in range(HOLD_MAX):
        o = W_HELD + j * HELD_WORDS
        u = ws[o]
        if u != 0 and u <= last:
            ws[o] = 0
            ws[W_HELD_N] -= 1
            if u == last:
                ws[W_TICKER_HELD_CHECKS] += 1
                if not _ticker_check(ws, book, bst, u, ws[o + 1], ws[o + 2], ws[o + 3], ws[o + 4]):
                    ok = False
    return ok


@nb.njit(cache=True)
def step(buf, n, ws, lv, book, bst, rec, trec, recv_ns):
    """One frame; returns R_* or SLOW + kind."""
    kind = d.scan(buf, n, ws, lv[0], lv[1])
    if kind == d.K_DEPTH:
        ws[W_DEPTH_MSGS] += 1
        if ws[W_STATE] == STATE_SYNCED and ws[d.H_PREV] == ws[W_LAST_U]:
            flags = ws[W_FLAGS]
            if ws[W_PENDING]:
                flags |= BOOK_RESYNC
            r = apply_and_write(
                book,
                bst,
                ws,
                lv[0],
                lv[1],
                ws[W_TICK],
                ws[W_LOT],
                rec,
                ws[W_OFFS : W_OFFS + 10],
                ws[W_LEVELS],
                recv_ns,
                flags,
            )
            if r != OK:
                return R_REJECT
            ws[W_LAST_U] = ws[d.H_LAST]
            ws[W_PENDING] = 0
            ws[W_APPLIED] += 1
            if ws[W_HELD_N] and not check_held(ws, book, bst) and ws[W_CHECK] == CHECK_RESYNC:
                return R_MISMATCH
            return R_BOOK
        ws[W_DEPTH_MSGS] -= 1  # the slow path counts it
        return SLOW + kind
    if kind == d.K_BOOK_TICKER:
        ws[W_TICKERS] += 1
        if ws[W_CHECK] and ws[W_STATE] == STATE_SYNCED:
            u = ws[d.H_LAST]
            if u == ws[W_LAST_U]:
                ok = _ticker_check(ws, book, bst, u, ws[d.H_BID], ws[d.H_BID_QTY], ws[d.H_ASK], ws[d.H_ASK_QTY])
                if not ok and ws[W_CHECK] == CHECK_RESYNC:
                    return R_MISMATCH
            elif u > ws[W_LAST_U]:
                _hold_ticker(ws)
        return R_NONE
    if kind == d.K_TRADE:
        t = ws[W_TICK]
        lt = ws[W_LOT]
        if t > 0 and ws[d.H_PX] % t == 0 and ws[d.H_QTY] % lt == 0:
            trec[T_EVENT] = ws[d.H_E]
            trec[T_TRADE_MS] = ws[d.H_T]
            trec[T_RECV] = recv_ns
            trec[T_ID] = ws[d.H_TRADE_ID]
            trec[T_PX] = ws[d.H_PX] // t
            trec[T_QTY] = ws[d.H_QTY] // lt
            trec[T_MAKER] = ws[d.H_MAKER]
            ws[W_TRADES] += 1
            return R_TRADE
        return SLOW + kind
    return SLOW + kind


# ctx slots: addresses and shapes of the arrays `step` works on, for the raw-pointer entry `step_c`
C_WS = 0
C_LV = 1
C_LV_CAP = 2
C_BOOK = 3
C_BOOK_ROWS = 4
C_BOOK_WIDTH = 5
C_BST = 6
C_BST_SIZE = 7
C_REC = 8
C_REC_WORDS = 9
C_TREC = 10
C_TREC_WORDS = 11
CTX_SIZE = 12


@intrinsic
def _i64_ptr(typingctx, addr):
    """An int64 address as an int64 pointer (for carray)."""
    ptr = types.CPointer(types.int64)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr))

    return ptr(types.int64), codegen


@intrinsic
def _readonly(typingctx, arr):
    """The same array typed read-only: `step` then has the one compiled signature that the
    batch runner (read-only capture blocks) uses too, so the kernels compile once, not twice."""
    ro = arr.copy(readonly=True)

    def codegen(context, builder, sig, args):
        return impl_ret_borrowed(context, builder, sig.return_type, args[0])

    return ro(arr), codegen


@nb.cfunc(
    types.int64(types.CPointer(types.uint8), types.int64, types.CPointer(types.int64), types.int64),
    cache=True,
)
def step_c(bufp, n, ctx, recv_ns):
    """`step` behind a C entry point: numba's dispatcher type-checks and unboxes every array
    argument (~4 µs on a small core); a ctypes call with four scalars costs well under that.
    The arrays are rebuilt from the addresses and shapes in ``ctx`` (see `Ctx`)."""
    buf = _readonly(nb.carray(bufp, n))
    ws = nb.carray(_i64_ptr(ctx[C_WS]), WS_SIZE)
    lv = nb.carray(_i64_ptr(ctx[C_LV]), (2, ctx[C_LV_CAP], 2))
    book = nb.carray(_i64_ptr(ctx[C_BOOK]), (ctx[C_BOOK_ROWS], ctx[C_BOOK_WIDTH]))
    bst = nb.carray(_i64_ptr(ctx[C_BST]), ctx[C_BST_SIZE])
    rec = nb.carray(_i64_ptr(ctx[C_REC]), ctx[C_REC_WORDS])
    trec = nb.carray(_i64_ptr(ctx[C_TREC]), ctx[C_TREC_WORDS])
    return step(buf, n, ws, lv, book, bst, rec, trec, recv_ns)


# PYFUNCTYPE keeps the GIL (CFUNCTYPE would drop and retake it on every call, a thread switch
# opportunity on the hot path). One prototype takes bytes directly (no copy), one an address.
step_bytes = ctypes.PYFUNCTYPE(
    ctypes.c_int64, ctypes.c_char_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64
)(step_c.address)
step_addr = ctypes.PYFUNCTYPE(
    ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64
)(step_c.address)


class Ctx:
    """The ``ctx`` array of `step_c`: holds references to the arrays so their addresses stay valid."""

    def __init__(self) -> None:
        self.arr = np.zeros(CTX_SIZE, dtype=np.int64)
        self.addr = self.arr.ctypes.data
        self.keep: tuple = ()

    def set(self, ws, lv, book, bst, rec, trec) -> None:
        """Point at these arrays (all C-contiguous int64); call again whenever one is replaced."""
        for a in (ws, lv, book, bst, rec, trec):
            if a.dtype != np.int64 or not a.flags.c_contiguous:
                raise ValueError("step_c needs C-contiguous int64 arrays")
        if ws.shape != (WS_SIZE,) or lv.ndim != 3 or lv.shape[0] != 2 or lv.shape[2] != 2 or book.ndim != 2:
            raise ValueError("step_c: unexpected array shapes")
        c = self.arr
        c[C_WS] = ws.ctypes.data
        c[C_LV] = lv.ctypes.data
        c[C_LV_CAP] = lv.shape[1]
        c[C_BOOK] = book.ctypes.data
        c[C_BOOK_ROWS], c[C_BOOK_WIDTH] = book.shape
        c[C_BST] = bst.ctypes.data
        c[C_BST_SIZE] = bst.shape[0]
        c[C_REC] = rec.ctypes.data
        c[C_REC_WORDS] = rec.shape[0]
        c[C_TREC] = trec.ctypes.data
        c[C_TREC_WORDS] = trec.shape[0]
        self.keep = (ws, lv, book, bst, rec, trec)


@nb.njit(cache=True)
def run_batch(data, starts, ends, nss, i0, i1, ws, lv, book, bst, rec, trec, out_books, out_trades, counts):
    """Frames i0..i1-1 of `data` until one needs the slow path; returns that index (or i1).

    Valid book records are appended to out_books and trade records to out_trades (counts[0],
    counts[1] say how many); the call also stops when either output is full.
    """
    nbk = counts[0]
    ntr = counts[1]
    for i in range(i0, i1):
        if nbk >= out_books.shape[0] or ntr >= out_trades.shape[0]:
            counts[0] = nbk
            counts[1] = ntr
            return i
        s = starts[i]
        r = step(data[s : ends[i]], ends[i] - s, ws, lv, book, bst, rec, trec, nss[i])
        if r == R_BOOK:
            out_books[nbk, :] = rec
            nbk += 1
        elif r == R_TRADE:
            out_trades[ntr, :] = trec
            ntr += 1
        elif r != R_NONE:
            counts[0] = nbk
            counts[1] = ntr
            return i
    counts[0] = nbk
    counts[1] = ntr
    return i1


@nb.njit(cache=True)
def index_capture(data):
    """Line index of a decompressed `<ns> <json>` capture: (ns, payload start, payload end).

    A line without a leading integer and a space gets ns = -1 (the caller reports it).
    """
    n = data.shape[0]
    count = 0
    for i in range(n):
        if data[i] == 10:
            count += 1
    if n and data[n - 1] != 10:
        count += 1
    nss = np.empty(count, dtype=np.int64)
    starts = np.empty(count, dtype=np.int64)
    ends = np.empty(count, dtype=np.int64)
    k = 0
    i = 0
    while i < n:
        j = i
        v = np.int64(0)
        digits = 0
        while j < n and data[j] >= 48 and data[j] <= 57 and digits < 19:
            v = v * 10 + (data[j] - 48)
            digits += 1
            j += 1
        e = j
        while e < n and data[e] != 10:
            e += 1
        line_end = e
        if e > i and data[e - 1] == 13:
            line_end = e - 1
        if line_end > i:
            if digits and j < n and data[j] == 32:
                nss[k] = v
                starts[k] = j + 1
            else:
                nss[k] = -1
                starts[k] = i
            ends[k] = line_end
            k += 1
        i = e + 1
    return nss[:k], starts[:k], ends[:k]
