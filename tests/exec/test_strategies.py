"""Strategies on hand-built books and signals, through the real risk manager and positions ledger."""

from __future__ import annotations

import dataclasses
import math

import pytest

from hftbot.config import ExecConfig, RiskConfig, StrategyConfig
from hftbot.exec.fees import FeeModel
from hftbot.exec.messages import BUY, GTX, IOC, SELL, Cancel, CancelRequest, ModifyRequest, OrderRequest
from hftbot.exec.strategies.deeplob import DeepLOBStrategy
from hftbot.exec.strategies.imbalance import ImbalanceStrategy
from hftbot.exec.strategies.mm import QUOTE_ASK, QUOTE_BID, MarketMaker
from hftbot.exec.strategy import NOTHING, make_strategy
from hftbot.records import BOOK_RESYNC, BOOK_VALID, SIGNAL_NO_MODEL, SIGNAL_WARMUP
from tests.exec.helpers import MS, Harness, book, signal

T0 = 1_000 * MS
FEES = FeeModel(0.0002, 0.0005)
# Book 150.00 / 150.01: spread 0.67 bps. Taker cost = 10 bps fees + 0.67 spread (+ 0.5 margin) = 11.17;
# maker cost = 4 bps + 0.33 (+ 0.5) = 4.83. With move 20 bps, p_up − p_down = 0.6 is a 12 bps edge.


def deeplob(style: str = "taker", **st) -> DeepLOBStrategy:
    cfg = dataclasses.replace(StrategyConfig(), deeplob_move_bps=20.0, **st)
    return DeepLOBStrategy(cfg, ExecConfig(style=style), RiskConfig(), FEES)


def at(ms: float) -> int:
    return T0 + int(ms * MS)


def bk(ms: float = 0.0, bid: int = 15000, ask: int = 15001, **kw):
    return book(bid, ask, recv_ns=at(ms), **kw)


def sig(p_down: float, p_up: float, ms: float = 0.0, **kw):
    return signal(p_down, 1.0 - p_down - p_up, p_up, publish_ns=at(ms), **kw)


def test_make_strategy_builds_each_by_name():
    for name, cls in (("deeplob", DeepLOBStrategy), ("imbalance", ImbalanceStrategy), ("mm", MarketMaker)):
        s = make_strategy(ExecConfig(strategy=name), StrategyConfig(), RiskConfig())
        assert isinstance(s, cls) and s.name == name
    assert make_strategy(ExecConfig(strategy="none"), StrategyConfig(), RiskConfig()) is None
    default = make_strategy(ExecConfig(), StrategyConfig(), RiskConfig())  # mm: see docs/exec.md
    assert isinstance(default, MarketMaker) and not default.needs_signal


# ------------------------------------------------------------------------------- deeplob


@pytest.mark.parametrize(
    "style, p_down, p_up, spread_ticks, trades",
    [
        ("taker", 0.2, 0.7, 1, False),  # edge 10 bps < 11.17
        ("taker", 0.15, 0.75, 1, True),  # edge 12 bps > 11.17
        ("taker", 0.15, 0.75, 3, False),  # 12 < 10 + 2.0 spread + 0.5
        ("taker", 0.05, 0.9, 3, True),  # 17 > 12.5
        ("maker", 0.35, 0.55, 1, False),  # 4 bps < 4.83
        ("maker", 0.3, 0.55, 1, True),  # 5 bps > 4.83
    ],
)
def test_deeplob_trades_only_when_the_edge_pays_fees_and_spread(style, p_down, p_up, spread_ticks, trades):
    h = Harness(deeplob(style))
    h.on_book(bk(0, 15000, 15000 + spread_ticks))
    sent = h.on_signal(sig(p_down, p_up), at(0))
    assert bool(sent) == trades
    if trades:
        (req,) = sent
        assert (req.side, req.qty, req.tag, req.reduce_only) == (BUY, 100, "entry", False)
        if style == "taker":
            assert (req.tif, req.px) == (IOC, 15000 + spread_ticks + 2)  # through the far touch
        else:
            assert (req.tif, req.px) == (GTX, 15000)  # at the near touch
    # the mirror image shorts
    h2 = Harness(deeplob(style))
    h2.on_book(bk(0, 15000, 15000 + spread_ticks))
    mirror = h2.on_signal(sig(p_up, p_down), at(0))
    assert bool(mirror) == trades and (not trades or mirror[0].side == SELL)


