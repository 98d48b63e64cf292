"""The matching engine: one symbol's order book, our orders in it, and what happens when flow meets them.

The book holds everyone else's liquidity as one displayed quantity per price level (integer ticks,
integer lots) plus *our* orders, each knowing how much of everyone else's quantity is queued ahead
of it. Price-time priority is exact for our orders: a new order joins the back of its level, so it
waits behind the whole displayed size; it advances only when that size trades or is cancelled
(how a cancel in an anonymous level is split between "ahead of us" and "behind us" is the
`QueueModel`'s choice). The same engine serves the simulator (the market model sends its flow
through it, so our resting orders are hit in priority) and the backtester (`replay_level` /
`replay_trade` drive it from a recording).

It also keeps the change log a publisher needs: the update id of every transaction, the prices
whose displayed size changed, the trades printed, and the events of our orders. Publishers drain
those logs; the engine never formats a message.

Pure logic: no I/O, no clocks (times are passed in), no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

BUY = 1
SELL = -1

# Order statuses and execution types, spelled as Binance spells them.
NEW = "NEW"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
EXPIRED = "EXPIRED"
EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"
TRADE = "TRADE"
AMENDMENT = "AMENDMENT"


class RejectError(Exception):
    """An order the engine refuses; `code` is the Binance error code the venue answers with."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


# ---------------------------------------------------------------------------------------------
# Small swappable models: fees, queue position, latency.


@dataclass(frozen=True)
class FeeModel:
    """Maker/taker rates as fractions of notional (Binance USDⓈ-M VIP 0: 0.0002 / 0.0005)."""

    maker: Decimal = Decimal("0.0002")
    taker: Decimal = Decimal("0.0005")

    def fee(self, notional: Decimal, maker: bool) -> Decimal:
        """Exact fee in quote currency for one fill."""
        return notional * (self.maker if maker else self.taker)


class QueueModel:
    """How an anonymous cancel at our level moves the quantity queued ahead of our orders."""

    name = "base"

    def ahead_after_cancel(self, ahead: int, others: int, cancelled: int) -> int:
        """New quantity ahead of an order, given `others` (before) lost `cancelled` lots."""
        raise NotImplementedError


class RiskAverseQueue(QueueModel):
    """Cancels come from behind us first: we only advance when the level shrinks below our place.

    The pessimistic choice (hftbacktest's RiskAdverseQueueModel): fills are never overstated.
    """

    name = "risk_averse"

    def ahead_after_cancel(self, ahead: int, others: int, cancelled: int) -> int:
        return min(ahead, others - cancelled)


