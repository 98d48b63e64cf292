"""The machinery deeplob and imbalance share: an edge in bps → a target position → entries and exits.

A subclass says what the edge is (`edge_bps`: the expected mid move to the horizon, signed, and
whether it is usable now); this class trades it:

- **entry** (flat, nothing working, book valid, edge usable): only when the edge pays the round
  trip — `|edge| > fees both ways + spread crossed + margin` (`FeeModel.round_trip_cost_bps`: a
  taker crosses half a spread each way, a maker is charged half a spread for adverse selection).
  Taker style: an IOC limit `taker_slippage_ticks` through the far touch (a market order with a
  price cap); maker style: post-only (GTX) at the near touch, cancelled after `maker_timeout_ms`
  or as soon as the edge no longer backs it.
- **exits** (reduce-only), first that applies: the **stop** (the mid `stop_bps` against the
  average entry; always taker), the **horizon** (`horizon_updates` book updates since the position
  opened: the model's label horizon), a **reversal** (the edge `reversal_bps` against the
  position). Maker style exits post at the near touch, follow it when it moves, and after
  `exit_timeout_ms` give way to a taker exit.
- no edge (a stale or flagged signal): nothing opens, exits go on (stop and horizon need no signal).

One working order at a time; the strategy reads its orders and position from the view only, so a
refused intent is simply decided again on the next record. Cancels it has sent are remembered for
`RETRY_NS` so that they are not repeated on every update while the venue answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from hftbot.config import ExecConfig, RiskConfig
from hftbot.exec.fees import BPS, TAKER, FeeModel
from hftbot.exec.messages import BUY, GTX, IOC, LIMIT, PENDING_NEW, SELL, Cancel, Intent, Place
from hftbot.exec.positions import StrategyView
from hftbot.exec.strategy import NOTHING, Strategy
from hftbot.records import BOOK_RESYNC, BOOK_VALID

MS = 1_000_000
RETRY_NS = 1_000 * MS  # a cancel not answered within this is sent again
ENTRY = "entry"
EXIT_STOP = "exit_stop"
EXIT_HORIZON = "exit_horizon"
EXIT_REVERSAL = "exit_reversal"
EXIT_TIMEOUT = "exit_timeout"  # a passive exit that took too long, now taking
TAGS = (ENTRY, EXIT_STOP, EXIT_HORIZON, EXIT_REVERSAL, EXIT_TIMEOUT)


class Directional(Strategy):
    """Takes a position on an edge; subclasses set `edge_bps`, `edge_usable` and `entry_gate`."""

    def __init__(self, *, qty: float, move_bps: float, margin_bps: float, horizon_updates: int,
                 reversal_bps: float, stop_bps: float, ex: ExecConfig, risk: RiskConfig, fees: FeeModel) -> None:
        self.qty_base = qty
        self.move_bps = move_bps
        self.margin_bps = margin_bps
        self.horizon_updates = horizon_updates
        self.reversal_bps = reversal_bps
        self.stop = stop_bps * BPS
        self.style = ex.style
        self.taker = ex.style == TAKER
        self.fee_bps = fees.round_trip_bps(ex.style)
        self.spread_share = 1.0 if self.taker else 0.5
        self.slip = ex.taker_slippage_ticks
        self.maker_timeout_ns = int(ex.maker_timeout_ms * MS)
        self.exit_timeout_ns = int(ex.exit_timeout_ms * MS)
        self.stale_signal_ns = int(risk.stale_signal_ms * MS)
        self.qty = 0  # lots, known from the first book's lot
        self.lot = 0.0
        # the book, as of the last record
        self.bid = 0
        self.ask = 0
        self.mid = 0.0
        self.book_ok = False
        self.updates = 0
        # the edge (subclass)
        self.edge_bps = 0.0
        self.entry_gate = True
        # the position's life
        self.entry_update = -1  # book update count the position's horizon runs from; -1 flat
        self._entry_at = -1  # book update count of the last entry decision
        self.force_taker = False
        self._cancels: dict[str, int] = {}  # client id → when we asked
        self.counts: dict[str, int] = dict.fromkeys((*TAGS, "cancel"), 0)

    # ------------------------------------------------------------------------- subclass hooks

    def edge_usable(self, now_ns: int) -> bool:
        """Whether `edge_bps` may open a position (fresh, valid input)."""
        return self.book_ok

    # ------------------------------------------------------------------------- records

    def _read_book(self, book) -> int:
        """Best prices from a book record; returns its flags."""
        flags = book["flags"].item()
        if not flags & BOOK_VALID:
            self.book_ok = False
            return flags
        if not self.lot or flags & BOOK_RESYNC:
            self.lot = book["lot"].item()
            self.qty = int(self.qty_base / self.lot + 1e-9)
        bid = book["bid_px"].item(0)
        ask = book["ask_px"].item(0)
        self.bid = bid
        self.ask = ask
        self.mid = (bid + ask) * 0.5
        self.book_ok = 0 < bid < ask
        self.updates += 1
        return flags

    def on_book(self, book, view: StrategyView) -> Sequence[Intent]:
        self._read_book(book)
        return self.decide(view)

    # ------------------------------------------------------------------------- decisions

    def cost_bps(self) -> float:
        """Break-even edge: fees of both legs + the spread this style pays."""
        return self.fee_bps + self.spread_share * (self.ask - self.bid) / self.mid / BPS

    def decide(self, view: StrategyView) -> Sequence[Intent]:
        if not self.book_ok or self.qty <= 0:
            return NOTHING
        pos = view.position
        now = view.now_ns
        if pos:
            if self.entry_update < 0:  # the horizon runs from the book the entry was decided on
                self.entry_update = self._entry_at if self._entry_at >= 0 else self.updates
                self._entry_at = -1
        elif self.entry_update >= 0:
            self.entry_update = -1
            self.force_taker = False
        if view.orders:
            return self._manage(view, pos, now)
        if self._cancels:
            self._cancels.clear()
        if pos:
            reason = self._exit_reason(view, pos, now)
            return [self._exit(pos, reason)] if reason else NOTHING
        if not self.entry_gate or not self.edge_usable(now):
            return NOTHING
        edge = self.edge_bps
        need = self.cost_bps() + self.margin_bps
        if edge > need:
            return [self._entry(BUY)]
        if -edge > need:
            return [self._entry(SELL)]
        return NOTHING

    def _exit_reason(self, view: StrategyView, pos: int, now: int) -> str:
        sign = 1 if pos > 0 else -1
        avg = view.avg_px
        if avg > 0 and (self.mid - avg) * sign <= -self.stop * avg:
            return EXIT_STOP
        if self.updates - self.entry_update >= self.horizon_updates:
            return EXIT_HORIZON
        if self.edge_usable(now) and self.edge_bps * sign < -self.reversal_bps:
            return EXIT_REVERSAL
        return ""

    def _entry(self, side: int) -> Place:
        self.counts[ENTRY] += 1
        self._entry_at = self.updates
        if self.taker:
            px = self.ask + self.slip if side == BUY else max(1, self.bid - self.slip)
            return Place(side, self.qty, px, LIMIT, IOC, False, ENTRY)
        return Place(side, self.qty, self.bid if side == BUY else self.ask, LIMIT, GTX, False, ENTRY)

    def _exit(self, pos: int, reason: str) -> Place:
        side = SELL if pos > 0 else BUY
        qty = pos if pos > 0 else -pos
        if self.force_taker and reason != EXIT_STOP:
            reason = EXIT_TIMEOUT
        self.counts[reason] += 1
        if self.taker or self.force_taker or reason == EXIT_STOP:
            px = self.ask + self.slip if side == BUY else max(1, self.bid - self.slip)
            return Place(side, qty, px, LIMIT, IOC, True, reason)
        return Place(side, qty, self.ask if side == SELL else self.bid, LIMIT, GTX, True, reason)

    def _cancel(self, client_id: str, now: int, tag: str) -> Cancel | None:
        asked = self._cancels.get(client_id)
        if asked is not None and now - asked < RETRY_NS:
            return None
        self._cancels[client_id] = now
        self.counts["cancel"] += 1
        return Cancel(client_id, tag)

    def _manage(self, view: StrategyView, pos: int, now: int) -> Sequence[Intent]:
        """A working order: wait for it, or cancel a passive one that is late or no longer right."""
        out: list[Intent] | None = None
        for o in view.orders.values():
            if o.tif != GTX or o.status == PENDING_NEW:
                continue  # IOC orders end by themselves; a pending one cannot be cancelled yet
            age = now - o.created_ns
            why = ""
            if o.reduce_only:
                if pos == 0:
                    why = "flat"
                elif age > self.exit_timeout_ns:
                    why = "timeout"
                    self.force_taker = True
                elif self._exit_reason(view, pos, now) == EXIT_STOP:
                    why = "stop"
                    self.force_taker = True
                elif o.px != (self.ask if o.side == SELL else self.bid):
                    why = "requote"  # the touch moved: follow it
            else:
                if age > self.maker_timeout_ns:
                    why = "timeout"
                elif not (self.entry_gate and self.edge_usable(now)
                          and self.edge_bps * o.side > self.cost_bps() + self.margin_bps):
                    why = "edge"
            if why:
                c = self._cancel(o.client_id, now, why)
                if c is not None:
                    out = out or []
                    out.append(c)
        return out or NOTHING
