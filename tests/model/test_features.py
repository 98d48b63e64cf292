"""Features: offline (recording) and online (ring) give identical windows; breaks empty the window."""

from __future__ import annotations

import numpy as np
import pytest

from hftbot.feed.recording import BookRecordingWriter, read_book
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring, RingReader, RingWriter
from hftbot.model.features import (
    FeatureSpec,
    OnlineWindow,
    column_names,
    rows_from_records,
    windows_from_records,
)
from hftbot.records import BOOK_RESYNC, BOOK_VALID, book_dtype


def _with_breaks(books: np.ndarray) -> np.ndarray:
    """The real records with a resync marker (not valid) and a BOOK_RESYNC record spliced in."""
    out = books.copy()
    out["flags"][300] = 0  # "resync in progress" marker
    out["flags"][301] |= BOOK_RESYNC
    out["flags"][700] |= BOOK_RESYNC  # a resync with no marker before it
    return out


def test_offline_recording_and_online_ring_give_identical_windows(real_books, tmp_path):
    books = _with_breaks(real_books)
    spec = FeatureSpec(levels=10, window=50, mean=tuple(np.linspace(-1, 1, 40)), std=tuple(np.linspace(1, 3, 40)))
    # offline: the recorder's Parquet files, read back as the trainer will
    w = BookRecordingWriter(tmp_path, "BTCUSDT", levels=10, flush_s=1e9, source="binance")
    w.append(books)
    w.close()
    recorded = read_book(tmp_path)
    assert len(recorded) == len(books)
    windows, ends = windows_from_records(recorded, spec)
    # online: the same records published into a real shared-memory ring, read one by one
    ring = Ring.create(shm.segment_name("test-feat"), book_dtype(10), 2048)
    try:
        writer, reader = RingWriter(ring), RingReader(ring, wait="spin", start="oldest")
        writer.publish_many(books)
        online = OnlineWindow(spec)
        got = {}
        while (rec := reader.poll()) is not None:
            online.push(rec)
            if online.full:
                got[int(rec["seq"]) - 1] = online.window().copy()
        assert reader.lost == 0
    finally:
        ring.close()
        ring.unlink()
    assert sorted(got) == list(ends)  # the same windows exist on both paths
    assert len(ends) > 500
    for k, e in enumerate(ends):
        np.testing.assert_array_equal(got[e], windows[k])  # bit-identical
    # no window straddles a break
    assert not any(e - 49 <= 300 <= e for e in ends)
    assert not any(e - 49 < 301 <= e and e - 49 != 301 for e in ends)
    assert not any(e - 49 < 700 <= e for e in ends)


def test_rows_follow_the_paper_order_and_units():
    rec = np.zeros(1, dtype=book_dtype(2))
    rec["flags"] = BOOK_VALID
    rec["tick"], rec["lot"] = 0.01, 0.1
    rec["bid_px"] = [[9990, 9980]]
    rec["ask_px"] = [[10010, 0]]  # second ask level empty
    rec["bid_qty"] = [[10, 20]]
    rec["ask_qty"] = [[30, 0]]
    rows, usable = rows_from_records(rec, FeatureSpec(levels=2, window=1))
    assert usable[0]
    mid = 100.0
    np.testing.assert_allclose(rows[0], [
        (100.10 / mid - 1) * 1e4, np.log1p(3.0), (99.90 / mid - 1) * 1e4, np.log1p(1.0),
        (100.10 / mid - 1) * 1e4, 0.0, (99.80 / mid - 1) * 1e4, np.log1p(2.0),
    ], rtol=1e-6)
    assert column_names(2)[:4] == ("ask_px_0", "ask_qty_0", "bid_px_0", "bid_qty_0")


def test_prev_mid_reference_carries_the_mid_move():
    recs = np.zeros(2, dtype=book_dtype(1))
    recs["flags"] = BOOK_VALID
    recs["tick"], recs["lot"] = 1.0, 1.0
    recs["bid_px"] = [[99], [100]]
    recs["ask_px"] = [[101], [102]]
    rows, _ = rows_from_records(recs, FeatureSpec(levels=1, window=1))
    assert rows[1, 0] == pytest.approx((102 / 100 - 1) * 1e4, rel=1e-6)  # vs the previous mid 100
    own, _ = rows_from_records(recs, FeatureSpec(levels=1, window=1, price_ref="mid"))
    assert own[1, 0] == pytest.approx((102 / 101 - 1) * 1e4, rel=1e-6)


def test_unusable_records_empty_the_window():
    recs = np.zeros(5, dtype=book_dtype(1))
    recs["flags"] = BOOK_VALID
    recs["tick"], recs["lot"] = 1.0, 1.0
    recs["bid_px"], recs["ask_px"] = 99, 101
    recs["ask_px"][2] = 99  # crossed/locked book: unusable
    w = OnlineWindow(FeatureSpec(levels=1, window=2))
    assert [w.push(r) for r in recs] == [True, True, False, True, True]
    assert w.full and w.resets == 1
    w.push(np.array(recs[0]))
    assert w.full
    marker = recs[0].copy()
    marker["flags"] = 0
    assert not w.push(marker) and not w.full


def test_bad_spec_and_too_few_levels_are_refused():
    with pytest.raises(ValueError, match="price_ref"):
        FeatureSpec(price_ref="last")
    with pytest.raises(ValueError, match="mean needs 40"):
        FeatureSpec(mean=(0.0,))
    with pytest.raises(ValueError, match="std must be > 0"):
        FeatureSpec(levels=1, std=(1.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="needs 10 book levels"):
        rows_from_records(np.zeros(2, dtype=book_dtype(5)), FeatureSpec(levels=10))
