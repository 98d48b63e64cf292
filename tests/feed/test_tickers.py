"""BookTicker checks: at once when the book stands at the ticker's u, else held until a diff ends
on that u (dropped when one passes it); a mismatch is counted, and in the live feed's mode it
invalidates the book."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hftbot.feed import fastpath as fp
from hftbot.feed.core import OUT_BOOK, OUT_NEED_SNAPSHOT, FeedCore, Instrument
from hftbot.records import BOOK_VALID


def snapshot(last_id: int) -> bytes:
    return json.dumps(
        {"lastUpdateId": last_id, "E": 1, "T": 1, "bids": [["100.0", "1"]], "asks": [["101.0", "1"]]}
    ).encode()


def diff(first: int, last: int, prev: int, bids=(), asks=()) -> bytes:
    data = {"e": "depthUpdate", "E": 2, "T": 2, "s": "X", "U": first, "u": last, "pu": prev}
    data.update(b=[list(b) for b in bids], a=[list(a) for a in asks])
    return json.dumps({"stream": "x@depth@100ms", "data": data}).encode()


def ticker(u: int, bid: str, bid_qty: str, ask: str = "101.0", ask_qty: str = "1") -> bytes:
    data = {"e": "bookTicker", "u": u, "s": "X", "b": bid, "B": bid_qty, "a": ask, "A": ask_qty, "T": 3, "E": 3}
    return json.dumps({"stream": "x@bookTicker", "data": data}).encode()


def synced_core(mode: bool | str = True) -> FeedCore:
    """In sync at u = 10: bid 100.0 x 1, ask 101.0 x 1."""
    core = FeedCore(levels=10, instrument=Instrument.from_strings("0.1", "0.001"), check_tickers=mode)
    core.on_snapshot_frame(0, snapshot(10))
    assert core.on_frame(1, diff(9, 10, 8)) & OUT_BOOK and core.synced
    return core


def test_ticker_ahead_of_the_book_is_checked_when_a_diff_ends_on_its_u():
    core = synced_core()
    core.on_frame(2, ticker(12, "100.0", "2"))  # arrives first, as on @depth@100ms
    assert core.counters()["ticker_checks"] == 0 and core.ws[fp.W_HELD_N] == 1
    core.on_frame(3, diff(11, 12, 10, bids=[("100.0", "2")]))
    c = core.counters()
    assert (c["ticker_checks"], c["ticker_checks_held"], c["ticker_mismatches"]) == (1, 1, 0)
    assert core.ws[fp.W_HELD_N] == 0


def test_ticker_at_the_books_u_is_checked_at_once():
    core = synced_core()
    core.on_frame(2, ticker(10, "100.0", "1"))
    c = core.counters()
    assert (c["ticker_checks"], c["ticker_checks_held"], c["ticker_mismatches"]) == (1, 0, 0)


def test_a_diff_that_passes_a_held_ticker_drops_it_unchecked():
    core = synced_core()
    core.on_frame(2, ticker(11, "999.0", "9"))  # u=11 is inside the next diff (11..12): never a book state
    core.on_frame(3, diff(11, 12, 10, bids=[("100.0", "2")]))
    c = core.counters()
    assert (c["ticker_checks"], c["ticker_mismatches"]) == (0, 0) and core.ws[fp.W_HELD_N] == 0


def test_a_full_hold_keeps_the_newest_tickers():
    core = synced_core()
    for u in range(20, 20 + fp.HOLD_MAX + 1):
        core.on_frame(2, ticker(u, "100.0", "1"))
    held = sorted(int(core.ws[fp.W_HELD + j * fp.HELD_WORDS]) for j in range(fp.HOLD_MAX))
    assert core.ws[fp.W_HELD_N] == fp.HOLD_MAX and held == list(range(21, 21 + fp.HOLD_MAX))
    core.on_frame(3, diff(11, 20, 10))  # would have matched the ticker the hold let go
    assert core.counters()["ticker_checks"] == 0
    core.on_frame(4, diff(21, 21, 20))
    assert core.counters()["ticker_checks_held"] == 1 and core.ws[fp.W_HELD_N] == fp.HOLD_MAX - 1


def test_a_held_mismatch_is_counted_in_check_mode_and_the_book_stays():
    core = synced_core(True)
    core.on_frame(2, ticker(12, "100.0", "3"))  # the diff will say 2
    out = core.on_frame(3, diff(11, 12, 10, bids=[("100.0", "2")]))
    assert out == OUT_BOOK and core.synced
    assert core.ticker_mismatches == 1 and core.ws[fp.W_MISMATCH_U] == 12


@pytest.mark.parametrize("held", [True, False])
def test_a_mismatch_in_resync_mode_invalidates_the_book(held):
    core = synced_core("resync")
    if held:
        core.on_frame(2, ticker(12, "100.0", "3"))
        out = core.on_frame(3, diff(11, 12, 10, bids=[("100.0", "2")]))
    else:
        core.on_frame(3, diff(11, 12, 10, bids=[("100.0", "2")]))
        out = core.on_frame(2, ticker(12, "100.0", "3"))
    assert out == OUT_BOOK | OUT_NEED_SNAPSHOT
    assert not core.book_rec["flags"] & BOOK_VALID and not core.synced
    assert core.ticker_mismatches == 1 and core.resyncs == 1 and "bookTicker u=12" in core.last_error
    core.on_frame(4, diff(13, 13, 12))  # buffered until a new snapshot
    core.on_snapshot_frame(5, snapshot(13))
    assert core.synced and core.depth_applied == 3


def test_held_tickers_are_forgotten_when_sync_is_lost():
    core = synced_core()
    core.on_frame(2, ticker(15, "100.0", "1"))
    out = core.on_frame(3, diff(14, 15, 13))  # pu 13 != 10: a gap
    assert out & OUT_NEED_SNAPSHOT and core.ws[fp.W_HELD_N] == 0 and core.ticker_checks == 0


def test_a_held_ticker_is_checked_after_a_diff_on_the_slow_path():
    core = synced_core()
    core.on_frame(2, ticker(12, "100.0", "1"))
    # more levels than the decoder's scratch arrays hold: this diff is applied by the slow path
    far = [(f"{900 - k * 0.1:.1f}", "0") for k in range(core.dec.lv.shape[1] + 1)]
    assert core.on_frame(3, diff(11, 12, 10, bids=far)) & OUT_BOOK
    assert core.dec.lv.shape[1] > len(far) - 1  # the decoder grew: the slow path ran
    assert core.counters()["ticker_checks_held"] == 1 and core.ticker_mismatches == 0


def test_run_refuses_the_resync_mode():
    core = FeedCore(levels=10, check_tickers="resync")
    z = np.zeros(0, dtype=np.int64)
    with pytest.raises(ValueError, match="resync"):
        books, trades = np.zeros(1, core.book_rec.dtype), np.zeros(1, core.trade_rec.dtype)
        core.run(np.zeros(0, np.uint8), z, z, z, 0, 0, books, trades)
