"""Book kernel, decoder and sync machine: exact integers, all-or-nothing updates, futures rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftbot.feed import decode as d
from hftbot.feed.book import E_LOT, E_TICK, OK, Book, _quotient
from hftbot.feed.sync import Action, DepthSync, SnapshotLimiter

TICK_U = 10_000_000  # 0.1
LOT_U = 100_000  # 0.001


def rows(levels):
    return np.array([[p * TICK_U, q * LOT_U] for p, q in levels], dtype=np.int64).reshape(-1, 2)


updates = st.lists(st.tuples(st.integers(1, 60), st.integers(0, 5)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(updates, updates), min_size=1, max_size=40), st.sampled_from([64, 96, 1 << 12]))
def test_random_diff_streams_equal_a_dict_reference(events, width):
    # narrow ladders push levels into the overflow arrays: both paths, and the merge, are exercised
    book = Book(TICK_U, LOT_U, width=width, overflow=64)
    ref_b: dict[int, int] = {}
    ref_a: dict[int, int] = {}
    for bids, asks in events:
        assert book.apply(rows(bids), rows([(p + 100, q) for p, q in asks])) == OK
        for p, q in bids:
            ref_b.pop(p, None) if q == 0 else ref_b.__setitem__(p, q)
        for p, q in asks:
            ref_a.pop(p + 100, None) if q == 0 else ref_a.__setitem__(p + 100, q)
    assert book.bids() == sorted(ref_b.items(), reverse=True)
    assert book.asks() == sorted(ref_a.items())
    top = book.top(5)
    want = sorted(ref_b.items(), reverse=True)[:5]
    assert list(top["bid_px"][: len(want)]) == [p for p, _ in want]
    assert all(v == 0 for v in top["bid_px"][len(want) :])


def test_full_overflow_drops_the_level_farthest_from_the_touch():
    book = Book(TICK_U, LOT_U, width=4, overflow=2)
    book.apply(rows([(100, 1)]), rows([]))  # the ladder covers 98..101
    book.apply(rows([(90, 1), (91, 1), (92, 1), (50, 1)]), rows([]))
    assert book.bids() == [(100, 1), (92, 1), (91, 1)]
    assert int(book.st[2]) == 2
    assert list(book.top(3)["bid_px"]) == [100, 92, 91]


def test_off_tick_or_negative_update_is_rejected_whole():
    book = Book(TICK_U, LOT_U)
    book.apply(rows([(10, 1)]), rows([(20, 1)]))
    bad = np.array([[11 * TICK_U, LOT_U], [int(10.05 * TICK_U), LOT_U]], dtype=np.int64)
    assert book.apply(bad, rows([])) == E_TICK
    assert book.apply(rows([]), np.array([[21 * TICK_U, -LOT_U]], dtype=np.int64)) == E_LOT
    assert book.bids() == [(10, 1)] and book.asks() == [(20, 1)]


@settings(max_examples=400, deadline=None)
@given(
    st.integers(1, 10**10),  # tick/lot in 1e-8 units
    st.integers(0, 10**18 - 1),
    st.integers(-3, 3),
)
def test_quotient_by_reciprocal_is_exact(unit, v, nudge):
    # the kernel divides by tick/lot with a float reciprocal and an integer check: exact for
    # multiples, off-by-anything for non-multiples is caught by the check
    m = (v // unit) * unit + nudge  # a multiple, or one a few units off it
    if m < 0:
        return
    q = int(_quotient(m, unit, 1.0 / unit))
    assert q == m // unit
    assert (q * unit == m) == (m % unit == 0)


def test_decimals_become_exact_fixed_point():
    assert d.parse_decimal("61800.20") == 6_180_020_000_000
    assert d.parse_decimal("0.00000001") == 1
    assert d.parse_decimal("1.100000000") == 110_000_000
    with pytest.raises(ValueError):
        d.parse_decimal("0.000000001")
    with pytest.raises(ValueError):
        d.parse_decimal("1e5")


@pytest.mark.parametrize(
    "frame,kind",
    [
        (
            b'{"stream":"s@depth","data":{"e":"depthUpdate","E":1,"T":1,"s":"S","U":1,"u":2,"pu":0,'
            b'"b":[["1.5","2"]],"a":[]}}',
            d.K_DEPTH,
        ),
        (
            b'{"e":"bookTicker","u":5,"s":"S","b":"1.0","B":"2","a":"1.1","A":"3","T":1,"E":1}',
            d.K_BOOK_TICKER,
        ),
        (
            b'{"e":"aggTrade","E":1,"a":7,"s":"S","p":"1.0","q":"2","nq":"2","f":1,"l":2,"T":1,"m":false}',
            d.K_TRADE,
        ),
        (
            b'{"id":1,"status":200,"result":{"lastUpdateId":9,"E":1,"T":1,"bids":[["1","1"]],"asks":[]},'
            b'"rateLimits":[{"a":1}]}',
            d.K_SNAPSHOT,
        ),
        (b'{"result":null,"id":3}', d.K_OTHER),
        (b'{"stream":"s@depth","data":{"e":"depthUpd', d.E_SYNTAX),
        (b'{"e":"depthUpdate","E":1,"U":1,"u":2,"b":[],"a":[]}', d.E_MISSING),
        (b'{"e":"bookTicker","u":5,"b":"1.000000001","B":"2","a":"1.1","A":"3"}', d.E_PRECISION),
        (b'{"a":1} trailing', d.E_SYNTAX),
    ],
)
def test_decoder_classifies_frames(frame, kind):
    dec = d.FrameDecoder(capacity=1)
    assert dec.decode(frame) == kind


def test_decoder_never_reads_past_the_frame_length():
    # The scanner works on a raw pointer with n as its only bound. Scan every prefix of a valid
    # frame inside the full buffer: a read past n would find the rest of the frame and could
    # succeed; every prefix must be an error instead.
    levels = ",".join(f'["{61800 + i}.{i % 10}0","0.{i:03d}"]' for i in range(40))
    frame = (
        '{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT",'
        f'"U":10,"u":20,"pu":9,"b":[{levels}],"a":[{levels}]}}}}'
    ).encode()
    buf = np.frombuffer(frame, dtype=np.uint8)
    hdr = np.zeros(d.HEADER_SIZE, dtype=np.int64)
    lv = np.zeros((2, 64, 2), dtype=np.int64)
    assert d.scan(buf, len(frame), hdr, lv[0], lv[1]) == d.K_DEPTH
    assert int(lv[0, 39, 0]) == 61839_90_000000 and int(lv[1, 39, 1]) == 39_00000
    for n in range(len(frame)):
        assert d.scan(buf, n, hdr, lv[0], lv[1]) < 0, n


def test_decoder_grows_for_big_snapshots_and_reads_trade_fields():
    dec = d.FrameDecoder(capacity=2)
    lv = ",".join(f'["{100 + i}.5","{i}.001"]' for i in range(3000))
    assert dec.decode(f'{{"lastUpdateId":1,"bids":[{lv}],"asks":[]}}'.encode()) == d.K_SNAPSHOT
    assert int(dec.hdr[d.H_NB]) == 3000 and int(dec.bids[2999, 1]) == 2999_00100000
    assert dec.decode(b'{"e":"aggTrade","E":5,"a":7,"p":"1.25","q":"2","T":4,"m":true}') == d.K_TRADE
    assert [int(dec.hdr[k]) for k in (d.H_TRADE_ID, d.H_PX, d.H_QTY, d.H_MAKER, d.H_T)] == [
        7,
        125_000_000,
        200_000_000,
        1,
        4,
    ]


def test_sync_follows_the_futures_rules():
    s = DepthSync()
    assert s.on_diff(1, 10, 0, "a") == Action.BUFFER
    assert s.on_diff(11, 20, 10, "b") == Action.BUFFER
    pending = s.on_snapshot(15)
    assert [p[3] for p in pending] == ["a", "b"]
    assert s.on_diff(1, 10, 0) == Action.DROP  # u < lastUpdateId
    assert s.on_diff(11, 20, 10) == Action.APPLY_FIRST  # U <= 15 <= u
    assert s.on_diff(21, 30, 20) == Action.APPLY  # pu chain
    assert s.on_diff(21, 30, 20) == Action.DROP  # duplicate
    assert s.on_diff(41, 50, 40) == Action.RESYNC  # gap
    assert (s.gaps, s.resyncs, s.needs_snapshot) == (1, 1, True)


def test_sync_refuses_a_snapshot_older_than_the_stream():
    s = DepthSync()
    s.on_diff(21, 30, 20, "x")
    pending = s.on_snapshot(15)
    assert s.on_diff(*pending[0][:3], pending[0][3]) == Action.RESYNC
    assert s.stale_snapshots == 1 and s.needs_snapshot and len(s.buffer) == 1


def test_snapshot_limiter_keeps_weight_budget_and_backs_off():
    lim = SnapshotLimiter(weight=20, budget_per_min=60, min_interval_s=1.0)
    assert lim.delay(0.0) == 0
    lim.record(0.0)
    assert lim.delay(0.5) == pytest.approx(0.5)
    lim.record(1.0)
    assert lim.delay(1.0) == pytest.approx(2.0)  # backoff doubled
    lim.record(3.0)
    assert lim.delay(10.0) == pytest.approx(50.0)  # 3 x 20 = budget: wait for the first to age out


@pytest.mark.parametrize(
    "levels,want",
    [
        (b'[["61800.20","0.014"],["1","2.5"]]', [(6_180_020_000_000, 1_400_000), (100_000_000, 250_000_000)]),
        (b'[ [ "1.5" , "2" ] , [1.25,3] ]', [(150_000_000, 200_000_000), (125_000_000, 300_000_000)]),
        (b'[["1.10000000000","2","extra",[1]]]', [(110_000_000, 200_000_000)]),
        (b"[]", []),
    ],
)
def test_level_lists_in_any_json_shape_parse_exactly(levels, want):
    dec = d.FrameDecoder(capacity=4)
    frame = b'{"lastUpdateId":1,"bids":' + levels + b',"asks":[]}'
    assert dec.decode(frame) == d.K_SNAPSHOT
    got = [tuple(int(v) for v in row) for row in dec.bids[: int(dec.hdr[d.H_NB])]]
    assert got == want


@pytest.mark.parametrize(
    "levels,err",
    [
        (b'[["1.000000001","1"]]', d.E_PRECISION),
        (b'[["12345678901","1"]]', d.E_PRECISION),
        (b'[["","1"]]', d.E_SYNTAX),
        (b'[["1.2.3","1"]]', d.E_SYNTAX),
        (b'[["1","1"]', d.E_SYNTAX),
        (b'[["1" "1"]]', d.E_SYNTAX),
    ],
)
def test_bad_levels_are_errors_not_guesses(levels, err):
    dec = d.FrameDecoder(capacity=4)
    assert dec.decode(b'{"lastUpdateId":1,"bids":' + levels + b',"asks":[]}') == err
