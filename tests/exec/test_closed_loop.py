"""Each strategy in a closed loop with the simulator's real market model and matching engine.

Strategy → risk manager → the matching engine (standing in for the gateway, zero latency) → its
order events as OrderUpdate / Fill → positions. After thousands of book events the ledger must
equal the venue exactly: position, fees, open orders; and the strategies must actually trade.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from hftbot.config import ExecConfig, RiskConfig, StrategyConfig
from hftbot.exec.filters import SymbolFilters
from hftbot.exec.ids import ClientIds
from hftbot.exec.messages import (
    BUY,
    CancelAllRequest,
    CancelRequest,
    Fill,
    ModifyRequest,
    OrderRequest,
    OrderUpdate,
    Refused,
    Rejected,
)
from hftbot.exec.positions import Positions
from hftbot.exec.risk import RiskManager
from hftbot.exec.strategy import fee_model, make_strategy
from hftbot.records import BOOK_VALID, SIGNAL_DTYPE, book_dtype
from hftbot.sim.market import MarketModel, ModelParams
from hftbot.sim.matching import TRADE, Order, RejectError
from hftbot.sim.venue import VenueSettings, exchange_info

LEVELS = 10


class LocalVenue:
    """The simulator's matching engine behind the risk manager; its events go to `positions`."""

    def __init__(self, model: MarketModel, positions: Positions) -> None:
        self.model = model
        self.eng = model.engine
        self.pos = positions
        self.fills_signed = 0
        self.fees = Decimal(0)
        self.rejects: dict[int, int] = {}

    def pump(self) -> None:
        ch = self.eng.drain()
        if ch is None:
            return
        for ev in ch.order_events:
            o = ev.order
            ms = ev.time_ns // 1_000_000
            self.pos.on_update(OrderUpdate(o.client_id, o.order_id, ev.status, ev.exec_type, o.side, o.qty, o.px,
                                           o.filled, ms))
            if ev.exec_type == TRADE:
                self.fills_signed += o.side * ev.last_qty
                self.fees += ev.fee
                self.pos.on_fill(Fill(o.client_id, o.order_id, ev.trade_id, o.side, ev.last_qty, ev.last_px,
                                      float(ev.fee), ev.maker, ms))

    def execute(self, req, t_ns: int) -> None:
        eng = self.eng
        eng.begin()
        try:
            if isinstance(req, OrderRequest):
                eng.place(Order(eng.new_order_id(), req.client_id, req.side, req.type, req.tif, req.px, req.qty,
                                t_ns, reduce_only=req.reduce_only))
            elif isinstance(req, CancelRequest):
                o = eng.open_order(req.client_id)
                if o is not None:
                    eng.cancel_order(o, t_ns)
            elif isinstance(req, ModifyRequest):
                o = eng.open_order(req.client_id)
                if o is not None:
                    eng.modify_order(o, req.px, req.qty, t_ns)
            elif isinstance(req, CancelAllRequest):
                for o in eng.open_orders():
                    eng.cancel_order(o, t_ns)
        except RejectError as e:
            self.rejects[e.code] = self.rejects.get(e.code, 0) + 1
            if isinstance(req, OrderRequest):
                self.pos.on_rejected(Rejected(req.client_id, e.code, e.msg, t_ns // 1_000_000))
        self.pump()


def book_record(eng, rec: np.ndarray, t_ns: int, seq: int) -> np.ndarray:
    bids = eng.depth(BUY, LEVELS)
    asks = eng.depth(-BUY, LEVELS)
    rec[...] = 0
    rec["seq"] = seq
    rec["recv_ns"] = rec["publish_ns"] = t_ns
    rec["flags"] = BOOK_VALID
    rec["tick"], rec["lot"] = eng.tick, eng.lot
    for i, (px, q) in enumerate(bids):
        rec["bid_px"][i], rec["bid_qty"][i] = px, q
    for i, (px, q) in enumerate(asks):
        rec["ask_px"][i], rec["ask_qty"][i] = px, q
    return rec


def run(strategy_name: str, events: int, *, style: str = "taker", st: dict | None = None,
        signal_fn=None, seed: int = 3, maker_fee: float = 0.0002):
    params = ModelParams(seed=seed, predictability=0.9)
    model = MarketModel(params)
    filters = SymbolFilters.from_exchange_info(exchange_info(params, VenueSettings(), 0), params.symbol)
    ex = ExecConfig(strategy=strategy_name, style=style, maker_fee=maker_fee)
    risk_cfg = RiskConfig()
    cfg = StrategyConfig(**(st or {}))
    fees = fee_model(ex)
    strategy = make_strategy(ex, cfg, risk_cfg, fees)
    ids = ClientIds(model.time_ns)
    pos = Positions(filters.tick, filters.lot, fees, params.symbol, strategy.name, ids.run)
    risk = RiskManager(risk_cfg, filters, pos, ids, strategy=strategy.name, needs_signal=strategy.needs_signal,
                       now_ns=model.time_ns)
    venue = LocalVenue(model, pos)
    rec = np.zeros((), dtype=book_dtype(LEVELS))
    sig = np.zeros((), dtype=SIGNAL_DTYPE)
    refusals: dict[str, int] = {}
    view = pos.view

    def route(intents, t: int) -> None:  # a call's intents go out before the next call
        for it in intents:
            res = risk.check(it, rec, t, sig if signal_fn else None)
            if isinstance(res, Refused):
                refusals[res.reason] = refusals.get(res.reason, 0) + 1
            else:
                venue.execute(res, t)

    for n in range(1, events + 1):
        t = model.step()
        venue.pump()  # the flow may have filled our resting orders
        book_record(model.engine, rec, t, n)
        view.now_ns = t
        route(strategy.on_book(rec, view), t)
        if signal_fn is not None:
            p_down, p_up = signal_fn(model)
            sig["seq"] = sig["book_seq"] = n
            sig["model_id"] = 11
            sig["p_down"], sig["p_up"], sig["p_flat"] = p_down, p_up, 1 - p_down - p_up
            sig["publish_ns"] = t
            route(strategy.on_signal(sig, view), t)
        for req in risk.update(t, rec):
            venue.execute(req, t)
    return pos, venue, risk, strategy, refusals


def assert_ledger_equals_venue(pos: Positions, venue: LocalVenue, risk: RiskManager) -> None:
    assert risk.state == "RUNNING" and risk.approved > 0
    assert pos.position == venue.fills_signed
    assert pos.fees == pytest.approx(float(venue.fees), abs=1e-9)
    assert set(pos.orders) == {o.client_id for o in venue.eng.open_orders()}
    assert pos.duplicate_fills == 0 and pos.foreign_fills == 0
    closed = pos.trades
    realised_from_trades = sum(t.gross_pnl for t in closed)
    if pos.position == 0:
        assert pos.realised == pytest.approx(realised_from_trades, abs=1e-9)


def test_market_maker_against_the_matching_engine():
    # a maker fee of 0 in our estimate puts the quotes near the touch (the venue still charges 2 bps)
    pos, venue, risk, mm, refusals = run("mm", 6000, st={"mm_max_inventory": 3.0, "mm_margin_bps": 0.0},
                                         maker_fee=0.0)
    assert_ledger_equals_venue(pos, venue, risk)
    assert pos.fills > 10, pos.fills  # partial fills rarely bring it back to exactly flat: trades may be 0
    assert mm.counts["place"] > 0 and mm.counts["modify"] > 0
    assert abs(pos.position) <= 300  # never past its inventory limit
    assert pos.summary(mm.mid)["maker_fees"] == pytest.approx(pos.fees)  # post-only: every fill a maker
    assert set(refusals) <= {"rate_orders"}, refusals  # nothing else stopped it
    assert venue.rejects.get(-5022, 0) == 0  # quotes never crossed


def test_deeplob_with_a_signal_that_sees_the_flow():
    def signal_fn(model):  # the latent order-flow signal the simulator tilts its flow by
        z = math.tanh(model.signal)
        return 0.3 - 0.3 * z, 0.3 + 0.3 * z

    pos, venue, risk, s, refusals = run("deeplob", 4000, signal_fn=signal_fn,
                                        st={"deeplob_move_bps": 40.0, "deeplob_horizon_updates": 200})
    assert_ledger_equals_venue(pos, venue, risk)
    assert s.counts["entry"] > 0 and len(pos.trades) > 0
    assert {t.exit_tag for t in pos.trades} <= {"exit_horizon", "exit_reversal", "exit_stop", "exit_timeout"}
    assert all(t.model_id == 11 and t.strategy == "deeplob" for t in pos.trades)
    assert not refusals, refusals


def test_imbalance_maker_style_against_the_matching_engine():
    pos, venue, risk, s, refusals = run("imbalance", 4000, style="maker",
                                        st={"imbalance_move_bps": 20.0, "imbalance_threshold": 0.3})
    assert_ledger_equals_venue(pos, venue, risk)
    assert s.counts["entry"] > 0 and s.counts["cancel"] > 0
    assert not set(refusals) - {"rate_orders"}, refusals
