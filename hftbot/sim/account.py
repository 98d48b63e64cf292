"""The simulated futures account: one-way position, wallet balance, realised PnL and fees.

Fills from the matching engine are applied here (exact Decimal arithmetic, USDT). Margin is the
plain initial-margin rule (notional / leverage against available balance), enough for the
venue's -2019 check; there is no liquidation and no funding.

Pure logic: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from hftbot.sim.matching import BUY


@dataclass
class Position:
    lots: int = 0  # signed: > 0 long
    entry: Decimal = Decimal(0)  # average entry price (quote per base)
    realized: Decimal = Decimal(0)  # accumulated realised PnL (before fees)
    update_ms: int = 0


@dataclass
class Account:
    """One symbol's position and the USDT wallet behind it."""

    tick: Decimal
    lot: Decimal
    wallet: Decimal = Decimal("10000")
    leverage: int = 20
    fees_paid: Decimal = Decimal(0)
    position: Position = field(default_factory=Position)

    def apply_fill(self, side: int, lots: int, px_ticks: int, fee: Decimal, time_ms: int) -> Decimal:
        """Apply one fill; returns the realised PnL of this fill (before fee)."""
        pos = self.position
        price = Decimal(px_ticks) * self.tick
        signed = lots if side == BUY else -lots
        realized = Decimal(0)
        if pos.lots == 0 or (pos.lots > 0) == (signed > 0):
            total = abs(pos.lots) + lots
            pos.entry = (pos.entry * abs(pos.lots) + price * lots) / total
            pos.lots += signed
        else:
            closing = min(lots, abs(pos.lots))
            direction = 1 if pos.lots > 0 else -1
            realized = (price - pos.entry) * closing * self.lot * direction
            pos.lots += signed
            if pos.lots == 0:
                pos.entry = Decimal(0)
            elif (pos.lots > 0) != (direction > 0):  # flipped: the rest opens at this price
                pos.entry = price
        pos.realized += realized
        pos.update_ms = time_ms
        self.wallet += realized - fee
        self.fees_paid += fee
        return realized

    def qty(self) -> Decimal:
        return Decimal(self.position.lots) * self.lot

    def unrealized(self, mark_ticks: int) -> Decimal:
        pos = self.position
        if not pos.lots:
            return Decimal(0)
        return (Decimal(mark_ticks) * self.tick - pos.entry) * Decimal(pos.lots) * self.lot

    def initial_margin(self, mark_ticks: int) -> Decimal:
        return abs(Decimal(self.position.lots) * self.lot * Decimal(mark_ticks) * self.tick) / self.leverage

    def available(self, mark_ticks: int, open_order_margin: Decimal = Decimal(0)) -> Decimal:
        return self.wallet + self.unrealized(mark_ticks) - self.initial_margin(mark_ticks) - open_order_margin
