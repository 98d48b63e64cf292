"""The matching engine's kernels: one symbol's book with our orders queued inside it, numba over arrays.

Layout. Two arrays hold everything, so a call from Python pays the dispatcher for two arrays, not
ten (each array argument costs ~180 ns on this box; see docs/matching.md):

- ``lad``, int64[LAD_ROWS, width]: a tick-indexed ladder per side, as in `hftbot.feed.book`. Slot
  ``i`` is the price ``base + i``; the window (default width 2**20: ±524k ticks around
  ``center_px``) is the facade's to set and to move. Rows: displayed lots (everyone's, ours included), the
  head of our own orders' time-priority list at that price (slot+1, 0 none), and the drain
  generation in which the level was last logged as changed (so the change log lists each price
  once without clearing anything). An update is one store; deleting the best scans to the next
  occupied slot. Untouched pages of ``np.zeros`` cost no memory. A price outside the window is
  an ``E_RANGE`` answer: the facade re-grids the ladder (re-centres it, or doubles its width) and
  calls again, so the book stays exact; real books do hold such levels (the BTCUSDT capture has
  bids at 1,000 USD and asks at 621,000 USD beside a 61,800 USD market).
- ``mem``, int64[...]: the scalar state (``S_*``) followed by fixed-capacity tables, each a
  2-D int64 view whose columns are named by the structured dtypes below (Python sees them as
  structured arrays over the same memory): our orders (``ORDER_DTYPE``), the order events written
  for the caller (``EVENT_DTYPE``), trade prints (``PRINT_DTYPE``), changed levels
  (``LEVEL_DTYPE``), pending requests under entry latency (``REQUEST_DTYPE``), a free-slot stack,
  and latency samples.

Why not dicts and objects (the previous engine): ~26k replayed diffs/s, 300× short of the
backtest target. Why not sorted arrays: real diff streams touch levels thousands of ticks apart.

Our orders: a new order joins the back of its level, behind the whole displayed size, so
price-time priority is exact for ours; `ahead` (everyone else's lots in front) falls when those
lots trade, and on an anonymous decrease by the queue model's rule (model code ``S_QUEUE``).
A sweep (everyone's market orders and our aggressive ones) eats each level front to back. Fees
are integers: ``ticks × lots × rate_e8`` in units of ``tick × lot × 1e-8`` quote (exact; see
`hftbot.sim.models`). Latency: with a non-zero entry model an order/cancel/modify waits in the
request table until ``sent + entry delay`` and takes effect when the engine's clock passes it;
every event carries ``resp_ns`` = its time + the response delay (one draw per engine step, so
the events of one step arrive together and in order).

Numba habits (docs/feed.md): the per-level-update hot path of `run_rows` is written inline (a
call with array arguments costs two atomic refcount operations per array); everything else is
one implementation shared by the simulator's calls and the replay loop.

Pure logic: no I/O, no clocks (times come in), no global random state (a seeded splitmix64).
It must never guess: a crossing add, a price outside the window or a full table is an error code
for the caller, never a silent change.
"""

from __future__ import annotations

import numba as nb
import numpy as np

BUY = 1
SELL = -1

# ladder rows; side index s: 0 bids, 1 asks
R_QTY = 0  # rows 0/1: displayed lots
R_HEAD = 2  # rows 2/3: slot+1 of our first order at the price (time priority), 0 none
R_MARK = 4  # rows 4/5: drain generation that logged the level
LAD_ROWS = 6
DEFAULT_WIDTH = 1 << 20

# -- state slots (mem[0:S_SIZE]) ---------------------------------------------------------------
S_WIDTH = 0
S_BASE = 1  # price (ticks) of ladder slot 0
S_SPARE = 2  # (unused)
S_BB = 3  # best bid slot, -1 none
S_BA = 4  # best ask slot, width none
S_BID_PX = 5  # best bid ticks, 0 none (what Python reads)
S_ASK_PX = 6
S_NB = 7  # occupied bid levels
S_NA = 8
S_LO = 9  # lowest slot ever written
S_HI = 10
S_FAR = 11  # level updates dropped: outside even the widest window the facade allows
S_UPDATE_ID = 12  # last update id used (one per transaction that changes the book)
S_GAP = 13  # extra ids skipped per transaction
S_TXN_NEW = 14  # begin() was called: the next change takes a new id
S_FIRST_PENDING = 15  # first update id not yet drained, 0 none
S_NEXT_TRADE = 16
S_LOG_LEVELS = 17  # 1: keep the changed-level log (a publisher needs it; a backtest does not)
S_GEN = 18  # drain generation (>= 1)
S_NLOG = 19
S_LOG_LOST = 20
S_NPRINT = 21
S_PRINT_LOST = 22
S_NEV = 23
S_EV_LOST = 24
S_CAP = 25  # order slots
S_NFREE = 26
S_OWN_BID = 27  # our resting orders per side (S_OWN_BID + s)
S_OWN_ASK = 28
S_NREQ = 29
S_REQ_SEQ = 30
S_QUEUE = 31  # queue model code (hftbot.sim.models.Q_*)
S_ENTRY = 32  # entry latency: code, base ns, mean extra ns, number of samples
S_ENTRY_BASE = 33
S_ENTRY_MEAN = 34
S_ENTRY_N = 35
S_RESP = 36  # response latency, same four
S_RESP_BASE = 37
S_RESP_MEAN = 38
S_RESP_N = 39
S_RNG = 40  # splitmix64 state
S_MAKER_E8 = 41
S_TAKER_E8 = 42
S_NOW_NS = 43  # the engine's clock: the latest time it was given
S_RESP_CUR = 44  # response delay drawn for the current step, -1 not yet
S_OFF_ORD = 45  # table offsets and capacities
S_OFF_EV = 46
S_ECAP = 47
S_OFF_PR = 48
S_PCAP = 49
S_OFF_LOG = 50
S_LCAP = 51
S_OFF_REQ = 52
S_RCAP = 53
S_OFF_FREE = 54
S_OFF_LAT_E = 55
S_OFF_LAT_R = 56
S_BAD_ROW = 57  # run_rows: the row it stopped at with an error
S_REQ_LOST = 58
S_DRAINED = 59  # the facade drained the logs: the next change empties them first
S_LOST = 61  # S_LOG_LOST + S_PRINT_LOST (one slot for the facade to check per drain)
F_QUEUE_POWER = 60  # float64 slot (mem.view(float64)): PowerProbQueue's n
S_SIZE = 64

# -- codes -----------------------------------------------------------------------------------------
T_LIMIT = 0
T_MARKET = 1
TIF_GTC = 0
TIF_IOC = 1
TIF_FOK = 2
TIF_GTX = 3

ST_NEW = 0
ST_PARTIALLY_FILLED = 1
ST_FILLED = 2
ST_CANCELED = 3
ST_EXPIRED = 4
ST_EXPIRED_IN_MATCH = 5
ST_REJECTED = 6
ST_PENDING_NEW = 7  # sent, not yet at the matching engine (entry latency)
ST_UNCHANGED = -1  # in an event: a refused cancel/modify left the order as it was

X_NEW = 0
X_TRADE = 1
X_CANCELED = 2
X_EXPIRED = 3
X_AMENDMENT = 4
X_REJECTED = 5  # a request refused at the matching engine (under entry latency)

