"""The replay ("feed" in --mode replay) and recorder processes on real rings and a real heartbeat
table, run as the supervisor would call them (threads here, to keep the suite fast)."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import numpy as np

from hftbot.config import load_config
from hftbot.feed import recorder, replay
from hftbot.feed.recording import read_book
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring, RingReader
from hftbot.process import HeartbeatTable, ProcessContext
from hftbot.records import BOOK_REPLAY, BOOK_RESYNC, BOOK_VALID, TRADE_DTYPE, book_dtype

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "btcusdt_20240808.gz"


def test_replay_into_rings_is_recorded_whole(tmp_path, capture_counts):
    from hftbot.run import preflight

    cfg = load_config(env={}).override("replay", path=str(CAPTURE)).override("runtime", mode="replay")
    cfg = preflight(cfg)  # the symbol comes from the data, as the supervisor does it
    assert cfg.runtime.symbol == "BTCUSDT"
    cfg = dataclasses.replace(
        cfg,
        replay=dataclasses.replace(cfg.replay, path=str(CAPTURE), speed=0.0),
        recorder=dataclasses.replace(cfg.recorder, root=str(tmp_path), flush_s=0.2),
    )
    tag = f"ftest{os.getpid()}"
    names = {k: shm.segment_name(f"{tag}-{k}") for k in ("book", "trade", "heartbeats")}
    book = Ring.create(names["book"], book_dtype(cfg.feed.levels), 1 << 14)
    trade = Ring.create(names["trade"], TRADE_DTYPE, 1 << 15)
    table = HeartbeatTable.create(names["heartbeats"])
    ctxs = [
        ProcessContext(n, slot, cfg, names, {}, os.getppid()) for slot, n in enumerate(("feed", "recorder"))
    ]
    threads = []
    try:
        watcher = RingReader(Ring.attach(names["book"]), wait="block", start="oldest")
        threads.append(threading.Thread(target=recorder.main, args=(ctxs[1],)))
        threads[0].start()
        deadline = time.monotonic() + 30
        while table.rows[1]["beats"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        threads.append(threading.Thread(target=replay.main, args=(ctxs[0],)))
        threads[1].start()
        ref = capture_counts
        while table.counters(0).get("depth_applied", 0) < ref.depth_applied and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert table.counters(0)["depth_applied"] == ref.depth_applied
        assert trade.write_seq == ref.trades
        published = watcher.read_many(1 << 14, timeout_s=1)
        for c in ctxs:
            c.request_stop()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        valid = published[(published["flags"] & BOOK_VALID) != 0]
        assert len(valid) == 6546 and np.all(published["flags"] & BOOK_REPLAY)
        assert not published["flags"][0] & BOOK_VALID or published["flags"][0] & BOOK_RESYNC
        recorded = read_book(tmp_path)
        assert np.array_equal(recorded, published)  # every published record, exact, in order
        folders = {p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("book-*.parquet")}
        assert folders == {("replay", "BTCUSDT")}  # under its own source and the data's symbol
    finally:
        for c in ctxs:
            c.request_stop()
        for t in threads:
            t.join(30)
        watcher.ring.close()
        for r in (book, trade):
            r.close()
            r.unlink()
        table.close()
        table.segment.unlink()


def test_live_feed_process_against_the_simulator_publishes_and_records(tmp_path):
    import asyncio

    from hftbot.feed import process as feed_process
    from hftbot.feed.recording import iter_raw
    from hftbot.sim.server import SimServer

    cfg = load_config(env={})
    cfg = dataclasses.replace(
        cfg,
        recorder=dataclasses.replace(cfg.recorder, root=str(tmp_path), flush_s=0.2),
        feed=dataclasses.replace(cfg.feed, depth_speed="100ms", stale_s=5.0),
    )
    loop = asyncio.new_event_loop()
    srv = SimServer()
    loop.run_until_complete(srv.start())
    sim = threading.Thread(target=loop.run_forever, daemon=True)
    sim.start()
    tag = f"fsim{os.getpid()}"
    names = {k: shm.segment_name(f"{tag}-{k}") for k in ("book", "trade", "heartbeats")}
    book = Ring.create(names["book"], book_dtype(cfg.feed.levels), 1 << 12)
    trade = Ring.create(names["trade"], TRADE_DTYPE, 1 << 12)
    table = HeartbeatTable.create(names["heartbeats"])
    ctx = ProcessContext("feed", 0, cfg, names, srv.urls, os.getppid())
    t = threading.Thread(target=feed_process.main, args=(ctx,))
    try:
        reader = RingReader(Ring.attach(names["book"]), wait="block", start="oldest")
        t.start()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            beat = table.counters(0)
            if beat.get("depth_applied", 0) >= 20 and beat.get("ticker_checks", 0) >= 3:
                break
            time.sleep(0.05)
        ctx.request_stop()
        # on @depth@100ms a bookTicker comes before the diff batch ending on its u: held, then checked
        assert beat["ticker_checks"] >= 3 and beat["ticker_mismatches"] == 0, beat
        t.join(30)
        assert not t.is_alive()
        recs = reader.read_many(1 << 12, timeout_s=1)
        valid = recs[(recs["flags"] & BOOK_VALID) != 0]
        assert len(valid) >= 20 and not recs["flags"][0] & BOOK_VALID
        assert valid["flags"][0] & BOOK_RESYNC
        assert np.all(np.diff(valid["update_id"]) > 0)
        assert np.all(valid["bid_px"][:, 0] < valid["ask_px"][:, 0])
        assert valid["tick"][0] > 0 and np.all(valid["recv_ns"] <= valid["publish_ns"])
        streams = {s for _, s, _ in iter_raw(tmp_path)}
        assert {"solusdt@depth@100ms", "solusdt@depthSnapshot"} <= streams
    finally:
        ctx.request_stop()
        t.join(30)
        asyncio.run_coroutine_threadsafe(srv.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        sim.join(10)
        reader.ring.close()
        for r in (book, trade):
            r.close()
            r.unlink()
        table.close()
        table.segment.unlink()


def test_recorder_resumes_after_what_is_already_on_disk(tmp_path):
    from hftbot.feed.recorder import newest_recorded_ns
    from hftbot.feed.recording import BookRecordingWriter

    assert newest_recorded_ns(tmp_path / "sim" / "SOLUSDT") is None
    recs = np.zeros(5, dtype=book_dtype(10))
    recs["recv_ns"] = 1_723_161_255_000_000_000 + np.arange(5)
    recs["publish_ns"] = recs["recv_ns"] + 7
    with BookRecordingWriter(tmp_path, "SOLUSDT", levels=10, source="sim") as w:
        w.append(recs)
    assert newest_recorded_ns(tmp_path / "sim" / "SOLUSDT") == int(recs["publish_ns"][-1])


def test_the_recorder_imports_neither_the_feed_process_nor_websockets():
    import subprocess
    import sys

    code = (
        "import sys, hftbot.feed.recorder\n"
        "bad = [m for m in ('websockets', 'hftbot.feed.process', 'hftbot.feed.binance') if m in sys.modules]\n"
        "print(bad)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr
