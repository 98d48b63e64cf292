"""The executor's wiring on real rings against the real simulator: journal, kill switch, stop."""

from __future__ import annotations

import copy
import logging
import os
import time

import numpy as np

from hftbot.config import load_config
from hftbot.exec import __main__ as exec_cli
from hftbot.exec.gateway import Gateway
from hftbot.exec.messages import BUY, MARKET, Place
from hftbot.exec.process import Executor, assemble, start_position
from hftbot.exec.status import STATUS_CAPACITY, ExecMonitor
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring
from hftbot.records import (
    BOOK_VALID,
    EXEC_HALTED,
    EXEC_STATUS_DTYPE,
    ORDER_DTYPE,
    ORDER_FILL,
    ORDER_PLACE,
    empty_book,
)
from tests.exec.conftest import signer_for, venue_of

LOG = logging.getLogger("test.executor")


def book_of(sim, levels: int = 10) -> np.ndarray:
    """The simulator's current top of book as a valid book record (what the feed would publish)."""
    e = sim.venue.engine

    def top():
        bids = sorted(e.bids.items(), reverse=True)[:levels]
        asks = sorted(e.asks.items())[:levels]
        return bids, asks

    bids, asks = sim.call(top)
    b = empty_book(levels)
    b["flags"] = BOOK_VALID
    b["tick"], b["lot"] = 0.01, 0.01
    b["recv_ns"] = b["publish_ns"] = time.time_ns()
    for i, (px, q) in enumerate(bids):
        b["bid_px"][i], b["bid_qty"][i] = px, q
    for i, (px, q) in enumerate(asks):
        b["ask_px"][i], b["ask_qty"][i] = px, q
    return b


class Rings:
    def __init__(self) -> None:
        tag = f"extest{os.getpid()}-{time.time_ns() % 10**6}"
        self.order = Ring.create(shm.segment_name(f"{tag}-order"), ORDER_DTYPE, 1024)
        self.exec = Ring.create(shm.segment_name(f"{tag}-exec"), EXEC_STATUS_DTYPE, STATUS_CAPACITY)

    def close(self) -> None:
        for r in (self.order, self.exec):
            r.close()
            r.unlink()


def make(sim, tmp_path, **env) -> tuple[Executor, Gateway, Rings]:
    cfg = load_config(env={"HFTBOT_RUNTIME__DATA_DIR": str(tmp_path), "HFTBOT_EXEC__STRATEGY": "none", **env})
    gw = Gateway(venue_of(sim), signer_for("ed25519"), cfg.gateway, LOG)
    snap = gw.start()
    rings = Rings()
    return assemble(cfg, gw, snap, (rings.order, rings.exec), "sim", LOG), gw, rings


