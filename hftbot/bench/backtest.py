"""`python -m hftbot.bench backtest`: how fast the backtester replays, and how much memory it holds.

1. capture: the shared BTCUSDT capture (`tests/data/btcusdt_20240808.gz`, 345 s, 466,571 engine
   rows) through `run_backtest` with the `mm` quoting strategy (0.002 BTC quotes, the sizes of
   `configs/btcusdt.toml`), a power-probability queue (n = 2) and constant 100 µs entry and
   response latency, on a copy of
   the file in a temp folder. Three figures, each best of `--repeat`, the one-off kernel
   compile/load excluded (a first run warms it):
   - `capture_wall_s`: the replay from the prepared cache (`hftbot.backtest.prepared`: the
     records and engine rows a first run wrote) — the strategy, risk and positions in Python per
     book record, the matching engine. This is the figure beside hftbacktest 2.4.4's published
     0.065-0.084 s for the same capture (power-prob queue, constant latency, a quoting strategy),
     which also replays pre-converted event arrays;
   - `capture_raw_wall_s`: the same run from the raw JSON (`[backtest] cache = false`): gzip and
     JSON decoding by the feed's code and the engine rows built inside the timing;
   - `capture_prepare_s`: the first run, which decodes and writes the cache (one run, not best of).
   The prepared and raw runs must give the same orders, fills and events, or the bench fails.
   `bench match` is the engine alone on the same rows.
2. sim: `--hours` (default 24) of simulator data (`hftbot.sim.generate`, not timed) through the
   same run twice, each in a process of its own (its peak RSS is the run's, imports included):
   the first decodes the recording and writes its prepared cache (`sim_*`), the second replays
   from it (`sim_cached_*`, as every later run of a trader's sweep); events/s, wall, peak RSS.
   The two must give the same orders, fills and events.
3. deeplob with the shipped checkpoint over the prepared capture, its signals computed up front
   both ways (`capture_deeplob_streaming_s`: the live engine record by record, the CPU default;
   `capture_deeplob_batched_s`: TorchScript batches on the CPU), best of `--repeat`; last, since
   torch's batches raise the peak RSS the other parts report.
4. memory: each capture part's own peak RSS (Linux: the process's high-water mark is reset before it,
   `/proc/self/clear_refs`, so it starts at what earlier parts left resident; elsewhere the
   process's peak so far, `ru_maxrss`); the bounded-memory claim itself is
   `tests/backtest/test_memory.py` (a multi-day run whose peak does not grow with its days).

`--hftbacktest PYTHON`: also run `tools/hftbacktest_capture.py` with that interpreter (a venv
with hftbacktest 2.4.4) right after the capture part, best of `--repeat` as ours, and report its
`hftbacktest_capture_wall_s` and `capture_vs_hftbacktest` (ours / its): host speed moves both
by tens of percent from one minute to the next, so only figures taken side by side compare.

`--quick`: the capture once and 0.05 h of simulator data (a smoke run, not a figure).
Prints a table, then one JSON line. Not a test: the machine's load moves the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from hftbot.bench.common import machine, print_json, print_table

CAPTURE = Path(__file__).resolve().parents[2] / "tests" / "data" / "btcusdt_20240808.gz"
HFTBACKTEST_CAPTURE_S = (0.065, 0.084)
CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
BTC_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "btcusdt.toml"


def _cfg(btc: bool):
    """The capture's sizes (BTCUSDT: configs/btcusdt.toml, the file a user backtests it with) or the
    simulator's (SOLUSDT: the defaults'), with the queue and latency of the peer's side of the
    comparison: power-prob(2), constant 100 µs each way."""
    from hftbot.config import load_config

    return (load_config(BTC_CONFIG if btc else None, env={})
            .override("backtest", queue_model="power_prob", queue_power=2.0, feed_latency="recorded",
                      order_latency="constant", order_entry_us=100.0, order_response_us=100.0, period_s=1.0))


def reset_peak_rss() -> None:
    """Linux: the process's peak RSS (VmHWM) starts again from its current RSS, so that the next
    `peak_rss_mb` is that part's own peak. Elsewhere nothing happens (the peak is the process's)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak RSS since the last `reset_peak_rss` (Linux VmHWM), else the process's (`ru_maxrss`)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _best(paths: list[Path], cfg, repeat: int, **kw):
    """(best wall s, its CPU s, its result) of `repeat` runs (mm unless `kw` says otherwise)."""
    from hftbot.backtest.engine import run_backtest

    kw.setdefault("strategy", "mm")
    best, cpu, res = float("inf"), 0.0, None
    for _ in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        r = run_backtest(paths, cfg=cfg, **kw)
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu, res = wall, time.process_time() - c0, r
    return best, cpu, res


