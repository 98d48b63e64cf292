"""The replay loop on hand-built tapes with known fills: queue ahead trades or cancels first, latency
delays the fill, partial fills, fees exact — through the real risk manager, positions and engine."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from hftbot.backtest.engine import run_backtest
from hftbot.config import load_config
from hftbot.exec.messages import BUY, Place
from tests.backtest.capture import MS, T0_MS, Scripted, Tape

T0 = T0_MS * MS
SNAP_BIDS = [("100.00", "5.01"), ("99.99", "0.03")]
SNAP_ASKS = [("100.01", "4.99"), ("100.02", "1.00")]


def cfg(**bt):
    base = {"feed_latency": "zero", "order_latency": "constant", "order_entry_us": 0.0,
            "order_response_us": 0.0, "queue_model": "risk_averse", "period_s": 0.01}
    base.update(bt)
    # the VIP 0 maker rate (the defaults' is a market maker's 0, docs/exec.md): fees to check exactly
    return load_config().override("exec", maker_fee=0.0002).override("sim", maker_fee=0.0002).override(
        "backtest", **base)


def tape(tmp_path, feed_latency_ms: float = 0.0, cancel_to: str | None = None):
    t = Tape(feed_latency_ms)
    t.snapshot(T0_MS, SNAP_BIDS, SNAP_ASKS)
    t.diff(T0_MS + 1, bids=[("99.98", "0.07")])
    if cancel_to is None:
        t.trade(T0_MS + 10, "100.00", "3.00", taker_sells=True)  # 300 of the 501 lots ahead of us trade
        t.diff(T0_MS + 11, bids=[("100.00", "2.01")])  # the diff that reflects it: no cancel
        t.trade(T0_MS + 20, "100.00", "2.51", taker_sells=True)  # 201 ahead, then 50 of ours
        t.diff(T0_MS + 21, bids=[("100.00", "0")])
        t.trade(T0_MS + 30, "100.00", "0.80", taker_sells=True)  # the other 50 of ours (or 80 if first)
    else:
        t.diff(T0_MS + 11, bids=[("100.00", cancel_to)])  # anonymous cancel: from ahead or behind?
        t.trade(T0_MS + 20, "100.00", "1.51", taker_sells=True)
    t.diff(T0_MS + 40, asks=[("100.03", "0.11")])
    return t.write(tmp_path / "tape.gz")


def buy_at_bid(t_ns: int = T0 + 1 * MS):
    return Scripted([(t_ns, Place(BUY, 100, 10000, tag="entry"))])


def test_queue_ahead_trades_first_then_partial_fills_with_exact_fees(tmp_path):
    r = run_backtest([tape(tmp_path)], strategy=buy_at_bid(), cfg=cfg())
    assert r.orders == 1
    f = r.fills
    assert f["qty"].tolist() == pytest.approx([0.5, 0.5])
    assert f["px"].tolist() == pytest.approx([100.0, 100.0])
    assert f["t_ns"].tolist() == [T0 + 20 * MS, T0 + 30 * MS]
    assert f["maker"].all() and (f["side"] == 1).all()
    # maker 0.0002 × 100.00 × 0.50 = 0.01 USDT each, exactly (the engine's integer fees)
    maker = Decimal(repr(cfg().exec.maker_fee))
    assert f["fee"].tolist() == [float(maker * Decimal("100.00") * Decimal("0.50"))] * 2
    last = r.equity[-1]
    assert last["position_lots"] == 100
    assert last["fees"] == pytest.approx(0.02, abs=1e-12)


def test_entry_latency_delays_the_order_behind_what_traded_meanwhile(tmp_path):
    # the order reaches the engine 25 ms after it left: after the 2.51 print and the level's emptying,
    # so it is first in the queue and the 0.80 print fills 80 of its 100 lots; the answer is 2 ms late
    r = run_backtest([tape(tmp_path)], strategy=buy_at_bid(),
                     cfg=cfg(order_entry_us=25_000.0, order_response_us=2_000.0))
    f = r.fills
    assert f["qty"].tolist() == pytest.approx([0.8])
    assert f["t_ns"].tolist() == [T0 + 30 * MS]
    assert f["recv_ns"].tolist() == [T0 + 32 * MS]
    assert r.equity[-1]["position_lots"] == 80


def test_risk_averse_cancel_comes_from_ahead_when_nobody_is_behind(tmp_path):
    # 5.01 → 1.01 with no trade: an anonymous cancel; nobody behind us, so 4.00 leave from ahead
    # (101 ahead): the 1.51 print reaches 50 of ours
    r = run_backtest([tape(tmp_path, cancel_to="1.01")], strategy=buy_at_bid(), cfg=cfg())
    assert r.fills["qty"].tolist() == pytest.approx([0.5])


def test_feed_latency_recorded_moves_the_venue_at_exchange_time(tmp_path):
    # we see everything 5 ms late; the venue fills at the exchange's time, we learn at receive time
    r = run_backtest([tape(tmp_path, feed_latency_ms=5.0)], strategy=buy_at_bid(T0 + 6 * MS),
                     cfg=cfg(feed_latency="recorded"))
    assert r.fills["t_ns"].tolist() == [T0 + 20 * MS, T0 + 30 * MS]
    r0 = run_backtest([tape(tmp_path, feed_latency_ms=5.0)], strategy=buy_at_bid(T0 + 6 * MS),
                      cfg=cfg(feed_latency="zero"))
    assert r0.fills["t_ns"].tolist() == [T0 + 25 * MS, T0 + 35 * MS]


def test_equity_is_sampled_every_period_and_marks_the_position(tmp_path):
    r = run_backtest([tape(tmp_path)], strategy=buy_at_bid(), cfg=cfg(period_s=0.01))
    eq = r.equity
    assert r.period_ns == 10 * MS
    grid = np.unique(eq["t_ns"][eq["t_ns"] % (10 * MS) == 0])  # fills add rows of their own
    assert len(grid) >= 4 and (np.diff(grid) == 10 * MS).all()
    # at the end: long 1.00 from 100.00, marked at the mid (100.00 bid gone: 99.99 / 100.01 → 100.00)
    last = eq[-1]
    assert last["equity"] == pytest.approx(last["realised"] - last["fees"] + (last["mid"] - 100.0) * 1.0)


def test_start_and_end_bound_the_orders(tmp_path):
    r = run_backtest([tape(tmp_path)], strategy=buy_at_bid(), cfg=cfg(), start_ns=T0 + 25 * MS)
    # the order leaves at the first book at or after 25 ms (the 40 ms diff): nothing trades after it
    assert r.orders == 1 and len(r.fills) == 0
    assert r.start_ns >= T0 + 25 * MS and (r.equity["t_ns"] >= T0 + 25 * MS - r.period_ns).all()  # span from --start
    r = run_backtest([tape(tmp_path)], strategy=buy_at_bid(), cfg=cfg(), end_ns=T0 + 25 * MS)
    assert r.fills["t_ns"].tolist() == [T0 + 20 * MS]


def test_bad_input_says_what_and_where(tmp_path):
    bad = tmp_path / "bad.gz"
    import gzip

    with gzip.open(bad, "wt") as f:
        f.write("not a capture line\n")
    with pytest.raises(ValueError, match="bad.gz"):
        run_backtest([bad], strategy="imbalance", cfg=cfg())
    with pytest.raises(FileNotFoundError, match="nope"):
        run_backtest([tmp_path / "nope"], strategy="imbalance", cfg=cfg())


def test_rows_built_in_chunks_equal_the_rows_built_at_once():
    from pathlib import Path

    from hftbot.backtest.engine import chunks
    from hftbot.sim.replayrows import load_rows

    capture = Path(__file__).resolve().parents[1] / "data" / "btcusdt_20240808.gz"
    whole = load_rows(capture)
    _, gen = chunks([capture], 10, 9_000)  # a diff chain across every chunk boundary
    parts = [ch.rows for ch in gen]
    assert len(parts) > 5
    want = whole.rows.copy()
    late = want["exch_ns"] > want["recv_ns"]  # this capture's clocks: most rows "arrive" before they happen
    assert late.any()
    want["exch_ns"][late] = want["recv_ns"][late]  # chunks hand out (and the cache keeps) clamped rows
    assert np.array_equal(np.concatenate(parts), want)


def test_the_symbol_comes_from_the_data_and_risk_refusals_are_reported(tmp_path):
    """The real BTCUSDT capture under the SOLUSDT default config: the run is BTCUSDT (grid, filters,
    report), and mm's SOL-sized quotes (~62,000 USDT a BTC lot of the same count) are refused by the
    order-notional limit — counted per reason with the limit's own words, not silently dropped."""
    from pathlib import Path

    capture = Path(__file__).resolve().parents[1] / "data" / "btcusdt_20240808.gz"
    r = run_backtest([capture], strategy="mm", cfg=load_config(env={}), end_ns=None)
    assert r.symbol == "BTCUSDT" and r.tick == pytest.approx(0.1) and r.lot == pytest.approx(0.001)
    assert r.orders == 0 and r.refusals["max_order_notional"]["count"] == r.rejected > 0
    assert "USDT >" in r.refusals["max_order_notional"]["first"]
