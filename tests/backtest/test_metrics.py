"""Metrics on hand-computed equity curves, trade lists and signals (the expected figures are worked
out by hand in the comments, not by the code under test)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hftbot.backtest import metrics as mt
from tests.backtest.build import T0, S, equity, fills, result, signals, trade

YEAR_S = 365 * 24 * 3600


def five_second_run():
    # t(s): equity 0, 10, 5, 20, 8, 14 -> period PnLs 10, -5, 15, -12, 6 (period 1 s)
    eq = equity([
        (0, 100.0, 0, 0.0, 0.0, 0.0),
        (1, 100.0, 2, 12.0, 2.0, 10.0),
        (2, 101.0, 2, 12.0, 2.0, 5.0),
        (3, 110.0, 0, 23.0, 3.0, 20.0),
        (4, 110.0, -1, 23.0, 3.0, 8.0),
        (5, 104.0, 0, 18.0, 4.0, 14.0),
    ])
    fl = fills([(1, 1, 100.0, 0.2, 1.0, False), (3, -1, 105.0, 0.2, 1.0, True),
                (4, -1, 110.0, 0.1, 0.5, True), (5, 1, 104.0, 0.1, 0.5, False)])
    return result(equity=eq, fills=fl, trades=[trade(5), trade(-2), trade(0), trade(3), trade(-4)])


def test_sharpe_and_sortino_from_period_pnl():
    m = mt.compute_metrics(five_second_run())
    # mean 14/5 = 2.8; deviations 7.2 -7.8 12.2 -14.8 3.2 -> squares sum 490.8 -> sample var 122.7
    # downside: min(r,0) = 0 -5 0 -12 0 -> (25 + 144) / 5 = 33.8
    assert m["periods"] == 5 and m["period_s"] == 1.0
    assert m["mean_period_pnl"] == pytest.approx(2.8)
    assert m["std_period_pnl"] == pytest.approx(math.sqrt(122.7))
    assert m["sharpe_period"] == pytest.approx(2.8 / math.sqrt(122.7))
    assert m["downside_dev_period_pnl"] == pytest.approx(math.sqrt(33.8))
    assert m["sortino_period"] == pytest.approx(2.8 / math.sqrt(33.8))
    assert m["sharpe_annual"] == pytest.approx(2.8 / math.sqrt(122.7) * math.sqrt(YEAR_S))
    assert m["sortino_annual"] == pytest.approx(2.8 / math.sqrt(33.8) * math.sqrt(YEAR_S))
    assert "365-day year" in m["annualisation"]


def test_pnl_fees_drawdown_turnover_time_in_market():
    m = mt.compute_metrics(five_second_run())
    assert m["net_pnl"] == 14.0 and m["fees"] == 4.0 and m["gross_pnl"] == 18.0
    assert m["realised_pnl"] == 18.0 and m["unrealised_pnl"] == 0.0 and m["end_position_lots"] == 0
    # largest notional: 2 lots x 0.1 x 101 = 20.2 (at t=2), beats 1 x 0.1 x 110 = 11
    assert m["capital_usdt"] == pytest.approx(20.2) and "largest notional" in m["capital_basis"]
    assert m["return_pct"] == pytest.approx(14 / 20.2 * 100)
    # peaks 0 10 10 20 20 20, drawdowns 0 0 5 0 12 6: max 12 from t=3 to t=4
    assert m["max_drawdown"] == 12.0
    assert m["drawdown_peak_ns"] == T0 + 3 * S and m["drawdown_trough_ns"] == T0 + 4 * S
    assert m["drawdown_s"] == 1.0
    # % of capital + peak: 5/30.2, 12/40.2, 6/40.2 -> 12/40.2
    assert m["max_drawdown_pct"] == pytest.approx(12 / 40.2 * 100)
    # turnover 100*.2 + 105*.2 + 110*.1 + 104*.1 = 62.4
    assert m["turnover_usdt"] == pytest.approx(62.4)
    assert m["turnover_x"] == pytest.approx(62.4 / 20.2)
    assert (m["fills"], m["maker_fills"], m["taker_fills"]) == (4, 2, 2)
    assert m["maker_fees"] == 1.5 and m["taker_fees"] == 1.5
    # positions 0 [0,1), 2 [1,3), 0 [3,4), -1 [4,5): 3 s of 5 in the market
    assert m["time_in_market"] == pytest.approx(0.6)
    json.dumps(m, allow_nan=False)  # JSON-ready


def test_capital_given_overrides_the_notional_basis():
    r = five_second_run()
    m = mt.compute_metrics(r, capital_usdt=100.0)
    assert m["capital_usdt"] == 100.0 and m["capital_basis"] == "given"
    assert m["max_drawdown_pct"] == pytest.approx(12 / 120 * 100)  # 5/110, 12/120, 6/120
    r.settings["capital_usdt"] = 50.0
    assert mt.compute_metrics(r)["capital_usdt"] == 50.0
    with pytest.raises(ValueError, match="capital_usdt must be"):
        mt.compute_metrics(r, capital_usdt=-1.0)


def test_trade_stats_net_of_fees():
    m = mt.compute_metrics(five_second_run())
    # nets 5 -2 0 3 -4: wins 5, 3; losses -2, -4; 0 is neither
    assert (m["trades"], m["wins"], m["losses"]) == (5, 2, 2)
    assert m["win_rate"] == pytest.approx(0.4)
    assert m["avg_win"] == pytest.approx(4.0) and m["avg_loss"] == pytest.approx(-3.0)
    assert m["profit_factor"] == pytest.approx(8 / 6)
    assert m["largest_win"] == 5.0 and m["largest_loss"] == -4.0
    assert m["avg_trade_net"] == pytest.approx(0.4) and m["trades_net_pnl"] == pytest.approx(2.0)
    assert m["trades_fees"] == pytest.approx(0.5)  # 5 x 0.1
    assert m["avg_holding_s"] == pytest.approx(1.0)


def test_a_trade_that_wins_gross_but_loses_to_fees_is_a_loss():
    s = mt.trade_stats([trade(-0.05, fees=0.1)])  # gross +0.05, fees 0.1
    assert s["wins"] == 0 and s["losses"] == 1 and s["win_rate"] == 0.0


def test_undefined_figures_are_null():
    m = mt.compute_metrics(result(trades=[trade(1.0), trade(2.0)]))  # no equity, no losses
    assert m["profit_factor"] is None and m["avg_loss"] is None
    assert m["sharpe_period"] is None and m["sortino_annual"] is None  # flat equity: no variation
    assert m["net_pnl"] == 0.0 and m["max_drawdown"] == 0.0 and m["time_in_market"] == 0.0
    assert m["return_pct"] is None and "signal" not in m
    empty = mt.compute_metrics(result())
    assert empty["trades"] == 0 and empty["win_rate"] is None
    json.dumps(empty, allow_nan=False)


def test_irregular_samples_are_read_on_the_period_grid():
    # samples at 0.5 s (3) and 2.5 s (7); grid 0, 1, 2, 2.5 (end): values 0 (before the first), 3, 3, 7
    r = result(end_s=2.5, equity=equity([(0.5, 100, 1, 3, 0, 3), (2.5, 100, 0, 7, 0, 7)]))
    assert mt.period_pnl(r).tolist() == [3.0, 0.0, 4.0]
    # in the market from 0.5 to 2.5 s of 2.5 s
    assert mt.time_in_market(r) == pytest.approx(0.8)


def test_the_peak_of_a_fall_from_the_start_is_the_start():
    r = result(equity=equity([(1, 100, 1, 0, 1, -1), (2, 100, 1, 0, 1, -3), (3, 100, 0, 0, 1, -2)]))
    m = mt.compute_metrics(r)
    assert m["max_drawdown"] == 3.0 and m["drawdown_peak_ns"] == T0 and m["drawdown_s"] == 2.0


def test_bad_results_are_refused_with_the_name():
    r = result("broken", equity=equity([(2, 100, 0, 0, 0, 0), (1, 100, 0, 0, 0, 0)]))
    with pytest.raises(ValueError, match="'broken' are not in time order"):
        mt.compute_metrics(r)
    with pytest.raises(ValueError, match="period_ns must be > 0"):
        mt.period_pnl(result(period_s=0))


def test_signal_scores_brier_and_calibration():
    sig = signals([
        (0, 0.75, 0.20, 0.05, 0),  # argmax down, right
        (1, 0.10, 0.25, 0.65, 2),  # up, right
        (2, 0.15, 0.50, 0.35, 2),  # flat, wrong
        (3, 0.60, 0.35, 0.05, 1),  # down, wrong
        (4, 0.30, 0.30, 0.40, -1),  # no label: left out
    ])
    s = mt.compute_metrics(result(signals=sig))["signal"]
    assert s["signals"] == 5 and s["labelled"] == 4
    assert s["accuracy"] == pytest.approx(0.5)
    # F1 down: P 1/2 R 1 -> 2/3; flat: 0; up: P 1 R 1/2 -> 2/3; macro 4/9
    assert s["macro_f1"] == pytest.approx(4 / 9, abs=1e-6)
    assert s["majority_floor"] == pytest.approx(0.5)  # up is 2 of 4
    # Brier: .105 + .195 + .695 + .785 = 1.78 over 4
    assert s["brier"] == pytest.approx(0.445, abs=1e-6)
    up = s["calibration"]["up"]
    # p_up .05 (label 0), .65 (2), .35 (2), .05 (1): bins 0 (2 rows, none up), 3 (1, up), 6 (1, up)
    assert up["bin"] == [0, 3, 6] and up["count"] == [2, 1, 1]
    assert up["mean_predicted"] == pytest.approx([0.05, 0.35, 0.65], abs=1e-6)
    assert up["realised"] == [0.0, 1.0, 1.0]
    down = s["calibration"]["down"]  # .75 (0) -> bin 7 hit; .10 -> bin 1; .15 -> bin 1; .60 (1) -> bin 6
    assert down["bin"] == [1, 6, 7] and down["realised"] == [0.0, 0.0, 1.0]


def test_trades_frame_is_the_per_trade_list():
    df = mt.trades_frame([trade(1.0), trade(-0.5, side="SHORT")])
    assert list(df["net_pnl"]) == [1.0, -0.5] and list(df["side"]) == ["LONG", "SHORT"]
    assert str(df["exit_time"].dt.tz) == "UTC"
    assert len(mt.trades_frame([])) == 0


def test_json_ready_turns_numpy_and_nan():
    out = mt.json_ready({"a": np.float32(1.5), "b": [np.int64(2), float("inf")], "c": np.bool_(True)})
    assert out == {"a": 1.5, "b": [2, None], "c": True}
    assert isinstance(out["b"][0], int)
