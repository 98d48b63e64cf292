"""What the execution process publishes: one record per order frame and per fill, and its status.

Two rings the supervisor creates (`hftbot.records`):

- "order" (`ORDER_DTYPE`): every `order.place` / `order.modify` / `order.cancel` written on the
  socket, with the book receive time, signal seq and model id behind it, the time the triggering
  record was read and the time the frame left; every fill the gateway applied and every rejection.
  The supervisor measures tick-to-order (`send_ns − book_recv_ns`) and signal-to-frame
  (`send_ns − read_ns`) from it, the recorder writes it to Parquet.
- "exec" (`EXEC_STATUS_DTYPE`): one status record per heartbeat with position, open orders and
  PnL as floats (the heartbeat table holds integers only, 12 at most) and the fault report (per
  kind of `hftbot.exec.faults.KINDS`: seen, recovered, failed, open, recovery p50 and max); the
  status panel and the exit summary show the newest one. A restarted execution process reads the
  newest record its predecessor left (`last_status`) to continue the fault report.

Records are filled in the ring writers' staging buffers after the frame has left, so none of this
is on the send path. No logic beyond copying fields: the figures come from positions, the risk
manager and the gateway.
"""

from __future__ import annotations

import time

import numpy as np

from hftbot.exec.faults import KINDS, FaultLog
from hftbot.exec.messages import GTX, MARKET, Fill, ModifyRequest, OrderRequest, Rejected
from hftbot.ipc.ring import Ring, RingReader, RingWriter
from hftbot.records import (
    EXEC_HALTED,
    EXEC_REDUCING,
    EXEC_RUNNING,
    ORDER_CANCEL,
    ORDER_FILL,
    ORDER_MAKER,
    ORDER_MARKET,
    ORDER_MODIFY,
    ORDER_PLACE,
    ORDER_POST_ONLY,
    ORDER_REDUCE_ONLY,
    ORDER_REJECT,
)

STATE_CODES = {"RUNNING": EXEC_RUNNING, "REDUCING": EXEC_REDUCING, "HALTED": EXEC_HALTED}
REJECT_KINDS = {"place": ORDER_PLACE, "modify": ORDER_MODIFY, "cancel": ORDER_CANCEL}