OS_FREE = 0  # order slot states
OS_PENDING = 1
OS_ACTIVE = 2  # at the engine, matching, not resting
OS_RESTING = 3

FL_REQUEUE = 1  # our order lost its queue place (snapshot): it goes to the back at the next level update

RQ_PLACE = 1
RQ_CANCEL = 2
RQ_MODIFY = 3

# kernel return codes (< 0); Binance reject codes are returned as themselves
OK = 0
E_CROSS = -1  # add would cross the book
E_RANGE = -2  # price outside the ladder window
E_PRICE = -3  # price <= 0
E_QTY = -4  # quantity <= 0
E_KIND = -5  # run_rows: unknown row kind
E_FULL = -6  # the request table (orders waiting out their entry latency) is full
R_GTX = -5022
R_FOK = -5021
R_UNKNOWN_ORDER = -2011
R_NO_ORDER = -2013
R_LIMIT_ONLY = -4127
R_NO_CHANGE = -5027
R_MAX_ORDERS = -2025

# market event rows (replay input)
EV_LEVEL = 1  # a level now shows `qty` lots of everyone else's (absolute, from a diff or snapshot)
EV_TRADE = 2  # a trade printed: `side` is the taker's side
EV_CLEAR = 3  # a snapshot follows: everyone else's levels are cleared first
MF_LAST = 1  # flags: last row of its exchange message


def _fields(names: tuple[str, ...]) -> np.dtype:
    return np.dtype([(n, "<i8") for n in names])


ORDER_FIELDS = (
    "order_id",
    "side",  # BUY / SELL
    "type",  # T_*
    "tif",  # TIF_*
    "px",  # ticks (MARKET: 0)
    "qty",  # lots
    "filled",
    "cum_notional",  # sum of px*lots over fills (ticks×lots)
    "cum_fee",  # fee units (tick×lot×1e-8 quote)
    "status",  # ST_*
    "ahead",  # everyone else's lots queued ahead of this order at its level
    "traded",  # everyone else's lots traded at its level since the level's last replayed update
    "next",  # slot+1 of the next of our orders at the level, 0 none
    "prev",
    "time_ns",  # when it reached the engine
    "update_ns",
    "modify_count",
    "reduce_only",
    "state",  # OS_*
    "flags",  # FL_*
)
ORDER_DTYPE = _fields(ORDER_FIELDS)
(
    O_ID,
    O_SIDE,
    O_TYPE,
    O_TIF,
    O_PX,
    O_QTY,
    O_FILLED,
    O_CUM_NOTIONAL,
    O_CUM_FEE,
    O_STATUS,
    O_AHEAD,
    O_TRADED,
    O_NEXT,
    O_PREV,
    O_TIME_NS,
    O_UPDATE_NS,
    O_MODS,
    O_REDUCE,
    O_STATE,
    O_FLAGS,
) = range(len(ORDER_FIELDS))
OF = len(ORDER_FIELDS)

EVENT_FIELDS = (
    "order_id",
    "slot",  # the order's slot, -1 when the event refuses a request for an unknown order
    "exec_type",  # X_*
    "status",  # ST_* after the event (ST_UNCHANGED: a refused cancel/modify)
    "time_ns",  # when it happened at the engine
    "resp_ns",  # when the response reaches us (time + response latency)
    "last_qty",
    "last_px",
    "fee",  # fee units of this fill
    "maker",
    "trade_id",
    "expire_reason",  # Binance `er`: 1 STP, 2 IOC/FOK remainder, 9 market remainder
    "reject_code",  # X_REJECTED: the Binance code
    "filled",  # the order's totals after the event
    "cum_notional",
    "cum_fee",
    "px",
    "qty",
    "modify_count",
)
EVENT_DTYPE = _fields(EVENT_FIELDS)
(
    E_ORDER_ID,
    E_SLOT,
    E_EXEC,
    E_STATUS,
    E_TIME_NS,
    E_RESP_NS,
    E_LAST_QTY,
    E_LAST_PX,
    E_FEE,
    E_MAKER,
    E_TRADE_ID,
    E_REASON,
    E_REJECT,
    E_FILLED,
    E_CUM_NOTIONAL,
    E_CUM_FEE,
    E_PX,
    E_QTY,
    E_MODS,
) = range(len(EVENT_FIELDS))
EF = len(EVENT_FIELDS)

PRINT_FIELDS = ("px", "qty", "taker_buy", "first_id", "last_id", "time_ns")
PRINT_DTYPE = _fields(PRINT_FIELDS)
P_PX, P_QTY, P_TAKER_BUY, P_FIRST_ID, P_LAST_ID, P_TIME_NS = range(len(PRINT_FIELDS))
PF = len(PRINT_FIELDS)

LEVEL_FIELDS = ("side", "px")
LEVEL_DTYPE = _fields(LEVEL_FIELDS)
L_SIDE, L_PX = range(len(LEVEL_FIELDS))
LF = len(LEVEL_FIELDS)

REQUEST_FIELDS = ("due_ns", "seq", "kind", "slot", "order_id", "px", "qty", "status")
REQUEST_DTYPE = _fields(REQUEST_FIELDS)
Q_DUE_NS, Q_SEQ, Q_KIND, Q_SLOT, Q_ORDER_ID, Q_PX, Q_QTY, Q_STATUS = range(len(REQUEST_FIELDS))
QF = len(REQUEST_FIELDS)

MARKET_EVENT_FIELDS = (
    "exch_ns",  # exchange time (event or trade time), ns: the engine's clock
    "recv_ns",  # local receive time, ns (what a strategy's clock sees)
    "kind",  # EV_*
    "side",  # EV_LEVEL: the book side; EV_TRADE: the taker's side (BUY / SELL)
    "px",  # ticks
    "qty",  # lots
    "flags",  # MF_*
)
MARKET_EVENT_DTYPE = _fields(MARKET_EVENT_FIELDS)
M_EXCH_NS, M_RECV_NS, M_KIND, M_SIDE, M_PX, M_QTY, M_FLAGS = range(len(MARKET_EVENT_FIELDS))
MEF = len(MARKET_EVENT_FIELDS)

INT63 = (1 << 63) - 1


# =================================================================================================
# tables


@nb.njit(cache=True)
def _orders(mem):
    o = mem[S_OFF_ORD]
    return mem[o : o + mem[S_CAP] * OF].reshape((mem[S_CAP], OF))


@nb.njit(cache=True)
def _events(mem):
    o = mem[S_OFF_EV]
    return mem[o : o + mem[S_ECAP] * EF].reshape((mem[S_ECAP], EF))


@nb.njit(cache=True)
def _prints(mem):
    o = mem[S_OFF_PR]
    return mem[o : o + mem[S_PCAP] * PF].reshape((mem[S_PCAP], PF))


@nb.njit(cache=True)
def _levels(mem):
    o = mem[S_OFF_LOG]
    return mem[o : o + mem[S_LCAP] * LF].reshape((mem[S_LCAP], LF))


@nb.njit(cache=True)
def _requests(mem):
    o = mem[S_OFF_REQ]
    return mem[o : o + mem[S_RCAP] * QF].reshape((mem[S_RCAP], QF))


# =================================================================================================
# random draws and latency


