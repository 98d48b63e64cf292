"""Helpers every benchmark shares: percentiles, the machine line, the table and the JSON line."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) CPU ticks of the whole machine so far (/proc/stat), None where unreadable."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to someone else between two
    `cpu_times()` (percent). Why the latency benches print it: on a virtual machine a vCPU taken
    away for a few milliseconds stalls whatever runs on it, and no code of ours can win that back;
    a run's tail is read against it (docs/runtime.md, "Tick-to-order on two cores")."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 2)


def percentiles_us(samples_ns: np.ndarray | Sequence[float], scale: float = 1e-3) -> dict[str, float]:
    """p50/p99/p99.9, max and mean (µs) and n of nanosecond samples: the one latency shape every
    benchmark prints (`{"p50": .., "p99": .., "p99.9": .., "max": .., "mean": .., "n": ..}`, under
    a key that ends in `_us`). `scale` converts other units (1.0: samples already in µs)."""
    v = np.asarray(samples_ns, dtype=np.float64) * scale
    if len(v) == 0:
        nan = float("nan")
        return {"p50": nan, "p99": nan, "p99.9": nan, "max": nan, "mean": nan, "n": 0}
    p50, p99, p999 = np.percentile(v, [50, 99, 99.9])
    return {
        "p50": round(float(p50), 2),
        "p99": round(float(p99), 2),
        "p99.9": round(float(p999), 2),
        "max": round(float(v.max()), 2),
        "mean": round(float(v.mean()), 2),
        "n": len(v),
    }


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(title)
    for n, r in enumerate(cells):
        print(
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _finite(v: object) -> object:
    """NaN and infinities become null: the JSON line must be valid JSON (a figure not measured)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def print_json(figures: dict) -> None:
    """The last line of every benchmark: one JSON object (`machine` first)."""
    print(json.dumps(_finite({"machine": machine(), **figures}), allow_nan=False), flush=True)


def start_sim_server(*args: str, timeout_s: float = 60.0) -> tuple[subprocess.Popen, int]:
    """`python -m hftbot.sim serve ARGS` as a child process; returns it and the port it listens on."""
    cmd = [sys.executable, "-m", "hftbot.sim", "serve", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + timeout_s
    assert proc.stdout is not None
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on" in line:
            return proc, int(line.rsplit(":", 1)[1].split()[0])
    proc.kill()
    raise RuntimeError(f"simulator server did not start: {' '.join(cmd)}")


def latency_run_env(data_dir: str, horizon_updates: int) -> dict[str, str]:
    """The settings both supervised latency benches (`exec`, `e2e`) run the pipeline with: the
    shipped checkpoint, deeplob entering on nearly every signal (latency, not profit) and leaving
    after `horizon_updates` books, start-up allowed for the model's process on a loaded machine.
    `HFTBOT_*` variables of the environment come on top (an A/B run of one setting, e.g.
    `HFTBOT_EXEC__REHEARSE_MS=0`)."""
    from pathlib import Path

    ckpt = Path("checkpoints")
    if not (ckpt / "CURRENT").exists():
        ckpt = Path(__file__).resolve().parents[2] / "checkpoints"
    return {
        "HFTBOT_RUNTIME__DATA_DIR": data_dir,
        "HFTBOT_RUNTIME__CHECKPOINTS_DIR": str(ckpt),
        "HFTBOT_RUNTIME__LOG_LEVEL": "WARNING",
        "HFTBOT_RUNTIME__START_TIMEOUT_S": "180",
        "HFTBOT_EXEC__STRATEGY": "deeplob",
        "HFTBOT_STRATEGY__DEEPLOB_QTY": "0.1",
        "HFTBOT_STRATEGY__DEEPLOB_MOVE_BPS": "2000",
        "HFTBOT_STRATEGY__DEEPLOB_HORIZON_UPDATES": str(horizon_updates),
        **{k: v for k, v in os.environ.items() if k.startswith("HFTBOT_")},
    }
