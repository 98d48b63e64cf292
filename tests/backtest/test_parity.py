"""Parity (point 7): one recording through the live pipeline and through the backtester gives the
same orders and fills.

Live: `--mode replay` under the real supervisor — the replay feed at real time, the execution
process with the gateway on real sockets, the mirror venue whose engine follows the book records;
the recorder writes execution's order and fill records (orders-*.parquet). Backtester: the same
recording, the same config, zero order and feed latency. What makes the two comparable (see
docs/backtest.md, "Parity"): a book of at most `feed.levels` levels a side (the mirror venue knows
the top N, the backtester the full depth: equal here) and book updates 300 ms apart, far longer
than the pipeline's own latency, so each order is answered before the next update on both sides.
"""

from __future__ import annotations

import os
import threading
import time

import pyarrow.parquet as pq
import pytest

from hftbot.backtest.engine import run_backtest
from hftbot.config import load_config
from hftbot.ipc import shm
from hftbot.records import ORDER_FILL, ORDER_PLACE
from hftbot.run import Supervisor
from tests.backtest.capture import T0_MS, Tape

STEP_MS = 300


def levels(mid_cents: int, bid_qty: list[str], ask_qty: list[str]):
    bids = [(f"{(mid_cents - i) / 100:.2f}", q) for i, q in enumerate(bid_qty)]
    asks = [(f"{(mid_cents + 1 + i) / 100:.2f}", q) for i, q in enumerate(ask_qty)]
    return bids, asks


def parity_tape(path):
    """Balanced, then bids heavy (a long entry, its horizon exit), balanced, asks heavy (a short)."""
    t = Tape()
    even = ["1.01", "1.02", "1.03", "1.04", "1.05"]
    heavy = ["9.01", "9.02", "9.03", "9.04", "9.05"]
    t.snapshot(T0_MS, *levels(10000, even, even))
    e = T0_MS
    for bid_q, ask_q in [(even, even), (heavy, even), (even, even), (even, heavy), (even, even)]:
        for k in range(8):
            e += STEP_MS
            bids, asks = levels(10000, bid_q, ask_q)
            bids[4] = (bids[4][0], f"{1 + (k % 3) / 100:.2f}")  # a change on every update
            t.diff(e, bids=bids, asks=asks)
    return t.write(path)


def config(tmp_path, tape):
    env = {
        "HFTBOT_RUNTIME__DATA_DIR": str(tmp_path / "data"),
        "HFTBOT_RUNTIME__MODE": "replay",
        "HFTBOT_RUNTIME__SYMBOL": "SOLUSDT",
        "HFTBOT_RUNTIME__HEARTBEAT_S": "0.2",
        "HFTBOT_RUNTIME__STOP_TIMEOUT_S": "8",
        "HFTBOT_REPLAY__PATH": str(tape),
        "HFTBOT_RECORDER__FLUSH_S": "0.5",
        "HFTBOT_INFERENCE__ENABLED": "false",
        "HFTBOT_EXEC__STRATEGY": "imbalance",
        "HFTBOT_EXEC__FLATTEN_ON_STOP": "false",
        "HFTBOT_STRATEGY__IMBALANCE_QTY": "0.1",
        "HFTBOT_STRATEGY__IMBALANCE_THRESHOLD": "0.5",
        "HFTBOT_STRATEGY__IMBALANCE_MOVE_BPS": "500",
        "HFTBOT_STRATEGY__IMBALANCE_HORIZON_UPDATES": "5",
        "HFTBOT_GATEWAY__COUNTDOWN_MS": "5000",
        "HFTBOT_GATEWAY__COUNTDOWN_REFRESH_S": "1",
        "HFTBOT_BACKTEST__FEED_LATENCY": "zero",
        "HFTBOT_BACKTEST__ORDER_LATENCY": "constant",
        "HFTBOT_BACKTEST__ORDER_ENTRY_US": "0",
        "HFTBOT_BACKTEST__ORDER_RESPONSE_US": "0",
    }
    return load_config(env=env)


def run_live(cfg, timeout_s: float = 150.0) -> int:
    sup = Supervisor(cfg, panel=False)
    assert "recorder" in [c.spec.name for c in sup.children]

    def watchdog() -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not sup.stop_reason:
            time.sleep(0.2)
        sup.stop_reason = sup.stop_reason or "test: parity run took too long"

    threading.Thread(target=watchdog, daemon=True).start()
    code = sup.run()
    assert all(not c.proc.is_alive() for c in sup.children)
    assert shm.list_segments(os.getpid()) == []
    return code


@pytest.mark.timeout(240)
def test_replay_through_the_live_pipeline_and_the_backtester_gives_the_same_orders_and_fills(tmp_path):
    tape = parity_tape(tmp_path / "parity.gz")
    cfg = config(tmp_path, tape)
    bt = run_backtest([tape], strategy="imbalance", cfg=cfg)
    assert bt.orders >= 4 and len(bt.fills) >= 4  # a long and a short round trip at least
    assert run_live(cfg) == 0
    files = sorted((tmp_path / "data").glob("recordings/**/orders-*.parquet"))
    assert files, "the recorder wrote no order records"
    live = pq.read_table(files).to_pandas().sort_values("send_ns", kind="stable")
    places = live[live.kind == ORDER_PLACE]
    fills = live[live.kind == ORDER_FILL]
    got_orders = [(int(r.side), int(r.qty), int(r.px), r.tag) for r in places.itertuples()]
    want_orders = [(o[2], o[3], o[4], o[8]) for o in bt.order_log]
    assert got_orders == want_orders
    got_fills = [(int(r.side), int(r.qty), int(r.px)) for r in fills.itertuples()]
    f = bt.fills
    want_fills = [(int(s), round(q / bt.lot), round(p / bt.tick)) for s, q, p in zip(f["side"], f["qty"], f["px"],
                                                                                     strict=True)]
    assert got_fills == want_fills
    assert [round(x, 10) for x in fills.fee] == [round(x, 10) for x in f["fee"]]
