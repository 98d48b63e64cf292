"""Process faults under the real supervisor in sim mode, and a soak with every venue fault at once.

The real processes (simulator, feed, inference, execution) run under the real supervisor; a
script on a thread of the test kills or stops them by pid and injects the simulator's faults
(`hftbot.bench.faultrun`). Each run must end with no client order id used twice at the venue, our
position equal to the venue's, and every fault counted in the exit summary's report.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from hftbot.bench.faultrun import FaultRun
from hftbot.config import load_config
from hftbot.ipc import shm
from hftbot.records import BOOK_VALID, ORDER_MARKET, ORDER_PLACE, ORDER_REDUCE_ONLY

pytestmark = pytest.mark.timeout(300)


def fault_config(tmp_path, **env):
    base = {
        "HFTBOT_RUNTIME__DATA_DIR": str(tmp_path),
        "HFTBOT_RUNTIME__HEARTBEAT_S": "0.2",
        "HFTBOT_RUNTIME__HEARTBEAT_TIMEOUT_S": "8",  # a stopped process outlives the countdown
        "HFTBOT_RUNTIME__RESTART_BACKOFF_S": "2.5",  # longer than the countdown: its cancels are seen first
        "HFTBOT_RUNTIME__STOP_TIMEOUT_S": "8",
        "HFTBOT_SIM__RATE_HZ": "80",
        "HFTBOT_FEED__DEPTH_SPEED": "0ms",
        "HFTBOT_RECORDER__ENABLED": "false",
        "HFTBOT_INFERENCE__ENABLED": "false",
        "HFTBOT_EXEC__STRATEGY": "imbalance",
        "HFTBOT_EXEC__STYLE": "maker",  # orders rest: the dead-man switch has something to cancel
        "HFTBOT_STRATEGY__IMBALANCE_QTY": "0.1",
        "HFTBOT_STRATEGY__IMBALANCE_THRESHOLD": "0.2",
        "HFTBOT_STRATEGY__IMBALANCE_MOVE_BPS": "500",
        "HFTBOT_STRATEGY__IMBALANCE_HORIZON_UPDATES": "10",
        "HFTBOT_GATEWAY__COUNTDOWN_MS": "1500",
        "HFTBOT_GATEWAY__COUNTDOWN_REFRESH_S": "0.3",
        "HFTBOT_GATEWAY__REQUEST_TIMEOUT_S": "1",
        "HFTBOT_GATEWAY__SETTLE_RETRY_MS": "200",
        "HFTBOT_GATEWAY__RECONNECT_BACKOFF_S": "0.2",
    }
    return load_config(env={**base, **env})


def ended_consistent(run: FaultRun) -> dict:
    """What every run must end with; returns the exit summary's execution object."""
    assert run.error is None, repr(run.error)
    assert run.exit_code == 0, run.summary["stop_reason"]
    s = run.summary
    ex, sim = s["execution"], s["processes"]["sim"]
    assert sim["duplicate_ids"] == 0  # no client order id was used twice at the venue
    ids = run.placed_client_ids()
    assert ids and len(ids) == len(set(ids))  # nor by us, across every run of the process
    assert ex["position_lots"] == ex["venue_position_lots"] == sim["position_lots"]
    assert ex["open_orders"] == 0 == sim["open_orders"]
    assert ex["mismatches"] == 0 and "mismatch" not in ex["faults"]
    assert shm.list_segments(os.getpid()) == []
    return ex