@pytest.mark.parametrize(
    "signal_rec, now_ms",
    [
        (sig(0.05, 0.9, flags=SIGNAL_WARMUP), 0),
        (sig(0.05, 0.9, flags=SIGNAL_NO_MODEL), 0),
        (sig(math.nan, math.nan), 0),
        (sig(0.05, 0.9, ms=0), 1_001),  # older than risk.stale_signal_ms
    ],
)
def test_deeplob_opens_nothing_on_a_flagged_or_stale_signal(signal_rec, now_ms):
    h = Harness(deeplob())
    h.on_book(bk(now_ms))
    assert h.on_signal(signal_rec, at(now_ms)) == []
    assert h.on_book(bk(now_ms)) == [] and h.refused == []  # nothing asked for, nothing refused


def open_long(h: Harness, ms: float = 0.0) -> OrderRequest:
    h.on_book(bk(ms))
    (req,) = h.on_signal(sig(0.05, 0.9, ms), at(ms))
    h.fill(req, px=15001)
    assert h.view.position == 100 and not h.view.orders
    return req


def test_deeplob_exits_at_the_label_horizon_even_without_signals():
    h = Harness(deeplob(deeplob_horizon_updates=5))
    open_long(h)
    for k in range(1, 5):  # 4 more updates after the one the entry was decided on: not yet
        assert h.on_book(bk(k * 300)) == [], k
    (ex,) = h.on_book(bk(1_500))  # the 5th; the only signal is 1.5 s old (stale) by now
    assert (ex.side, ex.qty, ex.reduce_only, ex.tag, ex.tif, ex.px) == (SELL, 100, True, "exit_horizon", IOC, 14998)
    assert h.refused == []  # the risk manager's stale-signal guard lets exits through


def test_deeplob_exits_on_a_reversal():
    h = Harness(deeplob())
    open_long(h)
    assert h.on_signal(sig(0.45, 0.45, 10), at(10)) == []  # no edge: hold
    (ex,) = h.on_signal(sig(0.6, 0.3, 20), at(20))  # −6 bps against the long
    assert ex.tag == "exit_reversal" and ex.side == SELL and ex.reduce_only


def test_deeplob_stops_out_as_a_taker_even_in_maker_style():
    h = Harness(deeplob("maker", deeplob_stop_bps=10.0))
    h.on_book(bk(0))
    (req,) = h.on_signal(sig(0.05, 0.9), at(0))
    h.ack(req)
    h.fill(req)  # long 100 at 150.00
    assert h.on_book(bk(10, 14986, 14987)) == []  # mid 149.865: 9.3 bps down
    (stop,) = h.on_book(bk(20, 14984, 14985))  # 10.7 bps down
    assert (stop.tag, stop.tif, stop.px, stop.side) == ("exit_stop", IOC, 14982, SELL)


def test_deeplob_one_working_order_at_a_time():
    h = Harness(deeplob("maker"))
    h.on_book(bk(0))
    (req,) = h.on_signal(sig(0.05, 0.9), at(0))
    assert h.on_signal(sig(0.05, 0.9, 5), at(5)) == []  # pending: no second entry
    h.ack(req)
    assert h.on_book(bk(10)) == []


def test_deeplob_maker_entry_is_cancelled_on_timeout_or_when_the_edge_goes():
    h = Harness(deeplob("maker"))
    h.on_book(bk(0))
    (req,) = h.on_signal(sig(0.05, 0.9), at(0))
    h.ack(req)
    assert h.on_book(bk(1_000)) == []
    (c,) = h.on_book(bk(2_001))  # ExecConfig.maker_timeout_ms = 2000
    assert isinstance(c, CancelRequest) and c.client_id == req.client_id and c.tag == "timeout"
    assert h.on_book(bk(2_002)) == []  # not asked twice while the venue answers
    h.cancelled(req.client_id)
    h2 = Harness(deeplob("maker"))
    h2.on_book(bk(0))
    (req2,) = h2.on_signal(sig(0.05, 0.9), at(0))
    h2.ack(req2)
    (c2,) = h2.on_signal(sig(0.3, 0.4, 10), at(10))  # edge 2 bps: no longer pays
    assert c2.tag == "edge"


