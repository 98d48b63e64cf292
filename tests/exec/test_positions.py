"""Positions and PnL against hand-computed numbers; fills idempotent and order-independent."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftbot.exec import positions as positions_mod
from hftbot.exec.fees import FeeModel
from hftbot.exec.messages import (
    BUY,
    CANCELED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    PENDING_NEW,
    SELL,
    UNKNOWN,
    Rejected,
)
from hftbot.exec.positions import LONG, SHORT, Positions
from tests.exec.helpers import LOT, TICK, fill, request, update


def ledger(**kw) -> Positions:
    return Positions(TICK, LOT, FeeModel(0.0002, 0.0005), symbol="SOLUSDT", strategy="deeplob", run="r1", **kw)


def test_long_round_trip_gross_fees_net_and_record():
    p = ledger()
    p.on_request(request("c1", BUY, 100, 15000, tag="entry", model_id=42))
    p.on_request(request("c2", SELL, 100, 15100, tag="exit_horizon", model_id=42))
    p.on_fill(fill(BUY, 100, 15000, 0.075, trade_id=1, time_ms=1_000, client_id="c1", order_id=1))
    assert p.position == 100 and p.avg_px == 15000
    assert p.unrealised(15010.0) == pytest.approx(10 * 100 * 1e-4)  # 0.10 USDT
    p.on_fill(fill(SELL, 100, 15100, 0.0755, trade_id=2, time_ms=4_500, client_id="c2", order_id=2))
    assert p.position == 0 and p.avg_px == 0
    assert p.realised == pytest.approx(1.0)  # 100 ticks × 100 lots × 1e-4
    assert p.fees == pytest.approx(0.1505)
    assert p.net_pnl(15200.0) == pytest.approx(0.8495)  # flat: the mark no longer matters
    (t,) = p.trades
    assert (t.side, t.qty, t.qty_lots, t.entry_px, t.exit_px) == (LONG, 1.0, 100, 150.0, 151.0)
    assert (t.entry_ms, t.exit_ms, t.holding_ms, t.n_fills) == (1_000, 4_500, 3_500, 2)
    assert t.gross_pnl == pytest.approx(1.0) and t.fees == pytest.approx(0.1505)
    assert t.net_pnl == pytest.approx(0.8495)
    s = p.summary(15200.0)
    assert (s["position"], s["trades"], s["win_rate"], s["open_orders"]) == (0, 1, 1.0, 0)
    assert s["taker_fees"] == pytest.approx(0.1505) and s["maker_fees"] == 0.0
    assert s["net_pnl"] == pytest.approx(0.8495) and s["volume"] == pytest.approx(301.0)
    assert (t.model_id, t.strategy, t.run, t.entry_tag, t.exit_tag) == (42, "deeplob", "r1", "entry", "exit_horizon")
    assert p.win_rate() == 1.0


def test_partial_closes_stay_one_trade_with_average_exit():
    p = ledger()
    p.on_fill(fill(BUY, 100, 15000, 0.0, trade_id=1))
    p.on_fill(fill(SELL, 40, 15050, 0.0, trade_id=2))
    assert p.position == 60 and p.avg_px == 15000 and p.trades == []
    assert p.realised == pytest.approx(40 * 50 * 1e-4)  # 0.20
    p.on_fill(fill(SELL, 60, 14980, 0.0, trade_id=3))
    (t,) = p.trades
    assert t.gross_pnl == pytest.approx(0.20 - 0.12)
    assert t.exit_px == pytest.approx((40 * 150.5 + 60 * 149.8) / 100)  # 150.08
    assert t.qty_lots == 100 and t.max_qty_lots == 100 and t.n_fills == 3


def test_flip_closes_one_trade_and_opens_the_next_with_the_fee_split_pro_rata():
    p = ledger()
    p.on_fill(fill(BUY, 100, 15000, 0.1, trade_id=1, time_ms=10))
    p.on_fill(fill(SELL, 150, 15020, 0.3, trade_id=2, time_ms=20))
    assert p.position == -50 and p.avg_px == 15020
    (t1,) = p.trades
    assert t1.side == LONG and t1.gross_pnl == pytest.approx(0.2)
    assert t1.fees == pytest.approx(0.1 + 0.2)  # the flip fill's 0.3: 100/150 to the close
    assert t1.net_pnl == pytest.approx(-0.1)
    p.on_fill(fill(BUY, 50, 15000, 0.05, trade_id=3, time_ms=35))
    t2 = p.trades[1]
    assert t2.side == SHORT and t2.qty_lots == 50 and t2.entry_ms == 20 and t2.holding_ms == 15
    assert t2.gross_pnl == pytest.approx(50 * 20 * 1e-4)
    assert t2.fees == pytest.approx(0.1 + 0.05)  # 50/150 of the flip fee, then the exit fee
    assert t2.net_pnl == pytest.approx(-0.05)
    assert p.realised == pytest.approx(0.3) and p.fees == pytest.approx(0.45)
    assert p.win_rate() == 0.0  # both trades lost net of fees, though both were gross winners


def test_scaling_in_moves_the_average_entry():
    p = ledger()
    p.on_fill(fill(BUY, 100, 15000, 0.0, trade_id=1))
    p.on_fill(fill(BUY, 100, 15100, 0.0, trade_id=2))
    assert p.avg_px == 15050 and p.position == 200
    p.on_fill(fill(SELL, 200, 15100, 0.0, trade_id=3))
    assert p.realised == pytest.approx(200 * 50 * 1e-4)
    assert p.trades[0].entry_px == pytest.approx(150.5) and p.trades[0].max_qty_lots == 200


def test_short_unrealised_and_maker_rebate():
    p = ledger()
    p.on_fill(fill(SELL, 100, 15000, -0.01, trade_id=1, maker=True))  # a rebate: negative fee
    assert p.unrealised(14990.0) == pytest.approx(0.1) and p.fees == pytest.approx(-0.01)
    assert p.summary(14990.0)["maker_fees"] == pytest.approx(-0.01)
    assert p.net_pnl(14990.0) == pytest.approx(0.11)


def test_duplicate_fill_changes_nothing():
    p = ledger()
    f = fill(BUY, 100, 15000, 0.075, trade_id=9, order_id=3)
    assert p.on_fill(f) is True
    assert p.on_fill(f) is False
    assert p.position == 100 and p.fees == pytest.approx(0.075) and p.duplicate_fills == 1 and p.fills == 1


def test_missing_fee_is_estimated_with_the_fee_model():
    p = ledger()
    p.on_fill(fill(BUY, 100, 15000, math.nan, trade_id=1, maker=False))  # notional 150 USDT
    p.on_fill(fill(SELL, 100, 15000, math.nan, trade_id=2, maker=True))
    assert p.fees == pytest.approx(150 * 0.0005 + 150 * 0.0002) and p.estimated_fees == 2


FLIP_FILLS = [
    fill(BUY, 100, 15000, 0.1, trade_id=1, time_ms=10, order_id=1),
    fill(SELL, 150, 15020, 0.3, trade_id=2, time_ms=20, order_id=2),
    fill(BUY, 30, 14990, 0.02, trade_id=3, time_ms=30, order_id=3),
    fill(BUY, 40, 15010, 0.03, trade_id=4, time_ms=40, order_id=3),
    fill(SELL, 20, 15030, 0.01, trade_id=5, time_ms=50, order_id=4),
]


def _state(p: Positions):
    return (p.position, round(p.avg_px, 9), round(p.realised, 12), round(p.fees, 12), p.trades)


def test_every_arrival_order_gives_the_same_ledger():
    ref = ledger()
    for f in FLIP_FILLS:
        ref.on_fill(f)
    assert ref.replays == 0
    for perm in itertools.permutations(FLIP_FILLS):
        p = ledger()
        for f in perm:
            p.on_fill(f)
        assert _state(p) == _state(ref), perm


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_fills_shuffled_and_duplicated_give_the_in_order_ledger(data):
    n = data.draw(st.integers(1, 12))
    fills = [
        fill(data.draw(st.sampled_from([BUY, SELL])), data.draw(st.integers(1, 50)),
             data.draw(st.integers(14900, 15100)), data.draw(st.floats(0, 0.1)), trade_id=i + 1,
             time_ms=(i + 1) * 10, order_id=100 + i)
        for i in range(n)
    ]
    ref = ledger()
    for f in fills:
        ref.on_fill(f)
    arrivals = data.draw(st.permutations(fills + data.draw(st.lists(st.sampled_from(fills), max_size=4))))
    p = ledger()
    for f in arrivals:
        p.on_fill(f)
    assert p.position == ref.position == sum(f.side * f.qty for f in fills)
    assert p.fees == pytest.approx(ref.fees) and p.realised == pytest.approx(ref.realised)
    assert len(p.trades) == len(ref.trades)
    for a, b in zip(p.trades, ref.trades, strict=True):
        assert (a.side, a.qty_lots, a.entry_ms, a.exit_ms) == (b.side, b.qty_lots, b.entry_ms, b.exit_ms)
        assert a.net_pnl == pytest.approx(b.net_pnl)


def test_long_runs_fold_old_fills_and_keep_position_exact(monkeypatch):
    monkeypatch.setattr(positions_mod, "MAX_REPLAY_FILLS", 8)
    p = ledger()
    for i in range(40):
        p.on_fill(fill(BUY if i % 2 == 0 else SELL, 10, 15000 + i, 0.0, trade_id=i + 1, order_id=i + 1))
    assert len(p._fills) <= 8 and p.position == 0 and len(p.trades) == 20
    assert p.realised == pytest.approx(20 * 10 * 1 * 1e-4)  # each pair: buy at k, sell at k+1
    # a fill older than everything kept: applied as it comes, the position stays right, counted
    p.on_fill(fill(BUY, 5, 15000, 0.0, trade_id=0, time_ms=0, order_id=999))
    assert p.position == 5 and p.late_fills_beyond_replay == 1


def test_take_closed_hands_each_trade_once():
    p = ledger()
    p.on_fill(fill(BUY, 10, 15000, 0.0, trade_id=1))
    p.on_fill(fill(SELL, 10, 15010, 0.0, trade_id=2))
    assert len(p.take_closed()) == 1 and p.take_closed() == []
    p.on_fill(fill(SELL, 10, 15010, 0.0, trade_id=3))
    p.on_fill(fill(BUY, 10, 15000, 0.0, trade_id=4))
    (t,) = p.take_closed()
    assert t.side == SHORT


# ------------------------------------------------------------------------------- open orders


def test_approved_orders_count_until_the_venue_says_final():
    p = ledger()
    p.on_request(request("b1", BUY, 100, 15000))
    p.on_request(request("s1", SELL, 30, 15010))
    assert p.orders["b1"].status == PENDING_NEW and p.open_lots() == (100, 30)
    p.on_update(update("b1", NEW, 0, order_id=11, event_ms=5))
    p.on_update(update("b1", PARTIALLY_FILLED, 40, order_id=11, event_ms=6, exec_type="TRADE"))
    assert p.orders["b1"].order_id == 11 and p.open_lots() == (60, 30)
    p.on_update(update("b1", NEW, 0, order_id=11, event_ms=5))  # late: older news is ignored
    assert p.orders["b1"].filled == 40 and p.stale_updates == 1
    p.on_update(update("b1", CANCELED, 40, order_id=11, event_ms=9, exec_type="CANCELED"))
    assert "b1" not in p.orders and p.open_lots() == (0, 30)
    p.on_update(update("b1", PARTIALLY_FILLED, 40, order_id=11, event_ms=6))  # after final: ignored
    assert "b1" not in p.orders
    p.set_status("s1", UNKNOWN)
    assert p.orders["s1"].status == UNKNOWN and p.open_lots() == (0, 30)


def test_fills_complete_an_order_even_before_its_update_arrives():
    p = ledger()
    p.on_request(request("b1", BUY, 100, 15000))
    p.on_fill(fill(BUY, 60, 15000, 0.0, trade_id=1, client_id="b1", order_id=5))
    assert p.orders["b1"].remaining == 40
    p.on_fill(fill(BUY, 40, 15000, 0.0, trade_id=2, client_id="b1", order_id=5))
    assert "b1" not in p.orders and p.position == 100
    p.on_update(update("b1", FILLED, 100, order_id=5, event_ms=3))
    assert "b1" not in p.orders


def test_rejection_removes_the_pending_order_and_a_later_venue_report_revives_it():
    p = ledger()
    p.on_request(request("b1", BUY, 100, 15000))
    p.on_rejected(Rejected("b1", -5022, "post only", 1))
    assert "b1" not in p.orders and p.rejects == {-5022: 1}
    p.on_update(update("b1", NEW, 0, order_id=12, event_ms=2))  # the venue had it after all
    assert p.orders["b1"].status == NEW and p.revived_orders == 1


def test_view_follows_position_and_orders():
    p = ledger()
    v = p.view
    p.on_request(request("b1", BUY, 100, 15000))
    assert "b1" in v.orders
    p.on_fill(fill(BUY, 100, 15000, 0.0, trade_id=1, client_id="b1"))
    assert (v.position, v.avg_px) == (100, 15000.0) and "b1" not in v.orders


def test_unknown_order_fills_still_move_the_position():
    p = ledger()
    p.on_fill(fill(SELL, 7, 15000, 0.0, trade_id=1, client_id="manual"))
    assert p.position == -7 and p.foreign_fills == 1