@nb.njit(cache=True)
def _uniform(mem):
    """A uniform draw in [0, 1) from the engine's own splitmix64 stream."""
    x = np.uint64(mem[S_RNG]) + np.uint64(0x9E3779B97F4A7C15)
    mem[S_RNG] = np.int64(x)
    z = x
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@nb.njit(cache=True)
def _delay(mem, code_slot, off_slot):
    """One delay of the latency model whose four state slots start at `code_slot`."""
    code = mem[code_slot]
    if code == 0:  # L_CONSTANT
        return mem[code_slot + 1]
    u = _uniform(mem)
    if code == 1:  # L_JITTER: base + exponential(mean), as JitterLatency.sample_ns
        if u < 1e-12:
            u = 1e-12
        if u > 1.0 - 1e-12:
            u = 1.0 - 1e-12
        return mem[code_slot + 1] + np.int64(-np.log(1.0 - u) * mem[code_slot + 2])
    n = mem[code_slot + 3]  # L_EMPIRICAL
    j = np.int64(u * n)
    if j >= n:
        j = n - 1
    return mem[mem[off_slot] + j]


@nb.njit(cache=True)
def _resp_delay(mem):
    if mem[S_RESP_CUR] < 0:
        mem[S_RESP_CUR] = _delay(mem, S_RESP, S_OFF_LAT_R)
    return mem[S_RESP_CUR]


# =================================================================================================
# the ladder


@nb.njit(cache=True)
def _touch(mem):
    """Before any change: empty the logs a drain has taken; take a new update id per transaction."""
    if mem[S_DRAINED]:
        mem[S_DRAINED] = 0
        mem[S_NLOG] = 0
        mem[S_NPRINT] = 0
        mem[S_GEN] += 1
    if mem[S_TXN_NEW]:
        mem[S_TXN_NEW] = 0
        mem[S_UPDATE_ID] += 1 + mem[S_GAP]
        if mem[S_FIRST_PENDING] == 0:
            mem[S_FIRST_PENDING] = mem[S_UPDATE_ID]


@nb.njit(cache=True)
def _slot(mem, px):
    """Ladder slot of a price, -1 outside the window."""
    i = px - mem[S_BASE]
    if i < 0 or i >= mem[S_WIDTH]:
        return np.int64(-1)
    return i


@nb.njit(cache=True)
def _rescan_bid(lad, mem, i):
    j = i - 1
    if mem[S_NB] == 0:
        j = -1
    else:
        lo = mem[S_LO]
        while j >= lo and lad[0, j] == 0:
            j -= 1
        if j < lo:
            j = -1
    mem[S_BB] = j
    mem[S_BID_PX] = mem[S_BASE] + j if j >= 0 else 0


@nb.njit(cache=True)
def _rescan_ask(lad, mem, i):
    width = mem[S_WIDTH]
    j = i + 1
    if mem[S_NA] == 0:
        j = width
    else:
        hi = mem[S_HI]
        while j <= hi and lad[1, j] == 0:
            j += 1
        if j > hi:
            j = width
    mem[S_BA] = j
    mem[S_ASK_PX] = mem[S_BASE] + j if j < width else 0


@nb.njit(cache=True)
def _log_level(lad, mem, s, i):
    if lad[R_MARK + s, i] == mem[S_GEN]:
        return
    lad[R_MARK + s, i] = mem[S_GEN]
    n = mem[S_NLOG]
    if n >= mem[S_LCAP]:
        mem[S_LOG_LOST] += 1
        mem[S_LOST] += 1
        return
    o = mem[S_OFF_LOG] + n * LF
    mem[o + L_SIDE] = BUY if s == 0 else SELL
    mem[o + L_PX] = mem[S_BASE] + i
    mem[S_NLOG] = n + 1


@nb.njit(cache=True)
def _set(lad, mem, s, i, lots):
    """Displayed lots at slot `i` of side `s`: counts, best price, update id and change log follow.

    The one implementation of a level change; `run_rows` repeats its common case inline."""
    _touch(mem)
    old = lad[s, i]
    lad[s, i] = lots
    if lots > 0 and old == 0:
        if i < mem[S_LO]:
            mem[S_LO] = i
        if i > mem[S_HI]:
            mem[S_HI] = i
    if s == 0:
        if lots > 0:
            if old == 0:
                mem[S_NB] += 1
            if i > mem[S_BB]:
                mem[S_BB] = i
                mem[S_BID_PX] = mem[S_BASE] + i
        elif old > 0:
            mem[S_NB] -= 1
            if i == mem[S_BB]:
                _rescan_bid(lad, mem, i)
    else:
        if lots > 0:
            if old == 0:
                mem[S_NA] += 1
            if i < mem[S_BA]:
                mem[S_BA] = i
                mem[S_ASK_PX] = mem[S_BASE] + i
        elif old > 0:
            mem[S_NA] -= 1
            if i == mem[S_BA]:
                _rescan_ask(lad, mem, i)
    if mem[S_LOG_LEVELS]:
        _log_level(lad, mem, s, i)


@nb.njit(cache=True)
def _crosses(mem, side, px):
    if side == BUY:
        return mem[S_ASK_PX] != 0 and px >= mem[S_ASK_PX]
    return mem[S_BID_PX] != 0 and px <= mem[S_BID_PX]


# =================================================================================================
# our orders in the ladder


@nb.njit(cache=True)
def _own_lots(lad, ob, s, i):
    h = lad[R_HEAD + s, i]
    tot = 0
    while h:
        k = h - 1
        tot += ob[k, O_QTY] - ob[k, O_FILLED]
        h = ob[k, O_NEXT]
    return tot


@nb.njit(cache=True)
def _link(lad, ob, s, i, k):
    """Append order k at the back of its level's list."""
    ob[k, O_NEXT] = 0
    h = lad[R_HEAD + s, i]
    if h == 0:
        lad[R_HEAD + s, i] = k + 1
        ob[k, O_PREV] = 0
        return
    t = h - 1
    while ob[t, O_NEXT]:
        t = ob[t, O_NEXT] - 1
    ob[t, O_NEXT] = k + 1
    ob[k, O_PREV] = t + 1


@nb.njit(cache=True)
def _unlink(lad, ob, s, i, k):
    p = ob[k, O_PREV]
    n = ob[k, O_NEXT]
    if p:
        ob[p - 1, O_NEXT] = n
    else:
        lad[R_HEAD + s, i] = n
    if n:
        ob[n - 1, O_PREV] = p
    ob[k, O_NEXT] = 0
    ob[k, O_PREV] = 0


@nb.njit(cache=True)
def _release(mem, ob, k):
    """Give a closed order's slot back (its events already carry everything about it)."""
    ob[k, O_STATE] = OS_FREE
    n = mem[S_NFREE]
    mem[mem[S_OFF_FREE] + n] = k
    mem[S_NFREE] = n + 1


@nb.njit(cache=True)
def _is_final(status):
    return status >= ST_FILLED and status <= ST_REJECTED


@nb.njit(cache=True)
def _drop_closed(lad, mem, ob, s, i):
    """Unlink and release the closed orders of one level (the caller fixes its displayed size)."""
    h = lad[R_HEAD + s, i]
    while h:
        k = h - 1
        h = ob[k, O_NEXT]
        if _is_final(ob[k, O_STATUS]):
            _unlink(lad, ob, s, i, k)
            mem[S_OWN_BID + s] -= 1
            _release(mem, ob, k)


