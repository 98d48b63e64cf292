"""Symbol filters from exchangeInfo: parsing, snapping (hypothesis), exact strings, checks."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftbot.exec.filters import FilterError, SymbolFilters
from hftbot.exec.messages import BUY, SELL
from hftbot.sim.market import ModelParams
from hftbot.sim.venue import VenueSettings, exchange_info

# A real-shaped entry (Binance BTCUSDT): tick 0.10, step 0.001, MARKET max 120, min notional 100.
BTC = {
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
                {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": "100"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
        }
    ]
}


def btc() -> SymbolFilters:
    return SymbolFilters.from_exchange_info(BTC, "btcusdt")


def test_parses_a_binance_symbol_into_ticks_and_lots():
    f = btc()
    assert (f.tick_size, f.step_size) == (Decimal("0.10"), Decimal("0.001"))
    assert (f.min_px, f.max_px) == (5568, 45297640)
    assert (f.min_qty, f.max_qty, f.market_max_qty) == (1, 1_000_000, 120_000)
    assert f.min_notional == Decimal("100") and f.max_num_orders == 200
    assert (f.percent_up, f.percent_down) == (1.05, 0.95)


def test_parses_the_simulators_exchange_info():
    f = SymbolFilters.from_exchange_info(exchange_info(ModelParams(), VenueSettings(), 0), "SOLUSDT")
    assert (f.tick, f.lot, f.min_notional) == (0.01, 0.01, Decimal("5"))
    assert f.matches(0.01, 0.01) and not f.matches(0.1, 0.01)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.update(symbols=[]), r"has no symbol 'BTCUSDT'"),
        (lambda s: s["symbols"][0]["filters"].pop(1), r"lacks the LOT_SIZE filter"),
        (lambda s: s["symbols"][0]["filters"][0].update(tickSize="abc"), r"PRICE_FILTER\.tickSize is not a decimal"),
        (lambda s: s["symbols"][0]["filters"][0].update(tickSize="0"), r"must be > 0"),
        (lambda s: s["symbols"][0]["filters"][0].update(minPrice="556.85"), r"minPrice = 556\.85 is not a multiple"),
        (lambda s: s["symbols"][0]["filters"][4].update(notional="-1"), r"MIN_NOTIONAL\.notional must be"),
    ],
)
def test_bad_exchange_info_is_a_clear_error(mutate, message):
    info = copy.deepcopy(BTC)
    mutate(info)
    with pytest.raises(FilterError, match=message):
        SymbolFilters.from_exchange_info(info, "BTCUSDT")


def test_exact_strings_and_parsing():
    f = btc()
    assert f.px_str(600001) == "60000.1" and f.px_str(5568) == "556.8"
    assert f.qty_str(1) == "0.001" and f.qty_str(1500) == "1.500" and f.qty_str(0) == "0.000"
    assert f.parse_px("60000.10") == 600001 and f.parse_qty("1.5") == 1500
    with pytest.raises(FilterError, match="not a multiple"):
        f.parse_px("60000.15")
    whole = SymbolFilters.from_tick_lot("SOLUSDT", "0.01", "1")
    assert whole.qty_str(3) == "3" and whole.px_str(15001) == "150.01"


@settings(max_examples=300, deadline=None)
@given(
    tick=st.sampled_from(["0.1", "0.01", "0.001", "0.0001", "0.5", "5", "0.00001"]),
    price=st.floats(0.0001, 1e6, allow_nan=False),
    side=st.sampled_from([BUY, SELL]),
)
def test_snapped_prices_are_on_the_grid_passive_and_within_a_tick(tick, price, side):
    f = SymbolFilters.from_tick_lot("X", tick, "0.001")
    ticks = f.snap_px(price, side)
    snapped = Decimal(f.px_str(ticks))
    assert snapped % Decimal(tick) == 0  # on the grid, exactly, as a decimal string
    assert abs(float(snapped) - price) <= float(tick) * (1 + 1e-9)  # within one tick
    slack = 1e-9 * max(1.0, price / float(tick)) * float(tick)  # float noise is not a tick
    if side == BUY:
        assert float(snapped) <= price + slack  # a bid never pays more than asked
    else:
        assert float(snapped) >= price - slack  # an ask never sells for less
    assert f.parse_px(f.px_str(ticks)) == ticks  # the string round-trips


@settings(max_examples=300, deadline=None)
@given(step=st.sampled_from(["0.001", "0.01", "1", "0.1"]), qty=st.floats(0, 1e5, allow_nan=False))
def test_snapped_quantities_never_exceed_the_request(step, qty):
    f = SymbolFilters.from_tick_lot("X", "0.01", step)
    lots = f.snap_qty(qty)
    q = Decimal(f.qty_str(lots))
    assert q % Decimal(step) == 0 and lots >= 0
    assert float(q) <= qty * (1 + 1e-9) + 1e-12 and qty - float(q) < float(step) * (1 + 1e-9)


def test_snap_keeps_exact_values_despite_float_noise():
    f = SymbolFilters.from_tick_lot("X", "0.01", "0.01")
    assert f.snap_px(0.1 + 0.2, BUY) == 30 and f.snap_px(0.1 + 0.2, SELL) == 30
    assert f.snap_px(150.005, BUY) == 15000 and f.snap_px(150.005, SELL) == 15001
    assert f.snap_qty(0.29999999999999) == 30


def test_checks_name_the_rule_broken():
    f = btc()
    mid = 600000.0  # 60000.0
    assert f.check(BUY, 2, 600000, False, False, mid) is None  # 2 × 0.001 × 60000 = 120 USDT
    assert f.check(BUY, 1, 600000, False, False, mid)[0] == "min_notional"  # 60 USDT
    assert f.check(SELL, 1, 600000, False, True, mid) is None  # reduce-only is exempt
    assert f.check(BUY, 0, 600000, False, False, mid)[0] == "lot_size"
    assert f.check(BUY, 2_000_000, 600000, False, False, mid)[0] == "lot_size"
    assert f.check(BUY, 130_000, 0, True, False, mid)[0] == "lot_size"  # MARKET max 120 BTC
    assert f.check(BUY, 100_000, 0, True, False, mid) is None
    assert f.check(BUY, 2, 5000, False, False, mid)[0] == "price_filter"  # below minPrice 556.8
    assert f.check(BUY, 2, 640000, False, False, mid)[0] == "percent_price"  # > mid × 1.05
    assert f.check(SELL, 2, 560000, False, False, mid)[0] == "percent_price"  # < mid × 0.95
    assert f.check(SELL, 2, 640000, False, False, mid) is None  # a high ask is fine
