"""`python -m hftbot.bench train`: the trainer's input pipeline — windows/s per process, peak memory vs days.

1. Simulator data: `--hours` of the default market model (raw Parquet, rebuilt into book records
   by the feed code, as `sim generate` data is), then tiled into D "days" of `--day-hours` each
   (recv_ns shifted, recorder-layout book-*.parquet files, one per hour), for each D in `--days`.
2. For each D, in a fresh process (so peak RSS is that dataset's alone): open the recordings
   (book files → cached .npy), split by time, fit the normalisation, then two epochs of
   `train_batches` (W = `--window`, `--levels` levels, batch 256) through a `PartCache` of
   `--cache-mb`: windows/s of the first epoch (parts loaded from the caches: what every epoch
   costs once the dataset is larger than the cache) and of the second; peak RSS (ru_maxrss)
   and RSS after the imports.

Target: ≥ 20,000 windows/s per process (W = 100, 10 levels) so a GPU is never starved, and a
peak RSS that does not grow with the number of days. Prints a table, then one JSON line.
Never used by tests; the machine's load changes the figures (`--quick` only proves it runs).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hftbot.bench.common import print_json, print_table

NS = 1_000_000_000
HOUR_NS = 3600 * NS


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_days(base: np.ndarray, root: Path, days: int, day_hours: float, symbol: str = "SOLUSDT") -> int:
    """Tile `base` book records into `days` days of `day_hours` each (book-*.parquet, hourly files)."""
    from hftbot.feed.recording import BookRecordingWriter

    span = int(base["recv_ns"][-1] - base["recv_ns"][0]) + 100_000_000
    t0 = int(base["recv_ns"][0]) - int(base["recv_ns"][0]) % (86400 * NS)
    n = 0
    with BookRecordingWriter(root, symbol, levels=int(base.dtype["bid_px"].shape[0]), flush_s=1e9,
                             rotate_s=3600.0, source="sim") as w:
        for d in range(days):
            start = t0 + d * 86400 * NS
            k = 0
            while k * span < day_hours * HOUR_NS:
                chunk = base.copy()
                chunk["recv_ns"] += start + k * span - int(base["recv_ns"][0])
                chunk = chunk[chunk["recv_ns"] < start + int(day_hours * HOUR_NS)]
                if not len(chunk):
                    break
                w.append(chunk)
                n += len(chunk)
                k += 1
    return n


def child(root: str, window: int, levels: int, cache_mb: int, horizon: int) -> dict:
    """One dataset, measured in this process."""
    from hftbot.model import dataset as ds
    from hftbot.model.features import FeatureSpec
    from hftbot.model.labels import LabelRule

    rss0 = _rss_mb()
    t = time.perf_counter()
    rec = ds.open_recordings([root], levels, log=lambda s: None)
    t_open = time.perf_counter() - t
    spec = FeatureSpec(levels, window)
    rule = LabelRule(horizon, 0.5)
    budget = cache_mb << 20
    parts = ds.chunk_parts(rec, ds.max_chunk(spec, rule, budget, ds.DEFAULT_CHUNK_RECORDS))
    split = ds.split_by_time(rec, parts, spec, rule, 0.15, 0.15)
    spec = spec.with_stats(*ds.fit_stats(rec, split.train, spec, rule))
    cache = ds.PartCache(lambda p: ds.load_part(rec, p, spec, rule), budget)
    rates = []
    for epoch in range(2):
        n, t = 0, time.perf_counter()
        for b in ds.train_batches(split.train, cache, spec, rule, 256, 1, epoch):
            n += len(b.x)
        rates.append(n / (time.perf_counter() - t))
    return {"records": rec.n_records, "files": len(rec.files), "train_windows": split.counts["train"],
            "open_s": round(t_open, 2), "windows_per_s_epoch1": round(rates[0]),
            "windows_per_s_epoch2": round(rates[1]),
            "rss_after_imports_mb": round(rss0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cache_peak_mb": round(cache.peak_bytes / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench train", description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours generated as the base")
    ap.add_argument("--days", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--day-hours", type=float, default=24.0, help="hours of records per day")
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--horizon", type=int, default=50)
    ap.add_argument("--cache-mb", type=int, default=512)
    ap.add_argument("--quick", action="store_true", help="5 simulated minutes, days 1 2 of 0.5 h: proves it runs")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.window, a.levels, a.cache_mb, a.horizon)))
        return 0
    if a.quick:
        a.hours, a.days, a.day_hours, a.cache_mb = 5 / 60, [1, 2], 0.5, 64
    work = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="hftbot-bench-train-"))
    try:
        from hftbot.model import dataset as ds
        from hftbot.sim.generate import generate_recording
        from hftbot.sim.market import ModelParams

        t = time.perf_counter()
        generate_recording(str(work / "raw"), ModelParams(seed=1), a.hours)
        base = np.concatenate([np.asarray(f.open()) for f in ds.open_recordings([work / "raw"], a.levels,
                                                                                  log=lambda s: None).files])
        print(f"base: {len(base):,} book records from {a.hours:g} simulated hours in {time.perf_counter() - t:.1f} s")
        rows = []
        for d in a.days:
            root = work / f"days{d}"
            n = make_days(base, root, d, a.day_hours)
            r = subprocess.run([sys.executable, "-m", "hftbot.bench", "train", "--child", str(root), "--window",
                                str(a.window), "--levels", str(a.levels), "--cache-mb", str(a.cache_mb),
                                "--horizon", str(a.horizon)], capture_output=True, text=True, check=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            res["days"] = d
            rows.append(res)
            print(f"  {d} day(s): {n:,} records measured", flush=True)
        print_table(f"input pipeline, W = {a.window}, {a.levels} levels, batch 256, cache {a.cache_mb} MB, "
                    f"{a.day_hours:g} h per day",
                    ["days", "records", "train windows", "windows/s epoch 1", "windows/s epoch 2",
                     "RSS after imports MB", "peak RSS MB", "cache peak MB"],
                    [[r["days"], f"{r['records']:,}", f"{r['train_windows']:,}", f"{r['windows_per_s_epoch1']:,}",
                      f"{r['windows_per_s_epoch2']:,}", r["rss_after_imports_mb"], r["peak_rss_mb"],
                      r["cache_peak_mb"]] for r in rows])
        print_json({"bench": "train", "window": a.window, "levels": a.levels, "cache_mb": a.cache_mb,
                    "day_hours": a.day_hours, "runs": rows,
                    "min_windows_per_s": min(min(r["windows_per_s_epoch1"], r["windows_per_s_epoch2"]) for r in rows),
                    "peak_rss_mb_by_days": {r["days"]: r["peak_rss_mb"] for r in rows}})
    finally:
        if not a.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
