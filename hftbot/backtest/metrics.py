"""The figures a trader reads off one backtest: PnL, trades, risk-adjusted returns, drawdown, usage.

Pure: reads a `BacktestResult` (hftbot/backtest/result.py), returns plain dicts and frames; no
I/O, no clock. Every figure's definition is here and in docs/backtest.md (## Metrics):

- **PnL**: `net_pnl` is the last equity sample (realised + unrealised − fees, USDT, marked at the
  mid); `gross_pnl` the same before fees; `fees` the cumulative fees (a rebate is negative).
- **Trades** are the closed round trips `Positions` records (flat → position → flat; a flip closes
  one and opens the next), every figure net of fees: a trade wins when its `net_pnl` > 0 and loses
  when < 0 (exactly 0 is neither, but counts in `trades`). `win_rate` = wins / trades; `avg_win`
  and `avg_loss` are the means of the winners' and losers' net PnL (`avg_loss` is negative);
  `profit_factor` = Σ wins / |Σ losses| (null when there is no losing trade). A position still
  open at the end is no trade; it is in `net_pnl` through the unrealised part.
- **Per-period returns**: the equity curve is sampled on the grid `start_ns + k·period_ns` (the
  last sample at or before each grid time; 0 before the first) and differenced, so each return is
  the period's net PnL in USDT. Sharpe and Sortino are ratios of these PnLs; divided by a constant
  capital they are the same ratios of returns, so they need no capital figure. `sharpe` =
  mean / sample std (ddof 1); `sortino` = mean / downside deviation, √(mean(min(r, 0)²)) over every
  period (target 0). Both are given per period and annualised × √(periods per year), with a year
  of 365 × 24 h (the venue never closes). Undefined (no variation, < 2 periods): null.
- **Capital** (the base of every percentage): `capital_usdt` when given (argument, or the result's
  `settings["capital_usdt"]`), else the largest notional the run held, max |position| × lot × mid:
  the unlevered money needed to carry the biggest position. Stated in the output as
  `capital_basis`.
- **Max drawdown**: the largest fall of equity from its running peak (the peak starts at 0, the
  run's start), over every equity sample, in USDT, with the peak's and the trough's times and how
  long the fall lasted; `max_drawdown_pct` is the largest (peak − equity) / (capital + peak) × 100
  (with a growing peak it can come from a different fall than the USDT figure).
- **Turnover**: Σ |px × qty| over fills (USDT), and that over capital (`turnover_x`).
- **Time in market**: the share of [start_ns, end_ns] with a non-zero position; the position
  after an equity sample holds until the next sample (the loop samples on every fill).
- **Signals** (when the run had a model): accuracy, macro-F1 and the majority-class floor of the
  argmax against the realised label (`hftbot.model.metrics`, rows with a label), the Brier score,
  and calibration bins per class (predicted probability against realised frequency).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from hftbot.backtest.result import BacktestResult
from hftbot.exec.positions import TradeRecord
from hftbot.model.metrics import CLASS_NAMES, score_predictions

YEAR_NS = 365 * 24 * 3600 * 10**9
CALIBRATION_BINS = 10


def json_ready(v: object) -> object:
    """NaN/inf → None and numpy scalars → Python numbers, so `json.dumps(..., allow_nan=False)` works."""
    if isinstance(v, dict):
        return {k: json_ready(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_ready(x) for x in v]
    if isinstance(v, np.integer | np.bool_):
        return v.item()
    if isinstance(v, float | np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    return v


# ------------------------------------------------------------------------------------ equity


def period_pnl(result: BacktestResult) -> np.ndarray:
    """Net PnL (USDT) of each period `[start + (k-1)·period, start + k·period]`; the last period ends
    at `end_ns` and may be shorter. Empty when the run is shorter than one grid step."""
    if result.period_ns <= 0:
        raise ValueError(f"metrics: period_ns must be > 0, got {result.period_ns} (result {result.name!r})")
    span = result.end_ns - result.start_ns
    if span <= 0:
        return np.zeros(0)
    k = -(-span // result.period_ns)  # ceil: a partial last period counts
    grid = result.start_ns + np.arange(k + 1, dtype=np.int64) * result.period_ns
    grid[-1] = min(grid[-1], result.end_ns)
    eq = result.equity
    at = np.searchsorted(eq["t_ns"], grid, side="right") - 1  # last sample at or before each grid time
    values = np.where(at >= 0, eq["equity"][np.maximum(at, 0)] if len(eq) else 0.0, 0.0)
    return np.diff(values)


def ratios(pnl: np.ndarray, period_ns: int) -> dict:
    """Sharpe and Sortino of per-period PnLs, per period and annualised (see the module docstring)."""
    n = len(pnl)
    nan = float("nan")
    mean = float(pnl.mean()) if n else nan
    std = float(pnl.std(ddof=1)) if n >= 2 else nan
    downside = float(np.sqrt(np.mean(np.minimum(pnl, 0.0) ** 2))) if n else nan
    sharpe = mean / std if n >= 2 and std > 0 else nan
    sortino = mean / downside if n >= 2 and downside > 0 else nan
    scale = math.sqrt(YEAR_NS / period_ns)
    return {
        "periods": n,
        "period_s": period_ns / 1e9,
        "mean_period_pnl": mean,
        "std_period_pnl": std,
        "downside_dev_period_pnl": downside,
        "sharpe_period": sharpe,
        "sortino_period": sortino,
        "sharpe_annual": sharpe * scale,
        "sortino_annual": sortino * scale,
        "annualisation": f"x sqrt({YEAR_NS / period_ns:.6g} periods per 365-day year)",
    }


def drawdown(t_ns: np.ndarray, equity: np.ndarray, capital: float, start_ns: int) -> dict:
    """Largest fall from the running peak (the peak starts at 0 at `start_ns`), USDT and % of
    capital + peak."""
    out = {"max_drawdown": 0.0, "max_drawdown_pct": 0.0, "drawdown_peak_ns": None,
           "drawdown_trough_ns": None, "drawdown_s": 0.0}
    if len(equity) == 0:
        return out
    peak = np.maximum.accumulate(np.maximum(equity, 0.0))
    dd = peak - equity
    i = int(np.argmax(dd))
    if dd[i] <= 0:
        return out
    # the peak of that fall: the last time equity stood at the running peak before the trough
    at_peak = np.flatnonzero(equity[: i + 1] >= peak[i])
    peak_ns = int(t_ns[at_peak[-1]]) if len(at_peak) else int(start_ns)  # none: the start's 0
    pct = dd / (capital + peak) * 100.0 if capital > 0 else np.full(len(dd), np.nan)
    out.update({
        "max_drawdown": float(dd[i]),
        "max_drawdown_pct": float(pct.max()),
        "drawdown_peak_ns": peak_ns,
        "drawdown_trough_ns": int(t_ns[i]),
        "drawdown_s": (int(t_ns[i]) - peak_ns) / 1e9,
    })
    return out


def time_in_market(result: BacktestResult) -> float:
    """Share of [start_ns, end_ns] with a non-zero position (piecewise constant between samples)."""
    span = result.end_ns - result.start_ns
    eq = result.equity
    if span <= 0 or len(eq) == 0:
        return 0.0
    t = np.clip(eq["t_ns"], result.start_ns, result.end_ns)
    until = np.append(t[1:], result.end_ns)
    held = (until - t)[eq["position_lots"] != 0]
    return float(held.sum() / span)


def largest_notional(result: BacktestResult) -> float:
    """max |position| × lot × mid over the equity samples (USDT)."""
    eq = result.equity
    if len(eq) == 0:
        return 0.0
    return float(np.max(np.abs(eq["position_lots"]) * result.lot * eq["mid"]))


# ------------------------------------------------------------------------------------ trades


def trade_stats(trades: list[TradeRecord]) -> dict:
    """Counts, win rate, average win/loss, profit factor: all on closed trades net of fees."""
    net = np.array([t.net_pnl for t in trades], dtype=np.float64)
    wins, losses = net[net > 0], net[net < 0]
    nan = float("nan")
    hold = np.array([t.holding_ms for t in trades], dtype=np.float64)
    return {
        "trades": len(trades),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": len(wins) / len(trades) if trades else nan,
        "avg_win": float(wins.mean()) if len(wins) else nan,
        "avg_loss": float(losses.mean()) if len(losses) else nan,
        "largest_win": float(wins.max()) if len(wins) else nan,
        "largest_loss": float(losses.min()) if len(losses) else nan,
        "profit_factor": float(wins.sum() / -losses.sum()) if len(losses) else nan,
        "avg_trade_net": float(net.mean()) if trades else nan,
        "trades_net_pnl": float(net.sum()),
        "trades_gross_pnl": float(sum(t.gross_pnl for t in trades)),
        "trades_fees": float(sum(t.fees for t in trades)),
        "avg_holding_s": float(hold.mean() / 1e3) if trades else nan,
        "long_trades": sum(1 for t in trades if t.side == "LONG"),
        "short_trades": sum(1 for t in trades if t.side == "SHORT"),
    }


def trades_frame(trades: list[TradeRecord]) -> pd.DataFrame:
    """The per-trade list: one row per closed round trip, the `TradeRecord` fields as columns (the
    trade log's, hftbot/exec/tradelog.py), plus UTC entry and exit times."""
    cols = [f.name for f in dataclasses.fields(TradeRecord)]
    df = pd.DataFrame([dataclasses.astuple(t) for t in trades], columns=cols)
    df["entry_time"] = pd.to_datetime(df["entry_ms"].astype("int64"), unit="ms", utc=True)
    df["exit_time"] = pd.to_datetime(df["exit_ms"].astype("int64"), unit="ms", utc=True)
    return df


# ------------------------------------------------------------------------------------ signals


def calibration(signals: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Per class: predicted probability in `bins` equal-width bins against the realised frequency of
    that class (rows with a label only). Empty bins are left out."""
    sig = signals[signals["label"] >= 0]
    edges = np.linspace(0.0, 1.0, bins + 1)
    out: dict = {"bins": bins, "edges": edges.tolist()}
    for c, name in enumerate(CLASS_NAMES):
        p = sig[f"p_{name}"].astype(np.float64)
        hit = (sig["label"] == c).astype(np.float64)
        b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)  # p = 1.0 into the top bin
        count = np.bincount(b, minlength=bins)
        keep = count > 0
        mean_p = np.bincount(b, weights=p, minlength=bins)[keep] / count[keep]
        freq = np.bincount(b, weights=hit, minlength=bins)[keep] / count[keep]
        out[name] = {"bin": np.flatnonzero(keep).tolist(), "count": count[keep].tolist(),
                     "mean_predicted": mean_p.tolist(), "realised": freq.tolist()}
    return out


def signal_metrics(signals: np.ndarray) -> dict:
    """Argmax scores against the realised labels, Brier score, calibration; {} without signals."""
    if len(signals) == 0:
        return {}
    labelled = signals[signals["label"] >= 0]
    out: dict = {"signals": len(signals), "labelled": len(labelled)}
    if len(labelled) == 0:
        return out
    probs = np.stack([labelled["p_down"], labelled["p_flat"], labelled["p_up"]], axis=1).astype(np.float64)
    y = labelled["label"].astype(np.int64)
    s = score_predictions(y, probs.argmax(axis=1))
    out.update({k: s[k] for k in ("accuracy", "macro_f1", "weighted_f1", "majority_floor")})
    onehot = np.eye(3)[y]
    out["brier"] = float(((probs - onehot) ** 2).sum(axis=1).mean())
    out["calibration"] = calibration(signals)
    return out


# ------------------------------------------------------------------------------------ all


def compute_metrics(result: BacktestResult, capital_usdt: float | None = None) -> dict:
    """Every figure of one run (JSON-ready: undefined values are None). See the module docstring."""
    eq = result.equity
    if len(eq) > 1 and np.any(np.diff(eq["t_ns"]) < 0):
        raise ValueError(f"metrics: equity samples of {result.name!r} are not in time order")
    capital = capital_usdt if capital_usdt is not None else result.settings.get("capital_usdt")
    basis = "given"
    if capital is None:
        capital, basis = largest_notional(result), "largest notional held (max |position| x lot x mid)"
    capital = float(capital)
    if capital < 0 or not math.isfinite(capital):
        raise ValueError(f"metrics: capital_usdt must be a finite number >= 0, got {capital}")
    last = eq[-1] if len(eq) else None
    net = float(last["equity"]) if last is not None else 0.0
    fees = float(last["fees"]) if last is not None else 0.0
    realised = float(last["realised"]) if last is not None else 0.0
    f = result.fills
    notional = np.abs(f["px"] * f["qty"])
    turnover = float(notional.sum())
    span_s = (result.end_ns - result.start_ns) / 1e9
    out: dict = {
        "name": result.name,
        "strategy": result.strategy,
        "symbol": result.symbol,
        "start_ns": int(result.start_ns),
        "end_ns": int(result.end_ns),
        "duration_s": span_s,
        "events": int(result.events),
        "orders": int(result.orders),
        "rejected": int(result.rejected),
        "net_pnl": net,
        "gross_pnl": net + fees,
        "fees": fees,
        "realised_pnl": realised,
        "unrealised_pnl": net + fees - realised,
        "end_position_lots": int(last["position_lots"]) if last is not None else 0,
        "capital_usdt": capital,
        "capital_basis": basis,
        "return_pct": net / capital * 100.0 if capital > 0 else float("nan"),
        "fills": len(f),
        "maker_fills": int(f["maker"].sum()),
        "taker_fills": int(len(f) - f["maker"].sum()),
        "maker_fees": float(f["fee"][f["maker"]].sum()),
        "taker_fees": float(f["fee"][~f["maker"]].sum()),
        "turnover_usdt": turnover,
        "turnover_x": turnover / capital if capital > 0 else float("nan"),
        "time_in_market": time_in_market(result),
    }
    out.update(trade_stats(result.trades))
    out.update(ratios(period_pnl(result), result.period_ns))
    out.update(drawdown(eq["t_ns"], eq["equity"], capital, result.start_ns))
    sig = signal_metrics(result.signals)
    if sig:
        out["signal"] = sig
    return json_ready(out)
