"""Hand-built inputs for the execution tests: books, signals, trades, fills, requests."""

from __future__ import annotations

import numpy as np

from hftbot.exec.messages import BUY, GTC, LIMIT, Fill, OrderRequest, OrderUpdate
from hftbot.records import BOOK_VALID, SIGNAL_DTYPE, TRADE_DTYPE, book_dtype

TICK = 0.01
LOT = 0.01
USDT = TICK * LOT  # USDT per tick·lot
MS = 1_000_000


def book(bid: int = 15000, ask: int = 15001, bid_qty=100, ask_qty=100, *, levels: int = 10,
         recv_ns: int = 1_000 * MS, flags: int = BOOK_VALID, seq: int = 1) -> np.ndarray:
    """A 0-d book record: `levels` levels one tick apart from the touch; qty a number or a list."""
    rec = np.zeros((), dtype=book_dtype(levels))
    rec["seq"] = seq
    rec["recv_ns"] = recv_ns
    rec["publish_ns"] = recv_ns
    rec["event_ms"] = recv_ns // MS
    rec["flags"] = flags
    rec["tick"] = TICK
    rec["lot"] = LOT
    rec["bid_px"] = [bid - i for i in range(levels)]
    rec["ask_px"] = [ask + i for i in range(levels)]
    rec["bid_qty"] = bid_qty if np.ndim(bid_qty) else [bid_qty] * levels
    rec["ask_qty"] = ask_qty if np.ndim(ask_qty) else [ask_qty] * levels
    return rec


def signal(p_down: float, p_flat: float, p_up: float, *, publish_ns: int = 1_000 * MS, flags: int = 0,
           model_id: int = 7, seq: int = 1) -> np.ndarray:
    rec = np.zeros((), dtype=SIGNAL_DTYPE)
    rec["seq"] = seq
    rec["book_seq"] = seq
    rec["book_recv_ns"] = publish_ns
    rec["model_id"] = model_id
    rec["flags"] = flags
    rec["p_down"], rec["p_flat"], rec["p_up"] = p_down, p_flat, p_up
    rec["infer_start_ns"] = rec["infer_end_ns"] = rec["publish_ns"] = publish_ns
    return rec


def trade(px: int, qty: int, buyer_is_maker: bool, recv_ns: int = 1_000 * MS) -> np.ndarray:
    rec = np.zeros((), dtype=TRADE_DTYPE)
    rec["px"], rec["qty"], rec["buyer_is_maker"] = px, qty, int(buyer_is_maker)
    rec["recv_ns"] = rec["publish_ns"] = recv_ns
    rec["tick"], rec["lot"] = TICK, LOT
    return rec


def fill(side: int, qty: int, px: int, fee: float = 0.0, *, trade_id: int, time_ms: int | None = None,
         order_id: int = 1, client_id: str = "c1", maker: bool = False) -> Fill:
    return Fill(client_id, order_id, trade_id, side, qty, px, fee, maker,
                trade_id if time_ms is None else time_ms)


def request(client_id: str = "c1", side: int = BUY, qty: int = 100, px: int = 15000, *, tag: str = "entry",
            model_id: int = 7, strategy: str = "deeplob", reduce_only: bool = False,
            created_ns: int = 0) -> OrderRequest:
    return OrderRequest(client_id, side, qty, px, LIMIT, GTC, reduce_only, tag, strategy, model_id, 0,
                        created_ns)


def update(client_id: str, status: str, filled: int = 0, *, qty: int = 100, px: int = 15000, side: int = BUY,
           order_id: int = 1, event_ms: int = 1, exec_type: str = "NEW") -> OrderUpdate:
    return OrderUpdate(client_id, order_id, status, exec_type, side, qty, px, filled, event_ms)


class Harness:
    """A strategy wired to a real risk manager and positions ledger; the test plays the venue."""

    def __init__(self, strategy, risk_cfg=None, filters=None, start_ns: int = 1_000 * MS) -> None:
        import dataclasses

        from hftbot.config import RiskConfig
        from hftbot.exec.fees import FeeModel
        from hftbot.exec.filters import SymbolFilters
        from hftbot.exec.ids import ClientIds
        from hftbot.exec.positions import Positions
        from hftbot.exec.risk import RiskManager

        loose = RiskConfig(max_position=100.0, max_position_notional_usdt=1e6, max_order_qty=100.0,
                           max_order_notional_usdt=1e6, max_open_orders=100, price_band_bps=1000.0)
        cfg = dataclasses.replace(loose, **(risk_cfg or {}))
        self.strategy = strategy
        self.pos = Positions(TICK, LOT, FeeModel(), symbol="SOLUSDT", strategy=strategy.name)
        self.risk = RiskManager(cfg, filters or SymbolFilters.from_tick_lot("SOLUSDT", "0.01", "0.01"), self.pos,
                                ClientIds(start_ns), strategy=strategy.name, needs_signal=strategy.needs_signal)
        self.view = self.pos.view
        self.last_book = None
        self.last_signal = None
        self.requests: list = []
        self.refused: list = []
        self._trade_id = 0
        self._order_id = 0

    def _route(self, intents, now_ns: int) -> list:
        from hftbot.exec.messages import Refused

        out = []
        for it in intents:
            res = self.risk.check(it, self.last_book, now_ns, self.last_signal)
            (self.refused if isinstance(res, Refused) else out).append(res)
        self.requests += out
        return out

    def on_book(self, rec, now_ns: int | None = None) -> list:
        """Feed a book record (received now); returns the approved requests."""
        now = int(rec["recv_ns"]) if now_ns is None else now_ns
        self.last_book = rec
        self.view.now_ns = now
        return self._route(self.strategy.on_book(rec, self.view), now)

    def on_signal(self, rec, now_ns: int) -> list:
        self.last_signal = rec
        self.view.now_ns = now_ns
        return self._route(self.strategy.on_signal(rec, self.view), now_ns)

    def ack(self, req, event_ms: int = 1) -> None:
        from hftbot.exec.messages import NEW

        self._order_id += 1
        self.pos.on_update(OrderUpdate(req.client_id, self._order_id, NEW, "NEW", req.side, req.qty, req.px, 0,
                                       event_ms))

    def fill(self, req, qty: int | None = None, px: int | None = None, time_ms: int = 1) -> None:
        """The venue fills `qty` (default all) of `req` at `px` (default its limit price)."""
        o = self.pos.orders.get(req.client_id)
        order_id = o.order_id if o is not None and o.order_id else 10_000 + len(self.requests)
        self._trade_id += 1
        self.pos.on_fill(Fill(req.client_id, order_id, self._trade_id, req.side, req.qty if qty is None else qty,
                              req.px if px is None else px, 0.0, False, time_ms))

    def cancelled(self, client_id: str, event_ms: int = 2) -> None:
        from hftbot.exec.messages import CANCELED

        o = self.pos.orders[client_id]
        self.pos.on_update(OrderUpdate(client_id, o.order_id, CANCELED, "CANCELED", o.side, o.qty, o.px, o.filled,
                                       event_ms))

    def amended(self, client_id: str, qty: int, px: int, event_ms: int = 3) -> None:
        o = self.pos.orders[client_id]
        self.pos.on_update(OrderUpdate(client_id, o.order_id, o.status, "AMENDMENT", o.side, qty, px, o.filled,
                                       event_ms))