class Journal:
    """Writes the order and status records (either ring may be absent: then that part is off)."""

    def __init__(self, order_ring: Ring | None, status_ring: Ring | None, tick: float, lot: float) -> None:
        self.previous = last_status(status_ring)  # an earlier run's newest status (None: first run)
        self.orders = RingWriter(order_ring) if order_ring is not None else None
        self.status = RingWriter(status_ring) if status_ring is not None else None
        for w in (self.orders, self.status):
            if w is not None:
                w.staging["tick"] = tick
                w.staging["lot"] = lot
        self.published = 0

    def _order(self, kind: int, client_id: str, tag: str) -> object:
        rec = self.orders.staging
        rec["kind"] = kind
        rec["client_id"] = client_id.encode()
        rec["tag"] = tag.encode()[:16]
        rec["approve_ns"] = 0  # set by `sent` only
        return rec

    def _publish(self) -> None:
        rec = self.orders.staging
        rec["publish_ns"] = time.time_ns()
        self.orders.publish(rec)
        self.published += 1

    def sent(
        self,
        req: OrderRequest | ModifyRequest,
        send_ns: int,
        read_ns: int,
        signal_seq: int,
        model_id: int,
        book_recv_ns: int,
        approve_ns: int = 0,
    ) -> None:
        """An order.place or order.modify frame left at `send_ns` (approved by risk at `approve_ns`)."""
        if self.orders is None:
            return
        place = type(req) is OrderRequest
        rec = self._order(ORDER_PLACE if place else ORDER_MODIFY, req.client_id, req.tag)
        flags = 0
        if place:
            flags = (ORDER_REDUCE_ONLY if req.reduce_only else 0) | (ORDER_POST_ONLY if req.tif == GTX else 0)
            flags |= ORDER_MARKET if req.type == MARKET else 0
        rec["send_ns"] = send_ns
        rec["read_ns"] = read_ns
        rec["approve_ns"] = approve_ns
        rec["book_recv_ns"] = book_recv_ns
        rec["signal_seq"] = signal_seq
        rec["model_id"] = model_id
        rec["order_id"] = 0
        rec["trade_id"] = 0
        rec["side"] = req.side
        rec["qty"] = req.qty
        rec["px"] = req.px
        rec["flags"] = flags
        rec["code"] = 0
        rec["event_ms"] = 0
        rec["fee"] = 0.0
        self._publish()

    def cancel(self, client_id: str, tag: str, send_ns: int, read_ns: int, book_recv_ns: int) -> None:
        if self.orders is None:
            return
        rec = self._order(ORDER_CANCEL, client_id, tag)
        rec["send_ns"] = send_ns
        rec["read_ns"] = read_ns
        rec["book_recv_ns"] = book_recv_ns
        for k in (
            "signal_seq",
            "model_id",
            "order_id",
            "trade_id",
            "side",
            "qty",
            "px",
            "flags",
            "code",
            "event_ms",
        ):
            rec[k] = 0
        rec["fee"] = 0.0
        self._publish()

    def fill(self, f: Fill, recv_ns: int, tag: str = "") -> None:
        if self.orders is None:
            return
        rec = self._order(ORDER_FILL, f.client_id, tag)
        rec["send_ns"] = recv_ns
        rec["read_ns"] = recv_ns
        for k in ("book_recv_ns", "signal_seq", "model_id", "code"):
            rec[k] = 0
        rec["order_id"] = f.order_id
        rec["trade_id"] = f.trade_id
        rec["side"] = f.side
        rec["qty"] = f.qty
        rec["px"] = f.px
        rec["flags"] = ORDER_MAKER if f.maker else 0
        rec["event_ms"] = f.time_ms
        rec["fee"] = f.fee
        self._publish()

    def rejected(self, r: Rejected, recv_ns: int) -> None:
        if self.orders is None:
            return
        rec = self._order(ORDER_REJECT, r.client_id, r.request)
        rec["send_ns"] = recv_ns
        rec["read_ns"] = recv_ns
        for k in ("book_recv_ns", "signal_seq", "model_id", "order_id", "trade_id", "side", "qty", "px"):
            rec[k] = 0
        rec["flags"] = REJECT_KINDS.get(r.request, 0)  # which request was refused
        rec["code"] = r.code
        rec["event_ms"] = r.time_ms
        rec["fee"] = 0.0
        self._publish()

    def publish_status(
        self,
        positions,
        risk,
        venue_lots: int,
        orders: int,
        rejects: int,
        mismatches: int,
        mark_px_ticks: float,
        faults: FaultLog | None = None,
    ) -> None:
        """One status record: the ledger, the risk state, the venue's position, the fault report."""
        if self.status is None:
            return
        rec = self.status.staging
        tick = float(rec["tick"])
        closed = positions.trades
        wins = sum(1 for t in closed if t.net_pnl > 0)
        rec["publish_ns"] = time.time_ns()
        rec["position"] = positions.position
        rec["venue_position"] = venue_lots
        rec["open_orders"] = len(positions.orders)
        rec["orders"] = orders
        rec["fills"] = positions.fills
        rec["trades"] = len(closed)
        rec["wins"] = wins
        rec["rejects"] = rejects
        rec["refusals"] = sum(risk.refusals.values()) if risk is not None else 0
        rec["state"] = STATE_CODES.get(risk.state, EXEC_RUNNING) if risk is not None else EXEC_RUNNING
        rec["mismatches"] = mismatches
        rec["avg_px"] = positions.avg_px * tick if positions.position else 0.0
        rec["mark_px"] = mark_px_ticks * tick
        rec["realised"] = positions.realised
        rec["unrealised"] = positions.unrealised(mark_px_ticks)
        rec["fees"] = positions.fees
        rec["net_pnl"] = positions.net_pnl(mark_px_ticks)
        rec["win_rate"] = positions.win_rate()
        if faults is not None:
            n = len(KINDS)
            rec["fault_count"][:n] = [faults.counts[k] for k in KINDS]
            rec["fault_recovered"][:n] = [faults.recovered[k] for k in KINDS]
            rec["fault_failed"][:n] = [faults.failed[k] for k in KINDS]
            rec["fault_open"][:n] = [faults.open_count(k) for k in KINDS]
            rec["fault_p50_ms"][:n] = [faults.p50_ms(k) for k in KINDS]
            rec["fault_max_ms"][:n] = [faults.max_ms[k] for k in KINDS]
        self.status.publish(rec)


def last_status(status_ring: Ring | None) -> np.ndarray | None:
    """The newest status record in the ring (an earlier run's, read before this run writes)."""
    if status_ring is None or status_ring.write_seq == 0:
        return None
    r = RingReader(status_ring, wait="spin_yield", start="oldest")
    try:
        recs = r.read_many(status_ring.capacity, timeout_s=0)
    finally:
        r.close()
    return recs[-1].copy() if len(recs) else None


def fault_report(rec) -> dict[str, dict]:
    """A status record's fault report as `FaultLog.seed` keyword arguments (a restart continues it):
    {"counts", "recovered", "failed": {kind: n}, "p50_ms", "max_ms": {kind: ms}}."""
    n = len(KINDS)

    def col(name: str, cast) -> dict:
        return {k: cast(v) for k, v in zip(KINDS, rec[name][:n], strict=True)}

    return {
        "counts": col("fault_count", int),
        "recovered": col("fault_recovered", int),
        "failed": col("fault_failed", int),
        "p50_ms": col("fault_p50_ms", float),
        "max_ms": col("fault_max_ms", float),
    }
