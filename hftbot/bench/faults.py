"""`python -m hftbot.bench faults`: every fault kind, one after another, against the simulator.

The real supervisor in sim mode — simulator, feed, inference with the shipped checkpoint,
execution with the `deeplob` strategy in maker style (orders rest, so cancels race fills and the
dead-man switch has something to cancel) — and a script (`hftbot.bench.faultrun`) that injects
one fault kind per phase through the simulator's admin hooks or by signalling a process, clears
it, and waits until the execution's fault report has nothing in progress before the next phase:

unknown outcomes (503, -1007, a lost answer racing the query, a lost order, the WS API socket
closed in flight), -1021 (the venue's clock jumps, then back), 429 (-1015, then -1003 with the
weight pause), -2019, -4164, -5022, the user stream dropped, `listenKeyExpired`, a silent expiry
found by the keep-alive (-1125), the WS API dropped, duplicated and reordered user events, kill -9
of the feed, kill -9 of inference, SIGSTOP of execution past the countdown (the venue must show
no open order), -1111 (a halt), then kill -9 of execution (restart, reconciled before its first
order).

It prints the phases, the fault report (count, recovered, failed, action, recovery p50 / max ms:
from the fault to the state it restores, as `hftbot.exec.faults` defines) and one JSON line with
`duplicate_orders` (client order ids the venue saw twice), `position_mismatches` (mismatches the
execution counted, plus ours ≠ the venue's at the end), and `recovery_ms` per kind. Both counts
must be 0. `--quick` shortens the phases (a smoke run). Not a test: a loaded machine changes the
recovery times (the 1-minute load average is printed with them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import tempfile
import time
from pathlib import Path

from hftbot.bench.common import print_json, print_table
from hftbot.bench.faultrun import FaultRun

ROOT = Path(__file__).resolve().parents[2]


def bench_config(data_dir: str):
    from hftbot.config import load_config

    ckpt = Path("checkpoints")
    if not (ckpt / "CURRENT").exists():
        ckpt = ROOT / "checkpoints"
    env = {
        "HFTBOT_RUNTIME__DATA_DIR": data_dir,
        "HFTBOT_RUNTIME__CHECKPOINTS_DIR": str(ckpt),
        "HFTBOT_RUNTIME__LOG_LEVEL": "WARNING",
        "HFTBOT_RUNTIME__HEARTBEAT_S": "0.2",
        "HFTBOT_RUNTIME__START_TIMEOUT_S": "180",  # the model's process on a loaded machine
        "HFTBOT_RUNTIME__HEARTBEAT_TIMEOUT_S": "30",
        "HFTBOT_RUNTIME__RESTART_BACKOFF_S": "2.5",  # > the countdown: the venue's cancels come first
        "HFTBOT_RUNTIME__STOP_TIMEOUT_S": "8",
        "HFTBOT_SIM__RATE_HZ": "80",
        "HFTBOT_FEED__DEPTH_SPEED": "0ms",
        "HFTBOT_RECORDER__ENABLED": "false",
        "HFTBOT_EXEC__STRATEGY": "deeplob",
        "HFTBOT_EXEC__STYLE": "maker",
        "HFTBOT_EXEC__MAKER_TIMEOUT_MS": "300",  # entries rest, and are replaced often: orders flow
        "HFTBOT_EXEC__EXIT_TIMEOUT_MS": "500",
        "HFTBOT_STRATEGY__DEEPLOB_QTY": "0.1",
        "HFTBOT_STRATEGY__DEEPLOB_MOVE_BPS": "2000",  # trade on most signals: faults need orders
        "HFTBOT_STRATEGY__DEEPLOB_HORIZON_UPDATES": "40",
        "HFTBOT_GATEWAY__COUNTDOWN_MS": "1500",
        "HFTBOT_GATEWAY__COUNTDOWN_REFRESH_S": "0.3",
        "HFTBOT_GATEWAY__REQUEST_TIMEOUT_S": "1",
        "HFTBOT_GATEWAY__SETTLE_RETRY_MS": "200",
        "HFTBOT_GATEWAY__RECONNECT_BACKOFF_S": "0.2",
        "HFTBOT_GATEWAY__LISTEN_KEY_KEEPALIVE_S": "2",  # a silent expiry is found within 2 s
    }
    return load_config(env=env)


def phases(phase_s: float) -> list[tuple[str, object]]:
    """(name, what to do) in order; a dict is a set of simulator faults held for `phase_s`."""
    half = phase_s / 2

    def clock(run: FaultRun) -> None:
        run.set_faults(clock_skew_ms=8000)
        run.sleep(half)
        run.set_faults(clock_skew_ms=0)  # and back: our offset is now 8 s off the other way
        run.sleep(half)

    def admin(path: str, body: dict, times: int = 2):
        def go(run: FaultRun) -> None:
            for _ in range(times):
                run.admin(path, body)
                run.sleep(phase_s / times)

        return go

    def kill(name: str, sig: int = signal.SIGKILL):
        def go(run: FaultRun) -> None:
            pid, t = run.kill(name, sig)
            if name == "feed":
                run.wait(lambda: run.pid(name) not in (0, pid) and run.first_book_after(t), 90, "a valid book")
            else:
                run.wait(lambda: run.pid(name) not in (0, pid) and run.first_signal_after(t), 180, "fresh signals")
            run.notes[f"{name}_pid"] = pid

        return go

    def hung(run: FaultRun) -> None:
        run.wait(lambda: bool(run.admin("/sim/orders")["open"]), 60, "an order resting at the venue")
        pid, _ = run.kill("execution", signal.SIGSTOP)
        resting = len(run.admin("/sim/orders")["open"])
        time.sleep(2.2)  # the 1.5 s countdown with no refresh from the stopped process
        left = len(run.admin("/sim/orders")["open"])
        os.kill(pid, signal.SIGCONT)
        run.notes["hung"] = {"resting_at_stop": resting, "open_after_countdown": left}

    def halt_then_restart(run: FaultRun) -> None:
        run.set_faults(reject_code=-1111, reject_every=1)
        run.wait(lambda: run.counters("execution").get("halted", 0) == 1, 60, "the halt")
        run.set_faults()
        pid, t = run.kill("execution")
        run.wait(lambda: run.pid("execution") not in (0, pid), 60, "the restart")
        run.wait(lambda: len(run.orders_between(t, time.time_ns())) >= 1, 120, "the restarted process trading")

    return [
        ("503 unknown outcome", {"unknown_status_every": 3}),
        ("-1007 unknown outcome", {"unknown_status_every": 3, "unknown_code": -1007}),
        ("answer lost, query races it", {"late_order_every": 3, "late_order_ms": 1500}),
        ("order lost", {"lose_order_every": 3}),
        ("WS API closed in flight", {"close_ws_api_every": 4}),
        ("-1021 venue clock jumps", clock),
        ("429 -1015", {"rate_limit_every": 3, "retry_after_ms": 800}),
        ("429 -1003 (weight)", {"rate_limit_every": 3, "rate_limit_code": -1003, "retry_after_ms": 800}),
        ("-2019 margin", {"reject_code": -2019, "reject_every": 2}),
        ("-4164 min notional", {"reject_code": -4164, "reject_every": 2}),
        ("-5022 post only", {"reject_code": -5022, "reject_every": 2}),
        ("user stream dropped", admin("/sim/disconnect", {"route": "private"})),
        ("listenKeyExpired", admin("/sim/expireListenKey", {})),
        ("silent expiry (-1125)", admin("/sim/expireListenKey", {"silent": True}, times=1)),
        ("WS API dropped", admin("/sim/disconnect", {"route": "ws_api"})),
        ("user events duplicated, reordered", {"duplicate_user_every": 1, "reorder_user_every": 2}),
        ("kill -9 feed", kill("feed")),
        ("kill -9 inference", kill("inference")),
        ("SIGSTOP execution (dead-man)", hung),
        ("-1111 halt, kill -9 execution", halt_then_restart),
    ]


def script_for(phase_s: float, calm_s: float, log: list):
    def script(run: FaultRun) -> None:
        run.wait(lambda: run.counters("execution").get("fills", 0) >= 2, 300, "the first fills")
        for name, what in phases(phase_s):
            t0 = time.monotonic()
            if isinstance(what, dict):
                run.set_faults(**what)
                run.sleep(phase_s)
            else:
                what(run)
            run.set_faults()
            run.sleep(calm_s)
            settled = True
            try:
                run.wait(run.settled, 30, f"the faults of '{name}' to settle")
            except TimeoutError:
                settled = False
            log.append((name, round(time.monotonic() - t0, 1), settled))

    return script


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench faults", description=__doc__.splitlines()[0])
    ap.add_argument("--phase-s", type=float, default=4.0, help="how long each fault is held")
    ap.add_argument("--calm-s", type=float, default=2.0, help="fault-free time after each phase")
    ap.add_argument("--quick", action="store_true", help="short phases: a smoke run")
    ap.add_argument("--verbose", action="store_true", help="show the run's own output")
    args = ap.parse_args(argv)
    phase_s, calm_s = (1.5, 1.0) if args.quick else (args.phase_s, args.calm_s)
    log: list = []
    with tempfile.TemporaryDirectory(prefix="hftbot-bench-faults-") as d:
        run = FaultRun(bench_config(d), script_for(phase_s, calm_s, log))
        out = io.StringIO()
        with contextlib.redirect_stdout(out) if not args.verbose else contextlib.nullcontext():
            code = run.run()
    s = run.summary
    ex, sim = s.get("execution", {}), s["processes"].get("sim", {})
    faults = ex.get("faults", {})
    final_mismatch = int(ex.get("position_lots") != sim.get("position_lots")) + int(
        ex.get("venue_position_lots") != sim.get("position_lots")
    )
    ids = run.placed_client_ids()
    figures = {
        "duplicate_orders": int(sim.get("duplicate_ids", -1)),
        "duplicate_client_ids_sent": len(ids) - len(set(ids)),
        "position_mismatches": int(faults.get("mismatch", {}).get("count", 0)) + final_mismatch,
        "recovery_ms": {
            k: {**f["recovery_ms"], "n": f["recovered"]} for k, f in faults.items() if f["recovered"]
        },
        "faults": faults,
        "phases": [{"name": n, "s": t, "settled": ok} for n, t, ok in log],
        "hung": run.notes.get("hung", {}),
        "orders_sent": len(run.orders_between(0, time.time_ns())),  # place and modify frames, every run
        "placed": len(ids),
        "restarts": {n: p["restarts"] for n, p in s["processes"].items()},
        "exit_code": code,
        "error": repr(run.error) if run.error else None,
        "uptime_s": s.get("uptime_s"),
        "load_1m": round(os.getloadavg()[0], 2),
    }
    print_table("phases", ["phase", "s", "settled"], [[n, t, "yes" if ok else "NO"] for n, t, ok in log])
    print_table(
        "fault report (recovery: from the fault to the state it restores)",
        ["kind", "count", "recovered", "failed", "action", "p50 ms", "max ms"],
        [
            [k, f["count"], f["recovered"], f["failed"], f["action"],
             "-" if f["recovery_ms"]["p50"] is None else f"{f['recovery_ms']['p50']:.1f}",
             f"{f['recovery_ms']['max']:.1f}"]
            for k, f in faults.items()
        ],
    )
    print(
        f"duplicate orders {figures['duplicate_orders']}, position mismatches {figures['position_mismatches']}, "
        f"dead-man: {figures['hung']}, restarts {figures['restarts']}, exit code {code}"
        + (f", script error {figures['error']}" if run.error else "")
    )
    print_json(figures)
    ok = not run.error and code == 0 and figures["duplicate_orders"] == 0 and figures["position_mismatches"] == 0
    return 0 if ok else 1
