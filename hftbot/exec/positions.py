"""Positions, PnL and our open orders, from what the venue reports: fills, order updates, rejections.

One symbol, one-way mode (positionSide BOTH). Quantities are integer lots and prices integer ticks
as everywhere inside; money is float USDT (`ticks × lots × tick × lot`).

Accounting is average cost, as Binance's own `entryPrice`: a fill that adds to the position moves
the average entry, one that reduces it realises `(px − avg) × qty` and leaves the average alone;
a fill through zero closes the position at its price and opens the rest on the other side. Fees
are the venue's (`Fill.fee`, positive paid, negative a rebate); a fill without one (NaN: a local
engine that does not charge, a reconciled fill) is charged by the `FeeModel` estimate and counted
in `estimated_fees`. Realised PnL is gross; `net_pnl` is realised − fees + unrealised.

Round trips: a trade record opens when the position leaves zero and closes when it returns to
zero; partial closes accumulate in it, scaling in and out is one trade, and a flip closes the
trade at the crossing fill (its fee split pro rata) and opens the next. Win rate is over closed
trades, net of fees. `take_closed()` hands new records to the trade log.

Fills are idempotent by `(order_id, trade_id)`, and the result does not depend on the order they
arrive in: the ledger is a function of the set of fills taken in venue order `(time_ms,
trade_id, order_id)`. A fill that arrives after a later one (the user stream and a WS API answer
race; a reconciliation replays) is inserted in place and the ledger is replayed from the oldest
fill kept (`MAX_REPLAY_FILLS`; older ones are folded into a base state). Position and fees do
not depend on the order at all; realised PnL and trades do, and come out as if the fills had
arrived in order. A trade record already handed out that a replay changes is counted in
`revised_trades` (not rewritten in the trade log). A fill older than everything kept is applied
as it comes and counted in `late_fills_beyond_replay`.

Open orders: every order the risk manager approved is here from that moment (`PENDING_NEW`)
until the venue says it is final or refused it, so position and open-order limits count what is
in flight; `UNKNOWN` (issue 13: sent, fate unknown) counts the same way. Order updates may come
out of order too: a final status is terminal and the cumulative filled quantity never goes back.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field

from hftbot.exec.fees import FeeModel
from hftbot.exec.messages import (
    BUY,
    FILLED,
    FINAL_STATUSES,
    PENDING_NEW,
    REJECTED,
    Fill,
    OrderRequest,
    OrderUpdate,
    Rejected,
)

MAX_REPLAY_FILLS = 20_000
MAX_CLOSED_ORDERS = 4096  # finished orders remembered for late fills' attribution
LONG = "LONG"
SHORT = "SHORT"


@dataclass(slots=True)
class OrderState:
    """One of our orders as we know it. Strategies read these through `StrategyView.orders`."""

    client_id: str
    side: int
    qty: int  # lots (after an amendment: the new quantity)
    px: int  # ticks (0: MARKET)
    type: str
    tif: str
    reduce_only: bool
    tag: str
    strategy: str
    model_id: int
    created_ns: int  # when the risk manager approved it
    status: str = PENDING_NEW
    order_id: int = 0
    filled: int = 0  # cumulative filled lots: the larger of the venue's count and our fills' sum
    filled_by_fills: int = 0
    update_ms: int = 0

    @property
    def remaining(self) -> int:
        return self.qty - self.filled if self.qty > self.filled else 0


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One closed round trip: flat → position → flat (or → the other side, for a flip)."""

    symbol: str
    strategy: str
    model_id: int  # the model whose signal opened it (0: none)
    run: str  # the run that opened it (client id run prefix)
    side: str  # LONG | SHORT
    qty: float  # base units entered in all (≥ the largest position held)
    qty_lots: int
    max_qty_lots: int  # the largest position held during the trade
    entry_ms: int  # first fill
    exit_ms: int  # fill that brought the position back to zero
    holding_ms: int
    entry_px: float  # average entry price
    exit_px: float  # average exit price
    gross_pnl: float  # USDT, before fees
    fees: float  # USDT, entry and exit fills (a flip's fee split pro rata)
    net_pnl: float
    n_fills: int
    entry_tag: str  # the opening order's tag ("entry", "quote_bid", ...)
    exit_tag: str  # the closing order's tag ("exit_horizon", "stop", ...)