def bench_capture(repeat: int) -> dict:
    from hftbot.backtest.engine import run_backtest

    cfg = _cfg(btc=True)
    reset_peak_rss()
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / CAPTURE.name  # a copy: its prepared cache starts absent and dies with it
        shutil.copy2(CAPTURE, cap)
        raw_cfg = cfg.override("backtest", cache=False)
        run_backtest([cap], strategy="mm", cfg=raw_cfg)  # warm: kernels loaded, caches filled
        raw, raw_cpu, raw_res = _best([cap], raw_cfg, repeat)
        t0 = time.perf_counter()
        run_backtest([cap], strategy="mm", cfg=cfg)  # decodes and writes the prepared cache
        prepare = time.perf_counter() - t0
        best, cpu, res = _best([cap], cfg, repeat)
    if (res.orders, len(res.fills), res.events) != (raw_res.orders, len(raw_res.fills), raw_res.events):
        raise RuntimeError("bench backtest: the prepared replay differs from the raw one")
    return {
        "capture_wall_s": round(best, 4),
        "capture_cpu_s": round(cpu, 4),
        "capture_raw_wall_s": round(raw, 4),
        "capture_raw_cpu_s": round(raw_cpu, 4),
        "capture_prepare_s": round(prepare, 4),
        "capture_events": res.events,
        "capture_events_per_s": round(res.events / best),
        "capture_orders": res.orders,
        "capture_fills": len(res.fills),
        "hftbacktest_capture_s": list(HFTBACKTEST_CAPTURE_S),
        "capture_peak_rss_mb": round(peak_rss_mb(), 1),
    }


def bench_deeplob(repeat: int) -> dict:
    """deeplob with the shipped checkpoint (`checkpoints/CURRENT`) over the prepared capture: the
    signals computed up front (`[backtest] signals`: the live engine on the CPU) and the replay.
    Run last: torch's batches raise the process's peak RSS, which the other parts report."""
    from hftbot.config import load_config
    from hftbot.model.checkpoint import read_pointer

    ckpt = read_pointer(CHECKPOINTS)
    if ckpt is None:
        return {}
    out = {}
    reset_peak_rss()
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / CAPTURE.name
        shutil.copy2(CAPTURE, cap)
        for method in ("streaming", "batched"):
            cfg = load_config(env={}).override("backtest", signals=method, device="cpu")
            _best([cap], cfg, 1, strategy="deeplob", checkpoint=ckpt)  # warm: cache written, kernels loaded
            best, _, res = _best([cap], cfg, repeat, strategy="deeplob", checkpoint=ckpt)
            out[f"capture_deeplob_{method}_s"] = round(best, 4)
            out["capture_deeplob_signals"] = len(res.signals)
    out["capture_deeplob_peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def hftbacktest_problem(python: str) -> str:
    """Why `python` cannot run the peer ('' when it imports hftbacktest 2.4.4), checked before
    the benchmark spends minutes on our side."""
    import subprocess

    try:
        out = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('hftbacktest'))"],
                             capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run {python}: {e}"
    if out.returncode != 0:
        return f"{python} has no hftbacktest (python -m venv DIR && DIR/bin/pip install hftbacktest==2.4.4)"
    version = out.stdout.strip()
    return "" if version == "2.4.4" else f"{python} has hftbacktest {version}, not the 2.4.4 the target names"


def _child_json(cmd: list[str], what: str) -> dict:
    """Run `cmd` (a benchmark child) and return the JSON of its last stdout line; a failure names
    `what` and shows the end of its stderr."""
    import subprocess

    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench backtest: {what} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_hftbacktest(python: str, repeat: int) -> dict:
    """The peer on the same capture, in its own interpreter (it pins an older numpy than ours)."""
    tool = Path(__file__).resolve().parents[2] / "tools" / "hftbacktest_capture.py"
    peer = _child_json([python, str(tool), str(CAPTURE), "--repeat", str(max(repeat, 2))],
                       f"{tool.name} with {python}")
    return {"hftbacktest_capture_wall_s": peer["capture_wall_s"], "hftbacktest_decisions": peer["decisions"],
            "hftbacktest_orders": peer["orders"]}


def _sim_run(folder: str) -> dict:
    """One mm run over `folder` in this process (a fresh one: its peak RSS is the run's own; the
    imports are done before the timing starts, the kernels' first load is inside it)."""
    from hftbot.backtest.engine import run_backtest

    t0 = time.perf_counter()
    r = run_backtest([Path(folder)], strategy="mm", cfg=_cfg(btc=False))
    wall = time.perf_counter() - t0
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork and exec
    return {"wall_s": wall, "events": r.events, "orders": r.orders, "fills": len(r.fills),
            "peak_rss_mb": peak_rss_mb()}


