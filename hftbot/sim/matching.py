"""The matching engine's Python face: one symbol's book, our orders in it, and what happens when flow meets them.

One engine, two drivers. The simulator's market model sends everyone else's flow through it
(`add`, `cancel`, `market`), so our resting orders are hit in price-time priority; a backtest
drives it from a recording (`replay_level`, `replay_trade`, or whole arrays of rows through
`run`). Either way the work happens in the numba kernels of `hftbot.sim.kernels` over flat
arrays; this class only converts: Order objects and Binance strings for the venue, Decimal fees
and notionals for the account, lists for the publishers.

Price-time priority is exact for our orders: a new order joins the back of its level, so it waits
behind the whole displayed size; it advances when that size trades, and on an anonymous decrease
by the queue model's rule (`hftbot.sim.models`). The change log a publisher needs (the update id
of every transaction, the prices whose displayed size changed, the trades printed, the events of
our orders) is drained with `drain()`; the engine never formats a message.

Latency: with `LatencyModel(order_entry=..., order_response=...)` an order, cancel or modify
takes effect only once the engine's clock (the times given to `market`, `replay_*`, `advance`,
`run`) passes its send time plus the entry delay, and every `OrderEvent` carries `resp_ns`, when
its response reaches us. The simulator's server applies its own delays on its sockets and leaves
the engine's at zero (every request then takes effect at once, as before).

Pure logic: no I/O, no clocks (times are passed in), no global random state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache

import numpy as np
from numba import types as nbt

from hftbot.sim import kernels as k
from hftbot.sim.models import (  # noqa: F401  (re-exported: the venue, server and process import them here)
    QUEUE_MODELS,
    ConstantLatency,
    EmpiricalLatency,
    FeeModel,
    JitterLatency,
    LatencyModel,
    PowerProbQueue,
    ProportionalQueue,
    QueueModel,
    RiskAverseQueue,
)
from hftbot.sim.models import RATE_SCALE as _RATE_SCALE_INT

RATE_SCALE = Decimal(_RATE_SCALE_INT)

BUY = 1
SELL = -1

# Order statuses and execution types, spelled as Binance spells them.
NEW = "NEW"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
EXPIRED = "EXPIRED"
EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"
REJECTED = "REJECTED"
PENDING_NEW = "PENDING_NEW"  # not Binance's: sent, not yet at the matching engine (entry latency)
TRADE = "TRADE"
AMENDMENT = "AMENDMENT"

_STATUS = {
    k.ST_NEW: NEW,
    k.ST_PARTIALLY_FILLED: PARTIALLY_FILLED,
    k.ST_FILLED: FILLED,
    k.ST_CANCELED: CANCELED,
    k.ST_EXPIRED: EXPIRED,
    k.ST_EXPIRED_IN_MATCH: EXPIRED_IN_MATCH,
    k.ST_REJECTED: REJECTED,
    k.ST_PENDING_NEW: PENDING_NEW,
}
_STATUS_CODE = {v: c for c, v in _STATUS.items()}
_EXEC = {
    k.X_NEW: NEW,
    k.X_TRADE: TRADE,
    k.X_CANCELED: CANCELED,
    k.X_EXPIRED: EXPIRED,
    k.X_AMENDMENT: AMENDMENT,
    k.X_REJECTED: REJECTED,
}
_CLOSED = {k.ST_FILLED, k.ST_CANCELED, k.ST_EXPIRED, k.ST_EXPIRED_IN_MATCH, k.ST_REJECTED}
_TABLE_SLOTS = {
    "ord": k.S_OFF_ORD,
    "ev": k.S_OFF_EV,
    "pr": k.S_OFF_PR,
    "log": k.S_OFF_LOG,
    "req": k.S_OFF_REQ,
    "free": k.S_OFF_FREE,
    "lat_e": k.S_OFF_LAT_E,
    "lat_r": k.S_OFF_LAT_R,
}
_TYPES = {"LIMIT": k.T_LIMIT, "MARKET": k.T_MARKET}
_TIFS = {"GTC": k.TIF_GTC, "IOC": k.TIF_IOC, "FOK": k.TIF_FOK, "GTX": k.TIF_GTX}

# the simulator calls the methods below a few times per market event: module-level names (one
# lookup, not two) and the kernels the market model needs as direct entries (~150 ns less than
# `kernels.call`); see docs/matching.md for what each costs
_S_BASE = k.S_BASE
_S_BID_PX = k.S_BID_PX
_S_ASK_PX = k.S_ASK_PX
_S_TXN_NEW = k.S_TXN_NEW
_S_FIRST_PENDING = k.S_FIRST_PENDING
_S_UPDATE_ID = k.S_UPDATE_ID
_S_NLOG = k.S_NLOG
_S_NPRINT = k.S_NPRINT
_S_LOST = k.S_LOST
_S_DRAINED = k.S_DRAINED
_S_NREQ = k.S_NREQ
_S_NOW_NS = k.S_NOW_NS
_S_RESP_CUR = k.S_RESP_CUR
_S_NEV = k.S_NEV


@cache
def _entries() -> dict[str, Callable[..., int]]:
    """The compiled functions behind the kernels' dispatchers, for the facade to call directly.

    A call through a numba dispatcher first resolves the type of every argument (~450 ns here for
    two arrays and a few ints); the compiled overload's entry point skips that (~250 ns). The
    facade always passes its own C-contiguous int64 arrays and Python ints, which is exactly the
    signature compiled here. Compiled, or loaded from numba's cache, on the first engine built.
    """
    lad, mem, i = nbt.Array(nbt.int64, 2, "C"), nbt.Array(nbt.int64, 1, "C"), nbt.int64
    sigs = {
        "add": (k.add, (lad, mem, i, i, i)),
        "cancel": (k.cancel, (lad, mem, i, i, i)),
        "market": (k.market, (lad, mem, i, i, i)),
        "call": (k.call, (lad, mem) + (i,) * 9),
        "depth": (k.depth, (lad, mem, i, i, lad)),
        "run_rows": (k.run_rows, (lad, mem, lad, i, i, i)),
    }
    return {name: disp.compile(sig) for name, (disp, sig) in sigs.items()}


# Binance's wording of the refusals the engine itself makes
REJECT_MESSAGES = {
    -4116: "ClientOrderId is duplicated.",
    -5022: "Due to the order could not be executed as maker, the Post Only order will be rejected. "
    "The order will not be recorded in the order history",
    -5021: "Due to the order could not be filled immediately, the FOK order has been rejected. "
    "The order will not be recorded in the order history",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -4127: "Only limit order is supported.",
    -5027: "No need to modify the order.",
    -2025: "Reach max open order limit.",
}


class RejectError(Exception):
    """An order the engine refuses; `code` is the Binance error code the venue answers with."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


