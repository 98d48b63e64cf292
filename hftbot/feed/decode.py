"""Typed decoder of raw Binance USDⓈ-M market-data frames, straight from bytes to integers.

A numba byte scanner walks the JSON of one frame (combined-stream wrapper, raw stream, REST depth
snapshot or WS-API ``depth`` response) and writes what the feed needs into preallocated int64
arrays: a header (``H_*`` slots) and the bid/ask level lists. Decimal strings become exact fixed
point integers in units of 1e-8 (``FIXED``) - no float ever touches a price - and the book kernel
divides them by the instrument's tick/lot (also in 1e-8 units) with an exactness check.

Why a scanner and not json + Decimal: a depth frame carries tens of levels; building Python
strings and Decimals per level costs tens of microseconds, the scanner costs about one.

The scanner is strict: anything it does not understand in a field it needs is an error code, never
a guess. Unknown keys are skipped whole (strings, numbers, nested arrays/objects). It must never
mutate the book or allocate per frame; it only fills the scratch arrays it is given.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

FIXED = 100_000_000  # decimal strings are held as integers of 1e-8
FIXED_DECIMALS = 8

# frame kinds (return value of scan); negative values are errors
K_OTHER = 0  # subscription replies, unknown events: nothing to do
K_DEPTH = 1
K_BOOK_TICKER = 2
K_TRADE = 3  # `trade` or `aggTrade`
K_SNAPSHOT = 4  # REST depth body or WS-API depth result
E_SYNTAX = -1
E_PRECISION = -2  # more than 8 significant decimals, or a number too large for int64
E_TOO_MANY_LEVELS = -3  # the scratch arrays are too small: grow and scan again
E_MISSING = -4  # a known event without a field it must have

ERRORS = {
    E_SYNTAX: "malformed JSON",
    E_PRECISION: "decimal with more than 8 decimals or out of range",
    E_TOO_MANY_LEVELS: "more levels than the scratch arrays hold",
    E_MISSING: "event lacks a required field",
}

# header slots
H_E = 0  # event time ms
H_T = 1  # transaction / trade time ms
H_FIRST = 2  # U
H_LAST = 3  # u (depth, bookTicker)
H_PREV = 4  # pu
H_LAST_ID = 5  # lastUpdateId (snapshot)
H_NB = 6  # number of bid levels scanned
H_NA = 7  # number of ask levels scanned
H_TRADE_ID = 8  # `a` (aggTrade) or `t` (trade)
H_PX = 9  # trade price (fixed)
H_QTY = 10  # trade quantity (fixed)
H_MAKER = 11  # `m`: 1 buyer is maker
H_BID = 12  # bookTicker `b` (fixed)
H_BID_QTY = 13  # `B`
H_ASK = 14  # `a`
H_ASK_QTY = 15  # `A`
H_STREAM0 = 16  # byte span of the combined-stream name
H_STREAM1 = 17
H_EVENT = 18  # event type code (EV_*)
H_SEEN = 19  # bit set of fields seen (SEEN_*)
H_ERRPOS = 20  # byte offset where scanning failed
HEADER_SIZE = 24

EV_NONE = 0
EV_DEPTH = 1
EV_BOOK_TICKER = 2
EV_TRADE = 3
EV_AGG_TRADE = 4

SEEN_E = 1
SEEN_T = 2
SEEN_FIRST = 4
SEEN_LAST = 8
SEEN_PREV = 16
SEEN_LAST_ID = 32
SEEN_BIDS = 64
SEEN_ASKS = 128
SEEN_TRADE_ID = 256
SEEN_PX = 512
SEEN_QTY = 1024
SEEN_MAKER = 2048
SEEN_BID = 4096
SEEN_BID_QTY = 8192
SEEN_ASK = 16384
SEEN_ASK_QTY = 32768

NEED_DEPTH = SEEN_E | SEEN_FIRST | SEEN_LAST | SEEN_PREV | SEEN_BIDS | SEEN_ASKS
NEED_TICKER = SEEN_LAST | SEEN_BID | SEEN_BID_QTY | SEEN_ASK | SEEN_ASK_QTY
NEED_TRADE = SEEN_E | SEEN_TRADE_ID | SEEN_PX | SEEN_QTY | SEEN_MAKER
NEED_SNAPSHOT = SEEN_LAST_ID | SEEN_BIDS | SEEN_ASKS


def keycode(s: bytes) -> int:
    """Pack a key: length in the top byte, first 7 bytes below (unique for the keys we read)."""
    v = len(s) << 56
    for i, c in enumerate(s[:7]):
        v |= c << (8 * i)
    return v


KC_STREAM = keycode(b"stream")
KC_DATA = keycode(b"data")
KC_RESULT = keycode(b"result")
KC_e = keycode(b"e")
KC_E = keycode(b"E")
KC_T = keycode(b"T")
KC_U = keycode(b"U")
KC_u = keycode(b"u")
KC_pu = keycode(b"pu")
KC_b = keycode(b"b")
KC_a = keycode(b"a")
KC_B = keycode(b"B")
KC_A = keycode(b"A")
KC_t = keycode(b"t")
KC_p = keycode(b"p")
KC_q = keycode(b"q")
KC_m = keycode(b"m")
KC_LAST_ID = keycode(b"lastUpdateId")
KC_BIDS = keycode(b"bids")
KC_ASKS = keycode(b"asks")
EVC_DEPTH = keycode(b"depthUpdate")
EVC_TICKER = keycode(b"bookTicker")
EVC_TRADE = keycode(b"trade")
EVC_AGG = keycode(b"aggTrade")


_POW10 = np.array([10**k for k in range(FIXED_DECIMALS + 1)], dtype=np.int64)


BYTES = types.CPointer(types.uint8)


@intrinsic
def _ptr(typingctx, buf):
    """The data pointer of a C-contiguous uint8 array, for the scanner's helpers.

    Why: numba increments and decrements an array's reference count (two atomic operations and
    two calls) every time it passes the array to another compiled function - inlined or not.
    The scanner calls a helper per key and two per level, so on a 600-level diff those
    refcounts were most of the time. A raw pointer carries no refcount; `scan` holds the array
    for as long as its helpers use the pointer, and every helper bounds-checks against ``n``.
    """
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.dtype == types.uint8 and buf.layout == "C"):
        return None

    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, args[0]).data

    return BYTES(buf), codegen


@intrinsic
def _digits8(typingctx, bp, i):
    """The run of ASCII digits at bp[i:i+8] in one 8-byte load (SWAR): ``value << 4 | count``.

    count is 0..8 (8: the run may go on); value is those digits as a number. The caller must
    make sure i + 8 <= n. Why: a byte-at-a-time digit loop is a chain of dependent
    multiply-adds with a hard-to-predict exit; this is a dozen branch-free integer operations.
    """
    if not (isinstance(bp, types.CPointer) and bp.dtype == types.uint8 and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        idx = context.cast(builder, args[1], sig.args[1], types.int64)

        def k(v):
            return ir.Constant(i64, v)

        ptr = builder.bitcast(builder.gep(args[0], [idx]), i64.as_pointer())
        w = builder.load(ptr, align=1)
        hi = k(0xF0F0F0F0F0F0F0F0)
        threes = k(0x3030303030303030)
        bad = builder.or_(
            builder.xor(builder.and_(w, hi), threes),
            builder.xor(builder.and_(builder.add(w, k(0x0606060606060606)), hi), threes),
        )
        cnt = builder.lshr(builder.cttz(bad, ir.Constant(ir.IntType(1), 0)), k(3))
        zero = builder.icmp_unsigned("==", cnt, k(0))
        sh = builder.select(zero, k(0), builder.shl(builder.sub(k(8), cnt), k(3)))
        x = builder.select(zero, k(0), builder.shl(w, sh))
        x = builder.lshr(builder.mul(builder.and_(x, k(0x0F0F0F0F0F0F0F0F)), k(2561)), k(8))
        x = builder.lshr(builder.mul(builder.and_(x, k(0x00FF00FF00FF00FF)), k(6553601)), k(16))
        x = builder.lshr(builder.mul(builder.and_(x, k(0x0000FFFF0000FFFF)), k(42949672960001)), k(32))
        return builder.or_(builder.shl(x, k(4)), cnt)

    return types.int64(bp, i), codegen


@nb.njit(cache=True, inline="always")
def _ws(bp, i, n):
    while i < n:
        c = bp[i]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        i += 1
    return i


@nb.njit(cache=True)
def _string_end(bp, i, n):
    """i at the opening quote; returns the index after the closing quote, or -1."""
    i += 1
    while i < n:
        c = bp[i]
        if c == 34:
            return i + 1
        if c == 92:
            i += 2
        else:
            i += 1
    return -1


@nb.njit(cache=True)
def _code(bp, s, e):
    v = np.int64(e - s) << 56
    m = min(e - s, 7)
    for k in range(m):
        v |= np.int64(bp[s + k]) << (8 * k)
    return v


@nb.njit(cache=True)
def _skip_value(bp, i, n):
    """Skip one JSON value starting at i; returns the index after it, or -1."""
    i = _ws(bp, i, n)
    if i >= n:
        return -1
    c = bp[i]
    if c == 34:
        return _string_end(bp, i, n)
    if c == 123 or c == 91:
        depth = 0
        while i < n:
            c = bp[i]
            if c == 34:
                i = _string_end(bp, i, n)
                if i < 0:
                    return -1
                continue
            if c == 123 or c == 91:
                depth += 1
            elif c == 125 or c == 93:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return -1
    # number, true, false, null: run to a delimiter
    s = i
    while i < n:
        c = bp[i]
        if c == 44 or c == 125 or c == 93 or c == 32 or c == 10 or c == 13 or c == 9:
            break
        i += 1
    return i if i > s else -1


@nb.njit(cache=True)
def _int(bp, i, n, out, slot):
    """Parse a JSON integer into out[slot]; returns the index after it, or -1."""
    i = _ws(bp, i, n)
    neg = False
    if i < n and bp[i] == 45:
        neg = True
        i += 1
    s = i
    v = np.int64(0)
    while i < n:
        c = bp[i]
        if c < 48 or c > 57:
            break
        if i - s >= 18:
            return -2
        v = v * 10 + (c - 48)
        i += 1
    if i == s:
        return -1
    out[slot] = -v if neg else v
    return i


@nb.njit(cache=True)
def _decimal(bp, i, n):
    """Parse "123.4500" (quoted or bare) as an integer of 1e-8. Returns (value, next index);
    next index -1 for a syntax error, -2 for precision/range."""
    i = _ws(bp, i, n)
    quoted = i < n and bp[i] == 34
    if quoted:
        i += 1
    neg = False
    if i < n and bp[i] == 45:
        neg = True
        i += 1
    v = np.int64(0)
    digits = 0
    s = i
    while i < n:
        c = bp[i]
        if c < 48 or c > 57:
            break
        v = v * 10 + (c - 48)
        digits += 1
        if digits > 10:
            return v, -2
        i += 1
    frac = 0
    if i < n and bp[i] == 46:
        i += 1
        while i < n:
            c = bp[i]
            if c < 48 or c > 57:
                break
            if frac < 8:
                v = v * 10 + (c - 48)
                frac += 1
            elif c != 48:
                return v, -2
            i += 1
    if i == s:
        return v, -1
    while frac < 8:
        v *= 10
        frac += 1
    if quoted:
        if i >= n or bp[i] != 34:
            return v, -1
        i += 1
    elif i < n and (bp[i] == 101 or bp[i] == 69):
        return v, -1  # exponents never appear in Binance decimals
    return (-v if neg else v), i


@nb.njit(cache=True, inline="always")
def _fast_decimal(bp, i):
    """A quoted decimal at bp[i] with 1-7 integer digits and 0-7 decimals (the common shape)
    as an integer of 1e-8: (value, index after the closing quote), or (0, -1) when the text has
    any other shape - the general parser then decides. Needs i + 17 <= len(bp)."""
    if bp[i] != 34:
        return np.int64(0), -1
    p = _digits8(bp, i + 1)
    a = p & 15
    if a < 1 or a > 7:
        return np.int64(0), -1
    c = bp[i + 1 + a]
    if c == 34:
        return (p >> 4) * FIXED, i + a + 2
    if c != 46:
        return np.int64(0), -1
    q = _digits8(bp, i + 2 + a)
    b = q & 15
    if b > 7 or bp[i + 2 + a + b] != 34:
        return np.int64(0), -1
    return (p >> 4) * FIXED + (q >> 4) * _POW10[FIXED_DECIMALS - b], i + a + b + 3


@nb.njit(cache=True)
def _levels(bp, i, n, lv):
    """Parse [["px","qty"],...] into lv rows; returns (count, next index) or (error, -1)."""
    i = _ws(bp, i, n)
    if i >= n or bp[i] != 91:
        return E_SYNTAX, -1
    i = _ws(bp, i + 1, n)
    k = 0
    cap = lv.shape[0]
    if i < n and bp[i] == 93:
        return 0, i + 1
    while i < n:
        if bp[i] != 91:
            return E_SYNTAX, -1
        i += 1
        if i + 36 <= n:
            # `"px","qty"]` in the shape Binance writes, two SWAR numbers; else the general code
            px, j = _fast_decimal(bp, i)
            if j > 0 and bp[j] == 44:
                qty, j = _fast_decimal(bp, j + 1)
                if j > 0 and bp[j] == 93:
                    if k >= cap:
                        return E_TOO_MANY_LEVELS, -1
                    lv[k, 0] = px
                    lv[k, 1] = qty
                    k += 1
                    i = _ws(bp, j + 1, n)
                    if i < n and bp[i] == 44:
                        i = _ws(bp, i + 1, n)
                        continue
                    if i < n and bp[i] == 93:
                        return k, i + 1
                    return E_SYNTAX, -1
        # The hot loop of the whole feed. Binance writes `["61800.20","0.014"]` without spaces:
        # parse that shape here, in this function (a call per value costs as much as the parse);
        # anything else goes through the general `_decimal`.
        px = np.int64(0)
        qty = np.int64(0)
        for f in range(2):
            if f == 1:
                if i < n and bp[i] == 44:
                    i += 1
                else:
                    i = _ws(bp, i, n)
                    if i >= n or bp[i] != 44:
                        return E_SYNTAX, -1
                    i += 1
            if i < n and bp[i] == 34:
                i += 1
                v = np.int64(0)
                digits = 0
                frac = -1
                while i < n:
                    c = bp[i]
                    if c >= 48 and c <= 57:
                        if frac < 0:
                            digits += 1
                            if digits > 10:
                                return E_PRECISION, -1
                            v = v * 10 + (c - 48)
                        elif frac < 8:
                            v = v * 10 + (c - 48)
                            frac += 1
                        elif c != 48:
                            return E_PRECISION, -1
                    elif c == 46 and frac < 0:
                        frac = 0
                    elif c == 34:
                        break
                    else:
                        return E_SYNTAX, -1
                    i += 1
                if i >= n or digits == 0:
                    return E_SYNTAX, -1
                i += 1  # the closing quote
                if frac < 0:
                    frac = 0
                while frac < 8:
                    v *= 10
                    frac += 1
            else:
                v, i = _decimal(bp, i, n)
                if i < 0:
                    return (E_PRECISION if i == -2 else E_SYNTAX), -1
            if f == 0:
                px = v
            else:
                qty = v
        i = _ws(bp, i, n)
        # tolerate extra elements in a level (some venues append fields): skip them
        while i < n and bp[i] == 44:
            i = _skip_value(bp, i + 1, n)
            if i < 0:
                return E_SYNTAX, -1
            i = _ws(bp, i, n)
        if i >= n or bp[i] != 93:
            return E_SYNTAX, -1
        if k >= cap:
            return E_TOO_MANY_LEVELS, -1
        lv[k, 0] = px
        lv[k, 1] = qty
        k += 1
        i = _ws(bp, i + 1, n)
        if i < n and bp[i] == 44:
            i = _ws(bp, i + 1, n)
            continue
        if i < n and bp[i] == 93:
            return k, i + 1
        return E_SYNTAX, -1
    return E_SYNTAX, -1


@nb.njit(cache=True)
def scan(buf, n, hdr, bids, asks):
    """Scan one frame (buf[:n]) into hdr/bids/asks; returns a K_* kind or an E_* error."""
    bp = _ptr(buf)  # helpers take the raw pointer: an array argument costs two atomic refcounts per call
    for k in range(HEADER_SIZE):
        hdr[k] = 0
    i = _ws(bp, 0, n)
    if i >= n or bp[i] != 123:
        hdr[H_ERRPOS] = i
        return E_SYNTAX
    i += 1
    depth = 1
    seen = np.int64(0)
    while True:
        i = _ws(bp, i, n)
        if i >= n:
            hdr[H_ERRPOS] = i
            return E_SYNTAX
        c = bp[i]
        if c == 125:  # end of an object
            depth -= 1
            i += 1
            if depth == 0:
                break
            i = _ws(bp, i, n)
            if i < n and bp[i] == 44:
                i += 1
            continue
        if c == 44:
            i += 1
            continue
        if c != 34:
            hdr[H_ERRPOS] = i
            return E_SYNTAX
        ks = i + 1
        i = _string_end(bp, i, n)
        if i < 0:
            hdr[H_ERRPOS] = ks
            return E_SYNTAX
        key = _code(bp, ks, i - 1)
        i = _ws(bp, i, n)
        if i >= n or bp[i] != 58:
            hdr[H_ERRPOS] = i
            return E_SYNTAX
        i = _ws(bp, i + 1, n)
        if i >= n:
            hdr[H_ERRPOS] = i
            return E_SYNTAX
        c = bp[i]
        r = 0
        if (key == KC_DATA or key == KC_RESULT) and c == 123:  # noqa: SIM109 (numba)
            depth += 1  # descend: the event's keys are read by this same loop
            i += 1
            continue
        elif key == KC_STREAM and c == 34:
            e = _string_end(bp, i, n)
            hdr[H_STREAM0] = i + 1
            hdr[H_STREAM1] = e - 1
            i = e
        elif key == KC_e and c == 34:
            e = _string_end(bp, i, n)
            if e > 0:
                ev = _code(bp, i + 1, e - 1)
                if ev == EVC_DEPTH:
                    hdr[H_EVENT] = EV_DEPTH
                elif ev == EVC_TICKER:
                    hdr[H_EVENT] = EV_BOOK_TICKER
                elif ev == EVC_TRADE:
                    hdr[H_EVENT] = EV_TRADE
                elif ev == EVC_AGG:
                    hdr[H_EVENT] = EV_AGG_TRADE
            i = e
        elif key == KC_E:
            i = _int(bp, i, n, hdr, H_E)
            seen |= SEEN_E
        elif key == KC_T:
            i = _int(bp, i, n, hdr, H_T)
            seen |= SEEN_T
        elif key == KC_U:
            i = _int(bp, i, n, hdr, H_FIRST)
            seen |= SEEN_FIRST
        elif key == KC_u:
            i = _int(bp, i, n, hdr, H_LAST)
            seen |= SEEN_LAST
        elif key == KC_pu:
            i = _int(bp, i, n, hdr, H_PREV)
            seen |= SEEN_PREV
        elif key == KC_LAST_ID:
            i = _int(bp, i, n, hdr, H_LAST_ID)
            seen |= SEEN_LAST_ID
        elif key == KC_t and c != 34:
            i = _int(bp, i, n, hdr, H_TRADE_ID)
            seen |= SEEN_TRADE_ID
        elif (key == KC_b or key == KC_BIDS) and c == 91:  # noqa: SIM109 (numba)
            r, i = _levels(bp, i, n, bids)
            hdr[H_NB] = r
            seen |= SEEN_BIDS
        elif (key == KC_a or key == KC_ASKS) and c == 91:  # noqa: SIM109 (numba)
            r, i = _levels(bp, i, n, asks)
            hdr[H_NA] = r
            seen |= SEEN_ASKS
        elif key == KC_a and c != 34:
            i = _int(bp, i, n, hdr, H_TRADE_ID)  # aggTrade id
            seen |= SEEN_TRADE_ID
        elif key == KC_b:
            hdr[H_BID], i = _decimal(bp, i, n)
            seen |= SEEN_BID
        elif key == KC_B:
            hdr[H_BID_QTY], i = _decimal(bp, i, n)
            seen |= SEEN_BID_QTY
        elif key == KC_a:
            hdr[H_ASK], i = _decimal(bp, i, n)
            seen |= SEEN_ASK
        elif key == KC_A:
            hdr[H_ASK_QTY], i = _decimal(bp, i, n)
            seen |= SEEN_ASK_QTY
        elif key == KC_p:
            hdr[H_PX], i = _decimal(bp, i, n)
            seen |= SEEN_PX
        elif key == KC_q:
            hdr[H_QTY], i = _decimal(bp, i, n)
            seen |= SEEN_QTY
        elif key == KC_m and (c == 116 or c == 102):
            hdr[H_MAKER] = 1 if c == 116 else 0
            i = _skip_value(bp, i, n)
            seen |= SEEN_MAKER
        else:
            i = _skip_value(bp, i, n)
        if i < 0:
            hdr[H_ERRPOS] = ks
            if r < 0:
                return r
            return E_PRECISION if i == -2 else E_SYNTAX
    i = _ws(bp, i, n)
    if i != n:
        hdr[H_ERRPOS] = i
        return E_SYNTAX  # trailing bytes after the frame
    hdr[H_SEEN] = seen
    ev = hdr[H_EVENT]
    if ev == EV_DEPTH:
        return K_DEPTH if seen & NEED_DEPTH == NEED_DEPTH else E_MISSING
    if ev == EV_BOOK_TICKER:
        return K_BOOK_TICKER if seen & NEED_TICKER == NEED_TICKER else E_MISSING
    if ev == EV_TRADE or ev == EV_AGG_TRADE:  # noqa: SIM109 (numba)
        if seen & SEEN_T and not seen & SEEN_E:
            seen |= SEEN_E
            hdr[H_E] = hdr[H_T]
        return K_TRADE if seen & NEED_TRADE == NEED_TRADE else E_MISSING
    if seen & NEED_SNAPSHOT == NEED_SNAPSHOT:
        return K_SNAPSHOT
    return K_OTHER


@nb.njit(cache=True)
def _decimal_of(buf):
    return _decimal(_ptr(buf), 0, buf.shape[0])


class FrameDecoder:
    """Owns the scratch arrays; decodes one frame of bytes at a time (growing on demand).

    `hdr` may be a view into a larger work array (the fast path keeps its state after it).
    """

    def __init__(self, capacity: int = 2048, hdr: np.ndarray | None = None) -> None:
        self.hdr = np.zeros(HEADER_SIZE, dtype=np.int64) if hdr is None else hdr
        self.lv = np.zeros((2, capacity, 2), dtype=np.int64)

    @property
    def bids(self) -> np.ndarray:
        return self.lv[0]

    @property
    def asks(self) -> np.ndarray:
        return self.lv[1]

    def grow(self) -> bool:
        """Quadruple the level capacity; False past 4M levels (a frame that big is an error)."""
        cap = self.lv.shape[1] * 4
        if cap > 1 << 22:
            return False
        self.lv = np.zeros((2, cap, 2), dtype=np.int64)
        return True

    def decode(self, frame: bytes | bytearray | memoryview | np.ndarray) -> int:
        """Return the frame kind (K_*) or an error (E_*); results stay in hdr/bids/asks."""
        if isinstance(frame, np.ndarray):
            buf = np.ascontiguousarray(frame, dtype=np.uint8)
        else:
            buf = np.frombuffer(frame, dtype=np.uint8)
        while True:
            kind = scan(buf, buf.shape[0], self.hdr, self.lv[0], self.lv[1])
            if kind != E_TOO_MANY_LEVELS or not self.grow():
                return kind

    def stream(self, frame: bytes) -> str:
        """The combined-stream name of the last decoded frame ("" for raw streams)."""
        s, e = int(self.hdr[H_STREAM0]), int(self.hdr[H_STREAM1])
        return bytes(frame[s:e]).decode("ascii", "replace") if e > s else ""


def error_text(code: int) -> str:
    return ERRORS.get(code, f"decode error {code}")


def parse_decimal(text: str) -> int:
    """A decimal string as an integer of 1e-8 (exact); ValueError names the text."""
    buf = np.frombuffer(text.strip().encode(), dtype=np.uint8)
    v, i = _decimal_of(buf)
    if i != buf.shape[0]:
        raise ValueError(f"not a decimal with at most {FIXED_DECIMALS} decimals: {text!r}")
    return int(v)
