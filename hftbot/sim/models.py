"""The matching engine's small swappable models: fees, queue position, latency.

Each model is a frozen dataclass chosen at construction. It carries a model code and integer (or
float) parameters that the numba kernels (`hftbot.sim.kernels`) switch on, so the hot loops never
call back into Python; the Python methods (`fee`, `ahead_after_cancel`, `sample_ns`) state the same
rule for tests, the account and the server, and a test holds each pair equal.

- Fees: maker/taker rates as exact decimals with at most 8 decimal places (Binance publishes
  them with 6-8). The kernels charge `ticks × lots × rate_e8` in integer *fee units* of
  `tick × lot × 1e-8` quote: exact for every fill, summed exactly, and converted to an exact
  Decimal (or a float, for metrics) only at the edge. Why not float: a float fee per fill drifts
  in the last places, and the venue's account and the trade log must agree to the unit. Why
  not micro-units of quote: `1 lot × 150.01 × 0.0002` is 300.02 micro-USDT, not a whole number.
- Queue position: how an anonymous decrease at our level moves the quantity queued ahead of our
  orders (`RiskAverseQueue`, `ProportionalQueue`, `PowerProbQueue`).
- Latency: one-way delays in nanoseconds (`ConstantLatency`, `JitterLatency`,
  `EmpiricalLatency`); `LatencyModel` bundles the four the system knows about.

Pure: no I/O, no clocks, no global random state (the kernels draw from their own seeded stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

# queue model codes (kernels switch on these)
Q_RISK_AVERSE = 0
Q_PROPORTIONAL = 1
Q_POWER_PROB = 2

# latency model codes
L_CONSTANT = 0
L_JITTER = 1
L_EMPIRICAL = 2

RATE_SCALE = 100_000_000  # fee rates are held as integers per 1e8


# ---------------------------------------------------------------------------------------------
# Fees


def _rate_e8(name: str, rate: Decimal) -> int:
    scaled = rate * RATE_SCALE
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise ValueError(f"fee model: {name} rate must be a decimal with at most 8 places, got {rate}")
    return int(scaled)


@dataclass(frozen=True)
class FeeModel:
    """Maker/taker rates as fractions of notional (Binance USDⓈ-M VIP 0: 0.0002 / 0.0005).

    A negative rate is a rebate. Rates must have at most 8 decimal places (checked here), so the
    kernels' integer fee `ticks × lots × rate_e8` is exact (`MatchingEngine.place` checks that a
    fill's product stays inside int64).
    """

    maker: Decimal = Decimal("0.0002")
    taker: Decimal = Decimal("0.0005")

    def __post_init__(self) -> None:
        object.__setattr__(self, "maker", Decimal(self.maker))
        object.__setattr__(self, "taker", Decimal(self.taker))
        _rate_e8("maker", self.maker)
        _rate_e8("taker", self.taker)

    @property
    def maker_e8(self) -> int:
        return _rate_e8("maker", self.maker)

    @property
    def taker_e8(self) -> int:
        return _rate_e8("taker", self.taker)

    def fee(self, notional: Decimal, maker: bool) -> Decimal:
        """Exact fee in quote currency for one fill of `notional` quote."""
        return notional * (self.maker if maker else self.taker)


# ---------------------------------------------------------------------------------------------
# Queue position


class QueueModel:
    """How an anonymous cancel at our level moves the quantity queued ahead of one of our orders.

    `code` and `power` are what the kernels read; `ahead_after_cancel` is the same rule in Python.
    """

    name = "base"
    code = -1
    power = 0.0

    def ahead_after_cancel(self, ahead: int, others: int, cancelled: int) -> int:
        """New quantity ahead of an order, given everyone else's `others` lots (before) lost
        `cancelled` of them (0 < cancelled <= others)."""
        raise NotImplementedError


class RiskAverseQueue(QueueModel):
    """Cancels come from behind us first: we only advance when the level shrinks below our place.

    The pessimistic choice (hftbacktest's RiskAdverseQueueModel): fills are never overstated.
    """

    name = "risk_averse"
    code = Q_RISK_AVERSE

    def ahead_after_cancel(self, ahead: int, others: int, cancelled: int) -> int:
        return min(ahead, others - cancelled)


class ProportionalQueue(QueueModel):
    """Cancels are spread evenly over the queue: the part ahead of us shrinks in proportion."""

    name = "proportional"
    code = Q_PROPORTIONAL

    def ahead_after_cancel(self, ahead: int, others: int, cancelled: int) -> int:
        if others <= 0:
            return 0
        # integer floor of ahead*(others-cancelled)/others: monotone in `ahead`, never grows
        return min(ahead, (ahead * (others - cancelled)) // others)


@dataclass(frozen=True)
class PowerProbQueue(QueueModel):
    """A cancel comes from behind us with probability f(back) / (f(back) + f(front)), f(x) = x**n.

    The power-law probability of hftbacktest's PowerProbQueueModel (after Rigtorp's estimate of
    queue position): with `front` lots ahead and `back` behind, a decrease of `c` lots takes
    `round(p·c)` from behind (at most `back`) and the rest from ahead. Larger `power` puts cancels
    behind a front-runner more often (n = 1: by share of the queue; hftbacktest's examples use
    2-3). Trades at the level are not counted twice: a replayed diff's decrease is net of the
    trades already seen at that price (see `hftbot.sim.kernels`).
    """

    power: float = 2.0
    name = "power_prob"
    code = Q_POWER_PROB

    def __post_init__(self) -> None:
        if not (math.isfinite(self.power) and self.power > 0):
            raise ValueError(f"queue model power_prob: power must be a finite number > 0, got {self.power!r}")

    def ahead_after_cancel(self, ahead: int, others: int, cancelled: int) -> int:
        front = ahead
        back = others - ahead
        if back <= 0:
            return max(0, min(ahead, others - cancelled))
        if front <= 0:
            return 0
        fb = float(back) ** self.power
        ff = float(front) ** self.power
        p = fb / (fb + ff) if math.isfinite(fb + ff) and fb + ff > 0 else 1.0
        from_back = min(back, int(p * cancelled + 0.5))
        return max(0, min(ahead - (cancelled - from_back), others - cancelled))


QUEUE_MODELS: dict[str, type[QueueModel]] = {
    "risk_averse": RiskAverseQueue,
    "proportional": ProportionalQueue,
    "power_prob": PowerProbQueue,
}


# ---------------------------------------------------------------------------------------------
# Latency


@dataclass(frozen=True)
class ConstantLatency:
    """A fixed one-way delay, in nanoseconds."""

    ns: int = 0
    code = L_CONSTANT

    def __post_init__(self) -> None:
        if self.ns < 0:
            raise ValueError(f"latency: ns must be >= 0, got {self.ns}")

    def sample_ns(self, u: float = 0.5) -> int:
        """Delay for one message; `u` is a uniform draw (ignored here)."""
        return self.ns

    def kernel_params(self) -> tuple[int, int, int, np.ndarray]:
        """(code, base_ns, mean_extra_ns, samples) for the kernels."""
        return L_CONSTANT, int(self.ns), 0, np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class JitterLatency:
    """A base delay plus an exponential tail: most messages are fast, a few are late."""

    base_ns: int = 0
    mean_extra_ns: int = 0
    code = L_JITTER

    def __post_init__(self) -> None:
        if self.base_ns < 0 or self.mean_extra_ns < 0:
            raise ValueError(
                f"latency: base_ns and mean_extra_ns must be >= 0, got {self.base_ns}, {self.mean_extra_ns}"
            )

    def sample_ns(self, u: float = 0.5) -> int:
        u = min(max(u, 1e-12), 1.0 - 1e-12)
        return self.base_ns + int(-math.log(1.0 - u) * self.mean_extra_ns)

    def kernel_params(self) -> tuple[int, int, int, np.ndarray]:
        return L_JITTER, int(self.base_ns), int(self.mean_extra_ns), np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class EmpiricalLatency:
    """Delays drawn uniformly from recorded ones (e.g. measured order round trips, halved)."""

    samples_ns: tuple[int, ...] = (0,)
    code = L_EMPIRICAL

    def __post_init__(self) -> None:
        s = tuple(int(x) for x in self.samples_ns)
        if not s or min(s) < 0:
            raise ValueError("latency: EmpiricalLatency needs at least one sample, all >= 0")
        object.__setattr__(self, "samples_ns", s)

    def sample_ns(self, u: float = 0.5) -> int:
        n = len(self.samples_ns)
        return self.samples_ns[min(n - 1, int(u * n))]

    def kernel_params(self) -> tuple[int, int, int, np.ndarray]:
        return L_EMPIRICAL, 0, 0, np.asarray(self.samples_ns, dtype=np.int64)


Latency = ConstantLatency | JitterLatency | EmpiricalLatency


@dataclass(frozen=True)
class LatencyModel:
    """The delays of one venue connection.

    `market_data` (event → publish) and `order_entry` (request sent → at the matching engine) are
    what the simulator's server applies on its sockets; the engine applies `order_entry` and
    `order_response` (matching engine → us) itself when it is given them (the backtester).
    """

    market_data: Latency = ConstantLatency(0)
    order_entry: Latency = ConstantLatency(0)
    order_response: Latency = field(default=ConstantLatency(0))