def test_deeplob_maker_exit_follows_the_touch_then_takes_after_its_timeout():
    h = Harness(deeplob("maker", deeplob_horizon_updates=1))
    h.on_book(bk(0))
    (req,) = h.on_signal(sig(0.05, 0.9), at(0))
    h.ack(req)
    h.fill(req)
    (ex,) = h.on_book(bk(10))
    assert (ex.tag, ex.tif, ex.px, ex.reduce_only) == ("exit_horizon", GTX, 15001, True)
    h.ack(ex)
    (c,) = h.on_book(bk(20, 15001, 15002))  # the ask moved up: follow it
    assert c.tag == "requote"
    h.cancelled(ex.client_id)
    (ex2,) = h.on_book(bk(30, 15001, 15002))
    assert ex2.px == 15002 and ex2.tif == GTX
    h.ack(ex2)
    (c2,) = h.on_book(bk(30 + 3_001, 15001, 15002))  # exit_timeout_ms = 3000
    assert c2.tag == "timeout"
    h.cancelled(ex2.client_id)
    (ex3,) = h.on_book(bk(3_040, 15001, 15002))
    assert (ex3.tag, ex3.tif, ex3.px) == ("exit_timeout", IOC, 14999)


def test_deeplob_invalid_book_means_no_decision():
    h = Harness(deeplob())
    h.on_book(bk(0, flags=0))
    assert h.on_signal(sig(0.05, 0.9), at(0)) == [] and h.refused == []
    (req,) = h.on_book(bk(1, flags=BOOK_VALID | BOOK_RESYNC))  # the signal is still fresh: act on it now
    assert req.tag == "entry" and req.model_id == 7


# ------------------------------------------------------------------------------- imbalance


def imbalance(**st) -> ImbalanceStrategy:
    cfg = dataclasses.replace(StrategyConfig(), **st)
    return ImbalanceStrategy(cfg, ExecConfig(), RiskConfig(), FEES)


def test_imbalance_is_the_depth_weighted_multi_level_formula():
    s = imbalance(imbalance_levels=3, imbalance_decay=0.5)
    bq = [100, 200, 400, 9999, 9999]
    aq = [300, 100, 100, 1, 1]
    s.on_book(book(bid_qty=bq + [0] * 5, ask_qty=aq + [0] * 5), s_view())
    w = [1, 0.5, 0.25]
    b = sum(x * y for x, y in zip(w, bq, strict=False))
    a = sum(x * y for x, y in zip(w, aq, strict=False))
    assert s.imbalance == pytest.approx((b - a) / (b + a))  # levels beyond 3 do not count
    q = imbalance(imbalance_levels=1)
    q.on_book(book(bid_qty=[100] * 10, ask_qty=[300] * 10), s_view())
    assert q.imbalance == pytest.approx(-0.5)  # the queue imbalance


def s_view():
    from hftbot.exec.positions import StrategyView

    v = StrategyView()
    v.now_ns = T0
    return v


def test_imbalance_needs_both_the_threshold_and_an_edge_that_pays():
    heavy_bid = dict(bid_qty=[300] * 10, ask_qty=[100] * 10)  # imbalance 0.5
    # 0.5 × 5 bps = 2.5 bps edge: at the threshold, but it does not pay 11.17 bps
    assert Harness(imbalance()).on_book(book(**heavy_bid)) == []
    # 0.5 × 30 = 15 bps pays
    (req,) = Harness(imbalance(imbalance_move_bps=30.0)).on_book(book(**heavy_bid))
    assert req.side == BUY and req.tag == "entry"
    # a huge move per unit, but below the threshold: nothing
    mild = dict(bid_qty=[130] * 10, ask_qty=[100] * 10)  # 0.13
    assert Harness(imbalance(imbalance_move_bps=1000.0)).on_book(book(**mild)) == []
    (short,) = Harness(imbalance(imbalance_move_bps=30.0)).on_book(book(bid_qty=[100] * 10, ask_qty=[300] * 10))
    assert short.side == SELL