def settle(ex: Executor, cond, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        ex.drain_events()
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError("condition not met")


def test_orders_and_fills_are_journalled_and_monitored(sim, tmp_path) -> None:
    ex, gw, rings = make(sim, tmp_path)
    mon = ExecMonitor({"order": rings.order, "exec": rings.exec})
    try:
        ex.book = book_of(sim)
        read_ns = time.time_ns()
        ex._decide([Place(BUY, 10, type=MARKET, tag="entry")], read_ns, 0)
        settle(ex, lambda: ex.positions.position == 10 == gw.position.lots)
        ex.publish_status()
        mon.poll()
        assert mon.counts["orders"] == 1 and mon.counts["fills"] >= 1
        lat = mon.latency()
        assert lat["tick_to_order_us"]["n"] == 1 and lat["read_to_order_us"]["n"] == 1
        assert 0 < lat["read_to_order_us"]["p50"] <= lat["tick_to_order_us"]["p50"]
        assert "signal_to_order_us" not in lat  # a book-driven order
        s = mon.summary()
        assert s["position_lots"] == s["venue_position_lots"] == 10 and s["fees_usdt"] > 0
        assert s["orders"] == 1 and s["state"] == "RUNNING"
        lines = mon.panel_lines()
        assert len(lines) == 2 and all(len(line) <= 80 for line in lines) and "pos +0.1 @ 1" in lines[0]
    finally:
        mon.close()
        gw.close()
        rings.close()


def test_trades_reach_a_strategy_that_reads_them_and_are_only_counted_for_one_that_does_not(
        sim, tmp_path) -> None:
    from hftbot.exec.strategy import Strategy
    from hftbot.records import TRADE_DTYPE

    class Follows(Strategy):  # buys once, on the first trade it sees
        def __init__(self) -> None:
            self.seen: list[int] = []

        def on_trade(self, trade, view):
            self.seen.append(int(trade["trade_id"]))
            return [Place(BUY, 10, type=MARKET, tag="entry")] if len(self.seen) == 1 else ()

    class Ignores(Strategy):  # keeps the base class's on_trade
        pass

    assert Follows().reads_trades and not Ignores().reads_trades and not Strategy().reads_trades
    ex, gw, rings = make(sim, tmp_path)
    try:
        ex.book = book_of(sim)
        trades = np.zeros(3, TRADE_DTYPE)
        trades["trade_id"] = [7, 8, 9]
        ex.strategy = Ignores()
        ex.on_trades(trades, time.time_ns())
        assert ex.trades == 3 and ex.orders == 0
        ex.strategy = follows = Follows()
        ex.on_trades(trades, time.time_ns())
        assert follows.seen == [7, 8, 9] and ex.trades == 6 and ex.orders == 1
        settle(ex, lambda: ex.positions.position == 10 == gw.position.lots)
        assert gw.position.lots == 10
    finally:
        gw.close()
        rings.close()


def test_kill_switch_from_the_cli_halts_cancels_and_flattens(sim, tmp_path, monkeypatch) -> None:
    ex, gw, rings = make(sim, tmp_path)
    try:
        ex.book = book_of(sim)
        ex._decide([Place(BUY, 10, type=MARKET, tag="entry")], time.time_ns(), 0)
        bid = int(ex.book["bid_px"][0])
        ex._decide([Place(BUY, 10, bid - 20, tag="entry")], time.time_ns(), 0)  # resting
        settle(ex, lambda: ex.positions.position == 10 and len(gw.orders) == 1)
        monkeypatch.setenv("HFTBOT_RUNTIME__DATA_DIR", str(tmp_path))
        assert exec_cli.main(["kill", "--reason", "test"]) == 0
        assert (tmp_path / "KILL").read_text().endswith("test\n")
        ex.book = book_of(sim)
        ex.housekeeping(time.time_ns())
        assert ex.risk.state == "HALTED" and ex.risk.killed
        settle(ex, lambda: ex.positions.position == 0 == gw.position.lots and not gw.orders)
        assert sim.call(lambda: sim.venue.engine.open_orders()) == []
        # halted: nothing opens any more
        ex._decide([Place(BUY, 10, type=MARKET, tag="entry")], time.time_ns(), 0)
        assert ex.refused == 1 and ex.risk.refusals["halted"] == 1
        ex.publish_status()
        rec = rings.exec.records[(rings.exec.write_seq - 1) % STATUS_CAPACITY]
        assert int(rec["state"]) == EXEC_HALTED
        assert exec_cli.main(["unkill"]) == 0 and not (tmp_path / "KILL").exists()
        kinds = rings.order.records["kind"][: rings.order.write_seq]
        assert (kinds == ORDER_PLACE).sum() == 3 and (kinds == ORDER_FILL).sum() >= 2  # entry, rest, flatten
    finally:
        gw.close()
        rings.close()


def test_stop_cancels_and_flattens_then_ledger_equals_the_venue(sim, tmp_path) -> None:
    ex, gw, rings = make(sim, tmp_path)
    try:
        ex.book = book_of(sim)
        ex._decide([Place(BUY, 7, type=MARKET, tag="entry")], time.time_ns(), 0)
        bid = int(ex.book["bid_px"][0])
        ex._decide([Place(BUY, 10, bid - 30, tag="entry")], time.time_ns(), 0)
        settle(ex, lambda: ex.positions.position == 7 and len(gw.orders) == 1)
        ex.shutdown(flatten=True, wait_s=5.0)
        ex.close()
        assert (
            ex.positions.position
            == 0
            == gw.position.lots
            == sim.call(lambda: sim.venue.account.position.lots)
        )
        assert not gw.orders and sim.call(lambda: sim.venue.engine.open_orders()) == []
        assert ex.positions.trades and ex.positions.trades[-1].exit_tag == "flatten_stop"
        assert list((tmp_path / "trades" / "sim" / "SOLUSDT" / "csv").glob("trades-*.csv"))
    finally:
        gw.close()
        rings.close()


def test_a_position_found_at_start_enters_the_ledger(sim, tmp_path) -> None:
    first, gw1, r1 = make(sim, tmp_path)
    try:
        first.book = book_of(sim)
        first._decide([Place(BUY, 9, type=MARKET, tag="entry")], time.time_ns(), 0)
        settle(first, lambda: gw1.position.lots == 9)
    finally:
        gw1._stop.set()  # dies without cleaning up: no cancel, no flatten
        gw1._ws.close()
        gw1._user_ws.close()
        r1.close()
    second, gw2, r2 = make(sim, tmp_path)
    try:
        assert second.positions.position == 9 == gw2.position.lots
        assert abs(second.positions.avg_px * 0.01 - gw2.position.entry_px) < 0.01
    finally:
        gw2.close()
        r2.close()


def test_start_position_is_a_single_fill() -> None:
    from hftbot.exec.positions import Positions

    p = Positions(0.01, 0.01)
    start_position(p, -5, 150.25, 1000)
    assert p.position == -5 and p.avg_px == 15025 and p.fees == 0.0
    start_position(p, 0, 0.0, 0)
    assert p.position == -5


def test_an_unknown_outcome_counts_as_open_until_settled(sim, tmp_path) -> None:
    import json

    import requests

    ex, gw, rings = make(sim, tmp_path, HFTBOT_GATEWAY__REQUEST_TIMEOUT_S="0.3")
    try:
        ex.book = book_of(sim)
        bid = int(ex.book["bid_px"][0])
        # answers now come 1 s late: past the 0.3 s timeout the place's fate is unknown
        requests.post(sim.urls["rest"] + "/sim/faults", data=json.dumps({"delay_ms": 1000}), timeout=5)
        ex._decide([Place(BUY, 10, bid - 25, tag="entry")], time.time_ns(), 0)
        (cid,) = list(ex.positions.orders)
        seen = []

        def settled() -> bool:
            seen.append(ex.positions.orders[cid].status)
            return seen[-1] == "NEW"

        settle(ex, settled)
        assert "UNKNOWN" in seen and gw.counters["unknown"] == 1  # marked, then settled by order.status
        assert ex.positions.open_lots() == (10, 0)  # it counted as open all along
        assert [o.client_id for o in sim.call(lambda: sim.venue.engine.open_orders())] == [cid]  # sent once
    finally:
        requests.post(sim.urls["rest"] + "/sim/faults", data=json.dumps({}), timeout=5)
        gw.close()
        rings.close()


def test_a_rehearsal_runs_risk_and_the_frame_build_and_trades_nothing(sim, tmp_path) -> None:
    ex, gw, rings = make(sim, tmp_path, HFTBOT_EXEC__STRATEGY="mm")
    try:
        assert not ex.rehearse(time.time_ns())  # no book yet: nothing to rehearse on
        ex.book = book_of(sim)
        seq, sent = rings.order.write_seq, gw.counters["sent"]
        strategy, seen_ns = copy.deepcopy(vars(ex.strategy)), ex.view.now_ns
        for _ in range(50):
            assert ex.rehearse(time.time_ns())
        assert ex.rehearsals == 50
        # the strategy's decision was rehearsed on copies: the strategy and its view as they were
        assert vars(ex.strategy) == strategy and ex.view.now_ns == seen_ns
        time.sleep(0.2)
        ex.drain_events()
        assert ex.orders == 0 and ex.risk.approved == 0 and not any(ex.risk.refusals.values())
        assert not ex.positions.orders and not gw.orders and gw.counters["sent"] == sent
        assert rings.order.write_seq == seq  # nothing journalled
        assert not sim.call(lambda: sim.venue.engine.open_orders())
        ex.book["recv_ns"] = 0  # a stale book: the rehearsed check refuses, and says so to no one
        assert not ex.rehearse(time.time_ns()) and not any(ex.risk.refusals.values())
    finally:
        gw.close()
        rings.close()
