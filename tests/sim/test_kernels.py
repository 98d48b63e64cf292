"""The matching kernels below the facade: the inline replay path, the queue rules, the random stream."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hftbot.sim import kernels as k
from hftbot.sim.matching import (
    BUY,
    SELL,
    EmpiricalLatency,
    FeeModel,
    JitterLatency,
    LatencyModel,
    MatchingEngine,
    Order,
    PowerProbQueue,
    ProportionalQueue,
    RiskAverseQueue,
)

QUEUES = (
    RiskAverseQueue(),
    ProportionalQueue(),
    PowerProbQueue(1.0),
    PowerProbQueue(2.0),
    PowerProbQueue(3.5),
)

rows_strategy = st.lists(
    st.tuples(
        st.sampled_from([k.EV_LEVEL, k.EV_LEVEL, k.EV_LEVEL, k.EV_TRADE]),
        st.sampled_from([BUY, SELL]),
        st.integers(-6, 6),  # ticks from 1000
        st.integers(0, 80),
    ),
    min_size=1,
    max_size=120,
)


def _engine(queue) -> MatchingEngine:
    e = MatchingEngine(width=1 << 12, queue=queue)
    e.begin()
    for j in range(6):
        e.replay_level(BUY, 999 - j, 40, 0)
        e.replay_level(SELL, 1001 + j, 40, 0)
    for n, (side, px, qty) in enumerate(((BUY, 998, 7), (BUY, 997, 5), (SELL, 1002, 6))):
        e.place(Order(e.new_order_id(), f"o{n}", side, "LIMIT", "GTC", px, qty, 0))
    return e


@settings(max_examples=120, deadline=None)
@given(rows_strategy, st.sampled_from(range(len(QUEUES))))
def test_run_rows_inline_path_equals_the_single_calls(seq, q) -> None:
    """`run_rows` repeats `_set` inline for the common update: both paths must leave every array equal."""
    rows = np.zeros(len(seq), dtype=k.MARKET_EVENT_DTYPE)
    for j, (kind, side, d, qty) in enumerate(seq):
        rows[j] = (j + 1, j + 1, kind, side, 1000 + d, qty, 0)
    a, b = _engine(QUEUES[q]), _engine(QUEUES[q])
    i = 0
    while i < len(rows):
        i = a.run(rows, i, stop_on_event=True)
    for t, kind, side, px, qty in rows[["exch_ns", "kind", "side", "px", "qty"]].tolist():
        if kind == k.EV_LEVEL:
            b.replay_level(side, px, qty, t)
        else:
            b.replay_trade(side == BUY, px, qty, t)
    assert np.array_equal(a.lad, b.lad)
    state = [k.S_BB, k.S_BA, k.S_BID_PX, k.S_ASK_PX, k.S_NB, k.S_NA, k.S_LO, k.S_HI, k.S_UPDATE_ID]
    state += [k.S_NEXT_TRADE, k.S_NLOG, k.S_OWN_BID, k.S_OWN_ASK, k.S_NFREE]
    assert a.mem[state].tolist() == b.mem[state].tolist()
    assert np.array_equal(a.order_table, b.order_table)
    assert [(o.status, o.filled, o.others_ahead) for o in a.orders.values()] == [
        (o.status, o.filled, o.others_ahead) for o in b.orders.values()
    ]
    da, db = a.drain(), b.drain()
    assert sorted(da.bids) == sorted(db.bids) and sorted(da.asks) == sorted(db.asks)
    assert [(x.exec_type, x.last_qty, x.time_ns) for x in da.order_events] == [
        (x.exec_type, x.last_qty, x.time_ns) for x in db.order_events
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6), st.sampled_from(range(len(QUEUES)))
)
def test_kernel_queue_rule_equals_the_python_model(a, b, c, q) -> None:
    ahead, others = min(a, b), max(a, b)
    others = max(others, 1)
    c = min(c, others)
    model = QUEUES[q]
    e = MatchingEngine(width=1 << 12, queue=model)
    got = int(k._ahead_after_cancel(e.mem, ahead, others, c))
    want = model.ahead_after_cancel(ahead, others, c)
    assert got == want and 0 <= got <= min(ahead, others - c)


def test_power_model_sends_cancels_behind_a_front_runner() -> None:
    m = PowerProbQueue(2.0)
    assert m.ahead_after_cancel(10, 100, 50) == 9  # 90 behind: p = 8100 / 8200, 49 of 50 from there
    assert m.ahead_after_cancel(90, 100, 10) == 80  # 10 behind: almost all from ahead
    assert m.ahead_after_cancel(50, 100, 10) == 45  # even split
    assert PowerProbQueue(1.0).ahead_after_cancel(25, 100, 40) == 15  # n = 1: by share (10 from ahead)


def test_random_stream_is_uniform_and_seeded() -> None:
    e1, e2 = MatchingEngine(width=1 << 12, seed=5), MatchingEngine(width=1 << 12, seed=5)
    u1 = [k._uniform(e1.mem) for _ in range(20_000)]
    assert u1[:50] == [k._uniform(e2.mem) for _ in range(50)]
    assert min(u1) >= 0.0 and max(u1) < 1.0 and abs(np.mean(u1) - 0.5) < 0.01
    assert np.histogram(u1, bins=10, range=(0, 1))[0].min() > 1800


def test_kernel_latency_draws_follow_their_models() -> None:
    jit = MatchingEngine(width=1 << 12, latency=LatencyModel(order_entry=JitterLatency(1000, 400)), seed=3)
    d = np.array([k._delay(jit.mem, k.S_ENTRY, k.S_OFF_LAT_E) for _ in range(20_000)])
    assert d.min() >= 1000 and abs(d.mean() - 1400) < 15  # exponential tail of mean 400
    samples = (150, 2_000, 40_000)
    emp = MatchingEngine(
        width=1 << 12, latency=LatencyModel(order_response=EmpiricalLatency(samples)), seed=3
    )
    r = [k._delay(emp.mem, k.S_RESP, k.S_OFF_LAT_R) for _ in range(3_000)]
    assert set(r) == set(samples)
    assert (
        EmpiricalLatency(samples).sample_ns(0.0) == 150
        and EmpiricalLatency(samples).sample_ns(0.99) == 40_000
    )


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 2_000_000),  # price, ticks
    st.integers(1, 500_000),  # lots
    st.integers(-50_000, 100_000),  # maker rate, 1e-8 (rebates included)
    st.integers(0, 100_000),  # taker rate
    st.sampled_from([(0.01, 0.01), (0.1, 0.001), (0.0001, 1.0)]),
)
def test_kernel_fees_equal_exact_decimal_arithmetic(px, lots, maker_e8, taker_e8, grid) -> None:
    from decimal import Decimal

    tick, lot = grid
    maker, taker = Decimal(maker_e8) / 10**8, Decimal(taker_e8) / 10**8
    e = MatchingEngine(tick=tick, lot=lot, fees=FeeModel(maker, taker), width=1 << 12, center_px=px)
    e.add(SELL, px + 1, lots)
    mine = e.place(Order(1, "m", BUY, "LIMIT", "GTC", px, lots, 0))
    taker_order = e.place(Order(2, "t", BUY, "LIMIT", "IOC", px + 1, lots, 1))  # takes the ask at px + 1
    e.market(SELL, lots, 2)  # fills our bid at px
    unit = Decimal(repr(tick)) * Decimal(repr(lot))
    assert mine.cum_fee == Decimal(px * lots) * unit * maker
    assert taker_order.cum_fee == Decimal((px + 1) * lots) * unit * taker
    assert mine.cum_quote == Decimal(px * lots) * unit and mine.status == "FILLED"