# ---------------------------------------------------------------------------------------------
# Our orders and their events.


@dataclass
class Order:
    """One of our orders. Prices in ticks, quantities in lots.

    The engine keeps the fields current after every call (from its events); `others_ahead` is
    read live from the engine while the order rests."""

    order_id: int
    client_id: str
    side: int  # BUY / SELL
    type: str  # LIMIT / MARKET
    tif: str  # GTC / IOC / FOK / GTX (MARKET: GTC, as Binance reports)
    px: int  # limit price in ticks (MARKET: 0)
    qty: int  # original quantity in lots
    time_ns: int
    reduce_only: bool = False
    filled: int = 0
    cum_quote: Decimal = Decimal(0)  # sum of px*qty*tick*lot over fills
    status: str = NEW
    update_ns: int = 0
    modify_count: int = 0
    cum_fee: Decimal = Decimal(0)  # fees paid so far, quote

    _engine = None  # the engine that holds it (set by place)

    @property
    def remaining(self) -> int:
        return self.qty - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in (NEW, PARTIALLY_FILLED)

    @property
    def others_ahead(self) -> int:
        """Everyone else's lots queued ahead of this order at its level (0 when not resting)."""
        eng = self._engine
        return eng.queue_ahead(self) if eng is not None and self.is_open else 0


@dataclass(slots=True)
class OrderEvent:
    """Something that happened to one of our orders (becomes ORDER_TRADE_UPDATE)."""

    order: Order
    exec_type: str  # NEW, TRADE, CANCELED, EXPIRED, AMENDMENT, REJECTED
    status: str  # order status after the event
    time_ns: int
    last_qty: int = 0
    last_px: int = 0
    fee: Decimal = Decimal(0)
    maker: bool = False
    trade_id: int = 0
    expire_reason: int = 0
    reject_code: int = 0  # REJECTED: the Binance code
    resp_ns: int = 0  # when the response reaches us (time_ns + response latency)


@dataclass(slots=True)
class Print:
    """One aggregated trade: one taker order against one price level."""

    px: int
    qty: int
    taker_buy: bool
    first_id: int
    last_id: int
    time_ns: int


@dataclass(slots=True)
class Changes:
    """What one drain of the change log holds."""

    first_update_id: int
    last_update_id: int
    bids: list[int]  # prices whose displayed size changed
    asks: list[int]
    prints: list[Print]
    order_events: list[OrderEvent] = field(default_factory=list)


