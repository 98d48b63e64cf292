"""Recordings: round trips, rotation keyed on recv_ns, compaction, crash leftovers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hftbot.feed.recording import (
    BookRecordingWriter,
    RawRecordingWriter,
    RecordingError,
    iter_raw,
    read_book,
)
from hftbot.records import BOOK_VALID, book_dtype

DATA = Path(__file__).resolve().parents[1] / "data"
T0 = 1_723_161_255_000_000_000  # 2024-08-08T23:54:15Z
NS = 1_000_000_000


def test_raw_round_trip_and_rotation_follow_recv_ns(tmp_path):
    w = RawRecordingWriter(tmp_path, "btcusdt", flush_s=1000, rotate_s=60, source="binance")
    rows = [(T0 + i * 10 * NS, f"s{i}", f'{{"i":{i}}}') for i in range(60)]  # 10 minutes, crosses midnight
    for r in rows:
        w.append(*r)
    w.close()
    assert list(iter_raw(tmp_path)) == rows
    days = sorted(p.name for p in (tmp_path / "binance" / "BTCUSDT").iterdir())
    assert days == ["2024-08-08", "2024-08-09"]
    files = sorted(p.name for p in (tmp_path / "binance" / "BTCUSDT" / "2024-08-09").iterdir())
    assert files[0] == "raw-20240809T000000-0.parquet"
    assert all(f.endswith("-0.parquet") for f in files)  # every finished segment is compacted
    # readable with pandas alone
    df = pd.read_parquet(tmp_path / "binance" / "BTCUSDT" / "2024-08-08")
    assert df["recv_ns"].is_monotonic_increasing and len(df) + 0 > 0


def test_raw_parts_appear_per_flush_and_compact_on_close(tmp_path):
    w = RawRecordingWriter(tmp_path, "SOLUSDT", flush_s=1000, rotate_s=3600, source="sim")
    for i in range(5):
        w.append(T0 + i, "a", "x")
        w.flush()
    folder = tmp_path / "sim" / "SOLUSDT" / "2024-08-08"
    assert len(list(folder.glob("raw-*.parquet"))) == 5
    w.close()
    assert [p.name for p in folder.glob("raw-*.parquet")] == ["raw-20240808T230000-0.parquet"]
    assert [r[0] for r in iter_raw(folder)] == [T0 + i for i in range(5)]


def test_restarted_writer_continues_segment_without_duplicates(tmp_path):
    w = RawRecordingWriter(tmp_path, "SOLUSDT", flush_s=1000, source="sim")
    w.append(T0, "a", "1")
    w.close()
    folder = tmp_path / "sim" / "SOLUSDT" / "2024-08-08"
    (folder / ".raw-20240808T230000-3.parquet.999.tmp").write_bytes(b"junk")  # crash leftover
    w = RawRecordingWriter(tmp_path, "SOLUSDT", flush_s=1000, source="sim")
    w.append(T0 + 1, "a", "2")
    w.flush()
    assert [r[2] for r in iter_raw(folder)] == ["1", "2"]
    w.close()
    assert [r[2] for r in iter_raw(folder)] == ["1", "2"]
    assert not list(folder.glob(".*"))


def test_book_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    recs = np.zeros(1000, dtype=book_dtype(5))
    recs["recv_ns"] = T0 + np.arange(1000) * NS // 2
    recs["seq"] = np.arange(1, 1001)
    recs["flags"] = BOOK_VALID
    recs["tick"] = 0.1
    recs["lot"] = 0.001
    recs["bid_px"] = rng.integers(500_000, 700_000, (1000, 5))
    recs["ask_qty"] = rng.integers(0, 10**7, (1000, 5))
    w = BookRecordingWriter(tmp_path, "BTCUSDT", levels=5, flush_s=1000, rotate_s=60, source="replay")
    w.append(recs[:10])
    w.append(recs[10])
    w.append(recs[11:])
    w.close()
    back = read_book(tmp_path)
    assert np.array_equal(back, recs)
    df = pd.read_parquet(tmp_path / "replay" / "BTCUSDT" / "2024-08-08")
    assert df["bid_px_0"].iloc[0] == pytest.approx(recs["bid_px"][0, 0] * 0.1)


def test_capture_lines_yield_streams_and_snapshot():
    first = []
    for ns, stream, payload in iter_raw(DATA / "btcusdt_20240808.gz"):
        first.append((ns, stream))
        if stream.endswith("@depthSnapshot"):
            assert payload.startswith('{"lastUpdateId":5123107852948')
            break
    assert first[0] == (1723161255030314667, "btcusdt@depth@0ms")
    assert first[-1][1] == "btcusdt@depthSnapshot"
    assert sum(s == "btcusdt@depth@0ms" for _, s in first) == 6


def test_bad_capture_line_is_a_clear_error(tmp_path):
    import gzip

    p = tmp_path / "bad.gz"
    with gzip.open(p, "wt") as f:
        f.write("notanumber {}\n")
    with pytest.raises(RecordingError, match=r"bad\.gz:1"):
        list(iter_raw(p))
