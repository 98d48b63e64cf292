"""Hand-built `BacktestResult`s: the metrics, report and comparison tests read these, no replay."""

from __future__ import annotations

import numpy as np

from hftbot.backtest.result import EQUITY_DTYPE, FILL_DTYPE, SIGNAL_DTYPE, BacktestResult
from hftbot.exec.positions import TradeRecord

S = 10**9  # ns per second
T0 = 1_722_000_000 * S  # 2024-07-26, a plausible exchange time


def equity(rows: list[tuple[float, float, int, float, float, float]], t0: int = T0) -> np.ndarray:
    """rows: (t_s after t0, mid, position_lots, realised, fees, equity)."""
    a = np.zeros(len(rows), EQUITY_DTYPE)
    for i, (t, mid, pos, real, fee, eq) in enumerate(rows):
        a[i] = (t0 + round(t * S), mid, pos, real, fee, eq)
    return a


def fills(rows: list[tuple[float, int, float, float, float, bool]], t0: int = T0) -> np.ndarray:
    """rows: (t_s, side, px, qty, fee, maker)."""
    a = np.zeros(len(rows), FILL_DTYPE)
    for i, (t, side, px, qty, fee, maker) in enumerate(rows):
        a[i] = (t0 + round(t * S), t0 + round(t * S), side, px, qty, fee, maker, i + 1)
    return a


def signals(rows: list[tuple[float, float, float, float, int]], t0: int = T0) -> np.ndarray:
    """rows: (t_s, p_down, p_flat, p_up, label)."""
    a = np.zeros(len(rows), SIGNAL_DTYPE)
    for i, (t, pd_, pf, pu, lab) in enumerate(rows):
        a[i] = (t0 + round(t * S), pd_, pf, pu, lab)
    return a


def trade(net: float, *, fees: float = 0.1, side: str = "LONG", entry_s: float = 0.0, hold_s: float = 1.0,
          entry_px: float = 100.0, strategy: str = "test", t0: int = T0) -> TradeRecord:
    entry_ms = (t0 + round(entry_s * S)) // 10**6
    exit_ms = entry_ms + round(hold_s * 1000)
    gross = net + fees
    qty = 0.1
    exit_px = entry_px + (gross / qty if side == "LONG" else -gross / qty)
    return TradeRecord("SOLUSDT", strategy, 0, "r1", side, qty, 1, 1, entry_ms, exit_ms, exit_ms - entry_ms,
                       entry_px, exit_px, gross, fees, net, 2, "entry", "exit_horizon")


def result(name: str = "test", *, strategy: str | None = None, start_s: float = 0.0, end_s: float = 5.0,
           period_s: float = 1.0, **arrays) -> BacktestResult:
    return BacktestResult(name=name, strategy=strategy or name, symbol="SOLUSDT", start_ns=T0 + round(start_s * S),
                          end_ns=T0 + round(end_s * S), period_ns=round(period_s * S), tick=0.01, lot=0.1,
                          **arrays)


def random_walk(name: str, n: int = 2000, seed: int = 0, strategy: str | None = None,
                with_signals: bool = True) -> BacktestResult:
    """A longer, plausible run (for plots and pages): a price walk, a position, fills, trades, signals."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    mid = 150.0 + np.cumsum(rng.normal(0, 0.02, n))
    pos = np.repeat(rng.integers(-3, 4, n // 50 + 1), 50)[:n]
    fee_step = np.where(np.diff(pos, prepend=0) != 0, 0.002, 0.0)
    fees = np.cumsum(fee_step)
    pnl = np.cumsum(np.append(0.0, pos[:-1] * np.diff(mid) * 0.1))
    eq = equity([(t[i], mid[i], int(pos[i]), float(pnl[i]), float(fees[i]), float(pnl[i] - fees[i]))
                 for i in range(n)])
    changes = np.flatnonzero(np.diff(pos, prepend=0) != 0)
    fl = fills([(t[i], 1 if pos[i] > (pos[i - 1] if i else 0) else -1, mid[i],
                 abs(pos[i] - (pos[i - 1] if i else 0)) * 0.1, 0.002, bool(i % 2)) for i in changes])
    trades = [trade(float(rng.normal(0.01, 0.05)), entry_s=float(t[i]), hold_s=20.0, entry_px=float(mid[i]),
                    side="LONG" if pos[i] > 0 else "SHORT", strategy=strategy or name)
              for i in changes if pos[i] != 0]
    sig = np.zeros(0, SIGNAL_DTYPE)
    if with_signals:
        p = rng.dirichlet([2, 3, 2], n)
        lab = np.array([rng.choice(3, p=row) for row in p])
        sig = signals([(t[i], *p[i], int(lab[i])) for i in range(n)])
    return result(name, strategy=strategy, end_s=float(n), equity=eq, fills=fl, trades=trades, signals=sig,
                  events=n * 10, orders=len(changes))


def imbalance_tape(path, seconds: float = 300.0, step_ms: int = 100, seed: int = 7, feed_latency_ms: float = 0.0):
    """A SOLUSDT `.gz` capture (tests/backtest/capture.py's format) where book imbalance leads the
    price: a hidden regime (-1, 0, +1) makes one side of the top five levels heavy and moves the mid
    a cent that way more often than the other. Long enough to train a tiny model on, quick to write."""
    from tests.backtest.capture import T0_MS, Tape

    rng = np.random.default_rng(seed)
    tape = Tape(feed_latency_ms)
    mid = 10_000  # cents: the best bid; the best ask is a cent above

    def book(mid_c: int, regime: int):
        heavy, light = rng.uniform(8, 10, 5), rng.uniform(1, 2, 5)
        bq = heavy if regime > 0 else light if regime < 0 else rng.uniform(1, 10, 5)
        aq = light if regime > 0 else heavy if regime < 0 else rng.uniform(1, 10, 5)
        bids = {mid_c - i: f"{q:.2f}" for i, q in enumerate(bq)}
        asks = {mid_c + 1 + i: f"{q:.2f}" for i, q in enumerate(aq)}
        return bids, asks

    def text(side: dict) -> list[tuple[str, str]]:
        return [(f"{p / 100:.2f}", q) for p, q in side.items()]

    regime = 0
    bids, asks = book(mid, regime)
    tape.snapshot(T0_MS, text(bids), text(asks))
    e = T0_MS
    for _ in range(int(seconds * 1000 / step_ms)):
        e += step_ms
        if rng.random() < 0.04:
            regime = int(rng.integers(-1, 2))
        u = rng.random()
        if regime:  # a cent the heavy side's way a quarter of the time, the other way 3 %
            move = (1 if u < 0.25 else -1 if u < 0.28 else 0) * regime
        else:
            move = 1 if u < 0.05 else -1 if u < 0.1 else 0
        if move > 0:
            tape.trade(e, f"{(mid + 1) / 100:.2f}", "0.50", taker_sells=False)
        elif move < 0:
            tape.trade(e, f"{mid / 100:.2f}", "0.50", taker_sells=True)
        mid += move
        nb, na = book(mid, regime)
        gone_b = {p: "0" for p in bids if p not in nb}
        gone_a = {p: "0" for p in asks if p not in na}
        tape.diff(e, bids=text({**gone_b, **nb}), asks=text({**gone_a, **na}))
        bids, asks = nb, na
    return tape.write(path)
