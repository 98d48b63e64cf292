"""The matching engine where the gateway is: approved requests in, the venue's messages out, on time.

The execution process sends `OrderRequest` / `CancelRequest` / `ModifyRequest` / `CancelAllRequest`
to the gateway and applies `Fill`, `OrderUpdate` and `Rejected` from it; the backtester puts this
class there instead. A request takes effect at the engine after the entry latency (the engine's
own request table); every order event the engine writes becomes the messages the gateway would
have produced from the venue's ORDER_TRADE_UPDATE (`hftbot.sim.userstream.order_update`: the same
fields), held back until its `resp_ns` (event time + response latency) and released by `due(now)`
in that order. Fees are the engine's exact integer fees, as a float at this edge only.
"""

from __future__ import annotations

import heapq
from decimal import Decimal

from hftbot.exec.messages import (
    CancelAllRequest,
    CancelRequest,
    Fill,
    ModifyRequest,
    OrderRequest,
    OrderUpdate,
    Rejected,
)
from hftbot.sim.matching import REJECT_MESSAGES, MatchingEngine, Order, RejectError

MS = 1_000_000


class EngineVenue:
    """One symbol's matching engine behind the gateway's interface (send / due)."""

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self._orders: dict[str, Order] = {}  # client id -> engine order (open or pending)
        self._requests: dict[str, str] = {}  # client id -> the last request kind sent for it
        self._heap: list[tuple[int, int, object]] = []  # (resp_ns, seq, message)
        self._seq = 0
        self.orders = 0  # places that reached the engine's door
        self.order_log: list[tuple] = []  # BacktestResult.order_log
        self.fills: list[tuple] = []  # (time_ns, resp_ns, side, px, qty, fee, maker, order_id) per fill

    # ------------------------------------------------------------------------------ requests

    def send(self, req, now_ns: int) -> None:
        """One approved request, sent at local time `now_ns`."""
        e = self.engine
        t = type(req)
        e.begin()
        if t is OrderRequest:
            self.orders += 1
            self.order_log.append((now_ns, req.client_id, req.side, req.qty, req.px, req.type, req.tif,
                                   req.reduce_only, req.tag))
            o = Order(e.new_order_id(), req.client_id, req.side, req.type, req.tif,
                      req.px if req.type == "LIMIT" else 0, req.qty, now_ns, req.reduce_only)
            self._requests[req.client_id] = "place"
            try:
                e.place(o)
            except RejectError as err:
                self._push(now_ns, Rejected(req.client_id, err.code, err.msg, now_ns // MS, "place"))
                return
            except ValueError as err:  # outside even the widest ladder window
                self._push(now_ns, Rejected(req.client_id, -4014, str(err), now_ns // MS, "place"))
                return
            self._orders[req.client_id] = o
        elif t is CancelRequest:
            self._cancel(req.client_id, now_ns)
        elif t is ModifyRequest:
            o = self._orders.get(req.client_id)
            self._requests[req.client_id] = "modify"
            try:
                if o is None:
                    raise RejectError(-2013, REJECT_MESSAGES[-2013])
                e.modify_order(o, req.px, req.qty, now_ns)
            except RejectError as err:
                self._push(now_ns, Rejected(req.client_id, err.code, err.msg, now_ns // MS, "modify"))
        elif t is CancelAllRequest:
            for cid in list(self._orders):
                self._cancel(cid, now_ns)
        self.collect()

    def _cancel(self, cid: str, now_ns: int) -> None:
        o = self._orders.get(cid)
        self._requests[cid] = "cancel"
        try:
            if o is None:
                raise RejectError(-2011, REJECT_MESSAGES[-2011])
            self.engine.cancel_order(o, now_ns)
        except RejectError as err:
            self._push(now_ns, Rejected(cid, err.code, err.msg, now_ns // MS, "cancel"))

    # ------------------------------------------------------------------------------ messages

    def _push(self, resp_ns: int, msg: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (resp_ns, self._seq, msg))

    def collect(self) -> None:
        """Turn the engine's order events since the last call into pending messages.

        Nothing to do without order events: the engine logs no levels here (`log_levels=False`)
        and prints only with our fills, which come with events, so its logs wait safely."""
        if not self.engine.has_order_events:
            return
        ch = self.engine.drain()
        if ch is None or not ch.order_events:
            return
        push = self._push
        for ev in ch.order_events:
            o = ev.order
            cid = o.client_id
            resp = ev.resp_ns or ev.time_ns
            t_ms = ev.time_ns // MS
            x = ev.exec_type
            if x == "REJECTED":
                push(resp, Rejected(cid, ev.reject_code, REJECT_MESSAGES.get(ev.reject_code, "rejected"), t_ms,
                                    self._requests.get(cid, "place")))
                if not o.is_open and o.status != "PENDING_NEW":
                    self._orders.pop(cid, None)
                continue
            if x == "TRADE":
                fee = float(ev.fee) if isinstance(ev.fee, Decimal) else ev.fee
                push(resp, Fill(cid, o.order_id, ev.trade_id, o.side, ev.last_qty, ev.last_px, fee, ev.maker, t_ms))
                self.fills.append((ev.time_ns, resp, o.side, ev.last_px, ev.last_qty, fee, ev.maker, o.order_id))
            push(resp, OrderUpdate(cid, o.order_id, ev.status, x, o.side, o.qty, o.px, o.filled, t_ms))
            if ev.status in ("FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"):
                self._orders.pop(cid, None)
                self._requests.pop(cid, None)

    def next_ns(self) -> int:
        """When the next held message is due (a large number when none)."""
        return self._heap[0][0] if self._heap else 1 << 62

    def due(self, now_ns: int) -> list:
        """Messages whose response time has come, in the order the venue sent them."""
        heap = self._heap
        out = []
        while heap and heap[0][0] <= now_ns:
            out.append(heapq.heappop(heap)[2])
        return out

    @property
    def open_orders(self) -> int:
        return len(self._orders)
