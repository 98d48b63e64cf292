"""Our fee estimates: what a fill will cost before the venue says what it cost.

The venue reports the real fee of every fill (`Fill.fee`), and `positions` books that one. This
model is for *decisions*: a strategy's cost-aware threshold (does the expected move pay the round
trip?) and the estimate `positions` uses when a fill comes without a fee (a local matching engine
that does not charge, a reconciled fill). The backtester (issue 14) charges with the same model.

The simulator's `hftbot.sim.matching.FeeModel` is the venue's exact fee (Decimal, in the matching
engine); this one is ours, floats in fractions of notional and basis points, cheap enough to
evaluate on every book update. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

BPS = 1e-4
TAKER = "taker"
MAKER = "maker"
STYLES = (TAKER, MAKER)


@dataclass(frozen=True, slots=True)
class FeeModel:
    """Maker/taker rates as fractions of notional (Binance USDⓈ-M VIP 0: 0.0002 / 0.0005)."""

    maker: float = 0.0002
    taker: float = 0.0005

    def __post_init__(self) -> None:
        for name in ("maker", "taker"):
            v = getattr(self, name)
            if not (-0.01 < v < 0.01):  # NaN fails too; a rebate (negative maker) is allowed
                raise ValueError(f"fee model: {name} rate must be a fraction of notional in (-0.01, 0.01), got {v}")

    def fee(self, notional_usdt: float, maker: bool) -> float:
        """Estimated fee of one fill in USDT (positive = paid)."""
        return abs(notional_usdt) * (self.maker if maker else self.taker)

    def round_trip_bps(self, style: str) -> float:
        """Fees of an entry and an exit in basis points of notional, both legs in `style`."""
        if style == TAKER:
            return 2.0 * self.taker / BPS
        if style == MAKER:
            return 2.0 * self.maker / BPS
        raise ValueError(f"fee model: style must be one of {', '.join(STYLES)}, got {style!r}")

    def round_trip_cost_bps(self, style: str, spread_bps: float) -> float:
        """What a round trip must earn, mid to mid, to break even: fees plus spread paid.

        A taker enters at the far touch and exits at the other one: half a spread from the mid
        each way, a whole spread in all. A maker earns the spread on paper but is filled when the
        price comes to it (adverse selection); it is charged half a spread as that allowance.
        """
        crossing = spread_bps if style == TAKER else 0.5 * spread_bps
        return self.round_trip_bps(style) + crossing
