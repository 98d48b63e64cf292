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
