"""`python -m hftbot.bench exec`: the execution path's latency, measured where the system measures it.

1. risk check: `RiskManager.check(Place)` approving a LIMIT order on a valid book (pure code, this
   process), p50/p99 in µs; back to back, and again with 10 ms asleep before each check (the
   execution loop's case: every order follows an idle wait, and cold caches multiply the cost).
2. gateway send: `Gateway.place` → the `order.place` frame written on the socket (build, sign or
   not, write), LIMIT orders resting far from the touch and cancelled after each measure, against
   the simulator in its own process; with Ed25519 `session.logon` (no per-request signature) and
   with HMAC per request.
3. end to end: the real supervisor in sim mode — simulator, feed, recorder, inference with the
   shipped checkpoint, execution with the `deeplob` strategy — for `--seconds` of trading (counted
   from the first order: start-up is not), its figures read
   from the system's own order records (`hftbot.exec.status.ExecMonitor`):
   signal read → order frame (`signal_to_order_us`: the ≤ 200 µs target, p99; ~2.6 signal orders a
   second, so 150 s by default: at 60 s a p99 of ~90 orders is the slowest one or two, and the
   slowest is nearly always the run's first order) and tick-to-order
   (`tick_to_order_us` = frame written − book update received: targets p50 ≤ 1 ms, p99 ≤ 2 ms).
   The strategy's expected move is raised (`deeplob_move_bps`) so that it trades on most signals:
   this measures latency, not profit.

The last line is one JSON object; its top-level `p50`, `p99`, `p99.9` (µs) are tick-to-order end
to end. `--quick` shortens everything (a smoke run; the figures are then rough). Not a test: a
loaded machine changes the figures (the 1-minute load average is printed with them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from hftbot.bench.common import (
    cpu_times,
    latency_run_env,
    percentiles_us,
    print_json,
    print_table,
    start_sim_server,
    steal_pct,
)


def bench_risk(n: int, pause_s: float = 0.0) -> dict:
    """`RiskManager.check` of an approvable LIMIT order, the order withdrawn after each measure.

    `pause_s` > 0: sleep that long before each check, as the execution loop idles between books:
    the cost of the same code with cold caches (on the dev VM ~10x the back-to-back figure)."""
    from hftbot.config import load_config
    from hftbot.exec.filters import SymbolFilters
    from hftbot.exec.ids import ClientIds
    from hftbot.exec.messages import BUY, Place, Rejected
    from hftbot.exec.positions import Positions
    from hftbot.exec.ratelimit import NS, Limit
    from hftbot.exec.risk import RiskManager
    from hftbot.records import BOOK_VALID, empty_book
    from hftbot.sim.market import ModelParams
    from hftbot.sim.venue import VenueSettings, exchange_info

    cfg = load_config(env={})
    filters = SymbolFilters.from_exchange_info(exchange_info(ModelParams(), VenueSettings(), 0), "SOLUSDT")
    positions = Positions(filters.tick, filters.lot)
    unlimited = [Limit("ORDERS", 10 * NS, 10**9), Limit("REQUEST_WEIGHT", 60 * NS, 10**9)]
    risk = RiskManager(cfg.risk, filters, positions, ClientIds(time.time_ns()), rate_limits=unlimited)
    book = empty_book(cfg.feed.levels)
    book["flags"] = BOOK_VALID
    book["tick"], book["lot"] = filters.tick, filters.lot
    book["bid_px"][:] = 15000 - np.arange(cfg.feed.levels)
    book["ask_px"][:] = 15001 + np.arange(cfg.feed.levels)
    book["bid_qty"][:] = book["ask_qty"][:] = 500
    intent = Place(BUY, 10, 14995, tag="bench")
    samples = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        if pause_s > 0:
            time.sleep(pause_s)
        now = time.time_ns()
        book["recv_ns"] = now
        t0 = clock()
        r = risk.check(intent, book, now, None)
        samples[i] = clock() - t0
        positions.on_rejected(Rejected(r.client_id, 0, "bench", 0))  # withdrawn: the next is alike
    return percentiles_us(samples[n // 10 :])


def bench_send(n: int, gap_s: float) -> dict:
    """Gateway.place → frame written, Ed25519 session and HMAC per request (ORDERS 300/10 s: paced)."""
    from hftbot.exec.gateway import Gateway, VenueUrls
    from hftbot.exec.messages import BUY, GTC, LIMIT, OrderRequest
    from hftbot.exec.signing import Signer
    from hftbot.sim import auth

    proc, port = start_sim_server("--rate", "40")
    out = {}
    try:
        venue = VenueUrls(
            "SOLUSDT",
            f"http://127.0.0.1:{port}",
            f"ws://127.0.0.1:{port}/ws-fapi/v1",
            f"ws://127.0.0.1:{port}",
        )
        signers = {
            "ed25519": Signer(auth.TEST_ED25519_API_KEY, ed25519_key=auth.TEST_ED25519_PRIVATE_PEM),
            "hmac": Signer(auth.TEST_API_KEY, hmac_secret=auth.TEST_API_SECRET),
        }
        for kind, signer in signers.items():
            gw = Gateway(venue, signer)
            gw.start()
            try:
                samples = np.empty(n, dtype=np.int64)
                far = 10000  # 100 USDT under a 150 USDT market: rests, never fills
                for i in range(n):
                    req = OrderRequest(
                        f"bench-{kind}-{time.time_ns() % 10**12}-{i}",
                        BUY,
                        10,
                        far - i % 50,
                        LIMIT,
                        GTC,
                        False,
                        "bench",
                        "bench",
                        0,
                        0,
                        0,
                    )
                    t0 = time.time_ns()
                    sent = gw.place(req)
                    samples[i] = sent - t0 if sent else -1
                    time.sleep(gap_s / 2)
                    gw.poll()
                    gw.cancel(req.client_id)
                    time.sleep(gap_s / 2)
                    gw.poll()
                ok = samples[samples > 0]
                out[kind] = percentiles_us(ok[len(ok) // 10 :])
                out[kind]["n"] = len(ok)
            finally:
                gw.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def _run_trading(sup, seconds: float, start_allowance_s: float = 180.0,
                 policy: dict | None = None) -> int:
    """Run the supervisor until execution has been trading for `seconds` (start-up not counted:
    on a loaded machine the model's process alone can take a minute to come up). `policy`, when
    given, receives the execution thread's scheduling once it trades (`e2e.execution_policy`)."""
    import threading

    from hftbot.bench.e2e import execution_policy

    execution = next(c for c in sup.children if c.spec.name == "execution")

    def watch() -> None:
        first = None
        end = time.monotonic() + start_allowance_s + seconds
        while not sup.stop_reason and time.monotonic() < end:
            table = sup.table
            if first is None and table is not None and table.counters(execution.slot).get("orders", 0):
                first = time.monotonic()
                if policy is not None and execution.proc is not None:
                    policy.update(execution_policy(execution.proc.pid))
            if first is not None and time.monotonic() - first >= seconds:
                break
            time.sleep(0.2)
        sup.stop_reason = sup.stop_reason or f"bench: {seconds:g} s of trading"

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    code = sup.run()
    t.join(5)
    return code


def bench_e2e(seconds: float) -> dict:
    """The real supervisor in sim mode with the model; the figures its own monitor measured."""
    from hftbot.config import load_config
    from hftbot.run import Supervisor

    with tempfile.TemporaryDirectory(prefix="hftbot-bench-exec-") as d:
        env = {**latency_run_env(d, horizon_updates=10), "HFTBOT_FEED__DEPTH_SPEED": "0ms"}
        cfg = load_config(env=env)
        sup = Supervisor(cfg, panel=False)
        text = io.StringIO()
        policy: dict = {}
        with contextlib.redirect_stdout(text):
            code = _run_trading(sup, seconds, policy=policy)
        s = sup.summary()
    lat = s["latency_us"]
    return {
        "exit_code": code,
        "execution_policy": policy,
        "tick_to_order_us": lat.get("tick_to_order_us", {}),
        "signal_to_order_us": lat.get("signal_to_order_us", {}),
        "read_to_order_us": lat.get("read_to_order_us", {}),
        "tick_to_signal_us": lat.get("tick_to_signal_us", {}),
        "feed_us": lat.get("feed_us", {}),
        "inference_us": lat.get("inference_us", {}),
        "execution": s.get("execution", {}),
        "uptime_s": s["uptime_s"],
    }


def _fmt(p: dict, key: str) -> str:
    v = p.get(key)
    return "-" if v is None or v != v else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench exec", description=__doc__.splitlines()[0])
    ap.add_argument("--risk-checks", type=int, default=20000)
    ap.add_argument("--sends", type=int, default=400, help="order.place frames per auth kind")
    ap.add_argument("--gap-ms", type=float, default=40.0, help="between two sends (the venue's ORDERS limit)")
    ap.add_argument(
        "--seconds", type=float, default=150.0,
        help="end-to-end: seconds of trading (start-up not counted; the default gives ~400 signal "
             "orders, so that their p99 is not simply the slowest one or two)"
    )
    ap.add_argument("--quick", action="store_true", help="a short smoke run (rough figures)")
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.risk_checks, args.sends, args.seconds = 2000, 60, 10.0
    risk = bench_risk(args.risk_checks)
    risk_cold = bench_risk(max(20, args.risk_checks // 100), pause_s=0.01)
    send = bench_send(args.sends, args.gap_ms / 1000)
    cpu0 = cpu_times()
    e2e = {} if args.skip_e2e else bench_e2e(args.seconds)
    steal = steal_pct(cpu0, cpu_times()) if e2e else None
    t2o = e2e.get("tick_to_order_us", {})
    s2o = e2e.get("signal_to_order_us", {})
    rows = [
        ("risk check (approve a LIMIT)", _fmt(risk, "p50"), _fmt(risk, "p99"), "", ""),
        ("  the same after 10 ms idle", _fmt(risk_cold, "p50"), _fmt(risk_cold, "p99"), "", ""),
        ("gateway send, Ed25519 session", _fmt(send["ed25519"], "p50"), _fmt(send["ed25519"], "p99"), "", ""),
        ("gateway send, HMAC per request", _fmt(send["hmac"], "p50"), _fmt(send["hmac"], "p99"), "", ""),
    ]
    if e2e:
        rows += [
            (
                "signal read -> order frame",
                _fmt(s2o, "p50"),
                _fmt(s2o, "p99"),
                str(s2o.get("n", 0)),
                "p99 <= 200",
            ),
            (
                "tick-to-order (sim, model)",
                _fmt(t2o, "p50"),
                _fmt(t2o, "p99"),
                str(t2o.get("n", 0)),
                "p50 <= 1000, p99 <= 2000",
            ),
            (
                "tick-to-signal (feed + inference)",
                _fmt(e2e["tick_to_signal_us"], "p50"),
                _fmt(e2e["tick_to_signal_us"], "p99"),
                str(e2e["tick_to_signal_us"].get("n", 0)),
                "",
            ),
        ]
    load = os.getloadavg()[0]
    print_table(
        f"execution latency (µs); load average {load:.1f} on {os.cpu_count()} cores"
        + (f"; CPU steal during the end-to-end run {steal:.1f}%" if steal is not None else "")
        + (f"; execution {e2e['execution_policy'].get('policy', '?')}" if e2e else ""),
        ("path", "p50", "p99", "n", "target"),
        rows,
    )
    figures = {
        "risk_check_us": risk,
        "risk_check_after_idle_us": risk_cold,  # 10 ms asleep before each check: cold caches
        "send_ed25519_us": send["ed25519"],  # Gateway.place -> frame written, session logged on
        "send_hmac_us": send["hmac"],  # the same, signed per request
        **({k: v for k, v in e2e.items() if k != "execution"} if e2e else {}),
        "orders": e2e.get("execution", {}).get("orders", 0),
        "fills": e2e.get("execution", {}).get("fills", 0),
        "p50": t2o.get("p50"),
        "p99": t2o.get("p99"),
        "p99.9": t2o.get("p99.9"),
        "load_avg_1m": load,
        "steal_pct": steal,  # the hypervisor's share of the CPU time during the end-to-end run
        "quick": args.quick,
    }
    print_json(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
