"""What one backtest run produces: flat arrays the metrics, report, comparison and walk-forward read.

The replay loop (`hftbot.backtest.engine`) fills a `BacktestResult`; everything downstream
(`metrics`, `report`, `compare`, `walkforward`) reads only this, so each can be tested on
hand-built results without replaying anything. Prices are floats in quote units (USDT) here —
the loop works in ticks and lots and converts once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hftbot.exec.positions import TradeRecord

# One row per sampling period (the loop samples the mark-to-market at `period_ns`, and on every
# fill), so an equity curve's length is bounded by run length / period, not by the event count.
EQUITY_DTYPE = np.dtype([
    ("t_ns", "i8"),          # exchange time of the sample
    ("mid", "f8"),           # mid price used to mark the position (USDT)
    ("position_lots", "i8"), # signed position after the sample's events
    ("realised", "f8"),      # cumulative realised PnL before fees (USDT)
    ("fees", "f8"),          # cumulative fees paid (USDT, a maker rebate is negative)
    ("equity", "f8"),        # realised + unrealised - fees (USDT): net PnL since the start
])

FILL_DTYPE = np.dtype([
    ("t_ns", "i8"),          # when the fill happened at the engine (exchange clock)
    ("recv_ns", "i8"),       # when our side learned of it (after the response latency)
    ("side", "i1"),          # +1 buy, -1 sell
    ("px", "f8"),            # USDT
    ("qty", "f8"),           # base units
    ("fee", "f8"),           # USDT, positive = paid
    ("maker", "?"),
    ("order_id", "i8"),
])

# One row per model output the strategy saw (for the calibration plot and the signal metrics).
SIGNAL_DTYPE = np.dtype([
    ("t_ns", "i8"),          # exchange time of the book update it was computed on
    ("p_down", "f4"),
    ("p_flat", "f4"),
    ("p_up", "f4"),
    ("label", "i1"),         # realised class at the model's horizon (0 down, 1 flat, 2 up, -1 none)
])


@dataclass
class BacktestResult:
    """One strategy over one stretch of data."""

    name: str                         # run / strategy label shown in tables ("deeplob", "imbalance", ...)
    strategy: str
    symbol: str
    start_ns: int
    end_ns: int
    period_ns: int                    # the equity sampling period Sharpe/Sortino are computed on
    tick: float
    lot: float
    equity: np.ndarray = field(default_factory=lambda: np.zeros(0, EQUITY_DTYPE))
    fills: np.ndarray = field(default_factory=lambda: np.zeros(0, FILL_DTYPE))
    signals: np.ndarray = field(default_factory=lambda: np.zeros(0, SIGNAL_DTYPE))
    trades: list[TradeRecord] = field(default_factory=list)  # closed round trips, net of fees
    events: int = 0                   # market events replayed
    orders: int = 0                   # orders sent (approved by the risk manager)
    rejected: int = 0                 # refused by risk or by the engine
    settings: dict = field(default_factory=dict)  # queue/latency/fee models, paths, checkpoint id
    # every order sent to the engine, in order: (local send ns, client id, side, qty lots, px ticks,
    # type, tif, reduce_only, tag) — what the parity test compares with the live run's order records
    order_log: list[tuple] = field(default_factory=list)