class _Side(Mapping):
    """One side of the book as a read-only mapping px -> displayed lots (the market model and the
    publishers read it like the dict it used to be)."""

    __slots__ = ("_base", "_lad", "_mv", "_n_slot", "_row", "_s")

    def __init__(self, lad: np.ndarray, mv: memoryview, s: int) -> None:
        self._mv = mv
        self._s = s
        self._n_slot = k.S_NB + s
        self._bind(lad)

    def _bind(self, lad: np.ndarray) -> None:
        """Follow the engine's ladder and window (both change when it is re-gridded)."""
        self._lad = lad
        self._row = memoryview(lad[self._s])
        self._base = self._mv[_S_BASE]

    # the row's memoryview bounds the index (IndexError past the window); a negative index would
    # wrap around, so it is checked first
    def __getitem__(self, px: int) -> int:
        i = px - self._base
        if i >= 0:
            try:
                q = self._row[i]
            except IndexError:
                raise KeyError(px) from None
            if q:
                return q
        raise KeyError(px)

    def get(self, px: int, default: int | None = None) -> int | None:  # type: ignore[override]
        i = px - self._base
        if i >= 0:
            try:
                q = self._row[i]
            except IndexError:
                return default
            if q:
                return q
        return default

    def __contains__(self, px: object) -> bool:
        i = px - self._base  # type: ignore[operator]
        if i < 0:
            return False
        try:
            return self._row[i] != 0
        except IndexError:
            return False

    def __len__(self) -> int:
        return self._mv[self._n_slot]

    def _occupied(self) -> np.ndarray:
        lo, hi = self._mv[k.S_LO], self._mv[k.S_HI]
        if hi < lo:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self._lad[self._s, lo : hi + 1]) + lo

    def __iter__(self) -> Iterator[int]:
        return iter((self._occupied() + self._base).tolist())

    def items(self) -> list[tuple[int, int]]:  # type: ignore[override]
        idx = self._occupied()
        return list(zip((idx + self._base).tolist(), self._lad[self._s, idx].tolist(), strict=True))

    def values(self) -> list[int]:  # type: ignore[override]
        return self._lad[self._s, self._occupied()].tolist()