def test_imbalance_exits_when_the_book_turns_against_it():
    h = Harness(imbalance(imbalance_move_bps=30.0))
    (req,) = h.on_book(book(bid_qty=[300] * 10, ask_qty=[100] * 10))
    h.fill(req)
    assert h.on_book(book(bid_qty=[100] * 10, ask_qty=[100] * 10, recv_ns=at(1))) == []
    (ex,) = h.on_book(book(bid_qty=[100] * 10, ask_qty=[110] * 10, recv_ns=at(2)))  # −1.4 bps against
    assert ex.tag == "exit_reversal" and ex.side == SELL


# ------------------------------------------------------------------------------- mm


def mm(**st) -> MarketMaker:
    cfg = dataclasses.replace(StrategyConfig(), **st)
    return MarketMaker(cfg, ExecConfig(), RiskConfig(), FEES)


def warm_up(h: Harness, n: int = 40) -> int:
    """Mid oscillating by ±1 tick every 25 ms: Δmid² = 1 per 0.025 s → σ² = 40 ticks²/s. Returns the time."""
    for k in range(n):
        bid = 15000 + (k % 2)
        h.strategy.on_book(bk(k * 25, bid, bid + 1), _view(h, at(k * 25)))
    return (n - 1) * 25


def _view(h: Harness, now: int):
    h.view.now_ns = now
    return h.view


def quotes(reqs) -> dict:
    return {r.tag: r for r in reqs}


def test_mm_quotes_both_sides_post_only_at_the_fee_floor_when_flat():
    h = Harness(mm())
    q = quotes(h.on_book(bk(0)))
    bid, ask = q[QUOTE_BID], q[QUOTE_ASK]
    # floor = (2 bps maker + 0.5 bps margin) × 15000.5 = 3.75 ticks each side of the mid
    assert (bid.side, bid.px, bid.qty, bid.tif) == (BUY, 14996, 100, GTX)
    assert (ask.side, ask.px, ask.qty, ask.tif) == (SELL, 15005, 100, GTX)
    assert (ask.px - bid.px) * 0.01 / 150.005 >= 2 * 0.0002  # a round trip pays both maker fees


@pytest.mark.parametrize("position, shift", [(200, -8.0), (-200, 8.0), (0, 0.0)])
def test_mm_skews_quotes_against_its_inventory(position, shift):
    """σ² = 40 ticks²/s, τ = 1 s, γ = 0.1: q = ±2 quotes moves the reservation by ∓8 ticks."""
    h = Harness(mm(mm_gamma=0.1, mm_max_inventory=10.0), risk_cfg={"max_position": 10.0})
    t = warm_up(h)
    assert h.strategy.var_rate == pytest.approx(40.0, rel=0.05)
    h.view.position = position  # as if filled earlier (the ledger's view)
    q = quotes(h.on_book(bk(t + 25), at(t + 25)))
    s = h.strategy
    assert s.reservation - s.mid == pytest.approx(shift, rel=0.06, abs=1e-9)
    bid = math.floor(s.reservation - s.half_spread + 1e-9)
    ask = math.ceil(s.reservation + s.half_spread - 1e-9)
    # a quote the skew pushes through the book is held just short of crossing (GTX would be rejected)
    assert q[QUOTE_BID].px == min(bid, s.ask - 1) and q[QUOTE_ASK].px == max(ask, s.bid + 1)
    flat_bid, flat_ask = 15000 - 4, 15001 + 4  # the flat quotes at this mid (15000.5 ± 3.75)
    if shift < 0:  # long: sell eagerly (the ask at the touch), buy 8 ticks lower
        assert (q[QUOTE_BID].px, q[QUOTE_ASK].px) == (flat_bid - 8, 15001)
    elif shift > 0:
        assert (q[QUOTE_BID].px, q[QUOTE_ASK].px) == (15000, flat_ask + 8)
    else:
        assert (q[QUOTE_BID].px, q[QUOTE_ASK].px) == (flat_bid, flat_ask)


