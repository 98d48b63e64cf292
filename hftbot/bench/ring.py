"""`python -m hftbot.bench ring`: the shared-memory ring across real processes.

One-way latency: a writer process stamps `publish_ns` (CLOCK_MONOTONIC, shared by all processes)
and publishes a book record at a paced rate; a reader process in another process reads it with
the chosen wait strategy and records `now - publish_ns`. Pacing leaves the reader idle between
records, so "block" pays a real futex wakeup each time, as it would in the pipeline.

Throughput: the writer publishes as fast as it can (batches through `publish_many`, and single
records through `publish`), with 1 and 3 reader processes; records/s is what each reader
received (lost records are reported, not counted as received).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np

from hftbot.bench.common import percentiles_us, print_json, print_table
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring, RingReader, RingWriter
from hftbot.records import book_dtype


def _latency_reader(name: str, wait: str, n: int, ready, out) -> None:
    ring = Ring.attach(name)
    r = RingReader(ring, wait=wait, start="next")
    lat = np.empty(n, dtype=np.int64)
    got = 0
    # The timestamp is read through a plain int64 view of the reader's buffer: a structured-field
    # access costs more than the ring hop we are measuring.
    words = r.buffer.reshape(1).view(np.int64)
    k = ring.dtype.fields["publish_ns"][1] // 8
    ready.set()
    while got < n:
        rec = r.read(timeout_s=5.0, copy=False)
        if rec is None:
            break
        lat[got] = time.monotonic_ns() - int(words[k])
        got += 1
    out.put((lat[:got].tolist(), r.lost))
    del rec, r, words
    ring.close()


def _throughput_reader(name: str, wait: str, expect: int, ready, out) -> None:
    ring = Ring.attach(name)
    r = RingReader(ring, wait=wait, start="next")
    received = 0
    ready.set()
    t0 = None
    while r.last_seq < expect:
        batch = r.read_many(4096, timeout_s=5.0)
        if len(batch) == 0:
            break
        if t0 is None:
            t0 = time.perf_counter()
        received += len(batch)
    dt = time.perf_counter() - (t0 or time.perf_counter())
    out.put((received, r.lost, dt))
    del r
    ring.close()


def one_way_latency(wait: str, n: int, gap_us: float, levels: int) -> dict:
    ctx = mp.get_context("spawn")
    name = shm.segment_name(f"bench-lat-{wait}")
    ring = Ring.create(name, book_dtype(levels), 4096)
    try:
        w = RingWriter(ring)
        ready, out = ctx.Event(), ctx.Queue()
        p = ctx.Process(target=_latency_reader, args=(name, wait, n, ready, out))
        p.start()
        ready.wait(30)
        time.sleep(0.2)
        rec = w.staging
        # the stamp goes in through a memoryview: numpy's scalar setitem (~0.1 µs) would sit inside
        # the measured window, between the clock read and the publish
        words = memoryview(rec.reshape(1).view(np.int64))
        k = ring.dtype.fields["publish_ns"][1] // 8
        gap_ns = int(gap_us * 1e3)
        nxt = time.monotonic_ns()
        for i in range(n):
            nxt += gap_ns
            while time.monotonic_ns() < nxt:
                if gap_ns > 200_000:
                    time.sleep(0.0001)
            rec["update_id"] = i
            words[k] = time.monotonic_ns()  # stamped as late as possible: the hop is what we time
            w.publish(rec)
        lat, lost = out.get(timeout=60)
        p.join(10)
        del rec, w, words
    finally:
        ring.close()
        ring.unlink()
    return {**percentiles_us(lat), "lost": lost}


def throughput(readers: int, wait: str, total: int, batch: int, levels: int) -> dict:
    ctx = mp.get_context("spawn")
    total = total // batch * batch
    name = shm.segment_name(f"bench-tp-{readers}-{batch}")
    ring = Ring.create(name, book_dtype(levels), 65536)
    try:
        w = RingWriter(ring)
        out = ctx.Queue()
        events, procs = [], []
        for _ in range(readers):
            ev = ctx.Event()
            p = ctx.Process(target=_throughput_reader, args=(name, wait, total, ev, out))
            p.start()
            events.append(ev)
            procs.append(p)
        for ev in events:
            ev.wait(30)
        time.sleep(0.2)
        t0 = time.perf_counter()
        if batch > 1:
            block = np.zeros(batch, dtype=ring.dtype)
            for _ in range(total // batch):
                w.publish_many(block)
        else:
            rec = w.staging
            for _ in range(total):
                w.publish(rec)
            del rec
        write_s = time.perf_counter() - t0
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(10)
        del w
    finally:
        ring.close()
        ring.unlink()
    rates = [rcv / dt for rcv, _lost, dt in results if dt > 0]
    return {
        "writer_records_per_s": round(total / write_s),
        "reader_records_per_s_min": round(min(rates)) if rates else 0,
        "received_min": min(r[0] for r in results),
        "lost_max": max(r[1] for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench ring", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="latency samples per wait strategy")
    ap.add_argument("--gap-us", type=float, default=200.0, help="pause between latency samples")
    ap.add_argument("--total", type=int, default=2_000_000, help="records per throughput run")
    ap.add_argument("--levels", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    a = ap.parse_args(argv)
    if a.quick:
        a.n, a.total = 500, 100_000
    lat = {}
    rows = []
    for wait in ("spin", "spin_yield", "block"):
        gap = a.gap_us if wait != "block" else max(a.gap_us, 1000.0)
        n = a.n if wait != "block" else max(1, a.n // 4)
        lat[wait] = one_way_latency(wait, n, gap, a.levels)
        v = lat[wait]
        rows.append([wait, v["n"], v["p50"], v["p99"], v["p99.9"], v["lost"]])
    print_table(
        f"ring one-way latency writer->reader across processes (book record, {a.levels} levels, "
        f"{book_dtype(a.levels).itemsize} B), µs",
        ["wait", "n", "p50", "p99", "p99.9", "lost"],
        rows,
    )
    tp = {}
    rows = []
    for readers, batch in ((1, 256), (3, 256), (1, 1)):
        total = a.total if batch > 1 else a.total // 10
        key = f"{readers}r_batch{batch}"
        tp[key] = throughput(readers, "spin_yield", total, batch, a.levels)
        v = tp[key]
        rows.append(
            [readers, batch, total, v["writer_records_per_s"], v["reader_records_per_s_min"], v["lost_max"]]
        )
    print()
    print_table(
        "ring throughput (records/s; readers spin_yield, read_many)",
        ["readers", "publish batch", "records", "writer/s", "slowest reader/s", "lost"],
        rows,
    )
    print_json(
        {
            "bench": "ring",
            "cores": os.cpu_count(),
            "latency_us": lat,  # per wait strategy: p50/p99/p99.9/max/mean, n, lost
            "throughput": tp,
            "records_per_s_1_reader": tp["1r_batch256"]["reader_records_per_s_min"],
            "records_per_s_3_readers": tp["3r_batch256"]["reader_records_per_s_min"],
        }
    )
    return 0