def bench_sim(hours: float) -> dict:
    """Two runs, each in its own process so that its peak RSS is its own: the first decodes the
    recording and writes its prepared cache, the second replays from that cache."""
    from hftbot.sim.generate import generate_recording
    from hftbot.sim.market import ModelParams

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        params = ModelParams(seed=7)
        t0 = time.perf_counter()
        generate_recording(tmp, params, hours)
        gen_s = time.perf_counter() - t0
        for kind in ("first", "cached"):
            runs[kind] = _child_json([sys.executable, "-m", "hftbot.bench.backtest", "--sim-run", tmp],
                                     f"the sim {kind} run")
    r, rc = runs["first"], runs["cached"]
    if (rc["orders"], rc["fills"], rc["events"]) != (r["orders"], r["fills"], r["events"]):
        raise RuntimeError("bench backtest: the sim replay from the cache differs from the first run")
    return {
        "sim_hours": hours,
        "sim_generate_s": round(gen_s, 1),
        "sim_wall_s": round(r["wall_s"], 3),
        "sim_events": r["events"],
        "sim_events_per_s": round(r["events"] / r["wall_s"]) if r["wall_s"] > 0 else 0,
        "sim_orders": r["orders"],
        "sim_fills": r["fills"],
        "sim_peak_rss_mb": round(r["peak_rss_mb"], 1),
        "sim_cached_wall_s": round(rc["wall_s"], 3),
        "sim_cached_events_per_s": round(rc["events"] / rc["wall_s"]) if rc["wall_s"] > 0 else 0,
        "sim_cached_peak_rss_mb": round(rc["peak_rss_mb"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hftbot.bench backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--hours", type=float, default=24.0, help="hours of simulator data (default 24)")
    p.add_argument("--quick", action="store_true", help="smoke run: one capture replay, 0.05 h of sim data")
    p.add_argument("--hftbacktest", metavar="PYTHON",
                   help="an interpreter with hftbacktest 2.4.4: run the peer on the capture side by side")
    p.add_argument("--sim-run", metavar="DIR", help=argparse.SUPPRESS)  # bench_sim's child: one run, JSON
    a = p.parse_args(argv)
    if a.sim_run:
        print(json.dumps(_sim_run(a.sim_run)))
        return 0
    if a.quick:
        a.repeat, a.hours = 1, 0.05
    if a.hftbacktest and (why := hftbacktest_problem(a.hftbacktest)):
        print(f"bench backtest: --hftbacktest: {why}", file=sys.stderr)
        return 2
    figures = {"machine": machine()}
    figures.update(bench_capture(a.repeat))
    if a.hftbacktest:
        figures.update(bench_hftbacktest(a.hftbacktest, a.repeat))
        figures["capture_vs_hftbacktest"] = round(figures["capture_wall_s"] / figures["hftbacktest_capture_wall_s"], 2)
    figures.update(bench_sim(a.hours))
    figures.update(bench_deeplob(a.repeat))
    print_table(
        "backtest",
        ["run", "wall s", "events", "events/s", "orders", "fills", "peak RSS MB"],
        [
            ["capture, prepared (mm, power-prob 2, 100 µs)", figures["capture_wall_s"], figures["capture_events"],
             figures["capture_events_per_s"], figures["capture_orders"], figures["capture_fills"],
             figures["capture_peak_rss_mb"]],
            ["capture, from raw JSON (cache off)", figures["capture_raw_wall_s"], figures["capture_events"],
             round(figures["capture_events"] / figures["capture_raw_wall_s"]), figures["capture_orders"],
             figures["capture_fills"], ""],
            ["capture, first run (decode + write the cache)", figures["capture_prepare_s"], "", "", "", "", ""],
            *([["capture, deeplob (shipped model), signals streamed on the CPU", figures["capture_deeplob_streaming_s"],
                "", "", "", "", ""],
               ["capture, deeplob (shipped model), signals batched on the CPU", figures["capture_deeplob_batched_s"],
                "", "", "", "", ""]] if "capture_deeplob_streaming_s" in figures else []),
            [f"sim {a.hours:g} h (mm), first run (decode + write the cache)", figures["sim_wall_s"],
             figures["sim_events"], figures["sim_events_per_s"], figures["sim_orders"], figures["sim_fills"],
             figures["sim_peak_rss_mb"]],
            [f"sim {a.hours:g} h (mm), prepared", figures["sim_cached_wall_s"], figures["sim_events"],
             figures["sim_cached_events_per_s"], figures["sim_orders"], figures["sim_fills"],
             figures["sim_cached_peak_rss_mb"]],
        ],
    )
    if a.hftbacktest:
        print(f"hftbacktest 2.4.4, same capture, side by side (power-prob 2, 100 µs, a numba quoting strategy "
              f"every 50 ms): {figures['hftbacktest_capture_wall_s']} s; ours / its = "
              f"{figures['capture_vs_hftbacktest']}")
    else:
        print(f"hftbacktest 2.4.4, same capture (the issue's figure for this machine, its own event arrays): "
              f"{HFTBACKTEST_CAPTURE_S[0]}-{HFTBACKTEST_CAPTURE_S[1]} s; measure it beside this run with "
              "--hftbacktest PYTHON (a venv with hftbacktest 2.4.4): the host's speed moves both")
    print_json(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
