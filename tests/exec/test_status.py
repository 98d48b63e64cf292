"""The execution journal and the supervisor's monitor on real rings: exact latency, bounded panel."""

from __future__ import annotations

import os
import time

import pytest

from hftbot.config import load_config
from hftbot.exec.filters import SymbolFilters
from hftbot.exec.ids import ClientIds
from hftbot.exec.journal import Journal
from hftbot.exec.messages import BUY, GTX, LIMIT, SELL, Fill, OrderRequest, Place, Rejected
from hftbot.exec.positions import Positions
from hftbot.exec.risk import RiskManager
from hftbot.exec.status import STATUS_CAPACITY, ExecMonitor
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring
from hftbot.records import EXEC_STATUS_DTYPE, ORDER_DTYPE, ORDER_POST_ONLY


@pytest.fixture
def rings():
    tag = f"sttest{os.getpid()}-{time.time_ns() % 10**6}"
    made = {
        "order": Ring.create(shm.segment_name(f"{tag}-order"), ORDER_DTYPE, 256),
        "exec": Ring.create(shm.segment_name(f"{tag}-exec"), EXEC_STATUS_DTYPE, STATUS_CAPACITY),
    }
    try:
        yield made
    finally:
        for r in made.values():
            r.close()
            r.unlink()


def order(cid: str, side: int = BUY, tif: str = LIMIT, book_ns: int = 0) -> OrderRequest:
    return OrderRequest(cid, side, 10, 15000, LIMIT, tif, False, "entry", "deeplob", 3, book_ns, 0)


def test_latency_is_measured_from_the_records_own_stamps(rings) -> None:
    j = Journal(rings["order"], rings["exec"], 0.01, 0.01)
    mon = ExecMonitor(rings)
    try:
        t = 1_000_000_000_000
        # book received at t, signal read at t + 400 µs, frame written at t + 500 µs
        j.sent(
            order("a", book_ns=t, tif=GTX), t + 500_000, t + 400_000, signal_seq=7, model_id=3, book_recv_ns=t
        )
        # a book-driven order: read at t + 2 ms, written at t + 2.1 ms
        j.sent(order("b", SELL, book_ns=t + 1_000_000), t + 2_100_000, t + 2_000_000, 0, 0, t + 1_000_000)
        j.cancel("a", "cancel", t + 3_000_000, t + 2_900_000, t + 2_500_000)  # not an order: no latency
        j.fill(Fill("b", 11, 5, SELL, 10, 15000, 0.03, True, 1234), t + 4_000_000, "entry")
        j.rejected(Rejected("c", -5022, "post only", 1235, "place"), t + 5_000_000)
        mon.poll()
        assert mon.counts == {"orders": 2, "modifies": 0, "cancels": 1, "fills": 1, "rejects": 1}
        lat = mon.latency()
        assert lat["signal_to_order_us"] == {"n": 1, "p50": 100.0, "p99": 100.0, "p99.9": 100.0}
        assert lat["read_to_order_us"]["n"] == 2 and lat["read_to_order_us"]["p50"] == 100.0
        tto = lat["tick_to_order_us"]
        assert tto["n"] == 2 and tto["p50"] == 800.0  # the median of 500 and 1100 µs
        recs = rings["order"].records[:5]
        assert int(recs[0]["flags"]) & ORDER_POST_ONLY and int(recs[0]["signal_seq"]) == 7
        assert recs[3]["client_id"] == b"b" and recs[3]["tag"] == b"entry" and recs[4]["code"] == -5022
    finally:
        mon.close()


def test_the_panel_stays_within_80_columns_and_the_summary_names_every_figure(rings) -> None:
    j = Journal(rings["order"], rings["exec"], 0.01, 0.001)
    mon = ExecMonitor(rings)
    try:
        p = Positions(0.01, 0.001)
        risk = RiskManager(
            load_config(env={}).risk, SymbolFilters.from_tick_lot("X", "0.01", "0.001"), p, ClientIds(1)
        )
        for _ in range(3):
            risk.check(Place(BUY, 1, 100), None, 0)  # no book: refused
        risk.halt("test", 0)
        # a large short position with big, unlucky figures
        p.on_fill(Fill("x", 1, 1, SELL, 123_456_789, 9_999_999, 12_345.678, False, 1))
        j.publish_status(
            p, risk, -123_456_789, orders=987_654, rejects=4321, mismatches=2, mark_px_ticks=10_999_999.0
        )
        mon.poll()
        s = mon.summary()
        assert s["state"] == "HALTED" and s["position_lots"] == s["venue_position_lots"] == -123_456_789
        assert s["refusals"] == 3 and s["mismatches"] == 2 and s["win_rate"] is None
        assert s["unrealised_usdt"] < 0 and s["net_pnl_usdt"] == pytest.approx(
            s["unrealised_usdt"] - 12_345.678
        )
        for key in (
            "open_orders",
            "orders",
            "fills",
            "trades",
            "wins",
            "realised_usdt",
            "fees_usdt",
            "avg_px",
        ):
            assert key in s
        lines = mon.panel_lines()
        assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
        assert lines[0].startswith("exec HALTED pos -123457") and "PnL net -" in lines[1]
    finally:
        mon.close()


def test_no_status_yet_means_no_panel_lines(rings) -> None:
    mon = ExecMonitor(rings)
    mon.poll()
    assert mon.summary() == {} and mon.panel_lines() == [] and mon.print_lines() == [] and mon.latency() == {}
    mon.close()
