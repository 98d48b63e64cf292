"""kill -9 of a recording process: every visible file is whole, and at most flush_s is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from hftbot.feed.recording import iter_raw, read_book

ROOT = Path(__file__).resolve().parents[2]
FLUSH_S = 0.5
SLACK_S = 1.0  # time to write one part file (and get scheduled) on a loaded 2-core machine

CHILD = r"""
import sys, time
import numpy as np
from hftbot.feed.recording import RawRecordingWriter, BookRecordingWriter
from hftbot.records import book_dtype, BOOK_VALID
root, flush_s = sys.argv[1], float(sys.argv[2])
raw = RawRecordingWriter(root, "SOLUSDT", flush_s=flush_s, rotate_s=1.0, source="sim")
book = BookRecordingWriter(root, "SOLUSDT", levels=10, flush_s=flush_s, rotate_s=1.0, source="sim")
rec = np.zeros(1, dtype=book_dtype(10))
rec["tick"], rec["lot"], rec["flags"] = 0.01, 0.01, BOOK_VALID
i = 0
print("ready", flush=True)
while True:
    i += 1
    ns = time.time_ns()
    raw.append(ns, "solusdt@depth@100ms", '{"i":%d}' % i)
    rec["recv_ns"], rec["seq"], rec["bid_px"][0, 0] = ns, i, 10000 + i
    book.append(rec)
    time.sleep(0.0005)
"""


def test_kill_9_leaves_whole_files_and_loses_at_most_flush_s(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(FLUSH_S)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(3.0)  # several flushes and rotations (rotate_s = 1 s)
    finally:
        kill_ns = time.time_ns()
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        p.stdout.close()
    files = sorted(tmp_path.rglob("*.parquet"))
    assert len(files) >= 4
    for f in files:
        pq.read_table(f)  # every visible file is a whole Parquet file
    raw = list(iter_raw(tmp_path))
    ids = [int(payload[5:-1]) for _, _, payload in raw]
    assert ids == list(range(1, len(ids) + 1))  # no hole, no duplicate, in order
    lost_s = (kill_ns - raw[-1][0]) / 1e9
    assert lost_s <= FLUSH_S + SLACK_S, f"lost {lost_s:.2f} s"
    books = read_book(tmp_path)
    assert np.array_equal(books["seq"], np.arange(1, len(books) + 1))
    assert (kill_ns - int(books["recv_ns"][-1])) / 1e9 <= FLUSH_S + SLACK_S
    assert np.array_equal(books["bid_px"][:, 0], 10000 + books["seq"])