class ProportionalQueue(QueueModel):
    """Cancels are spread evenly over the queue: the part ahead of us shrinks in proportion."""

    name = "proportional"

    def ahead_after_cancel(self, ahead: int, others: int, cancelled: int) -> int:
        if others <= 0:
            return 0
        # integer floor of ahead*(others-cancelled)/others: monotone in `ahead`, never grows
        return min(ahead, (ahead * (others - cancelled)) // others)


QUEUE_MODELS: dict[str, type[QueueModel]] = {
    "risk_averse": RiskAverseQueue,
    "proportional": ProportionalQueue,
}


@dataclass(frozen=True)
class ConstantLatency:
    """A fixed one-way delay, in nanoseconds."""

    ns: int = 0

    def sample_ns(self, u: float = 0.5) -> int:
        """Delay for one message; `u` is a uniform draw (ignored here)."""
        return self.ns


@dataclass(frozen=True)
class JitterLatency:
    """A base delay plus an exponential tail: most messages are fast, a few are late."""

    base_ns: int = 0
    mean_extra_ns: int = 0

    def sample_ns(self, u: float = 0.5) -> int:
        import math

        u = min(max(u, 1e-12), 1.0 - 1e-12)
        return self.base_ns + int(-math.log(1.0 - u) * self.mean_extra_ns)


@dataclass(frozen=True)
class LatencyModel:
    """Delays the venue applies: market data (event → publish) and orders (receive → match)."""

    market_data: ConstantLatency | JitterLatency = ConstantLatency(0)
    order_entry: ConstantLatency | JitterLatency = ConstantLatency(0)


# ---------------------------------------------------------------------------------------------
# Our orders and their events.


@dataclass
class Order:
    """One of our orders. Prices in ticks, quantities in lots."""

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
    others_ahead: int = 0  # everyone else's lots queued ahead of this order at its level
    update_ns: int = 0
    modify_count: int = 0

    @property
    def remaining(self) -> int:
        return self.qty - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in (NEW, PARTIALLY_FILLED)


@dataclass
class OrderEvent:
    """Something that happened to one of our orders (becomes ORDER_TRADE_UPDATE)."""

    order: Order
    exec_type: str  # NEW, TRADE, CANCELED, EXPIRED, AMENDMENT
    status: str  # order status after the event
    time_ns: int
    last_qty: int = 0
    last_px: int = 0
    fee: Decimal = Decimal(0)
    maker: bool = False
    trade_id: int = 0
    expire_reason: int = 0


@dataclass
class Print:
    """One aggregated trade: one taker order against one price level."""

    px: int
    qty: int
    taker_buy: bool
    first_id: int
    last_id: int
    time_ns: int


@dataclass
class Changes:
    """What one drain of the change log holds."""

    first_update_id: int
    last_update_id: int
    bids: list[int]  # prices whose displayed size changed
    asks: list[int]
    prints: list[Print]
    order_events: list[OrderEvent]


@dataclass
class MatchingEngine:
    """One symbol's book with our orders queued inside it."""

    tick: float = 0.01
    lot: float = 0.01
    fees: FeeModel = field(default_factory=FeeModel)
    queue: QueueModel = field(default_factory=RiskAverseQueue)
    update_id: int = 1_000_000  # last update id used; ids strictly increase per transaction

    def __post_init__(self) -> None:
        self.bids: dict[int, int] = {}  # px -> displayed lots (everyone's, ours included)
        self.asks: dict[int, int] = {}
        self.best_bid = 0  # 0: side empty
        self.best_ask = 0
        self._own: dict[tuple[int, int], list[Order]] = {}  # (side, px) -> our resting orders, time order
        self.orders: dict[int, Order] = {}  # every order we placed, by id
        self._by_client: dict[str, Order] = {}  # open orders by client id
        self._next_order_id = 1
        self._next_trade_id = 1
        self._notional_unit = Decimal(repr(self.tick)) * Decimal(repr(self.lot))
        self._first_pending = 0  # first update id not yet drained (0: none)
        self._dirty_b: dict[int, None] = {}
        self._dirty_a: dict[int, None] = {}
        self._prints: list[Print] = []
        self._events: list[OrderEvent] = []
        self.update_gap = 0  # extra ids skipped per transaction (real ids are shared across symbols)
        self._txn_new = True

    # -- change log ---------------------------------------------------------------------------

    def begin(self) -> None:
        """Start a transaction: the book changes until the next begin() share one update id.

        The id is taken at the first change, so a transaction that changes nothing (a rejected
        order, a cancel of an empty level) uses none: every id a snapshot can report is in a diff.
        """
        self._txn_new = True

    def _touch(self) -> None:
        if self._txn_new:
            self._txn_new = False
            self.update_id += 1 + self.update_gap
            if not self._first_pending:
                self._first_pending = self.update_id

    def drain(self) -> Changes | None:
        """Take the changes since the last drain (None when nothing happened)."""
        if not self._first_pending:
            if self._events:  # order events with no book change (e.g. a rejected FOK is not one)
                ev, self._events = self._events, []
                return Changes(0, 0, [], [], [], ev)
            return None
        ch = Changes(
            self._first_pending,
            self.update_id,
            list(self._dirty_b),
            list(self._dirty_a),
            self._prints,
            self._events,
        )
        self._first_pending = 0
        self._dirty_b = {}
        self._dirty_a = {}
        self._prints = []
        self._events = []
        return ch

    # -- book queries -----------------------------------------------------------------------

    def level(self, side: int, px: int) -> int:
        """Displayed lots at a price on one side (BUY: bids)."""
        return (self.bids if side == BUY else self.asks).get(px, 0)

    def own_lots(self, side: int, px: int) -> int:
        return sum(o.remaining for o in self._own.get((side, px), ()))

    def others(self, side: int, px: int) -> int:
        """Everyone else's lots at a level."""
        return self.level(side, px) - self.own_lots(side, px)

    def depth(self, side: int, n: int, max_scan: int = 100_000) -> list[tuple[int, int]]:
        """The best `n` levels of one side as (px, lots), best first."""
        book = self.bids if side == BUY else self.asks
        if not book:
            return []
        if n >= len(book) or n > 64:
            items = sorted(book.items(), reverse=(side == BUY))
            return items[:n]
        out: list[tuple[int, int]] = []
        px = self.best_bid if side == BUY else self.best_ask
        step = -1 if side == BUY else 1
        scanned = 0
        while len(out) < n and scanned < max_scan:
            q = book.get(px)
            if q:
                out.append((px, q))
            px += step
            scanned += 1
        if len(out) < n and len(out) < len(book):  # sparse book: fall back to a sort
            return sorted(book.items(), reverse=(side == BUY))[:n]
        return out

    def _fix_best(self, side: int) -> None:
        book = self.bids if side == BUY else self.asks
        if not book:
            if side == BUY:
                self.best_bid = 0
            else:
                self.best_ask = 0
            return
        # scan a few ticks first (dense books), then give up and take the extreme key
        if side == BUY:
            px = self.best_bid
            for _ in range(64):
                px -= 1
                if px in book:
                    self.best_bid = px
                    return
            self.best_bid = max(book)
        else:
            px = self.best_ask
            for _ in range(64):
                px += 1
                if px in book:
                    self.best_ask = px
                    return
            self.best_ask = min(book)

    def _set(self, side: int, px: int, lots: int) -> None:
        self._touch()
        if side == BUY:
            if lots > 0:
                self.bids[px] = lots
                if px > self.best_bid:
                    self.best_bid = px
            else:
                self.bids.pop(px, None)
                if px == self.best_bid:
                    self._fix_best(BUY)
            self._dirty_b[px] = None
        else:
            if lots > 0:
                self.asks[px] = lots
                if self.best_ask == 0 or px < self.best_ask:
                    self.best_ask = px
            else:
                self.asks.pop(px, None)
                if px == self.best_ask:
                    self._fix_best(SELL)
            self._dirty_a[px] = None

    # -- everyone else's flow (the market model, or a replay) -------------------------------

    def add(self, side: int, px: int, lots: int) -> None:
        """Someone else's limit order joins the back of a level (must not cross)."""
        if lots <= 0:
            return
        if side == BUY and self.best_ask and px >= self.best_ask:
            raise ValueError(f"add would cross: bid {px} >= best ask {self.best_ask}")
        if side == SELL and self.best_bid and px <= self.best_bid:
            raise ValueError(f"add would cross: ask {px} <= best bid {self.best_bid}")
        self._set(side, px, self.level(side, px) + lots)

    def cancel(self, side: int, px: int, lots: int) -> int:
        """Someone else cancels up to `lots` at a level; returns the lots actually removed."""
        shown = self.level(side, px)
        own = self._own.get((side, px))
        others = shown - (sum(o.remaining for o in own) if own else 0)
        c = min(lots, others)
        if c <= 0:
            return 0
        if own:
            for o in own:
                o.others_ahead = self.queue.ahead_after_cancel(o.others_ahead, others, c)
        self._set(side, px, shown - c)
        return c

    def market(self, taker_side: int, lots: int, time_ns: int) -> int:
        """Someone else's market order sweeps the book; returns the lots filled."""
        return self._sweep(taker_side, lots, 0, time_ns, None)

    def replay_level(self, side: int, px: int, lots: int) -> None:
        """Replay: a diff says a level now shows `lots` (everyone else's, absolute).

        A decrease is treated as a cancel (trades at the level were already applied by
        `replay_trade`, which advanced our queue); an increase joins behind us.
        """
        own = self._own.get((side, px))
        own_lots = sum(o.remaining for o in own) if own else 0
        others = self.level(side, px) - own_lots
        if own and lots < others:
            for o in own:
                o.others_ahead = self.queue.ahead_after_cancel(o.others_ahead, others, others - lots)
        self._set(side, px, lots + own_lots)

    def replay_trade(self, taker_buy: bool, px: int, lots: int, time_ns: int) -> None:
        """Replay: a recorded trade prints; it fills our orders it reaches (the book follows by diff).

        A trade through our price fills us fully; a trade at our price first eats what is ahead.
        """
        maker_side = SELL if taker_buy else BUY
        keys = [k for k in self._own if k[0] == maker_side]
        keys.sort(key=lambda k: k[1], reverse=(maker_side == BUY))
        for key in keys:
            opx = key[1]
            through = opx < px if maker_side == SELL else opx > px
            if not (through or opx == px):
                continue
            left = lots
            for o in list(self._own[key]):
                if through:
                    self._fill_maker(o, o.remaining, time_ns)
                    continue
                take = min(left, o.others_ahead)
                o.others_ahead -= take
                left -= take
                f = min(left, o.remaining)
                if f > 0:
                    left -= f
                    self._fill_maker(o, f, time_ns)
            self._own_cleanup(key)

    # -- the sweep (shared by everyone's market orders and our aggressive orders) ----------

    def _sweep(self, taker_side: int, lots: int, limit_px: int, time_ns: int, taker: Order | None) -> int:
        """Match `lots` against the opposite side up to `limit_px` (0: no limit)."""
        maker_side = -taker_side
        book = self.asks if taker_side == BUY else self.bids
        done = 0
        while lots > 0 and book:
            px = self.best_ask if taker_side == BUY else self.best_bid
            if limit_px and ((taker_side == BUY and px > limit_px) or (taker_side == SELL and px < limit_px)):
                break
            shown = book[px]
            key = (maker_side, px)
            own = self._own.get(key)
            first_trade = self._next_trade_id
            level_done = 0
            if own:
                own_lots = sum(o.remaining for o in own)
                others = shown - own_lots
                others_taken = 0
                removed_own = 0
                for o in own:
                    need = max(0, o.others_ahead - others_taken)
                    t = min(lots, need)
                    others_taken += t
                    lots -= t
                    level_done += t
                    if lots == 0:
                        break
                    if taker is not None:  # self-trade prevention, EXPIRE_MAKER
                        removed_own += o.remaining
                        self._expire(o, time_ns, EXPIRED_IN_MATCH, 1)
                        continue
                    f = min(lots, o.remaining)
                    lots -= f
                    level_done += f
                    removed_own += f
                    self._fill_maker(o, f, time_ns)
                t = min(lots, others - others_taken)
                others_taken += t
                lots -= t
                level_done += t
                for o in own:
                    if o.is_open:
                        o.others_ahead = max(0, o.others_ahead - others_taken)
                self._own_cleanup(key)
                self._set(maker_side, px, shown - others_taken - removed_own)
            else:
                t = min(lots, shown)
                lots -= t
                level_done = t
                self._set(maker_side, px, shown - t)
            if level_done:
                if self._next_trade_id == first_trade:
                    self._next_trade_id += 1
                if taker is not None:
                    self._fill_taker(taker, level_done, px, time_ns)
                self._prints.append(
                    Print(px, level_done, taker_side == BUY, first_trade, self._next_trade_id - 1, time_ns)
                )
                done += level_done
            elif own:
                continue  # only our own (expired) orders were here; the level is gone or smaller
        return done

    def _notional(self, px: int, lots: int) -> Decimal:
        return Decimal(px * lots) * self._notional_unit

    def _fill_maker(self, o: Order, lots: int, time_ns: int) -> None:
        px = o.px
        notional = self._notional(px, lots)
        o.filled += lots
        o.cum_quote += notional
        o.status = FILLED if o.remaining == 0 else PARTIALLY_FILLED
        o.update_ns = time_ns
        tid = self._next_trade_id
        self._next_trade_id += 1
        self._events.append(
            OrderEvent(o, TRADE, o.status, time_ns, lots, px, self.fees.fee(notional, True), True, tid)
        )
        if o.status == FILLED:
            self._by_client.pop(o.client_id, None)

    def _fill_taker(self, o: Order, lots: int, px: int, time_ns: int) -> None:
        notional = self._notional(px, lots)
        o.filled += lots
        o.cum_quote += notional
        o.status = FILLED if o.remaining == 0 else PARTIALLY_FILLED
        o.update_ns = time_ns
        tid = self._next_trade_id - 1  # the trade id the print used
        self._events.append(
            OrderEvent(o, TRADE, o.status, time_ns, lots, px, self.fees.fee(notional, False), False, tid)
        )
        if o.status == FILLED:
            self._by_client.pop(o.client_id, None)

    def _own_cleanup(self, key: tuple[int, int]) -> None:
        lst = self._own.get(key)
        if lst is None:
            return
        lst[:] = [o for o in lst if o.is_open]
        if not lst:
            del self._own[key]

    def _expire(self, o: Order, time_ns: int, status: str, reason: int) -> None:
        o.status = status
        o.update_ns = time_ns
        self._by_client.pop(o.client_id, None)
        self._events.append(OrderEvent(o, EXPIRED, status, time_ns, expire_reason=reason))

    # -- our orders -------------------------------------------------------------------------

    def new_order_id(self) -> int:
        oid = self._next_order_id
        self._next_order_id += 1
        return oid

    def open_order(self, client_id: str) -> Order | None:
        return self._by_client.get(client_id)

    def open_orders(self) -> list[Order]:
        return [o for lst in self._own.values() for o in lst]

    def available(self, taker_side: int, limit_px: int) -> int:
        """Lots a taker could fill up to `limit_px` (0: no limit), our own resting orders excluded."""
        book = self.asks if taker_side == BUY else self.bids
        maker_side = -taker_side
        total = 0
        for px, q in book.items():
            if limit_px and ((taker_side == BUY and px > limit_px) or (taker_side == SELL and px < limit_px)):
                continue
            total += q - self.own_lots(maker_side, px)
        return total

    def crosses(self, side: int, px: int) -> bool:
        if side == BUY:
            return bool(self.best_ask) and px >= self.best_ask
        return bool(self.best_bid) and px <= self.best_bid

    def place(self, o: Order) -> Order:
        """Match and/or rest one of our orders. Raises RejectError for GTX/FOK that cannot stand.

        The caller has opened a transaction (`begin`) and validated filters.
        """
        if o.client_id in self._by_client:
            raise RejectError(-4116, "ClientOrderId is duplicated.")
        t = o.time_ns
        if o.type == "LIMIT":
            crosses = self.crosses(o.side, o.px)
            if o.tif == "GTX" and crosses:
                raise RejectError(
                    -5022,
                    "Due to the order could not be executed as maker, the Post Only order "
                    "will be rejected. The order will not be recorded in the order history",
                )
            if o.tif == "FOK" and self.available(o.side, o.px) < o.qty:
                raise RejectError(
                    -5021,
                    "Due to the order could not be filled immediately, the FOK order has "
                    "been rejected. The order will not be recorded in the order history",
                )
        self.orders[o.order_id] = o
        self._by_client[o.client_id] = o
        o.update_ns = t
        self._events.append(OrderEvent(o, NEW, NEW, t))
        limit = o.px if o.type == "LIMIT" else 0
        if o.type == "MARKET" or self.crosses(o.side, o.px):
            self._sweep(o.side, o.remaining, limit, t, o)
        if not o.is_open:
            return o
        if o.type == "MARKET" or o.tif in ("IOC", "FOK"):
            self._expire(o, t, EXPIRED, 9 if o.type == "MARKET" else 2)
            return o
        self._rest(o)
        return o

    def _rest(self, o: Order) -> None:
        key = (o.side, o.px)
        o.others_ahead = self.level(o.side, o.px) - self.own_lots(o.side, o.px)
        self._own.setdefault(key, []).append(o)
        self._set(o.side, o.px, self.level(o.side, o.px) + o.remaining)

    def _unrest(self, o: Order) -> None:
        key = (o.side, o.px)
        lst = self._own.get(key, [])
        if o in lst:
            lst.remove(o)
            if not lst:
                del self._own[key]
            self._set(o.side, o.px, self.level(o.side, o.px) - o.remaining)

    def cancel_order(self, o: Order, time_ns: int, status: str = CANCELED) -> Order:
        """Cancel one of our open orders (caller opened a transaction)."""
        if not o.is_open:
            raise RejectError(-2011, "Unknown order sent.")
        self._unrest(o)
        o.status = status
        o.update_ns = time_ns
        self._by_client.pop(o.client_id, None)
        self._events.append(OrderEvent(o, CANCELED if status == CANCELED else EXPIRED, status, time_ns))
        return o

    def modify_order(self, o: Order, px: int, qty: int, time_ns: int) -> Order:
        """Amend price/quantity of an open LIMIT order; it loses its queue place (Binance rule).

        Cancels it when the new quantity is not above what already filled, or when a GTX amend
        would cross (as Binance does).
        """
        if not o.is_open:
            raise RejectError(-2013, "Order does not exist.")
        if o.type != "LIMIT":
            raise RejectError(-4127, "Only limit order is supported.")
        if px == o.px and qty == o.qty:
            raise RejectError(-5027, "No need to modify the order.")
        if qty <= o.filled or (o.tif == "GTX" and self.crosses(o.side, px)):
            return self.cancel_order(o, time_ns)
        self._unrest(o)
        o.px, o.qty = px, qty
        o.modify_count += 1
        o.update_ns = time_ns
        self._events.append(OrderEvent(o, AMENDMENT, o.status, time_ns))
        if self.crosses(o.side, px):
            self._sweep(o.side, o.remaining, px, time_ns, o)
        if o.is_open:
            self._rest(o)
        return o