class MatchingEngine:
    """One symbol's book with our orders queued inside it (numba kernels over arrays inside).

    tick, lot: the instrument's steps (floats; exact decimals via repr). width, center_px: the
    ladder window, prices center_px ± width/2 ticks; a price outside it re-grids the ladder
    (`regrid`: re-centred, or doubled up to max_width slots). capacity: our orders held at once (open or
    waiting under entry latency). log_levels: keep the changed-price log for publishers (a
    backtest can switch it off). seed: the engine's random stream (latency draws). history: closed
    orders kept in `orders` (the newest; an older one is forgotten when one more closes), so a
    simulator that runs for days holds a bounded history — Binance too stops answering for old
    orders (unfilled cancels after 3 days, everything after 90).

    Prices, quantities and times are ints (Python or numpy): the compiled kernels are called
    directly with int64 arguments, so a float would be truncated, not refused.
    """

    def __init__(
        self,
        tick: float = 0.01,
        lot: float = 0.01,
        fees: FeeModel | None = None,
        queue: QueueModel | None = None,
        update_id: int = 1_000_000,
        latency: LatencyModel | None = None,
        width: int = k.DEFAULT_WIDTH,
        capacity: int = 1024,
        events: int = 0,
        prints: int = 1 << 16,
        log_levels: bool = True,
        seed: int = 0,
        max_width: int = 1 << 25,
        center_px: int = 0,
        history: int = 50_000,
    ) -> None:
        if width < 16 or capacity < 1 or prints < 1 or history < 0:
            raise ValueError(
                f"matching engine: width {width} / capacity {capacity} / prints {prints} / history {history} "
                "out of range"
            )
        self.tick = tick
        self.lot = lot
        self.fees = fees if fees is not None else FeeModel()
        self.queue = queue if queue is not None else RiskAverseQueue()
        if self.queue.code < 0:
            raise ValueError(f"matching engine: unknown queue model {self.queue!r}")
        self.latency = latency if latency is not None else LatencyModel()
        ecap = events or max(4096, 8 * capacity)
        lcap = 1 << 16
        rcap = capacity * 4
        e_code, e_base, e_mean, e_samples = self.latency.order_entry.kernel_params()
        r_code, r_base, r_mean, r_samples = self.latency.order_response.kernel_params()
        off = k.S_SIZE
        offs = {}
        for name, size in (
            ("ord", capacity * k.OF),
            ("ev", ecap * k.EF),
            ("pr", prints * k.PF),
            ("log", lcap * k.LF),
            ("req", rcap * k.QF),
            ("free", capacity),
            ("lat_e", len(e_samples)),
            ("lat_r", len(r_samples)),
        ):
            offs[name] = off
            off += size
        mem = np.zeros(off, dtype=np.int64)
        self.lad = np.zeros((k.LAD_ROWS, width), dtype=np.int64)  # untouched pages cost no memory
        self.mem = mem
        mem[k.S_WIDTH] = width
        mem[k.S_BASE] = center_px - width // 2
        mem[k.S_BB] = -1
        mem[k.S_BA] = width
        mem[k.S_LO] = width
        mem[k.S_HI] = -1
        mem[k.S_UPDATE_ID] = update_id
        mem[k.S_NEXT_TRADE] = 1
        mem[k.S_LOG_LEVELS] = int(log_levels)
        mem[k.S_GEN] = 1
        mem[k.S_CAP] = capacity
        mem[k.S_NFREE] = capacity
        mem[k.S_QUEUE] = self.queue.code
        mem.view(np.float64)[k.F_QUEUE_POWER] = float(self.queue.power)
        mem[k.S_ENTRY : k.S_ENTRY + 4] = (e_code, e_base, e_mean, len(e_samples))
        mem[k.S_RESP : k.S_RESP + 4] = (r_code, r_base, r_mean, len(r_samples))
        mem[k.S_RNG] = seed
        mem[k.S_MAKER_E8] = self.fees.maker_e8
        mem[k.S_TAKER_E8] = self.fees.taker_e8
        mem[k.S_RESP_CUR] = -1
        for name, slot in _TABLE_SLOTS.items():
            mem[slot] = offs[name]
        mem[k.S_ECAP] = ecap
        mem[k.S_PCAP] = prints
        mem[k.S_LCAP] = lcap
        mem[k.S_RCAP] = rcap
        # free slots popped from the end: slot 0 first
        mem[offs["free"] : offs["free"] + capacity] = np.arange(capacity - 1, -1, -1)
        mem[offs["lat_e"] : offs["lat_e"] + len(e_samples)] = e_samples
        mem[offs["lat_r"] : offs["lat_r"] + len(r_samples)] = r_samples
        # structured views of the tables (same memory the kernels write)
        self.order_table = mem[offs["ord"] : offs["ord"] + capacity * k.OF].view(k.ORDER_DTYPE)
        self.event_table = mem[offs["ev"] : offs["ev"] + ecap * k.EF].view(k.EVENT_DTYPE)
        self._ev2d = mem[offs["ev"] : offs["ev"] + ecap * k.EF].reshape(ecap, k.EF)
        self._log_mv = memoryview(mem[offs["log"] : offs["log"] + lcap * k.LF])
        self._log_off = offs["log"]
        self._pr_mv = memoryview(mem[offs["pr"] : offs["pr"] + prints * k.PF])
        self._mv = memoryview(mem)
        self._ord_mv = memoryview(mem[offs["ord"] : offs["ord"] + capacity * k.OF])
        self.bids = _Side(self.lad, self._mv, 0)
        self.asks = _Side(self.lad, self._mv, 1)
        self.best_bid = 0  # 0: side empty (kept current after every call)
        self.best_ask = 0
        self.orders: dict[int, Order] = {}  # our open orders and the newest `history` closed ones, by id
        self.history = history
        self._closed: deque[int] = deque()  # ids of closed orders in `orders`, oldest first
        self._open: dict[int, Order] = {}  # open (or pending) orders by id, in placement order
        self._by_client: dict[str, Order] = {}  # open orders by client id
        self._closed_by_client: dict[str, int] = {}  # client id -> its newest closed order in `orders`
        self._slots: dict[int, int] = {}  # order id -> slot in the order table
        self._events: list[OrderEvent] = []  # converted, not yet drained
        self._next_order_id = 1
        self._notional_unit = Decimal(repr(tick)) * Decimal(repr(lot))
        self._fee_unit = self._notional_unit / RATE_SCALE
        self._max_notional_e8 = max(abs(self.fees.maker_e8), abs(self.fees.taker_e8), 1)
        self._depth_out = np.zeros((64, 2), dtype=np.int64)
        entries = _entries()
        self._add, self._cancel, self._market = entries["add"], entries["cancel"], entries["market"]
        self._call, self._depth, self._run_rows = entries["call"], entries["depth"], entries["run_rows"]
        self.max_width = max(width, max_width)
        self.regrids = 0  # times the ladder window was re-centred or widened

    # -- state --------------------------------------------------------------------------------

    @property
    def update_id(self) -> int:
        """Last update id used; ids strictly increase per transaction that changes the book."""
        return self._mv[k.S_UPDATE_ID]

    @update_id.setter
    def update_id(self, v: int) -> None:
        self._mv[k.S_UPDATE_ID] = int(v)

    @property
    def update_gap(self) -> int:
        """Extra ids skipped per transaction (real ids are shared across symbols)."""
        return self._mv[k.S_GAP]

    @update_gap.setter
    def update_gap(self, v: int) -> None:
        self._mv[k.S_GAP] = int(v)

    @property
    def now_ns(self) -> int:
        """The engine's clock: the latest time it was given."""
        return self._mv[k.S_NOW_NS]

    @property
    def far_levels(self) -> int:
        """Replayed level updates dropped because their price lies outside the ladder window."""
        return self._mv[k.S_FAR]

    @property
    def next_trade_id(self) -> int:
        return self._mv[k.S_NEXT_TRADE]

    def _after(self) -> None:
        """After every kernel call: the cached best prices, then our orders from the new events."""
        mv = self._mv
        self.best_bid = mv[_S_BID_PX]
        self.best_ask = mv[_S_ASK_PX]
        if mv[_S_NEV]:
            self._sync()

    def _sync(self) -> None:
        mv = self._mv
        n = mv[k.S_NEV]
        if mv[k.S_EV_LOST]:
            raise RuntimeError(f"matching engine: {mv[k.S_EV_LOST]} order events lost (event table full)")
        rows = self._ev2d[:n].tolist()
        mv[k.S_NEV] = 0
        nu, fu = self._notional_unit, self._fee_unit
        for r in rows:
            oid = r[k.E_ORDER_ID]
            o = self.orders.get(oid)
            if o is None:  # placed through the kernels directly (a numba driver): not ours to track
                continue
            st = r[k.E_STATUS]
            if st != k.ST_UNCHANGED:
                o.status = _STATUS[st]
                o.filled = r[k.E_FILLED]
                o.cum_quote = Decimal(r[k.E_CUM_NOTIONAL]) * nu
                o.cum_fee = Decimal(r[k.E_CUM_FEE]) * fu
                o.px = r[k.E_PX]
                o.qty = r[k.E_QTY]
                o.modify_count = r[k.E_MODS]
                o.update_ns = r[k.E_TIME_NS]
                if r[k.E_EXEC] == k.X_NEW:
                    o.time_ns = r[k.E_TIME_NS]
                if st in _CLOSED:
                    self._open.pop(oid, None)
                    self._slots.pop(oid, None)
                    if self._by_client.get(o.client_id) is o:
                        del self._by_client[o.client_id]
                    closed = self._closed
                    closed.append(oid)
                    self._closed_by_client[o.client_id] = oid
                    if len(closed) > self.history:  # bounded: the oldest closed order is forgotten
                        old = self.orders.pop(closed.popleft(), None)
                        if old is not None and self._closed_by_client.get(old.client_id) == old.order_id:
                            del self._closed_by_client[old.client_id]
            self._events.append(
                OrderEvent(
                    o,
                    _EXEC[r[k.E_EXEC]],
                    o.status,
                    r[k.E_TIME_NS],
                    r[k.E_LAST_QTY],
                    r[k.E_LAST_PX],
                    Decimal(r[k.E_FEE]) * fu,
                    bool(r[k.E_MAKER]),
                    r[k.E_TRADE_ID],
                    r[k.E_REASON],
                    r[k.E_REJECT],
                    r[k.E_RESP_NS],
                )
            )

    # -- change log ---------------------------------------------------------------------------

    def begin(self) -> None:
        """Start a transaction: the book changes until the next begin() share one update id.

        The id is taken at the first change, so a transaction that changes nothing (a rejected
        order, a cancel of an empty level) uses none: every id a snapshot can report is in a diff.
        """
        self._mv[_S_TXN_NEW] = 1

    def drain(self) -> Changes | None:
        """Take the changes since the last drain (None when nothing happened)."""
        mv = self._mv
        first = mv[_S_FIRST_PENDING]
        if not first:
            if self._events:  # order events with no book change
                ev, self._events = self._events, []
                return Changes(0, 0, [], [], [], ev)
            return None
        if mv[_S_LOST]:
            raise RuntimeError(
                f"matching engine: change log overflow ({mv[k.S_LOG_LOST]} levels, "
                f"{mv[k.S_PRINT_LOST]} prints lost): drain more often"
            )
        nlog = mv[_S_NLOG]
        if nlog == 1:  # the usual transaction: one level (read in place, no slice)
            o = self._log_off
            if mv[o] == BUY:
                bids, asks = [mv[o + 1]], []
            else:
                bids, asks = [], [mv[o + 1]]
        else:
            bids, asks = [], []
            if nlog:
                flat = self._log_mv[: 2 * nlog].tolist()  # (side, px) pairs
                for j in range(0, 2 * nlog, 2):
                    (bids if flat[j] == BUY else asks).append(flat[j + 1])
        prints: list[Print] = []
        npr = mv[_S_NPRINT]
        if npr:
            flat = self._pr_mv[: k.PF * npr].tolist()
            for j in range(0, k.PF * npr, k.PF):
                prints.append(
                    Print(flat[j], flat[j + 1], bool(flat[j + 2]), flat[j + 3], flat[j + 4], flat[j + 5])
                )
        ch = Changes(first, mv[_S_UPDATE_ID], bids, asks, prints, self._events)
        mv[_S_FIRST_PENDING] = 0
        mv[_S_DRAINED] = 1  # the kernels empty the logs at the next change
        self._events = []
        return ch

    # -- book queries -----------------------------------------------------------------------

    def level(self, side: int, px: int) -> int:
        """Displayed lots at a price on one side (BUY: bids)."""
        return (self.bids if side == BUY else self.asks).get(px, 0)

    def own_lots(self, side: int, px: int) -> int:
        return self._call(self.lad, self.mem, k.OP_OWN_LOTS, side, px, 0, 0, 0, 0, 0, 0)

    def others(self, side: int, px: int) -> int:
        """Everyone else's lots at a level."""
        return self.level(side, px) - self.own_lots(side, px)

    def depth(self, side: int, n: int, max_scan: int = 100_000) -> list[tuple[int, int]]:
        """The best `n` levels of one side as (px, lots), best first (`max_scan` is kept for
        callers of the old engine; the ladder walk is bounded by the occupied range)."""
        if n <= 0:
            return []
        if n > len(self._depth_out):
            self._depth_out = np.zeros((max(n, 2 * len(self._depth_out)), 2), dtype=np.int64)
        m = self._depth(self.lad, self.mem, side, n, self._depth_out)
        return [(p, q) for p, q in self._depth_out[:m].tolist()]

    def crosses(self, side: int, px: int) -> bool:
        if side == BUY:
            return bool(self.best_ask) and px >= self.best_ask
        return bool(self.best_bid) and px <= self.best_bid

    def available(self, taker_side: int, limit_px: int) -> int:
        """Lots a taker could fill up to `limit_px` (0: no limit), our own resting orders excluded."""
        return self._call(self.lad, self.mem, k.OP_AVAILABLE, taker_side, limit_px, 0, 0, 0, 0, 0, 0)

    def notional(self, px: int, lots: int) -> Decimal:
        """Exact quote notional of `lots` at `px`."""
        return Decimal(px * lots) * self._notional_unit

    def queue_ahead(self, o: Order) -> int:
        slot = self._slots.get(o.order_id)
        if slot is None:
            return 0
        return self._ord_mv[slot * k.OF + k.O_AHEAD]

    # -- everyone else's flow (the market model, or a replay) -------------------------------

    def add(self, side: int, px: int, lots: int) -> None:
        """Someone else's limit order joins the back of a level (must not cross)."""
        r = self._add(self.lad, self.mem, side, px, lots)
        if r:
            if r == k.E_RANGE and self.regrid(px):
                r = self._add(self.lad, self.mem, side, px, lots)
            if r:
                self._raise_book(r, side, px, "add")
        mv = self._mv
        self.best_bid = mv[_S_BID_PX]
        self.best_ask = mv[_S_ASK_PX]

    def cancel(self, side: int, px: int, lots: int) -> int:
        """Someone else cancels up to `lots` at a level; returns the lots actually removed."""
        c = self._cancel(self.lad, self.mem, side, px, lots)
        mv = self._mv
        self.best_bid = mv[_S_BID_PX]
        self.best_ask = mv[_S_ASK_PX]
        return c

    def market(self, taker_side: int, lots: int, time_ns: int) -> int:
        """Someone else's market order sweeps the book; returns the lots filled."""
        done = self._market(self.lad, self.mem, taker_side, lots, time_ns)
        self._after()
        return done

    def replay_level(self, side: int, px: int, lots: int, time_ns: int | None = None) -> None:
        """Replay: a diff says a level now shows `lots` (everyone else's, absolute).

        A decrease net of the trades `replay_trade` already applied at the level is an anonymous
        cancel (the queue model splits it); an increase joins behind us; a level that reaches our
        orders on the other side fills them. A price outside the ladder window re-grids it; past
        the widest window it is counted in `far_levels` and dropped.
        """
        t = self.now_ns if time_ns is None else time_ns
        r = self._call(self.lad, self.mem, k.OP_REPLAY_LEVEL, side, px, lots, t, 0, 0, 0, 0)
        if r == k.E_RANGE:
            if self.regrid(px):
                self._call(self.lad, self.mem, k.OP_REPLAY_LEVEL, side, px, lots, t, 0, 0, 0, 0)
            else:
                self._mv[k.S_FAR] += 1
        self._after()

    def replay_trade(self, taker_buy: bool, px: int, lots: int, time_ns: int) -> None:
        """Replay: a recorded trade prints; it fills our orders it reaches (the book follows by diff).

        A trade through our price fills us fully; a trade at our price first eats what is ahead.
        """
        self._call(
            self.lad, self.mem, k.OP_REPLAY_TRADE, BUY if taker_buy else SELL, px, lots, time_ns, 0, 0, 0, 0
        )
        self._after()

    def clear_others(self, time_ns: int | None = None) -> None:
        """Replay: everyone else's levels are cleared (a snapshot follows); our orders stay and go
        to the back of their level at its next update (their queue place is unknown)."""
        t = self.now_ns if time_ns is None else time_ns
        self._call(self.lad, self.mem, k.OP_CLEAR, t, 0, 0, 0, 0, 0, 0, 0)
        self._after()

    def advance(self, now_ns: int) -> None:
        """The engine's clock reaches `now_ns`: requests due by then take effect.

        With no request in flight this is all the kernel would do (`kernels._clock`): the clock
        moves and the next step draws a fresh response delay; done here, without the call (the
        backtester advances at every record, nearly always with nothing in flight)."""
        mv = self._mv
        if not mv[_S_NREQ]:
            if now_ns > mv[_S_NOW_NS]:
                mv[_S_NOW_NS] = now_ns
            mv[_S_RESP_CUR] = -1
            return
        self._call(self.lad, self.mem, k.OP_ADVANCE, now_ns, 0, 0, 0, 0, 0, 0, 0)
        self._after()

    @property
    def has_order_events(self) -> bool:
        """Whether order events wait for `drain` (a reader of order events alone may skip it)."""
        return bool(self._events)

    def run(
        self, rows: np.ndarray, start: int = 0, stop: int | None = None, stop_on_event: bool = False
    ) -> int:
        """Replay MARKET_EVENT_DTYPE rows [start, stop); returns the next row to apply (see
        `kernels.run_rows`: it stops early after an order event when asked, or to drain events)."""
        if rows.dtype != k.MARKET_EVENT_DTYPE:
            raise ValueError(f"matching engine: rows must be kernels.MARKET_EVENT_DTYPE, got {rows.dtype}")
        words = np.ascontiguousarray(rows).view(np.int64).reshape(len(rows), k.MEF)
        stop = len(rows) if stop is None else stop
        i = start
        while i < stop:
            r = self._run_rows(self.lad, self.mem, words, i, stop, int(stop_on_event))
            if r == k.E_RANGE:  # a level outside the window: widen it and resume at that row
                i = self._mv[k.S_BAD_ROW]
                if not self.regrid(int(words[i, k.M_PX])):
                    self._mv[k.S_FAR] += 1
                    i += 1
                self._after()
                continue
            if r < 0:
                bad = self._mv[k.S_BAD_ROW]
                raise ValueError(f"matching engine: row {bad} has unknown kind {int(rows['kind'][bad])}")
            i = r
            self._after()
            if stop_on_event:
                break
        return i

    def _fits(self, px: int) -> bool:
        mv = self._mv
        return 0 <= px - mv[k.S_BASE] < mv[k.S_WIDTH]

    def fit(self, lo_px: int, hi_px: int) -> bool:
        """Size the ladder window for prices lo_px..hi_px up front (a replay knows its range), so
        that the replay never stops to re-grid. False when the range exceeds `max_width`."""
        if lo_px > hi_px:
            raise ValueError(f"fit: lo_px {lo_px} > hi_px {hi_px}")
        return self.regrid(lo_px, hi_px, margin=1.125, recentre=self._mv[k.S_HI] < self._mv[k.S_LO])

    def regrid(self, px: int, px2: int | None = None, margin: float = 2.0, recentre: bool = False) -> bool:
        """Re-centre (or widen, doubling) the ladder so that `px` (and `px2`) and every occupied
        level fit, with `margin` times the span when it must widen (`recentre`: even when they
        fit already).

        False when that needs more than `max_width` slots (the caller then refuses or drops the
        level). Copies only the occupied slots, so untouched pages stay unallocated.
        """
        mv = self._mv
        base, width = mv[k.S_BASE], mv[k.S_WIDTH]
        lo, hi = mv[k.S_LO], mv[k.S_HI]
        lo_px, hi_px = min(px, px if px2 is None else px2), max(px, px if px2 is None else px2)
        if hi >= lo:
            lo_px, hi_px = min(lo_px, base + lo), max(hi_px, base + hi)
        for o in self._open.values():  # orders still on their way must fit too
            if o.px > 0:
                lo_px, hi_px = min(lo_px, o.px), max(hi_px, o.px)
        need = hi_px - lo_px + 1
        if base <= lo_px and hi_px < base + width and not recentre:
            return True
        new_width = width
        while new_width < margin * need:
            new_width *= 2
        if new_width > self.max_width:
            if need > self.max_width:
                return False
            new_width = self.max_width
        new_base = (lo_px + hi_px) // 2 - new_width // 2
        new = np.zeros((k.LAD_ROWS, new_width), dtype=np.int64)
        shift = base - new_base
        if hi >= lo:
            for row in range(k.LAD_ROWS):
                seg = self.lad[row, lo : hi + 1]
                nz = np.flatnonzero(seg)
                new[row, nz + lo + shift] = seg[nz]
            mv[k.S_LO], mv[k.S_HI] = lo + shift, hi + shift
        else:
            mv[k.S_LO], mv[k.S_HI] = new_width, -1
        bb, ba = mv[k.S_BB], mv[k.S_BA]
        mv[k.S_BB] = bb + shift if bb >= 0 else -1
        mv[k.S_BA] = ba + shift if ba < width else new_width
        mv[k.S_BASE], mv[k.S_WIDTH] = new_base, new_width
        self.lad = new
        self.bids._bind(new)
        self.asks._bind(new)
        self.regrids += 1
        return True

    def _raise_book(self, r: int, side: int, px: int, what: str) -> None:
        if r == k.E_CROSS:
            if side == BUY:
                raise ValueError(f"{what} would cross: bid {px} >= best ask {self.best_ask}")
            raise ValueError(f"{what} would cross: ask {px} <= best bid {self.best_bid}")
        if r == k.E_RANGE:
            base = self._mv[k.S_BASE]
            raise ValueError(
                f"{what}: price {px} ticks outside the engine's window [{base}, {base + self._mv[k.S_WIDTH]})"
            )
        if r == k.E_PRICE:
            raise ValueError(f"{what}: price must be > 0 ticks, got {px}")
        if r == k.E_QTY:
            raise ValueError(f"{what}: quantity must be > 0 lots")
        if r == k.E_FULL:
            raise RuntimeError(f"{what}: {self._mv[k.S_RCAP]} requests already wait out their entry latency")
        raise RejectError(r, REJECT_MESSAGES.get(r, f"rejected ({r})"))

    # -- our orders -------------------------------------------------------------------------

    def new_order_id(self) -> int:
        oid = self._next_order_id
        self._next_order_id += 1
        return oid

    def open_order(self, client_id: str) -> Order | None:
        return self._by_client.get(client_id)

    def order_by_client(self, client_id: str) -> Order | None:
        """The open order with this client id, else the newest closed one still in the history
        (a dict lookup either way: an order-status query must not scan 50,000 orders)."""
        o = self._by_client.get(client_id)
        if o is not None:
            return o
        oid = self._closed_by_client.get(client_id)
        return self.orders.get(oid) if oid is not None else None

    def open_orders(self) -> list[Order]:
        """Our open orders (and, under entry latency, those still on their way), oldest first."""
        return list(self._open.values())

    def place(self, o: Order) -> Order:
        """Match and/or rest one of our orders. Raises RejectError for GTX/FOK that cannot stand.

        The caller has opened a transaction (`begin`) and validated filters. Under entry latency
        the order waits (status PENDING_NEW) and a refusal arrives later as a REJECTED event.
        """
        if o.client_id in self._by_client:
            raise RejectError(-4116, REJECT_MESSAGES[-4116])
        typ = _TYPES.get(o.type)
        tif = _TIFS.get(o.tif, k.TIF_GTC if typ == k.T_MARKET else None)  # a MARKET order has none
        if typ is None or tif is None:
            raise ValueError(f"place: unknown order type {o.type!r} / time in force {o.tif!r}")
        if typ == k.T_LIMIT and o.px > 0 and not self._fits(o.px):
            self.regrid(o.px)  # when it cannot, the kernel's E_RANGE names the window
        top = o.px if typ == k.T_LIMIT else self._mv[k.S_BASE] + self._mv[k.S_WIDTH]
        if o.qty * max(top, 1) > k.INT63 // self._max_notional_e8:
            raise ValueError(f"place: {o.qty} lots at {top} ticks overflows the exact fee arithmetic")
        r = self._call(
            self.lad,
            self.mem,
            k.OP_PLACE,
            o.order_id,
            o.side,
            typ,
            tif,
            o.px,
            o.qty,
            o.time_ns,
            int(o.reduce_only),
        )
        if r < 0:
            self._after()
            self._raise_book(r, o.side, o.px, "place")
        self.orders[o.order_id] = o
        self._open[o.order_id] = o
        self._by_client[o.client_id] = o
        self._slots[o.order_id] = r
        o._engine = self
        if self._ord_mv[r * k.OF + k.O_STATE] == k.OS_PENDING:  # queued under entry latency
            o.status = PENDING_NEW
        self._after()
        return o

    def cancel_order(self, o: Order, time_ns: int, status: str = CANCELED) -> Order:
        """Cancel one of our open orders (caller opened a transaction)."""
        slot = self._slots.get(o.order_id)
        if slot is None or not (o.is_open or o.status == PENDING_NEW):
            raise RejectError(-2011, REJECT_MESSAGES[-2011])
        r = self._call(
            self.lad, self.mem, k.OP_CANCEL_ORDER, slot, o.order_id, time_ns, _STATUS_CODE[status], 0, 0, 0, 0
        )
        if r < 0:
            self._after()
            self._raise_book(r, o.side, o.px, "cancel")
        self._after()
        return o

    def modify_order(self, o: Order, px: int, qty: int, time_ns: int) -> Order:
        """Amend price/quantity of an open LIMIT order; it loses its queue place (Binance rule).

        Cancels it when the new quantity is not above what already filled, or when a GTX amend
        would cross (as Binance does).
        """
        slot = self._slots.get(o.order_id)
        if slot is None or not (o.is_open or o.status == PENDING_NEW):
            raise RejectError(-2013, REJECT_MESSAGES[-2013])
        if o.type != "LIMIT":
            raise RejectError(-4127, REJECT_MESSAGES[-4127])
        if px > 0 and not self._fits(px):
            self.regrid(px)
        r = self._call(self.lad, self.mem, k.OP_MODIFY, slot, o.order_id, px, qty, time_ns, 0, 0, 0)
        if r < 0:
            self._after()
            self._raise_book(r, o.side, px, "modify")
        self._after()
        return o


def warm_up() -> None:
    """Compile (or load from the numba cache) every kernel the engine calls, with one small run."""
    e = MatchingEngine(width=1 << 12)
    e.begin()
    e.add(BUY, 100, 5)
    e.add(SELL, 101, 5)
    e.cancel(BUY, 100, 1)
    e.depth(BUY, 2)
    e.own_lots(BUY, 100)
    e.available(BUY, 0)
    o = Order(e.new_order_id(), "w1", BUY, "LIMIT", "GTC", 100, 2, 1)
    e.place(o)
    e.modify_order(o, 100, 3, 2)
    e.cancel_order(o, 3)
    e.market(SELL, 1, 4)
    e.replay_level(BUY, 99, 3, 5)
    e.replay_trade(True, 101, 1, 6)
    e.clear_others(7)
    e.advance(8)
    rows = np.zeros(1, dtype=k.MARKET_EVENT_DTYPE)
    rows[0] = (9, 9, k.EV_LEVEL, BUY, 100, 1, 0)
    e.run(rows)
    e.drain()