def test_hung_killed_execution_and_killed_feed(tmp_path, capfd) -> None:
    """SIGSTOP execution: the venue's countdown cancels what rests. kill -9 execution: the same, and
    the restarted process reconciles before its first order, with client ids no earlier run used.
    kill -9 feed: no order goes out until a valid book from the restarted feed."""

    def script(run: FaultRun) -> None:
        ex_open = lambda: run.counters("execution").get("open_orders", 0) >= 1  # noqa: E731
        run.wait(lambda: run.counters("execution").get("fills", 0) >= 2, 150, "the first fills")
        # -- hung
        for _ in range(20):
            run.wait(ex_open, 30, "a resting order")
            pid, _ = run.kill("execution", signal.SIGSTOP)
            resting = run.admin("/sim/orders")["open"]
            if resting:
                break
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.3)
        cancels = run.admin("/sim/orders")["countdown_cancels"]
        time.sleep(2.5)  # the countdown (1.5 s) runs out; no refresh from a stopped process
        rep = run.admin("/sim/orders")
        os.kill(pid, signal.SIGCONT)
        run.notes["hung"] = (resting, rep["open"], rep["countdown_cancels"] - cancels)
        # -- killed
        run.wait(lambda: bool(run.admin("/sim/orders")["open"]), 60, "orders resting at the venue")
        cancels = run.admin("/sim/orders")["countdown_cancels"]
        pid, t_exec = run.kill("execution")
        resting = run.admin("/sim/orders")["open"]
        time.sleep(2.0)  # the countdown, before the supervisor's restart (2.5 s)
        rep = run.admin("/sim/orders")
        run.notes["killed"] = (resting, rep["open"], rep["countdown_cancels"] - cancels, t_exec)
        run.wait(lambda: run.pid("execution") not in (0, pid), 30, "the restart")
        run.wait(lambda: len(run.orders_between(t_exec, time.time_ns(), kinds=(ORDER_PLACE,))) >= 2, 90,
                 "the restarted process trading")  # (its heartbeat counters start as the old ones)
        run.notes["requests"] = run.admin("/sim/orders")["requests"]
        run.sleep(1.0)
        # -- feed
        _, run.notes["feed"] = run.kill_feed_until_trading(60)
        # -- a precision refusal: a bug on our side, so HALTED (cancel all, flatten), nothing after
        run.set_faults(reject_code=-1111, reject_every=1)
        run.wait(lambda: run.counters("execution").get("halted", 0) == 1, 60, "the halt")
        run.set_faults()
        run.notes["halted"] = time.time_ns()
        run.wait(lambda: not run.admin("/sim/orders")["open"] and run.admin("/sim/orders")["position_lots"] == 0,
                 30, "everything cancelled and flat")
        run.sleep(1.0)

    run = FaultRun(fault_config(tmp_path), script)
    run.run()
    ex = ended_consistent(run)
    s = run.summary
    resting, left, cancelled = run.notes["hung"]
    assert resting and left == [] and cancelled >= 1  # the dead-man switch did it
    resting, left, cancelled, t_exec = run.notes["killed"]
    assert left == []  # (a cancel the dying process had already written may beat the countdown to it)
    assert s["processes"]["execution"]["restarts"] == 1 and s["processes"]["feed"]["restarts"] == 1
    # the restarted process: position and open orders read before its first order
    after = [name for t, name in run.notes["requests"] if t >= t_exec // 1_000_000]
    first_order = after.index("order.place")
    assert "account.position" in after[:first_order] and "GET /fapi/v1/openOrders" in after[:first_order]
    faults = ex["faults"]
    assert faults["restart"]["count"] == 1 and faults["restart"]["recovered"] == 1
    assert faults["stale_book"]["count"] >= 1 and faults["stale_book"]["recovered"] >= 1
    # the feed: nothing between its death and the first valid book from its successor
    t_feed = run.notes["feed"]
    t_valid = run.first_book_after(t_feed)
    assert len(run.orders_between(t_feed, t_valid)) == 0
    books = run.watch.records("book")
    valid = set(books["recv_ns"][(books["flags"] & BOOK_VALID) != 0].tolist())
    sent = run.orders_between(t_feed, time.time_ns())
    assert len(sent) and set(sent["book_recv_ns"].tolist()) <= valid  # every later order on a valid book
    assert ex["state"] == "HALTED" and faults["precision"]["count"] >= 1
    # after the halt only the flatten and its retries (reduce-only market orders) may go out
    late = run.orders_between(run.notes["halted"], time.time_ns(), kinds=(ORDER_PLACE,))
    assert ((late["flags"] & (ORDER_REDUCE_ONLY | ORDER_MARKET)) == (ORDER_REDUCE_ONLY | ORDER_MARKET)).all()
    out = capfd.readouterr().out
    assert "fault      restart" in out and "stale_book" in out and "precision" in out


# kill -9 of inference (nothing opens until fresh signals, the exit goes on without the model, the
# stale-signal fault counted and recovered): tests/system/test_full_loop.py, on the run it shares.


def test_soak_with_every_venue_fault_at_once(tmp_path) -> None:
    """About 15 s of trading with every venue fault on together, streams cut on a timer (each of the
    six cuts once, 2.5 s apart); then calm."""
    soak_s = 15.0

    def script(run: FaultRun) -> None:
        run.wait(lambda: run.counters("execution").get("fills", 0) >= 2, 150, "the first fills")
        faults = dict(
            unknown_status_every=7,
            unknown_code=-1006,
            late_order_every=11,
            late_order_ms=1500,
            lose_order_every=13,
            close_ws_api_every=29,
            rate_limit_every=19,
            retry_after_ms=400,
            reject_code=-2019,
            reject_every=23,
            duplicate_user_every=5,
            reorder_user_every=7,
        )
        run.set_faults(**faults)
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < soak_s:
            n += 1
            run.sleep(2.5)
            step = n % 6
            if step == 1:
                run.admin("/sim/disconnect", {"route": "private"})
            elif step == 2:
                run.admin("/sim/expireListenKey", {})
            elif step == 3:
                run.set_faults(**faults, clock_skew_ms=7000 if n % 12 == 3 else -3000)
            elif step == 4:
                run.admin("/sim/disconnect", {"route": "ws_api"})
            elif step == 5:
                run.admin("/sim/expireListenKey", {"silent": True})  # found by the keep-alive (-1125)
            else:
                run.set_faults(**{**faults, "reject_code": -4164 if n % 12 else -2019})
        run.set_faults()  # calm: everything settles
        run.wait(lambda: run.counters("execution").get("orders", 0) > 0, 10, "execution alive")
        run.sleep(3.0)

    cfg = fault_config(tmp_path, HFTBOT_EXEC__STYLE="taker", HFTBOT_GATEWAY__LISTEN_KEY_KEEPALIVE_S="2")
    run = FaultRun(cfg, script)  # taker: many fills
    run.run()
    ex = ended_consistent(run)
    assert ex["fills"] >= 10, ex
    faults = ex["faults"]
    for kind in ("unknown_outcome", "timestamp", "rate_limit", "user_stream", "listen_key", "ws_api",
                 "duplicate_fill"):
        assert faults.get(kind, {}).get("count", 0) >= 1, (kind, faults)
    assert faults.get("margin", {}).get("count", 0) + faults.get("min_notional", {}).get("count", 0) >= 1
    for kind, f in faults.items():
        assert f["open"] == 0, (kind, f)  # everything in progress at the end was settled
