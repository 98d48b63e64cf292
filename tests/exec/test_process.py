"""The execution process under the real supervisor in sim mode: it trades, and it ends clean."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq

from hftbot.config import load_config
from hftbot.ipc import shm
from hftbot.records import ORDER_FILL, ORDER_PLACE
from hftbot.run import Supervisor
from hftbot.sim import auth


def sim_config(tmp_path, **env):
    base = {
        "HFTBOT_RUNTIME__DATA_DIR": str(tmp_path),
        "HFTBOT_RUNTIME__HEARTBEAT_S": "0.2",
        "HFTBOT_RUNTIME__STOP_TIMEOUT_S": "8",
        "HFTBOT_SIM__RATE_HZ": "80",
        "HFTBOT_FEED__DEPTH_SPEED": "0ms",  # a book per transaction: many decisions in a short run
        "HFTBOT_RECORDER__FLUSH_S": "0.5",
        "HFTBOT_INFERENCE__ENABLED": "false",
        # a baseline that trades often: any visible imbalance pays its costs
        "HFTBOT_EXEC__STRATEGY": "imbalance",
        "HFTBOT_STRATEGY__IMBALANCE_QTY": "0.1",
        "HFTBOT_STRATEGY__IMBALANCE_THRESHOLD": "0.2",
        "HFTBOT_STRATEGY__IMBALANCE_MOVE_BPS": "500",
        "HFTBOT_STRATEGY__IMBALANCE_HORIZON_UPDATES": "10",
        "HFTBOT_GATEWAY__COUNTDOWN_MS": "5000",
        "HFTBOT_GATEWAY__COUNTDOWN_REFRESH_S": "1",
    }
    return load_config(env={**base, **env})


def run_until(sup: Supervisor, done, timeout_s: float = 120.0) -> int:
    """Run the supervisor until the execution process's counters satisfy `done` (start-up on a
    loaded 2-core machine takes anything from 5 to 30 s, so a fixed duration would be flaky)."""

    execution = next(c for c in sup.children if c.spec.name == "execution")

    def watch() -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not sup.stop_reason:
            table = sup.table
            if table is not None and done(table.counters(execution.slot)):
                time.sleep(1.0)  # a little more trading, then stop in the middle of it
                break
            time.sleep(0.1)
        sup.stop_reason = sup.stop_reason or "test: enough trading"

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    code = sup.run()
    t.join(5)
    return code


def test_trades_in_sim_mode_and_ends_flat_and_equal_to_the_venue(tmp_path, capfd):
    cfg = sim_config(tmp_path)
    sup = Supervisor(cfg, panel=False)
    assert [c.spec.name for c in sup.children] == ["sim", "feed", "recorder", "execution"]
    assert run_until(sup, lambda c: c.get("fills", 0) >= 10) == 0
    s = sup.summary()
    ex, procs = s["execution"], s["processes"]
    assert ex["orders"] > 0 and ex["fills"] > 0, s
    assert procs["execution"]["orders"] == ex["orders"] and procs["execution"]["mismatches"] == 0
    # flattened on stop, and the venue (the simulator's own account) agrees
    assert ex["position_lots"] == 0 and ex["venue_position_lots"] == 0
    assert procs["sim"]["position_lots"] == 0
    assert ex["open_orders"] == 0 and ex["mismatches"] == 0
    assert ex["trades"] >= 1 and ex["fees_usdt"] > 0
    lat = s["latency_us"]
    assert lat["tick_to_order_us"]["n"] >= 1 and lat["tick_to_order_us"]["p50"] > 0
    assert lat["read_to_order_us"]["p50"] <= lat["tick_to_order_us"]["p50"]
    # closed round trips are in the trade log, readable without this package
    table = pq.read_table(tmp_path / "trades" / "sim" / "SOLUSDT" / "parquet")
    assert table.num_rows == ex["trades"]
    # the recorder wrote every order frame and fill the execution process published
    orders = pq.read_table(sorted(tmp_path.glob("recordings/**/orders-*.parquet"))).to_pandas()
    assert (orders.kind == ORDER_PLACE).sum() == ex["orders"] and (orders.kind == ORDER_FILL).sum() == ex[
        "fills"
    ]
    assert orders.client_id.str.len().min() > 0 and (orders.price[orders.kind == ORDER_FILL] > 0).all()
    out, err = capfd.readouterr()  # fd level: the children's logs too
    assert "execution  RUNNING: position +0" in out and "win rate" in out
    assert "[execution]" in err  # the execution process's log was captured
    # no secret in a log line, an order recording or the trade log
    csv = "".join(p.read_text() for p in tmp_path.glob("trades/**/*.csv"))
    texts = out + err + csv + " ".join(orders.client_id) + " ".join(orders.tag)
    for secret in (
        auth.TEST_ED25519_API_KEY,
        auth.TEST_ED25519_PRIVATE_PEM.splitlines()[1],
        auth.TEST_API_SECRET,
    ):
        assert secret not in texts
    # nothing left behind: no process, no segment
    assert all(not c.proc.is_alive() for c in sup.children)
    assert shm.list_segments(os.getpid()) == []


CAPTURE = Path(__file__).resolve().parents[1] / "data" / "btcusdt_20240808.gz"


def test_replay_trades_on_the_mirror_venue(tmp_path):
    """The same gateway, against the mirror venue whose book follows the replayed capture."""
    cfg = sim_config(
        tmp_path,
        HFTBOT_RUNTIME__MODE="replay",
        HFTBOT_REPLAY__PATH=str(CAPTURE),
        HFTBOT_RUNTIME__SYMBOL="BTCUSDT",
        HFTBOT_RECORDER__ENABLED="false",
        HFTBOT_STRATEGY__IMBALANCE_QTY="0.002",  # BTC: 0.002 × ~62 000 USDT
    )
    sup = Supervisor(cfg, panel=False)
    assert [c.spec.name for c in sup.children] == ["venue", "execution", "feed"]
    assert run_until(sup, lambda c: c.get("fills", 0) >= 6) == 0
    s = sup.summary()
    ex, venue = s["execution"], s["processes"]["venue"]
    assert ex["orders"] > 0 and ex["fills"] > 0 and ex["mismatches"] == 0
    assert ex["position_lots"] == ex["venue_position_lots"] == venue["position_lots"] == 0  # flattened
    assert venue["books"] > 0 and 0 < venue["orders"] <= ex["orders"]  # every order reached the mirror
    assert ex["mark_px"] > 10_000  # BTCUSDT's grid and price, learnt from the capture
    assert list((tmp_path / "trades" / "replay" / "BTCUSDT" / "parquet").glob("*.parquet"))
    assert shm.list_segments(os.getpid()) == []


def test_paper_trades_on_the_mirror_venue_against_a_live_market_data_server(tmp_path):
    """Paper mode end to end, offline: a `sim serve` process stands in for Binance's public market
    data (`[endpoints] live_*` pointed at it), so the real feed reads a live stream it does not
    control, and orders go to the mirror venue whose matching engine follows that live book — the
    simulator's own order book (its account) never sees an order."""
    from hftbot.bench.common import start_sim_server

    server, port = start_sim_server("--rate", "80", "--seed", "3")
    try:
        cfg = sim_config(
            tmp_path,
            HFTBOT_RUNTIME__MODE="paper",
            HFTBOT_ENDPOINTS__LIVE_REST=f"http://127.0.0.1:{port}",
            HFTBOT_ENDPOINTS__LIVE_WS=f"ws://127.0.0.1:{port}",
        )
        sup = Supervisor(cfg, panel=False)
        names = [c.spec.name for c in sup.children]
        assert "venue" in names and "sim" not in names and "execution" in names
        assert run_until(sup, lambda c: c.get("fills", 0) >= 4) == 0
        s = sup.summary()
        ex, venue = s["execution"], s["processes"]["venue"]
        assert ex["orders"] > 0 and ex["fills"] > 0 and ex["mismatches"] == 0
        assert ex["position_lots"] == ex["venue_position_lots"] == venue["position_lots"] == 0  # flattened
        assert venue["books"] > 0 and 0 < venue["orders"] <= ex["orders"]
        # the market-data server took no order: paper never trades on the data venue
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sim/orders", timeout=5) as r:
            data = json.loads(r.read())
        assert data["position_lots"] == 0 and not data["open"]
        assert not [n for _, n in data["requests"] if n == "order.place"]
        # recorded as real-venue data, and closed trades logged under the paper source
        assert list(tmp_path.glob("recordings/binance/SOLUSDT/*/book-*.parquet"))
        assert ex["trades"] >= 1  # fills, then flat: at least one round trip closed
        assert pq.read_table(tmp_path / "trades" / "paper" / "SOLUSDT" / "parquet").num_rows == ex["trades"]
        assert all(not c.proc.is_alive() for c in sup.children)
        assert shm.list_segments(os.getpid()) == []
    finally:
        server.kill()
        server.wait(10)