@nb.njit(cache=True)
def _rest(lad, mem, ob, k):
    """Order k joins the back of its level: everyone displayed there is ahead of it."""
    s = 0 if ob[k, O_SIDE] == BUY else 1
    i = ob[k, O_PX] - mem[S_BASE]
    shown = lad[s, i]
    ob[k, O_AHEAD] = shown - _own_lots(lad, ob, s, i)
    ob[k, O_TRADED] = 0
    ob[k, O_FLAGS] = 0
    _link(lad, ob, s, i, k)
    ob[k, O_STATE] = OS_RESTING
    mem[S_OWN_BID + s] += 1
    _set(lad, mem, s, i, shown + ob[k, O_QTY] - ob[k, O_FILLED])


@nb.njit(cache=True)
def _unrest(lad, mem, ob, k):
    s = 0 if ob[k, O_SIDE] == BUY else 1
    i = ob[k, O_PX] - mem[S_BASE]
    _unlink(lad, ob, s, i, k)
    ob[k, O_STATE] = OS_ACTIVE
    mem[S_OWN_BID + s] -= 1
    _set(lad, mem, s, i, lad[s, i] - (ob[k, O_QTY] - ob[k, O_FILLED]))


# =================================================================================================
# events and prints


@nb.njit(cache=True)
def _emit(mem, ob, k, exec_type, t, last_qty, last_px, fee, maker, trade_id, reason, reject):
    n = mem[S_NEV]
    if n >= mem[S_ECAP]:
        mem[S_EV_LOST] += 1
        return
    e = mem[S_OFF_EV] + n * EF
    mem[e + E_ORDER_ID] = ob[k, O_ID]
    mem[e + E_SLOT] = k
    mem[e + E_EXEC] = exec_type
    mem[e + E_STATUS] = ob[k, O_STATUS]
    mem[e + E_TIME_NS] = t
    mem[e + E_RESP_NS] = t + _resp_delay(mem)
    mem[e + E_LAST_QTY] = last_qty
    mem[e + E_LAST_PX] = last_px
    mem[e + E_FEE] = fee
    mem[e + E_MAKER] = maker
    mem[e + E_TRADE_ID] = trade_id
    mem[e + E_REASON] = reason
    mem[e + E_REJECT] = reject
    mem[e + E_FILLED] = ob[k, O_FILLED]
    mem[e + E_CUM_NOTIONAL] = ob[k, O_CUM_NOTIONAL]
    mem[e + E_CUM_FEE] = ob[k, O_CUM_FEE]
    mem[e + E_PX] = ob[k, O_PX]
    mem[e + E_QTY] = ob[k, O_QTY]
    mem[e + E_MODS] = ob[k, O_MODS]
    mem[S_NEV] = n + 1


@nb.njit(cache=True)
def _emit_refusal(mem, order_id, t, code):
    """A cancel/modify refused at the engine for an order it no longer holds."""
    n = mem[S_NEV]
    if n >= mem[S_ECAP]:
        mem[S_EV_LOST] += 1
        return
    e = mem[S_OFF_EV] + n * EF
    for j in range(EF):
        mem[e + j] = 0
    mem[e + E_ORDER_ID] = order_id
    mem[e + E_SLOT] = -1
    mem[e + E_EXEC] = X_REJECTED
    mem[e + E_STATUS] = ST_UNCHANGED
    mem[e + E_TIME_NS] = t
    mem[e + E_RESP_NS] = t + _resp_delay(mem)
    mem[e + E_REJECT] = code
    mem[S_NEV] = n + 1


@nb.njit(cache=True)
def _print(mem, px, qty, taker_buy, first_id, last_id, t):
    n = mem[S_NPRINT]
    if n >= mem[S_PCAP]:
        mem[S_PRINT_LOST] += 1
        mem[S_LOST] += 1
        return
    p = mem[S_OFF_PR] + n * PF
    mem[p + P_PX] = px
    mem[p + P_QTY] = qty
    mem[p + P_TAKER_BUY] = taker_buy
    mem[p + P_FIRST_ID] = first_id
    mem[p + P_LAST_ID] = last_id
    mem[p + P_TIME_NS] = t
    mem[S_NPRINT] = n + 1


@nb.njit(cache=True)
def _fill_maker(mem, ob, k, lots, t):
    px = ob[k, O_PX]
    notional = px * lots
    fee = notional * mem[S_MAKER_E8]
    ob[k, O_FILLED] += lots
    ob[k, O_CUM_NOTIONAL] += notional
    ob[k, O_CUM_FEE] += fee
    ob[k, O_STATUS] = ST_FILLED if ob[k, O_FILLED] == ob[k, O_QTY] else ST_PARTIALLY_FILLED
    ob[k, O_UPDATE_NS] = t
    tid = mem[S_NEXT_TRADE]
    mem[S_NEXT_TRADE] = tid + 1
    _emit(mem, ob, k, X_TRADE, t, lots, px, fee, 1, tid, 0, 0)


@nb.njit(cache=True)
def _fill_taker(mem, ob, k, lots, px, t):
    notional = px * lots
    fee = notional * mem[S_TAKER_E8]
    ob[k, O_FILLED] += lots
    ob[k, O_CUM_NOTIONAL] += notional
    ob[k, O_CUM_FEE] += fee
    ob[k, O_STATUS] = ST_FILLED if ob[k, O_FILLED] == ob[k, O_QTY] else ST_PARTIALLY_FILLED
    ob[k, O_UPDATE_NS] = t
    _emit(mem, ob, k, X_TRADE, t, lots, px, fee, 0, mem[S_NEXT_TRADE] - 1, 0, 0)  # the print's last id


@nb.njit(cache=True)
def _expire(mem, ob, k, status, reason, t):
    ob[k, O_STATUS] = status
    ob[k, O_UPDATE_NS] = t
    _emit(mem, ob, k, X_EXPIRED, t, 0, 0, 0, 0, 0, reason, 0)


# =================================================================================================
# queue position


