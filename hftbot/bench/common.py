"""Helpers every benchmark shares: percentiles, the machine line, the table and the JSON line."""

from __future__ import annotations

import json
import os
import platform
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


def percentiles_us(samples_ns: np.ndarray | Sequence[float], scale: float = 1e-3) -> dict[str, float]:
    """p50/p99/p99.9 (and mean) of nanosecond samples, in microseconds."""
    v = np.asarray(samples_ns, dtype=np.float64) * scale
    if len(v) == 0:
        return {"p50": float("nan"), "p99": float("nan"), "p99.9": float("nan"), "mean": float("nan")}
    p50, p99, p999 = np.percentile(v, [50, 99, 99.9])
    return {
        "p50": round(float(p50), 2),
        "p99": round(float(p99), 2),
        "p99.9": round(float(p999), 2),
        "mean": round(float(v.mean()), 2),
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


def print_json(figures: dict) -> None:
    """The last line of every benchmark: one JSON object."""
    print(json.dumps({"machine": machine(), **figures}), flush=True)