class StrategyView:
    """What a strategy may read about its own state. The executor sets `now_ns` before each call;
    `position`, `avg_px` and `orders` are kept current by `Positions` (the dict is live)."""

    __slots__ = ("avg_px", "now_ns", "orders", "position")

    def __init__(self, orders: dict[str, OrderState] | None = None) -> None:
        self.now_ns = 0
        self.position = 0  # lots, signed
        self.avg_px = 0.0  # average entry, ticks (0 when flat)
        self.orders: dict[str, OrderState] = {} if orders is None else orders


@dataclass(slots=True)
class _Trip:
    side: int
    entry_ms: int
    model_id: int
    strategy: str
    run: str
    entry_tag: str
    entry_qty: int = 0
    entry_notional: float = 0.0  # ticks × lots
    exit_qty: int = 0
    exit_notional: float = 0.0
    gross: float = 0.0  # USDT
    fees: float = 0.0
    n_fills: int = 0
    max_qty: int = 0


@dataclass(slots=True)
class _Ledger:
    """Position, average entry, realised PnL, fees and the open round trip: the replayable state."""

    position: int = 0
    avg_px: float = 0.0
    realised: float = 0.0
    fees: float = 0.0
    volume: float = 0.0  # USDT traded
    maker_fees: float = 0.0
    taker_fees: float = 0.0
    maker_fills: int = 0
    taker_fills: int = 0
    trip: _Trip | None = None
    trades: list[TradeRecord] = field(default_factory=list)

    def copy(self) -> _Ledger:
        c = _Ledger(self.position, self.avg_px, self.realised, self.fees, self.volume, self.maker_fees,
                    self.taker_fees, self.maker_fills, self.taker_fills, None, list(self.trades))
        if self.trip is not None:
            t = self.trip
            c.trip = _Trip(t.side, t.entry_ms, t.model_id, t.strategy, t.run, t.entry_tag, t.entry_qty,
                           t.entry_notional, t.exit_qty, t.exit_notional, t.gross, t.fees, t.n_fills, t.max_qty)
        return c