@nb.njit(cache=True)
def _ahead_after_cancel(mem, ahead, others, c):
    """`hftbot.sim.models` QueueModel.ahead_after_cancel, for the model in S_QUEUE."""
    q = mem[S_QUEUE]
    if q == 0:  # Q_RISK_AVERSE
        return min(ahead, others - c)
    if q == 1:  # Q_PROPORTIONAL
        if others <= 0:
            return np.int64(0)
        if ahead < 3_000_000_000 and others < 3_000_000_000:
            return min(ahead, (ahead * (others - c)) // others)
        return min(ahead, np.int64(np.floor(ahead * ((others - c) / others))))
    # Q_POWER_PROB
    front = ahead
    back = others - ahead
    if back <= 0:
        return max(np.int64(0), min(ahead, others - c))
    if front <= 0:
        return np.int64(0)
    n = mem.view(np.float64)[F_QUEUE_POWER]
    fb = float(back) ** n
    ff = float(front) ** n
    tot = fb + ff
    p = fb / tot if np.isfinite(tot) and tot > 0 else 1.0
    from_back = min(back, np.int64(p * c + 0.5))
    return max(np.int64(0), min(ahead - (c - from_back), others - c))


# =================================================================================================
# matching


@nb.njit(cache=True)
def _sweep(lad, mem, ob, taker_side, lots, limit_px, t, taker):
    """Match `lots` against the opposite side up to `limit_px` (0: no limit); `taker` is our
    order's slot, -1 for everyone else's market order. Returns the lots filled.

    Each level is eaten front to back: everyone else's lots ahead of our first order, that order,
    the lots between it and our next, ... then the rest. Our own resting order met by our own
    taker is expired (self-trade prevention EXPIRE_MAKER). One print per level; each maker fill
    of ours takes a trade id of its own."""
    ms = 1 if taker_side == BUY else 0
    done = 0
    while lots > 0 and mem[S_NB + ms] > 0:
        i = mem[S_BB] if ms == 0 else mem[S_BA]
        px = mem[S_BASE] + i
        if limit_px != 0 and (
            (taker_side == BUY and px > limit_px) or (taker_side == SELL and px < limit_px)
        ):
            break
        shown = lad[ms, i]
        first_trade = mem[S_NEXT_TRADE]
        level_done = 0
        h = lad[R_HEAD + ms, i]
        if h:
            others = shown - _own_lots(lad, ob, ms, i)
            others_taken = 0
            removed_own = 0
            while h:
                k = h - 1
                h = ob[k, O_NEXT]
                need = ob[k, O_AHEAD] - others_taken
                if need < 0:
                    need = 0
                x = min(lots, need)
                others_taken += x
                lots -= x
                level_done += x
                if lots == 0:
                    break
                rem = ob[k, O_QTY] - ob[k, O_FILLED]
                if taker >= 0:
                    removed_own += rem
                    _expire(mem, ob, k, ST_EXPIRED_IN_MATCH, 1, t)
                    continue
                f = min(lots, rem)
                lots -= f
                level_done += f
                removed_own += f
                _fill_maker(mem, ob, k, f, t)
            x = min(lots, others - others_taken)
            others_taken += x
            lots -= x
            level_done += x
            h = lad[R_HEAD + ms, i]
            while h:
                k = h - 1
                h = ob[k, O_NEXT]
                if not _is_final(ob[k, O_STATUS]):
                    a = ob[k, O_AHEAD] - others_taken
                    ob[k, O_AHEAD] = a if a > 0 else 0
            _drop_closed(lad, mem, ob, ms, i)
            _set(lad, mem, ms, i, shown - others_taken - removed_own)
        else:
            x = min(lots, shown)
            lots -= x
            level_done = x
            _set(lad, mem, ms, i, shown - x)
        if level_done:
            if mem[S_NEXT_TRADE] == first_trade:
                mem[S_NEXT_TRADE] += 1
            if taker >= 0:
                _fill_taker(mem, ob, taker, level_done, px, t)
            _print(mem, px, level_done, 1 if taker_side == BUY else 0, first_trade, mem[S_NEXT_TRADE] - 1, t)
            done += level_done
    return done


@nb.njit(cache=True)
def _available(lad, mem, ob, taker_side, limit_px, need):
    """Lots a taker could fill up to `limit_px` (0: no limit), our own resting orders excluded;
    stops counting at `need`."""
    total = 0
    if taker_side == BUY:
        i = mem[S_BA]
        hi = mem[S_HI]
        while i <= hi and total < need:
            q = lad[1, i]
            if q:
                if limit_px != 0 and mem[S_BASE] + i > limit_px:
                    break
                total += q - _own_lots(lad, ob, 1, i)
            i += 1
    else:
        i = mem[S_BB]
        lo = mem[S_LO]
        while i >= lo and i >= 0 and total < need:
            q = lad[0, i]
            if q:
                if limit_px != 0 and mem[S_BASE] + i < limit_px:
                    break
                total += q - _own_lots(lad, ob, 0, i)
            i -= 1
    return total


@nb.njit(cache=True)
def _do_place(lad, mem, ob, k, t):
    """Order k has reached the engine: check, match, rest or expire. Returns OK or a reject code
    (raised before anything changed)."""
    side = ob[k, O_SIDE]
    typ = ob[k, O_TYPE]
    tif = ob[k, O_TIF]
    px = ob[k, O_PX]
    crosses = False
    if typ == T_LIMIT:
        if _slot(mem, px) < 0:
            return E_RANGE
        crosses = _crosses(mem, side, px)
        if tif == TIF_GTX and crosses:
            return R_GTX
        if tif == TIF_FOK:
            rem = ob[k, O_QTY]
            if _available(lad, mem, ob, side, px, rem) < rem:
                return R_FOK
    ob[k, O_STATE] = OS_ACTIVE
    ob[k, O_STATUS] = ST_NEW
    ob[k, O_TIME_NS] = t
    ob[k, O_UPDATE_NS] = t
    _emit(mem, ob, k, X_NEW, t, 0, 0, 0, 0, 0, 0, 0)
    if typ == T_MARKET or crosses:
        _sweep(lad, mem, ob, side, ob[k, O_QTY] - ob[k, O_FILLED], px if typ == T_LIMIT else 0, t, k)
    if ob[k, O_STATUS] == ST_FILLED:
        _release(mem, ob, k)
        return OK
    if typ == T_MARKET or tif == TIF_IOC or tif == TIF_FOK:  # noqa: SIM109 (numba)
        _expire(mem, ob, k, ST_EXPIRED, 9 if typ == T_MARKET else 2, t)
        _release(mem, ob, k)
        return OK
    _rest(lad, mem, ob, k)
    return OK


@nb.njit(cache=True)
def _do_cancel(lad, mem, ob, k, t, status):
    if ob[k, O_STATE] == OS_RESTING:
        _unrest(lad, mem, ob, k)
    ob[k, O_STATUS] = status
    ob[k, O_UPDATE_NS] = t
    _emit(mem, ob, k, X_CANCELED if status == ST_CANCELED else X_EXPIRED, t, 0, 0, 0, 0, 0, 0, 0)
    _release(mem, ob, k)


@nb.njit(cache=True)
def _do_modify(lad, mem, ob, k, px, qty, t):
    """Amend price/quantity of a resting LIMIT order; it loses its queue place (Binance rule).
    Cancels it when the new quantity is not above what already filled, or when a GTX amend would
    cross (as Binance does)."""
    if ob[k, O_STATE] != OS_RESTING:
        return R_NO_ORDER
    if ob[k, O_TYPE] != T_LIMIT:
        return R_LIMIT_ONLY
    if px == ob[k, O_PX] and qty == ob[k, O_QTY]:
        return R_NO_CHANGE
    if px <= 0:
        return E_PRICE
    if _slot(mem, px) < 0:
        return E_RANGE
    side = ob[k, O_SIDE]
    if qty <= ob[k, O_FILLED] or (ob[k, O_TIF] == TIF_GTX and _crosses(mem, side, px)):
        _do_cancel(lad, mem, ob, k, t, ST_CANCELED)
        return OK
    _unrest(lad, mem, ob, k)
    ob[k, O_PX] = px
    ob[k, O_QTY] = qty
    ob[k, O_MODS] += 1
    ob[k, O_UPDATE_NS] = t
    _emit(mem, ob, k, X_AMENDMENT, t, 0, 0, 0, 0, 0, 0, 0)
    if _crosses(mem, side, px):
        _sweep(lad, mem, ob, side, qty - ob[k, O_FILLED], px, t, k)
    if _is_final(ob[k, O_STATUS]):
        _release(mem, ob, k)
    else:
        _rest(lad, mem, ob, k)
    return OK


# =================================================================================================
# requests under entry latency


@nb.njit(cache=True)
def _submit(mem, kind, k, order_id, px, qty, status, sent_ns):
    """Queue a request until sent_ns + entry delay (kept sorted by due time, then sequence)."""
    n = mem[S_NREQ]
    if n >= mem[S_RCAP]:
        mem[S_REQ_LOST] += 1
        return False
    due = sent_ns + _delay(mem, S_ENTRY, S_OFF_LAT_E)
    rq = _requests(mem)
    j = n
    while j > 0 and rq[j - 1, Q_DUE_NS] > due:
        for c in range(QF):
            rq[j, c] = rq[j - 1, c]
        j -= 1
    mem[S_REQ_SEQ] += 1
    rq[j, Q_DUE_NS] = due
    rq[j, Q_SEQ] = mem[S_REQ_SEQ]
    rq[j, Q_KIND] = kind
    rq[j, Q_SLOT] = k
    rq[j, Q_ORDER_ID] = order_id
    rq[j, Q_PX] = px
    rq[j, Q_QTY] = qty
    rq[j, Q_STATUS] = status
    mem[S_NREQ] = n + 1
    return True


@nb.njit(cache=True)
def _process_due(lad, mem, ob, now_ns):
    """Apply every queued request due by `now_ns`, each at its own due time."""
    rq = _requests(mem)
    while mem[S_NREQ] > 0 and rq[0, Q_DUE_NS] <= now_ns:
        t = rq[0, Q_DUE_NS]
        kind = rq[0, Q_KIND]
        k = rq[0, Q_SLOT]
        oid = rq[0, Q_ORDER_ID]
        px = rq[0, Q_PX]
        qty = rq[0, Q_QTY]
        status = rq[0, Q_STATUS]
        n = mem[S_NREQ] - 1
        for j in range(n):
            for c in range(QF):
                rq[j, c] = rq[j + 1, c]
        mem[S_NREQ] = n
        if t > mem[S_NOW_NS]:
            mem[S_NOW_NS] = t
        mem[S_RESP_CUR] = -1
        mine = ob[k, O_ID] == oid and ob[k, O_STATE] != OS_FREE
        if kind == RQ_PLACE:
            if mine and ob[k, O_STATE] == OS_PENDING:
                r = _do_place(lad, mem, ob, k, t)
                if r < 0:
                    ob[k, O_STATUS] = ST_REJECTED
                    ob[k, O_UPDATE_NS] = t
                    _emit(mem, ob, k, X_REJECTED, t, 0, 0, 0, 0, 0, 0, r)
                    _release(mem, ob, k)
        elif kind == RQ_CANCEL:
            if mine and ob[k, O_STATE] == OS_RESTING:
                _do_cancel(lad, mem, ob, k, t, status)
            else:
                _emit_refusal(mem, oid, t, R_UNKNOWN_ORDER)
        elif kind == RQ_MODIFY:
            r = _do_modify(lad, mem, ob, k, px, qty, t) if mine else R_NO_ORDER
            if r < 0:
                _emit_refusal(mem, oid, t, r)


@nb.njit(cache=True)
def _immediate(mem):
    return mem[S_ENTRY] == 0 and mem[S_ENTRY_BASE] == 0


@nb.njit(cache=True)
def _clock(lad, mem, ob, t):
    """Start one engine step at time t: due requests first, then a fresh response draw."""
    if mem[S_NREQ] > 0:
        _process_due(lad, mem, ob, t)
    if t > mem[S_NOW_NS]:
        mem[S_NOW_NS] = t
    mem[S_RESP_CUR] = -1


# =================================================================================================
# replay


@nb.njit(cache=True)
def _fill_level_fully(lad, mem, ob, s, i, t):
    """Every order of ours at a level fills completely (a trade or the book went through it)."""
    h = lad[R_HEAD + s, i]
    filled = 0
    while h:
        k = h - 1
        h = ob[k, O_NEXT]
        rem = ob[k, O_QTY] - ob[k, O_FILLED]
        if rem > 0:
            filled += rem
            _fill_maker(mem, ob, k, rem, t)
    _drop_closed(lad, mem, ob, s, i)
    if filled:
        _set(lad, mem, s, i, lad[s, i] - filled)


@nb.njit(cache=True)
def _fill_crossed(lad, mem, ob, s, i, t):
    """A replayed level on side s at slot i reaches our orders on the other side: fill them."""
    o = 1 - s
    left = mem[S_OWN_BID + o]
    if o == 1:
        j = mem[S_BA]
        while j <= i and left > 0:
            if lad[R_HEAD + 1, j]:
                left -= 1
                _fill_level_fully(lad, mem, ob, 1, j, t)
            j += 1
    else:
        j = mem[S_BB]
        while j >= i and j >= 0 and left > 0:
            if lad[R_HEAD, j]:
                left -= 1
                _fill_level_fully(lad, mem, ob, 0, j, t)
            j -= 1


@nb.njit(cache=True)
def _replay_level(lad, mem, ob, s, i, lots, t):
    """A replayed update: everyone else's lots at slot i of side s are now `lots` (absolute).

    A decrease net of the trades already replayed at the level is an anonymous cancel (the queue
    model says where it came from); an increase joins behind us. A level that reaches our orders
    on the other side fills them."""
    h = lad[R_HEAD + s, i]
    own = 0
    if h:
        own = _own_lots(lad, ob, s, i)
        others = lad[s, i] - own
        while h:
            k = h - 1
            h = ob[k, O_NEXT]
            if ob[k, O_FLAGS] & FL_REQUEUE:
                ob[k, O_AHEAD] = lots
                ob[k, O_FLAGS] &= ~FL_REQUEUE
                ob[k, O_TRADED] = 0
                continue
            a = ob[k, O_AHEAD]
            eff = others - ob[k, O_TRADED]
            if eff < a:
                eff = a
            c = eff - lots
            if c > 0:
                a = _ahead_after_cancel(mem, a, eff, c)
            if a > lots:
                a = lots
            ob[k, O_AHEAD] = a if a > 0 else 0
            ob[k, O_TRADED] = 0
    if lad[s, i] != lots + own:
        _set(lad, mem, s, i, lots + own)
    if lots > 0 and mem[S_OWN_BID + 1 - s] > 0 and (i >= mem[S_BA] if s == 0 else i <= mem[S_BB]):
        _fill_crossed(lad, mem, ob, s, i, t)


@nb.njit(cache=True)
def _replay_trade(lad, mem, ob, taker_side, px, lots, t):
    """A replayed trade: it fills our orders it trades through fully, and at its own price eats the
    lots ahead of ours first (the book itself follows by the next replayed update)."""
    ms = 1 if taker_side == BUY else 0
    left_own = mem[S_OWN_BID + ms]
    if left_own == 0:
        return
    pi = px - mem[S_BASE]
    if ms == 1:  # our asks below the trade price
        j = mem[S_BA]
        end = pi if pi < mem[S_HI] + 1 else mem[S_HI] + 1
        while j < end and left_own > 0:
            if lad[R_HEAD + 1, j]:
                left_own -= 1
                _fill_level_fully(lad, mem, ob, 1, j, t)
            j += 1
    else:  # our bids above it
        j = mem[S_BB]
        end = pi if pi > mem[S_LO] - 1 else mem[S_LO] - 1
        while j > end and left_own > 0:
            if lad[R_HEAD, j]:
                left_own -= 1
                _fill_level_fully(lad, mem, ob, 0, j, t)
            j -= 1
    if pi < 0 or pi >= mem[S_WIDTH] or lad[R_HEAD + ms, pi] == 0:
        return
    left = lots
    others_taken = 0
    filled = 0
    h = lad[R_HEAD + ms, pi]
    while h:
        k = h - 1
        h = ob[k, O_NEXT]
        need = ob[k, O_AHEAD] - others_taken
        if need < 0:
            need = 0
        x = min(left, need)
        others_taken += x
        left -= x
        if left == 0:
            break
        f = min(left, ob[k, O_QTY] - ob[k, O_FILLED])
        if f > 0:
            left -= f
            filled += f
            _fill_maker(mem, ob, k, f, t)
    others_taken += left
    h = lad[R_HEAD + ms, pi]
    while h:
        k = h - 1
        h = ob[k, O_NEXT]
        a = ob[k, O_AHEAD] - others_taken
        ob[k, O_AHEAD] = a if a > 0 else 0
        ob[k, O_TRADED] += lots
    _drop_closed(lad, mem, ob, ms, pi)
    if filled:
        _set(lad, mem, ms, pi, lad[ms, pi] - filled)


@nb.njit(cache=True)
def _clear_others(lad, mem, ob):
    """Everyone else's levels are gone (a snapshot follows); ours stay and lose their queue place."""
    lo = mem[S_LO]
    hi = mem[S_HI]
    for s in range(2):
        for i in range(lo, hi + 1):
            q = lad[s, i]
            if q == 0:
                continue
            own = 0
            h = lad[R_HEAD + s, i]
            while h:
                k = h - 1
                own += ob[k, O_QTY] - ob[k, O_FILLED]
                ob[k, O_AHEAD] = 0
                ob[k, O_FLAGS] |= FL_REQUEUE
                h = ob[k, O_NEXT]
            if q != own:
                _set(lad, mem, s, i, own)


# =================================================================================================
# entry points (Python facade `hftbot.sim.matching`, the replay loop, a backtester's numba loop)


@nb.njit(cache=True)
def add(lad, mem, side, px, lots):
    """Someone else's limit order joins the back of a level. OK, or E_CROSS / E_RANGE / E_PRICE."""
    if lots <= 0:
        return OK
    if px <= 0:
        return E_PRICE
    if _crosses(mem, side, px):
        return E_CROSS
    i = _slot(mem, px)
    if i < 0:
        return E_RANGE
    s = 0 if side == BUY else 1
    _set(lad, mem, s, i, lad[s, i] + lots)
    return OK


@nb.njit(cache=True)
def cancel(lad, mem, side, px, lots):
    """Someone else cancels up to `lots` at a level; returns the lots actually removed."""
    i = _slot(mem, px)
    if i < 0:
        return np.int64(0)
    s = 0 if side == BUY else 1
    shown = lad[s, i]
    if lad[R_HEAD + s, i] == 0:
        c = min(lots, shown)
        if c <= 0:
            return np.int64(0)
        _set(lad, mem, s, i, shown - c)
        return c
    ob = _orders(mem)
    others = shown - _own_lots(lad, ob, s, i)
    c = min(lots, others)
    if c <= 0:
        return np.int64(0)
    h = lad[R_HEAD + s, i]
    while h:
        k = h - 1
        ob[k, O_AHEAD] = _ahead_after_cancel(mem, ob[k, O_AHEAD], others, c)
        h = ob[k, O_NEXT]
    _set(lad, mem, s, i, shown - c)
    return c


@nb.njit(cache=True)
def market(lad, mem, taker_side, lots, time_ns):
    """Someone else's market order sweeps the book; returns the lots filled."""
    ob = _orders(mem)
    _clock(lad, mem, ob, time_ns)
    return _sweep(lad, mem, ob, taker_side, lots, 0, time_ns, -1)


@nb.njit(cache=True)
def replay_level(lad, mem, side, px, lots, time_ns):
    """A recorded diff says a level now shows `lots` of everyone else's. OK, or E_RANGE when a
    non-zero level lies outside the window (nothing changed; a zero there is a no-op)."""
    ob = _orders(mem)
    _clock(lad, mem, ob, time_ns)
    i = _slot(mem, px)
    if i < 0:
        return E_RANGE if lots > 0 else OK
    _replay_level(lad, mem, ob, 0 if side == BUY else 1, i, lots, time_ns)
    return OK


@nb.njit(cache=True)
def replay_trade(lad, mem, taker_side, px, lots, time_ns):
    """A recorded trade prints (taker on `taker_side`)."""
    ob = _orders(mem)
    _clock(lad, mem, ob, time_ns)
    _replay_trade(lad, mem, ob, taker_side, px, lots, time_ns)


@nb.njit(cache=True)
def clear_others(lad, mem, time_ns):
    ob = _orders(mem)
    _clock(lad, mem, ob, time_ns)
    _clear_others(lad, mem, ob)


@nb.njit(cache=True)
def advance(lad, mem, now_ns):
    """Let the engine's clock reach `now_ns`: requests due by then take effect."""
    _clock(lad, mem, _orders(mem), now_ns)


@nb.njit(cache=True)
def place(lad, mem, order_id, side, typ, tif, px, qty, time_ns, reduce_only):
    """One of our orders, sent at `time_ns`. Returns its slot (>= 0) or a reject code (< 0, nothing
    changed). Without entry latency it is matched now; with it, it waits (ST_PENDING_NEW) and a
    refusal at arrival is an X_REJECTED event."""
    if qty <= 0:
        return E_QTY
    if typ == T_LIMIT and px <= 0:
        return E_PRICE
    ob = _orders(mem)
    _clock(lad, mem, ob, time_ns)
    if mem[S_NFREE] == 0:
        return R_MAX_ORDERS
    n = mem[S_NFREE] - 1
    k = mem[mem[S_OFF_FREE] + n]
    for c in range(OF):
        ob[k, c] = 0
    ob[k, O_ID] = order_id
    ob[k, O_SIDE] = side
    ob[k, O_TYPE] = typ
    ob[k, O_TIF] = tif
    ob[k, O_PX] = px if typ == T_LIMIT else 0
    ob[k, O_QTY] = qty
    ob[k, O_TIME_NS] = time_ns
    ob[k, O_UPDATE_NS] = time_ns
    ob[k, O_REDUCE] = reduce_only
    if _immediate(mem):
        mem[S_NFREE] = n
        ob[k, O_STATE] = OS_ACTIVE
        r = _do_place(lad, mem, ob, k, time_ns)
        if r < 0:
            _release(mem, ob, k)
            return r
        return k
    ob[k, O_STATE] = OS_PENDING
    ob[k, O_STATUS] = ST_PENDING_NEW
    if not _submit(mem, RQ_PLACE, k, order_id, px, qty, 0, time_ns):
        ob[k, O_STATE] = OS_FREE
        return E_FULL
    mem[S_NFREE] = n
    return k


@nb.njit(cache=True)
def cancel_order(lad, mem, slot, order_id, time_ns, status):
    """Cancel one of our orders (`status`: ST_CANCELED, or ST_EXPIRED for a venue-side expiry)."""
    ob = _orders(mem)
    _clock(lad, mem, ob, time_ns)
    if not _immediate(mem):
        if not _submit(mem, RQ_CANCEL, slot, order_id, 0, 0, status, time_ns):
            return E_FULL
        return OK
    if ob[slot, O_ID] != order_id or ob[slot, O_STATE] != OS_RESTING:
        return R_UNKNOWN_ORDER
    _do_cancel(lad, mem, ob, slot, time_ns, status)
    return OK


@nb.njit(cache=True)
def modify_order(lad, mem, slot, order_id, px, qty, time_ns):
    """Amend one of our resting LIMIT orders (see `_do_modify`)."""
    ob = _orders(mem)
    _clock(lad, mem, ob, time_ns)
    if not _immediate(mem):
        if not _submit(mem, RQ_MODIFY, slot, order_id, px, qty, 0, time_ns):
            return E_FULL
        return OK
    if ob[slot, O_ID] != order_id:
        return R_NO_ORDER
    return _do_modify(lad, mem, ob, slot, px, qty, time_ns)


@nb.njit(cache=True)
def own_lots(lad, mem, side, px):
    i = _slot(mem, px)
    if i < 0:
        return np.int64(0)
    return _own_lots(lad, _orders(mem), 0 if side == BUY else 1, i)


@nb.njit(cache=True)
def available(lad, mem, taker_side, limit_px):
    return _available(lad, mem, _orders(mem), taker_side, limit_px, INT63)


@nb.njit(cache=True)
def depth(lad, mem, side, n, out):
    """The best `n` levels of one side into out[:, 0] (ticks) and out[:, 1] (lots), best first;
    returns how many."""
    k = 0
    base = mem[S_BASE]
    if side == BUY:
        i = mem[S_BB]
        lo = mem[S_LO]
        while k < n and i >= lo and i >= 0:
            q = lad[0, i]
            if q:
                out[k, 0] = base + i
                out[k, 1] = q
                k += 1
            i -= 1
    else:
        i = mem[S_BA]
        hi = mem[S_HI]
        while k < n and i <= hi:
            q = lad[1, i]
            if q:
                out[k, 0] = base + i
                out[k, 1] = q
                k += 1
            i += 1
    return k


@nb.njit(cache=True)
def run_rows(lad, mem, rows, i0, i1, stop_on_event):
    """Replay market event rows i0..i1 (MARKET_EVENT_DTYPE viewed as int64[n, MEF]).

    Returns the index of the next row to apply: i1 when all were applied; earlier after a row that
    wrote an order event when `stop_on_event` (a strategy wants to react), or when half the event
    table is used (the caller drains it). Negative, with S_BAD_ROW the row: E_KIND for an unknown
    kind, E_RANGE for a level outside the window (re-grid and resume at that row). The common
    level update (no order of ours at that price or across the book) is `_set` written inline:
    see the module docstring."""
    ob = _orders(mem)
    width = mem[S_WIDTH]
    half = mem[S_ECAP] // 2
    nev0 = mem[S_NEV]
    for r in range(i0, i1):
        t = rows[r, M_EXCH_NS]
        if mem[S_NREQ] > 0:
            _process_due(lad, mem, ob, t)
        if t > mem[S_NOW_NS]:
            mem[S_NOW_NS] = t
        mem[S_RESP_CUR] = -1
        kind = rows[r, M_KIND]
        if kind == EV_LEVEL:
            s = 0 if rows[r, M_SIDE] == BUY else 1
            px = rows[r, M_PX]
            q = rows[r, M_QTY]
            i = px - mem[S_BASE]
            if i < 0 or i >= width:
                if q > 0:
                    mem[S_BAD_ROW] = r
                    return E_RANGE
                continue
            # no order of ours here, and none across the book it could reach (ours on the other
            # side are inside its displayed levels, so a level short of its best reaches none)
            if lad[R_HEAD + s, i] == 0 and (
                mem[S_OWN_BID + 1 - s] == 0 or (i < mem[S_BA] if s == 0 else i > mem[S_BB])
            ):
                old = lad[s, i]
                if old != q:
                    # == _set(lad, mem, s, i, q), inline
                    if mem[S_TXN_NEW] or mem[S_DRAINED]:
                        _touch(mem)
                    lad[s, i] = q
                    if q > 0 and old == 0:
                        if i < mem[S_LO]:
                            mem[S_LO] = i
                        if i > mem[S_HI]:
                            mem[S_HI] = i
                    if s == 0:
                        if q > 0:
                            if old == 0:
                                mem[S_NB] += 1
                            if i > mem[S_BB]:
                                mem[S_BB] = i
                                mem[S_BID_PX] = mem[S_BASE] + i
                        else:
                            mem[S_NB] -= 1
                            if i == mem[S_BB]:
                                _rescan_bid(lad, mem, i)
                    else:
                        if q > 0:
                            if old == 0:
                                mem[S_NA] += 1
                            if i < mem[S_BA]:
                                mem[S_BA] = i
                                mem[S_ASK_PX] = mem[S_BASE] + i
                        else:
                            mem[S_NA] -= 1
                            if i == mem[S_BA]:
                                _rescan_ask(lad, mem, i)
                    if mem[S_LOG_LEVELS]:
                        _log_level(lad, mem, s, i)
            else:
                _replay_level(lad, mem, ob, s, i, q, t)
        elif kind == EV_TRADE:
            side = rows[r, M_SIDE]
            if mem[S_OWN_BID + (1 if side == BUY else 0)] > 0:
                _replay_trade(lad, mem, ob, side, rows[r, M_PX], rows[r, M_QTY], t)
        elif kind == EV_CLEAR:
            _clear_others(lad, mem, ob)
        else:
            mem[S_BAD_ROW] = r
            return E_KIND
        n = mem[S_NEV]
        if n > nev0 and (stop_on_event or n >= half):
            return r + 1
    return i1


# =================================================================================================
# one entry for the Python facade: numba compiles (and links) a kernel per entry point, ~5 s each
# on this box; one dispatcher compiles the lot once (the njit functions above stay callable from
# a numba driver such as a backtest loop).

OP_ADD = 1
OP_CANCEL = 2
OP_MARKET = 3
OP_REPLAY_LEVEL = 4
OP_REPLAY_TRADE = 5
OP_CLEAR = 6
OP_ADVANCE = 7
OP_PLACE = 8
OP_CANCEL_ORDER = 9
OP_MODIFY = 10
OP_OWN_LOTS = 11
OP_AVAILABLE = 12


@nb.njit(cache=True)
def call(lad, mem, op, a, b, c, d, e, f, g, h):
    """Run entry `op` with integer arguments a..h (unused ones 0); returns its int result."""
    if op == OP_ADD:
        return add(lad, mem, a, b, c)
    if op == OP_CANCEL:
        return cancel(lad, mem, a, b, c)
    if op == OP_MARKET:
        return market(lad, mem, a, b, c)
    if op == OP_REPLAY_LEVEL:
        return replay_level(lad, mem, a, b, c, d)
    if op == OP_REPLAY_TRADE:
        replay_trade(lad, mem, a, b, c, d)
        return OK
    if op == OP_CLEAR:
        clear_others(lad, mem, a)
        return OK
    if op == OP_ADVANCE:
        advance(lad, mem, a)
        return OK
    if op == OP_PLACE:
        return place(lad, mem, a, b, c, d, e, f, g, h)
    if op == OP_CANCEL_ORDER:
        return cancel_order(lad, mem, a, b, c, d)
    if op == OP_MODIFY:
        return modify_order(lad, mem, a, b, c, d, e)
    if op == OP_OWN_LOTS:
        return own_lots(lad, mem, a, b)
    if op == OP_AVAILABLE:
        return available(lad, mem, a, b)
    return E_KIND