def test_mm_stops_quoting_the_side_that_would_pass_its_inventory_limit():
    h = Harness(mm(mm_max_inventory=2.0))  # 200 lots
    h.view.position = 200
    q = quotes(h.on_book(bk(0)))
    assert QUOTE_BID not in q and q[QUOTE_ASK].qty == 100
    h2 = Harness(mm(mm_max_inventory=2.0))
    h2.view.position = -150
    q2 = quotes(h2.on_book(bk(0)))
    assert q2[QUOTE_BID].qty == 100 and q2[QUOTE_ASK].qty == 50  # −150 − 50 = −200: no further


def test_mm_inventory_limit_cancels_a_resting_quote_when_filled_up_to_it():
    h = Harness(mm(mm_max_inventory=1.0))  # 100 lots
    q = quotes(h.on_book(bk(0)))
    for r in q.values():
        h.ack(r)
    h.fill(q[QUOTE_BID])  # long 100: at the limit, the bid is gone (filled); the ask stays
    out = h.strategy.on_book(bk(10), _view(h, at(10)))
    assert out == NOTHING  # no new bid, the ask rests
    assert [o.tag for o in h.view.orders.values()] == [QUOTE_ASK]


def test_mm_signal_skews_the_reservation_and_a_stale_one_does_not():
    h = Harness(mm())
    h.strategy.on_signal(sig(0.05, 0.9), _view(h, at(0)))
    h.on_book(bk(0))
    assert h.strategy.reservation - h.strategy.mid == pytest.approx(0.85 * 2e-4 * 15000.5)  # 2.55 ticks
    h2 = Harness(mm())
    h2.strategy.on_signal(sig(0.05, 0.9, 0), _view(h2, at(0)))
    h2.on_book(bk(1_500))  # the signal is 1.5 s old
    assert h2.strategy.reservation == h2.strategy.mid
    h3 = Harness(mm())
    h3.strategy.on_signal(sig(0.05, 0.9, flags=SIGNAL_WARMUP), _view(h3, at(0)))
    h3.on_book(bk(0))
    assert h3.strategy.reservation == h3.strategy.mid


def test_mm_requotes_on_book_moves_after_the_minimum_quote_life():
    h = Harness(mm())
    q = quotes(h.on_book(bk(0)))
    for r in q.values():
        h.ack(r)
    assert h.on_book(bk(100, 15003, 15004)) == []  # moved 3 ticks, but quotes are 100 ms old (< 250)
    mods = h.on_book(bk(300, 15003, 15004))
    assert all(isinstance(m, ModifyRequest) for m in mods) and len(mods) == 2
    by_side = {m.side: m for m in mods}
    assert by_side[BUY].px == 14999 and by_side[SELL].px == 15008
    assert h.on_book(bk(310, 15003, 15004)) == []  # amendments in flight: not again
    h.amended(q[QUOTE_BID].client_id, 100, 14999)
    h.amended(q[QUOTE_ASK].client_id, 100, 15008)
    assert h.on_book(bk(320, 15004, 15005)) == []  # 1 tick move, but the amended quotes are young
    assert len(h.on_book(bk(600, 15004, 15005))) == 2
    # a partly filled quote is cancelled rather than amended
    h2 = Harness(mm(), risk_cfg={"max_position": 100.0})
    q2 = quotes(h2.on_book(bk(0)))
    for r in q2.values():
        h2.ack(r)
    h2.fill(q2[QUOTE_BID], qty=40)
    out = h2.strategy.on_book(bk(300, 15003, 15004), _view(h2, at(300)))
    kinds = {type(i).__name__ for i in out}
    assert "Cancel" in kinds and any(isinstance(i, Cancel) and i.client_id == q2[QUOTE_BID].client_id for i in out)


def test_mm_pulls_every_quote_on_an_invalid_book():
    h = Harness(mm())
    q = quotes(h.on_book(bk(0)))
    for r in q.values():
        h.ack(r)
    out = h.on_book(bk(10, flags=0))
    assert sorted(c.client_id for c in out) == sorted(r.client_id for r in q.values())
    assert all(isinstance(c, CancelRequest) and c.tag == "book" for c in out)
    assert h.on_book(bk(20, flags=0)) == []  # asked once


