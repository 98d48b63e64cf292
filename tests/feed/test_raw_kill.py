"""kill -9 of a process recording raw frames through `RawSink` (the feed's way): at most 1 s of
frames is lost, also across rotations (compaction runs beside the flushes, never before them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from hftbot.feed.rawsink import RAW_FLUSH_S
from hftbot.feed.recording import iter_raw

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys, time
from hftbot.feed.rawsink import RawSink
sink = RawSink(sys.argv[1], "SOLUSDT", flush_s=5.0, rotate_s=1.0, source="sim")  # flush_s as defaults.toml
i = 0
print("ready", flush=True)
while True:
    i += 1
    sink.put(time.time_ns(), "solusdt@depth@100ms", b'{"stream":"solusdt@depth@100ms","data":{"i":%d}}' % i)
    time.sleep(0.001)
"""


def test_kill_9_of_the_feed_loses_at_most_a_second_of_raw_frames(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(3.5)  # several part files, and rotations (rotate_s = 1) compacted in the background
    finally:
        kill_ns = time.time_ns()
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        p.stdout.close()
    files = sorted(tmp_path.rglob("*.parquet"))
    for f in files:
        pq.read_table(f)  # whole files only
    rows = list(iter_raw(tmp_path))
    ids = [int(payload.rsplit(":", 1)[1].rstrip("}")) for _, _, payload in rows]
    assert ids == list(range(1, len(ids) + 1))  # no hole, no duplicate
    lost_s = (kill_ns - rows[-1][0]) / 1e9
    print(f"lost {lost_s:.3f} s of raw frames (part files every {RAW_FLUSH_S} s)")
    assert lost_s <= 1.0, f"lost {lost_s:.2f} s"
    assert any(f.name.endswith("-0.parquet") for f in files)  # finished segments were compacted
