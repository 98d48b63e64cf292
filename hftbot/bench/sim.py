"""`python -m hftbot.bench sim`: how fast the simulator generates recordings and serves depth.

1. generate: simulated seconds per wall second for `python -m hftbot.sim generate` at the
   default 10 depth updates/s (`@depth@100ms`), written to Parquet in a temporary folder (after
   pyarrow is imported), and the same without the file writer (message building only); each
   per wall second and per CPU second (the second is what a free core would give; the machine's
   1-minute load average is printed beside). Target ≥ 200×.
2. serve: the server in its own process (pinned to one core when the machine has two), one
   client (this process, the other core) subscribed to `<symbol>@depth@0ms` with the model's
   event rate raised so that more than 2,000 diffs/s are due. Reported: depth messages/s the
   client received over the measuring window, and the server's publish delay (event due → frame
   written to the socket) p50/p99/p99.9. Target ≥ 2,000 msg/s with p99 ≤ 1 ms.

Prints a table, then one JSON line. Not a test: the machine's load changes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from hftbot.bench.common import print_json, start_sim_server
from hftbot.sim.generate import generate_messages, generate_recording
from hftbot.sim.market import ModelParams
from hftbot.sim.matching import warm_up


def bench_generate(hours: float, seed: int) -> dict:
    import pyarrow.parquet  # noqa: F401  (a one-off ~1 s import, not the generator's speed)

    warm_up()  # the matching kernels load from numba's cache once per process (~1 s), likewise

    params = ModelParams(seed=seed)
    with tempfile.TemporaryDirectory(prefix="hftbot-bench-sim-") as d:
        c0 = time.process_time()
        res = generate_recording(d, params, hours)
        cpu = time.process_time() - c0
    c0 = time.process_time()
    mem = generate_messages(params, hours * 3600.0, lambda ns, s, p: None)
    cpu_mem = time.process_time() - c0
    return {
        "generate_sim_s": res.sim_seconds,
        "generate_depth_per_sim_s": res.depth_messages / res.sim_seconds,
        "generate_x_realtime": res.speedup,
        "generate_x_realtime_cpu": res.sim_seconds / cpu,  # per CPU second: what a free core gives
        "generate_inmem_x_realtime": mem.speedup,
        "generate_inmem_x_realtime_cpu": mem.sim_seconds / cpu_mem,
        "generate_messages": res.messages,
        "generate_load_avg_1m": os.getloadavg()[0],
    }


def _get(url: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


async def _client(port: int, warmup_s: float, seconds: float) -> tuple[int, float]:
    from websockets.asyncio.client import connect

    n = 0
    async with connect(f"ws://127.0.0.1:{port}/public/ws/solusdt@depth@0ms", max_size=1 << 22) as ws:
        t_end_warm = time.perf_counter() + warmup_s
        while time.perf_counter() < t_end_warm:
            await ws.recv()
        await asyncio.get_running_loop().run_in_executor(
            None, _get, f"http://127.0.0.1:{port}/sim/resetStats", "POST"
        )
        t0 = time.perf_counter()
        while (now := time.perf_counter()) - t0 < seconds:
            await ws.recv()
            n += 1
    return n, now - t0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc); -1 where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return -1.0


def bench_serve(rate: float, seconds: float, seed: int) -> dict:
    proc, port = start_sim_server("--rate", str(rate), "--seed", str(seed), timeout_s=30)
    try:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(cpus) >= 2:
            os.sched_setaffinity(proc.pid, {cpus[0]})
            os.sched_setaffinity(0, {cpus[1]})
        c0 = _cpu_seconds(proc.pid)
        n, dt = asyncio.run(_client(port, 1.0, seconds))
        cpu_share = (_cpu_seconds(proc.pid) - c0) / (dt + 1.0) if c0 >= 0 else float("nan")
        status = _get(f"http://127.0.0.1:{port}/sim/status")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return {
        "serve_model_rate_hz": rate,
        "serve_depth_msgs_per_s": n / dt,
        "serve_publish_delay_us": status["publish_delay_us"],  # p50/p99/p99.9/max/mean, n
        "serve_seconds": dt,
        "serve_server_cpu_share": cpu_share,  # of one core, warm-up included
        "pinned_cores": len(cpus) >= 2,
        "load_avg_1m": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench sim", description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours for the generate figure")
    ap.add_argument("--rate", type=float, default=2500.0, help="model events/s for the serve figure")
    ap.add_argument("--seconds", type=float, default=5.0, help="serve measuring window")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    figures = {**bench_generate(args.hours, args.seed), **bench_serve(args.rate, args.seconds, args.seed)}
    rows = [
        ("generate (Parquet, 10 depth/s)", f"{figures['generate_x_realtime']:.0f}x real time", ">= 200x"),
        ("generate (Parquet), per CPU second", f"{figures['generate_x_realtime_cpu']:.0f}x real time", ""),
        ("generate (messages only)", f"{figures['generate_inmem_x_realtime']:.0f}x real time", ""),
        (
            "generate (messages only), per CPU s",
            f"{figures['generate_inmem_x_realtime_cpu']:.0f}x real time",
            "",
        ),
        ("serve depth@0ms to one client", f"{figures['serve_depth_msgs_per_s']:.0f} msg/s", ">= 2000 msg/s"),
        ("serve publish delay p50", f"{figures['serve_publish_delay_us']['p50']:.0f} us", ""),
        ("serve publish delay p99", f"{figures['serve_publish_delay_us']['p99']:.0f} us", "<= 1000 us"),
        ("serve publish delay p99.9", f"{figures['serve_publish_delay_us']['p99.9']:.0f} us", ""),
        ("serve: server CPU (share of a core)", f"{figures['serve_server_cpu_share']:.2f}", ""),
        ("machine load average (1 min)", f"{figures['load_avg_1m']:.1f}", f"{os.cpu_count()} cores"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'figure':<{w}}  {'measured':>20}  {'target':>14}")
    for a, b, c in rows:
        print(f"{a:<{w}}  {b:>20}  {c:>14}")
    print_json({"bench": "sim", **figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