def test_mm_quotes_never_cross_even_with_a_strong_signal():
    h = Harness(mm(mm_signal_skew_bps=50.0))
    h.strategy.on_signal(sig(0.0, 1.0), _view(h, at(0)))
    q = quotes(h.on_book(bk(0)))
    assert q[QUOTE_BID].px == 15000 and q[QUOTE_ASK].px > 15001  # the bid is held at the best ask − 1


# ------------------------------------------------------------------------------- rehearsal


def _state(s) -> dict:
    import copy

    return copy.deepcopy(vars(s))


def test_a_rehearsal_copy_of_a_strategy_with_richer_state_leaves_it_as_it_was():
    """A user's strategy may keep a numpy window, a deque, nested lists or an object of its own:
    a rehearsal's calls must reach none of them (they are copied, deep where needed)."""
    import collections

    import numpy as np

    from hftbot.exec.strategy import Strategy

    class Tally:
        def __init__(self) -> None:
            self.n = 0

    class Rich(Strategy):
        name = "rich"

        def __init__(self) -> None:
            self.window = np.zeros(4)
            self.recent = collections.deque(maxlen=3)
            self.by_side = {"bid": [], "ask": []}
            self.pairs = [(1, [2])]
            self.tally = Tally()
            self.seen = 0

        def on_book(self, book, view):
            px = book["bid_px"].item(0)
            self.window[:] = px
            self.recent.append(px)
            self.by_side["bid"].append(px)
            self.pairs[0][1].append(px)
            self.tally.n += 1
            self.seen += 1
            return NOTHING

    def snapshot(x: Rich) -> tuple:  # (`_state`'s deep copy cannot compare numpy arrays in a dict)
        return x.window.tolist(), list(x.recent), repr(x.by_side), repr(x.pairs), x.tally.n, x.seen

    s = Rich()
    h = Harness(s)
    h.on_book(bk(0, 15000, 15001))
    before = snapshot(s)
    c = s.rehearsal_copy()
    c.on_book(bk(10, 17000, 17001), _view(h, at(10)))
    assert (c.window[0], c.recent[-1], c.by_side["bid"][-1], c.pairs[0][1][-1], c.tally.n) == (17000, 17000, 17000,
                                                                                                17000, 2)
    assert snapshot(s) == before


@pytest.mark.parametrize("make", [lambda: deeplob(), lambda: imbalance(imbalance_move_bps=30.0), lambda: mm()])
def test_a_rehearsal_copy_decides_as_the_strategy_would_and_leaves_it_as_it_was(make):
    """`rehearsal_copy`: the execution loop's idle rehearsal runs the decision code on it. Its
    intents are what the strategy itself would answer on that record, and nothing the copy does
    reaches the strategy (its scalars, dicts and counters stay as they were)."""
    h = Harness(make())
    s = h.strategy
    if s.needs_signal:
        h.on_signal(sig(0.1, 0.8, 0), at(0))
    h.on_book(bk(0, bid_qty=500, ask_qty=20))  # orders resting or pending: the copy sees them through
    h.on_book(bk(30, 15001, 15002, bid_qty=500, ask_qty=20))  # the view (an imbalance to trade on)
    assert h.requests  # there is order state for the copy to see (and not to touch)
    for r in list(h.requests):
        h.ack(r)  # resting: moving books now make the copy requote, cancel or exit
    before = _state(s)
    changed = 0
    for k in range(20):  # books that move, signals that flip, timeouts that pass: the copy's state churns
        c = s.rehearsal_copy()
        view = _view(h, at(5000 + 500 * k))
        c.on_book(bk(5000 + 500 * k, 15003 + 7 * k, 15004 + 7 * k, bid_qty=20, ask_qty=500), view)
        if s.needs_signal:
            c.on_signal(sig(0.8, 0.1, 5000 + 500 * k), view)
        changed += _state(c) != before
        assert _state(s) == before
    assert changed  # the copies did change their own state (containers included), never the strategy's
    # the copy answers what the strategy itself answers on the same record and state
    view = _view(h, at(100))
    rec = bk(100, 14990, 14991)
    assert repr(s.rehearsal_copy().on_book(rec, view)) == repr(s.on_book(rec, view))
