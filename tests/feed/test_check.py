"""`python -m hftbot.feed check` on the real capture, and on damaged copies of it."""

from __future__ import annotations

import functools
import gzip
import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hftbot.feed.check import check, main
from hftbot.feed.core import FeedCore
from hftbot.feed.recording import RawRecordingWriter, iter_raw
from hftbot.feed.replay import Replayer
from hftbot.records import BOOK_REPLAY, BOOK_RESYNC, BOOK_VALID
from tests.reference import reference_counts

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "btcusdt_20240808.gz"
ROOT = Path(__file__).resolve().parents[2]


def test_check_command_on_the_real_capture_matches_every_ticker(capture_counts):
    p = subprocess.run(
        [sys.executable, "-m", "hftbot.feed", "check", str(CAPTURE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    ref = capture_counts
    got = (r["depth_applied"], r["gaps"], r["resyncs"], r["ticker_checks"], r["ticker_mismatches"])
    assert got == (ref.depth_applied, 0, 0, ref.ticker_checks, 0)
    assert r["ticker_checks"] - r["ticker_checks_held"] == ref.ticker_checks_at_once
    assert r["trades"] == ref.trades and r["depth_msgs"] == ref.depth_msgs
    assert r["tick"] == 0.1 and r["lot"] == 0.001
    assert "OK" in p.stdout.splitlines()[0]


@functools.cache
def _lines() -> tuple[bytes, ...]:
    with gzip.open(CAPTURE, "rb") as f:
        return tuple(f.read().splitlines())


def _u(line: bytes) -> int:
    return int(re.search(rb'"u":(\d+)', line).group(1))


def _write(dst: Path, lines) -> None:
    dst.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1))


def test_a_doctored_ticker_is_a_mismatch_and_exit_1(tmp_path, capsys):
    lines = list(_lines())
    depth_us = {_u(ln) for ln in lines if b"depthUpdate" in ln[:120]}
    k = next(i for i, ln in enumerate(lines) if b"bookTicker" in ln[:80] and _u(ln) in depth_us)
    lines[k] = lines[k].replace(b'"B":"', b'"B":"9', 1)
    bad = tmp_path / "bad.gz"
    _write(bad, lines)
    assert main([str(bad)]) == 1
    out = capsys.readouterr().out
    r = json.loads(out.strip().splitlines()[-1])
    assert r["ticker_mismatches"] == 1 and out.startswith("FAIL")


def test_a_dropped_diff_is_a_gap_and_never_a_wrong_book(tmp_path):
    lines = list(_lines())
    depth = [i for i, ln in enumerate(lines) if b"depthUpdate" in ln[:120]]
    del lines[depth[3000]]
    gap = tmp_path / "gap.gz"
    _write(gap, lines)
    r = check([str(gap)])
    # no later snapshot in the file: everything after the gap stays out of sync, nothing is checked
    assert r["gaps"] == 1 and r["resyncs"] == 1 and r["ticker_mismatches"] == 0
    assert r["depth_applied"] < 3000


def test_check_reads_raw_parquet_recordings_the_same_way(tmp_path, capture_counts):
    w = RawRecordingWriter(tmp_path, "BTCUSDT", flush_s=1000, rotate_s=60, source="binance")
    for ns, stream, payload in iter_raw(CAPTURE):
        w.append(ns, stream, payload)
    w.close()
    r = check([str(tmp_path)])
    ref = capture_counts
    assert (r["depth_applied"], r["ticker_checks"], r["ticker_mismatches"]) == (
        ref.depth_applied,
        ref.ticker_checks,
        0,
    )
    assert r["files"] >= 6  # 345 s in 60 s segments


def test_unreadable_input_exits_2(tmp_path, capsys):
    (tmp_path / "x.gz").write_bytes(b"not gzip")
    assert main([str(tmp_path / "x.gz")]) == 2
    assert "gzip" in capsys.readouterr().err


def test_generated_recordings_check_tickers_against_the_book(tmp_path):
    """On @depth@100ms a bookTicker comes before the diff batch ending on its u: held, it is checked
    when the book gets there. The counts equal an independent reading of the same files."""
    from hftbot.sim.__main__ import main as sim_main

    assert sim_main(["generate", "--hours", "0.02", "--seed", "3", "--out", str(tmp_path)]) == 0
    r = check([str(tmp_path)])
    ref = reference_counts(tmp_path)
    assert r["ticker_checks"] > 0 and r["ticker_mismatches"] == 0 and r["gaps"] == 0
    assert (r["depth_applied"], r["ticker_checks"], r["ticker_checks_held"], r["trades"]) == (
        ref.depth_applied,
        ref.ticker_checks,
        ref.ticker_checks - ref.ticker_checks_at_once,
        ref.trades,
    )


def test_input_with_nothing_checked_is_not_ok_and_says_why(tmp_path, capsys):
    empty = tmp_path / "empty.gz"
    empty.write_bytes(gzip.compress(b""))
    no_snapshot = tmp_path / "nosnap.gz"
    _write(no_snapshot, [ln for ln in _lines()[:400] if b"lastUpdateId" not in ln[:80]])
    no_tickers = tmp_path / "notickers.gz"
    _write(no_tickers, [ln for ln in _lines()[:400] if b"bookTicker" not in ln[:80]])
    for path, why in (
        (empty, "the input holds no messages"),
        (no_snapshot, "no depth diff was applied"),
        (no_tickers, "no bookTicker was compared"),
    ):
        assert main([str(path)]) == 1, path
        out = capsys.readouterr().out
        r = json.loads(out.strip().splitlines()[-1])
        assert out.startswith("FAIL") and f"why: nothing checked: {why}" in out
        assert r["verdict"] == "FAIL" and any(why in x for x in r["reasons"]) and r["files"] == 1


def test_a_truncated_gzip_is_reported_as_truncated(tmp_path, capsys):
    cut = tmp_path / "cut.gz"
    cut.write_bytes(CAPTURE.read_bytes()[:50_000])
    assert main([str(cut)]) == 2
    err = capsys.readouterr().err
    assert f"{cut}: truncated gzip file" in err and "malformed" not in err
    (tmp_path / "zero.gz").write_bytes(b"")
    assert main([str(tmp_path / "zero.gz")]) == 2
    assert "zero.gz: empty file (0 bytes)" in capsys.readouterr().err


def test_a_damaged_parquet_file_is_named(tmp_path, capsys):
    w = RawRecordingWriter(tmp_path / "rec", "BTCUSDT", flush_s=1000, rotate_s=3600, source="binance")
    for ns, stream, payload in itertools.islice(iter_raw(CAPTURE), 100):
        w.append(ns, stream, payload)
    w.close()
    (good,) = (tmp_path / "rec").rglob("*.parquet")
    bad = tmp_path / "bad.parquet"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2] + data[-8:])  # the footer magic survives, the middle is gone
    assert main([str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_full_speed_replay_publishes_every_applied_book_flagged_replay(capture_counts):
    books, trades = [], []
    core = FeedCore(levels=10, replay=True)
    rep = Replayer(core, lambda a: books.append(a.copy()), lambda a: trades.append(a.copy()), speed=0)
    assert rep.run([CAPTURE])
    b = np.concatenate(books)
    valid = b[(b["flags"] & BOOK_VALID) != 0]
    ref = capture_counts
    # the buffered diffs applied at a sync are one burst: they publish one record
    assert len(valid) == ref.depth_applied - ref.applied_at_sync + ref.syncs
    assert np.all(b["flags"] & BOOK_REPLAY)
    assert valid["flags"][0] & BOOK_RESYNC and not np.any(valid["flags"][1:] & BOOK_RESYNC)
    assert np.all(np.diff(valid["update_id"]) > 0)
    assert np.all(valid["bid_px"][:, 0] < valid["ask_px"][:, 0])
    assert sum(len(t) for t in trades) == ref.trades


def test_paced_replay_keeps_the_capture_timing_divided_by_speed():
    books = []
    core = FeedCore(levels=10, replay=True)
    rep = Replayer(core, lambda a: books.append(a.copy()), lambda a: None, speed=500.0, max_sleep_s=0.02)
    t0 = time.monotonic()
    assert rep.run([CAPTURE])
    elapsed = time.monotonic() - t0
    b = np.concatenate(books)
    span_s = (int(b["recv_ns"][-1]) - int(b["recv_ns"][0])) / 1e9
    capture_s = (int(b["event_ms"][-1]) - int(b["event_ms"][0])) / 1e3  # exchange time of the same books
    assert span_s == pytest.approx(capture_s / 500.0, rel=0.05), (span_s, capture_s)
    assert elapsed >= span_s * 0.9, (elapsed, span_s)  # never faster than asked
    lag = (b["publish_ns"] - b["recv_ns"]) / 1e9
    assert np.all(lag >= 0), lag.min()  # nothing is published before its frame falls due
    assert np.median(lag) < 1.0, np.median(lag)  # ... and not long after (a loaded box stalls)