class Positions:
    """The ledger of one symbol and the book of our open orders."""

    def __init__(self, tick: float, lot: float, fees: FeeModel | None = None, symbol: str = "",
                 strategy: str = "", run: str = "") -> None:
        if not (tick > 0 and lot > 0):
            raise ValueError(f"positions: tick and lot must be > 0, got {tick}, {lot}")
        self.tick = float(tick)
        self.lot = float(lot)
        self.usdt = self.tick * self.lot  # USDT per tick·lot
        self.fee_model = fees or FeeModel()
        self.symbol = symbol
        self.strategy = strategy
        self.run = run
        self.orders: dict[str, OrderState] = {}
        self._closed: OrderedDict[str, OrderState] = OrderedDict()
        self.view = StrategyView(self.orders)
        self._base = _Ledger()  # state before the oldest kept fill
        self._led = _Ledger()
        self._fills: list[tuple[tuple[int, int, int], Fill]] = []  # sorted by venue order
        self._seen: set[tuple[int, int]] = set()
        self._folded = False  # some fills were folded into the base state
        self._handed = 0  # trade records handed out by take_closed
        # counters (status panel, exit summary)
        self.fills = 0
        self.duplicate_fills = 0
        self.replays = 0
        self.revised_trades = 0
        self.late_fills_beyond_replay = 0
        self.foreign_fills = 0  # fills of orders we do not know (another run's, a manual order)
        self.estimated_fees = 0
        self.stale_updates = 0
        self.revived_orders = 0  # "rejected" orders the venue later reported (issue 13)
        self.rejects: dict[int, int] = {}

    # ------------------------------------------------------------------------- ledger figures

    @property
    def position(self) -> int:
        return self._led.position

    @property
    def avg_px(self) -> float:
        return self._led.avg_px

    @property
    def realised(self) -> float:
        return self._led.realised

    @property
    def fees(self) -> float:
        return self._led.fees

    @property
    def volume(self) -> float:
        return self._led.volume

    @property
    def trades(self) -> list[TradeRecord]:
        return self._led.trades

    def unrealised(self, mark_px: float) -> float:
        """USDT PnL of the open position marked at `mark_px` (ticks; the book's mid)."""
        led = self._led
        if not led.position or not mark_px > 0:
            return 0.0
        return (mark_px - led.avg_px) * led.position * self.usdt

    def net_pnl(self, mark_px: float) -> float:
        """Realised − fees + unrealised, USDT."""
        return self._led.realised - self._led.fees + self.unrealised(mark_px)

    def win_rate(self) -> float:
        """Share of closed trades with net PnL > 0 (NaN before the first)."""
        trades = self._led.trades
        if not trades:
            return float("nan")
        return sum(1 for t in trades if t.net_pnl > 0) / len(trades)

    def summary(self, mark_px: float) -> dict:
        """Figures for the status panel and the exit summary (USDT; position in lots and base units)."""
        led = self._led
        buy, sell = self.open_lots()
        return {
            "position": led.position,
            "position_qty": led.position * self.lot,
            "avg_entry": led.avg_px * self.tick,
            "open_orders": len(self.orders),
            "open_buy_qty": buy * self.lot,
            "open_sell_qty": sell * self.lot,
            "realised": led.realised,
            "unrealised": self.unrealised(mark_px),
            "fees": led.fees,
            "maker_fees": led.maker_fees,
            "taker_fees": led.taker_fees,
            "net_pnl": self.net_pnl(mark_px),
            "volume": led.volume,
            "fills": self.fills,
            "duplicate_fills": self.duplicate_fills,
            "trades": len(led.trades),
            "win_rate": self.win_rate(),
        }

    def take_closed(self) -> list[TradeRecord]:
        """Trade records closed since the last call (for the trade log)."""
        trades = self._led.trades
        out = trades[self._handed :]
        self._handed = len(trades)
        return out

    # ------------------------------------------------------------------------- open orders

    def open_lots(self) -> tuple[int, int]:
        """Remaining lots of open orders, buys and sells, pending and unknown ones included."""
        buy = sell = 0
        for o in self.orders.values():
            if o.side == BUY:
                buy += o.remaining
            else:
                sell += o.remaining
        return buy, sell

    def on_request(self, req: OrderRequest) -> OrderState:
        """An order the risk manager approved: it counts from now on (PENDING_NEW)."""
        o = OrderState(req.client_id, req.side, req.qty, req.px, req.type, req.tif, req.reduce_only,
                       req.tag, req.strategy, req.model_id, req.created_ns)
        self.orders[req.client_id] = o
        return o

    def set_status(self, client_id: str, status: str) -> None:
        """A local status change (the gateway marks a sent order UNKNOWN; issue 13)."""
        o = self.orders.get(client_id)
        if o is not None and o.status not in FINAL_STATUSES:
            o.status = status

    def _order(self, client_id: str) -> OrderState | None:
        o = self.orders.get(client_id)
        return o if o is not None else self._closed.get(client_id)

    def _finish(self, o: OrderState) -> None:
        self.orders.pop(o.client_id, None)
        self._closed[o.client_id] = o
        while len(self._closed) > MAX_CLOSED_ORDERS:
            self._closed.popitem(last=False)

    def on_update(self, u: OrderUpdate) -> None:
        """The venue's view of one order. Older news than we have is ignored (counted)."""
        o = self.orders.get(u.client_id)
        if o is None:
            o = self._closed.get(u.client_id)
            if o is not None and o.status == REJECTED:  # we took it for refused; the venue has it
                del self._closed[u.client_id]
                self.orders[u.client_id] = o
                self.revived_orders += 1
            elif o is not None:  # final already: this is older news
                self.stale_updates += 1
                return
            else:  # an order we did not place in this run (reconciled at start, another client)
                o = OrderState(u.client_id, u.side, u.qty, u.px, "", "", False, "", "", 0, 0, u.status)
                self.orders[u.client_id] = o
        if u.filled < o.filled or (u.filled == o.filled and u.event_ms < o.update_ms):
            self.stale_updates += 1
            return
        o.status = u.status
        o.order_id = u.order_id or o.order_id
        o.qty = u.qty
        o.px = u.px
        o.filled = max(u.filled, o.filled_by_fills)
        o.update_ms = u.event_ms
        if u.status in FINAL_STATUSES:
            self._finish(o)

    def on_rejected(self, r: Rejected) -> None:
        """The venue or the gateway refused the request: the order never existed."""
        self.rejects[r.code] = self.rejects.get(r.code, 0) + 1
        o = self.orders.get(r.client_id)
        if o is not None and o.status not in FINAL_STATUSES and o.filled == 0:
            o.status = REJECTED
            self._finish(o)

    # ------------------------------------------------------------------------- fills

    def on_fill(self, f: Fill) -> bool:
        """Apply one execution; False when it was already applied (a duplicate)."""
        key = (f.order_id, f.trade_id)
        if key in self._seen:
            self.duplicate_fills += 1
            return False
        self._seen.add(key)
        self.fills += 1
        o = self._order(f.client_id)
        if o is None:
            self.foreign_fills += 1
        else:
            o.filled_by_fills += f.qty
            if o.filled_by_fills > o.filled:
                o.filled = o.filled_by_fills
            if o.order_id == 0:
                o.order_id = f.order_id
            if o.filled >= o.qty and o.client_id in self.orders:
                o.status = FILLED
                self._finish(o)
        order = (f.time_ms, f.trade_id, f.order_id)
        fills = self._fills
        if not fills or order > fills[-1][0]:
            fills.append((order, f))
            self._apply(self._led, f)
        elif self._folded and order < fills[0][0]:
            self.late_fills_beyond_replay += 1
            self._apply(self._led, f)  # position and fees stay exact; PnL attribution as it comes
        else:
            bisect.insort(fills, (order, f))
            self._replay()
        if len(fills) > MAX_REPLAY_FILLS:
            self._fold(len(fills) - MAX_REPLAY_FILLS // 2)
        self._sync_view()
        return True

    def _fold(self, n: int) -> None:
        """Fold the oldest `n` kept fills into the base state (bounded memory on long runs)."""
        for _, f in self._fills[:n]:
            self._apply(self._base, f)
        del self._fills[:n]
        self._folded = True

    def _replay(self) -> None:
        self.replays += 1
        before = self._led.trades
        led = self._base.copy()
        for _, f in self._fills:
            self._apply(led, f)
        handed = min(self._handed, len(before))
        self.revised_trades += sum(
            1 for i in range(handed) if i >= len(led.trades) or led.trades[i] != before[i]
        )
        self._led = led

    def _sync_view(self) -> None:
        v = self.view
        v.position = self._led.position
        v.avg_px = self._led.avg_px

    def _apply(self, led: _Ledger, f: Fill) -> None:
        qty = f.qty
        if qty <= 0:
            return
        fee = f.fee
        if fee != fee:  # NaN: the venue did not say
            fee = self.fee_model.fee(f.px * qty * self.usdt, f.maker)
            if led is self._led:
                self.estimated_fees += 1
        led.fees += fee
        led.volume += f.px * qty * self.usdt
        if f.maker:
            led.maker_fills += 1
            led.maker_fees += fee
        else:
            led.taker_fills += 1
            led.taker_fees += fee
        pos = led.position
        side = f.side
        if pos == 0 or (pos > 0) == (side == BUY):
            self._open(led, f, qty, fee)
            return
        close = min(qty, abs(pos))
        sign = 1 if pos > 0 else -1
        gross = (f.px - led.avg_px) * close * sign * self.usdt
        led.realised += gross
        led.position = pos + side * close
        trip = led.trip
        share = fee * close / qty
        if trip is not None:
            trip.exit_qty += close
            trip.exit_notional += f.px * close
            trip.gross += gross
            trip.fees += share
            trip.n_fills += 1
        if led.position == 0:
            led.avg_px = 0.0
            if trip is not None:
                led.trades.append(self._record(trip, f))
            led.trip = None
        if qty > close:
            self._open(led, f, qty - close, fee - share)

    def _open(self, led: _Ledger, f: Fill, qty: int, fee: float) -> None:
        pos = led.position
        new = pos + f.side * qty
        led.avg_px = (led.avg_px * abs(pos) + f.px * qty) / abs(new)
        led.position = new
        trip = led.trip
        if trip is None:
            o = self._order(f.client_id)
            trip = led.trip = _Trip(
                f.side, f.time_ms, o.model_id if o else 0, o.strategy if o and o.strategy else self.strategy,
                self.run, o.tag if o else "",
            )
        trip.entry_qty += qty
        trip.entry_notional += f.px * qty
        trip.fees += fee
        trip.n_fills += 1
        if abs(new) > trip.max_qty:
            trip.max_qty = abs(new)

    def _record(self, t: _Trip, f: Fill) -> TradeRecord:
        o = self._order(f.client_id)
        entry_px = t.entry_notional / t.entry_qty * self.tick if t.entry_qty else math.nan
        exit_px = t.exit_notional / t.exit_qty * self.tick if t.exit_qty else math.nan
        return TradeRecord(
            self.symbol, t.strategy, t.model_id, t.run, LONG if t.side == BUY else SHORT,
            t.entry_qty * self.lot, t.entry_qty, t.max_qty, t.entry_ms, f.time_ms, f.time_ms - t.entry_ms,
            entry_px, exit_px, t.gross, t.fees, t.gross - t.fees, t.n_fills, t.entry_tag, o.tag if o else "",
        )
