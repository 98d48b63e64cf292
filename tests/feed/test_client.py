"""The feed client against a real websockets server on loopback playing scripted sequences.

Every scenario ends in a book equal to the server's reference book, or in a visible resync -
never in a silently wrong book.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time

import pytest

from hftbot.feed.binance import BinanceFeed, FeedSettings, StreamConnection
from hftbot.feed.core import FeedCore
from hftbot.records import BOOK_RESYNC, BOOK_VALID
from tests.feed.scripted import SYM, NoPongServer, ScriptedServer, book_after


def settings(urls: dict, **kw) -> FeedSettings:
    base = dict(
        symbol=SYM,
        rest=urls["rest"],
        ws=urls["ws"],
        ws_api=urls["ws_api"],
        trades=False,
        book_ticker=False,
        stale_s=5.0,
        snapshot_min_interval_s=0.05,
        snapshot_wait_diffs_s=0.2,
        backoff_min_s=0.05,
        backoff_max_s=0.2,
        snapshot_timeout_s=5.0,
    )
    base.update(kw)
    return FeedSettings(**base)


async def run_feed(server: ScriptedServer, until, timeout: float = 20.0, check: bool | str = False, **kw):
    core = FeedCore(levels=10, check_tickers=check)
    books = []
    feed = BinanceFeed(
        settings(server.urls, **kw), core, lambda c: books.append(c.book_rec.copy()), lambda c: None
    )
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while not until(feed) and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    return feed, books


def synced_at(k: int):
    return lambda f: f.core.synced and f.core.last_update_id == 10 * k


def assert_book_is(feed: BinanceFeed, k: int, books) -> None:
    bids, asks = book_after(k)
    assert feed.core.book.bids() == sorted(bids.items(), reverse=True)
    assert feed.core.book.asks() == sorted(asks.items())
    valid = [b for b in books if b["flags"] & BOOK_VALID]
    last = valid[-1]
    assert int(last["update_id"]) == 10 * k
    assert list(last["bid_px"]) == [p for p, _ in sorted(bids.items(), reverse=True)[:10]]
    assert list(last["ask_qty"]) == [q for _, q in sorted(asks.items())[:10]]
    assert books[0]["flags"] & BOOK_VALID == 0  # readers see the book is not valid before the sync
    first_valid = next(b for b in books if b["flags"] & BOOK_VALID)
    assert first_valid["flags"] & BOOK_RESYNC


def play(scripts, snapshots, k_final, timeout=20.0, check=False, **kw):
    async def scenario():
        async with ScriptedServer(scripts, snapshots) as srv:
            feed, books = await run_feed(srv, synced_at(k_final), timeout, check, **kw)
            return srv, feed, books

    return asyncio.run(scenario())


PRE = [("ev", 1), ("ev", 2), ("ev", 3), ("snap", 1)]


def test_feed_settings_are_the_feed_section_with_urls():
    """Every [feed] setting reaches the client as it is (FeedSettings extends FeedConfig: a new
    setting is a config field and defaults.toml, nothing else)."""
    from hftbot.config import FeedConfig, load_config
    from hftbot.feed.process import settings_from_config

    cfg = load_config(env={})

    def changed(v):
        return (not v) if isinstance(v, bool) else v + 1 if isinstance(v, int | float) else v + "x"

    feed = dataclasses.replace(
        cfg.feed, **{f.name: changed(getattr(cfg.feed, f.name)) for f in dataclasses.fields(FeedConfig)}
    )
    urls = {"rest": "http://h:1", "ws": "ws://h:1", "ws_api": "ws://h:1/ws-fapi/v1"}
    s = settings_from_config(dataclasses.replace(cfg, feed=feed), urls)
    for f in dataclasses.fields(FeedConfig):
        assert getattr(s, f.name) == getattr(feed, f.name) != getattr(cfg.feed, f.name), f.name
    assert (s.symbol, s.rest, s.ws, s.ws_api) == (cfg.runtime.symbol, *urls.values())


def test_in_order_stream_builds_the_reference_book():
    _, feed, books = play([[*PRE, ("ev", 4), ("ev", 5)]], [2], 5)
    assert_book_is(feed, 5, books)
    c = feed.counters()
    assert (c["gaps"], c["dropped"], c["snapshot_requests"]) == (0, 1, 1)


def test_gap_forces_resync_with_a_new_snapshot():
    script = [*PRE, ("ev", 4), ("ev", 5), ("ev", 7), ("ev", 8), ("snap", 2), ("ev", 9), ("ev", 10)]
    _, feed, books = play([script], [2, 8], 10)
    assert_book_is(feed, 10, books)
    c = feed.counters()
    assert c["gaps"] == 1 and c["snapshot_requests"] == 2 and c["resyncs"] >= 1
    flags = [int(b["flags"]) for b in books]
    gap_marker = next(
        i for i in range(1, len(flags)) if flags[i - 1] & BOOK_VALID and not flags[i] & BOOK_VALID
    )
    assert any(f & BOOK_RESYNC for f in flags[gap_marker:])


def _ticker(u: int, k: int, bid_qty_lots: int | None = None) -> tuple[str, str]:
    """A bookTicker frame with u and the best bid/ask of the book after event k."""
    bids, asks = book_after(k)
    bp, ap = max(bids), min(asks)
    data = {
        "e": "bookTicker",
        "u": u,
        "s": SYM,
        "b": f"{bp / 100:.2f}",
        "B": f"{(bids[bp] if bid_qty_lots is None else bid_qty_lots) / 1000:.3f}",
        "a": f"{ap / 100:.2f}",
        "A": f"{asks[ap] / 1000:.3f}",
        "T": 1,
        "E": 1,
    }
    return ("raw", json.dumps({"stream": f"{SYM.lower()}@bookTicker", "data": data}))


def test_a_bookticker_that_disagrees_with_the_book_forces_a_resync():
    """In the live feed's mode a ticker is checked when the book reaches its u (at once, or held
    until the diff ending on it): a mismatch means the book is wrong, so a marker and a new
    snapshot follow, and the book ends right."""
    script = [
        *PRE,
        ("ev", 4),
        ("ev", 5),
        _ticker(50, 5),  # at the book's u: checked at once, agrees
        _ticker(60, 6),  # ahead of the book: held, checked after event 6, agrees
        _ticker(70, 7, bid_qty_lots=1),  # held; disagrees once event 7 is applied
        ("ev", 6),
        ("ev", 7),
        ("ev", 8),
        ("snap", 2),
        ("ev", 9),
        ("ev", 10),
    ]
    _, feed, books = play([script], [2, 9], 10, check="resync")
    assert_book_is(feed, 10, books)
    c = feed.counters()
    assert (c["ticker_checks"], c["ticker_checks_held"], c["ticker_mismatches"]) == (3, 2, 1)
    assert c["snapshot_requests"] == 2 and c["gaps"] == 0
    valid = [int(b["update_id"]) for b in books if b["flags"] & BOOK_VALID]
    assert 60 in valid and 70 not in valid  # the book at 7 disagreed: published as a marker instead
    after_60 = [int(b["update_id"]) for b in books].index(60) + 1
    assert not books[after_60]["flags"] & BOOK_VALID


def test_duplicate_event_is_dropped_without_resync():
    _, feed, books = play([[*PRE, ("ev", 4), ("ev", 5), ("ev", 5), ("ev", 6)]], [2], 6)
    assert_book_is(feed, 6, books)
    c = feed.counters()
    assert (c["gaps"], c["dropped"], c["snapshot_requests"]) == (0, 2, 1)


def test_out_of_order_events_resync_and_end_correct():
    script = [*PRE, ("ev", 4), ("ev", 6), ("ev", 5), ("ev", 7), ("snap", 2), ("ev", 8), ("ev", 9)]
    _, feed, books = play([script], [2, 8], 9)
    assert_book_is(feed, 9, books)
    assert feed.counters()["gaps"] == 1


def test_stale_snapshot_on_resync_is_refused_and_refetched():
    # after the gap the venue first serves an old (cached) snapshot from before the buffered diffs
    script = [*PRE, ("ev", 4), ("ev", 6), ("ev", 7), ("snap", 3), ("ev", 8)]
    _, feed, books = play([script], [2, 2, 7], 8)
    assert_book_is(feed, 8, books)
    c = feed.counters()
    assert c["stale_snapshots"] == 1 and c["snapshot_requests"] == 3


def test_snapshot_older_than_the_first_buffered_diff_is_refetched():
    script = [("ev", 3), ("ev", 4), ("ev", 5), ("snap", 2), ("ev", 6), ("ev", 7)]
    _, feed, books = play([script], [1, 5], 7)
    assert_book_is(feed, 7, books)
    assert feed.counters()["stale_snapshots"] == 1


def test_snapshot_newer_than_every_buffered_diff_waits_for_the_straddling_event():
    _, feed, books = play([[*PRE, ("ev", 4), ("ev", 5), ("ev", 6)]], [5], 6)
    assert_book_is(feed, 6, books)
    c = feed.counters()
    assert (c["gaps"], c["stale_snapshots"], c["dropped"]) == (0, 0, 4)


def test_disconnect_mid_stream_reconnects_and_resyncs():
    conn0 = [*PRE, ("ev", 4), ("ev", 5), ("close",)]
    conn1 = [("ev", 8), ("ev", 9), ("snap", 2), ("ev", 10)]
    srv, feed, books = play([conn0, conn1], [2, 9], 10)
    assert_book_is(feed, 10, books)
    assert srv.public_conns == 2 and feed.counters()["public_connects"] == 2
    flags = [int(b["flags"]) for b in books]
    k5 = next(i for i, b in enumerate(books) if int(b["update_id"]) == 50)
    assert not flags[k5 + 1] & BOOK_VALID  # the disconnect is visible in the ring right away


def test_malformed_frames_are_counted_and_the_book_stays_right():
    script = [
        *PRE,
        ("ev", 4),
        ("raw", '{"stream":"x@depth@100ms","data":{"e":"depthUpd'),
        ("raw", "not json at all"),
        ("ev", 5),
        ("ev", 6),
    ]
    _, feed, books = play([script], [2], 6)
    assert_book_is(feed, 6, books)
    c = feed.counters()
    assert c["malformed"] == 2 and c["gaps"] == 0
    assert "malformed JSON" in feed.core.last_error


def test_silent_wrong_route_trips_the_staleness_watchdog():
    keepalive = [("tk", k) for k in range(1, 40)]
    script = [*PRE] + [s for t in keepalive for s in (t, ("sleep", 0.1))]

    async def scenario():
        async with ScriptedServer([script], [2]) as srv:
            feed, books = await run_feed(
                srv,
                lambda f: f.market.stats.stale_reconnects >= 1 and srv.market_conns >= 2,
                timeout=15,
                trades=True,
                book_ticker=True,
                stale_s=0.8,
            )
            return srv, feed, books

    srv, feed, books = asyncio.run(scenario())
    c = feed.counters()
    assert c["market_stale"] >= 1 and srv.market_conns >= 2
    # the public route kept delivering: one connection, in sync, never flagged stale
    assert c["public_stale"] == 0 and c["public_connects"] == 1
    assert int(books[-2]["update_id"]) == 30 and books[-2]["flags"] & BOOK_VALID


def test_missing_pong_drops_the_connection_and_server_pings_are_answered():
    async def scenario():
        async with NoPongServer() as srv:
            urls = {"rest": "http://127.0.0.1:1", "ws": f"ws://127.0.0.1:{srv.port}", "ws_api": ""}
            s = settings(urls, ping_interval_s=0.3, ping_timeout_s=0.3, stale_s=10)
            conn = StreamConnection(
                "public", f"{urls['ws']}/public/stream?streams=x", [], s, on_frame=lambda ns, f: True
            )
            stop = asyncio.Event()
            task = asyncio.create_task(conn.run(stop))
            deadline = time.monotonic() + 15
            while conn.stats.connects < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, 10)
            return srv, conn

    srv, conn = asyncio.run(scenario())
    assert conn.stats.connects >= 2 and conn.stats.data_frames > 0
    assert conn.stats.stale_reconnects == 0  # it was the missing pong, not missing data
    assert srv.pongs_ok >= 1


@pytest.mark.parametrize("attempt", [0, 3, 40])
def test_backoff_is_jittered_and_bounded(attempt):
    import random

    from hftbot.feed.binance import backoff_delay

    rng = random.Random(attempt)
    ds = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
    assert min(ds) >= 0.5 and max(ds) <= min(30.0, 0.5 * 2**attempt) + 1e-9
    assert len(set(ds)) > 100 or attempt == 0


def test_ws_api_depth_snapshot_from_the_simulator_decodes_as_a_snapshot():
    from hftbot.feed import decode as d
    from hftbot.feed.binance import fetch_ws_api_depth
    from hftbot.sim.server import SimServer

    async def scenario():
        async with SimServer() as srv:
            s = settings(srv.urls, symbol="SOLUSDT", snapshot_limit=100)
            return await fetch_ws_api_depth(s)

    frame = asyncio.run(scenario())
    dec = d.FrameDecoder()
    assert dec.decode(frame) == d.K_SNAPSHOT
    assert int(dec.hdr[d.H_LAST_ID]) > 0 and int(dec.hdr[d.H_NB]) > 0 and int(dec.hdr[d.H_NA]) > 0


def test_message_subscriptions_are_chunked_and_paced_under_the_limit():
    streams = [f"s{i}@depth" for i in range(120)]

    async def scenario():
        async with ScriptedServer([[("sleep", 3.0)]], [1]) as srv:
            s = settings(srv.urls, subscribe="message", subscribe_per_s=5.0, stale_s=10)
            conn = StreamConnection(
                "public", f"{srv.urls['ws']}/public/stream", streams, s, lambda ns, f: True
            )
            stop = asyncio.Event()
            task = asyncio.create_task(conn.run(stop))
            deadline = time.monotonic() + 10
            while len(srv.received) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, 10)
            return srv.received

    got = asyncio.run(scenario())
    assert [m["method"] for _, m in got] == ["SUBSCRIBE"] * 3
    assert [p for _, m in got for p in m["params"]] == streams
    assert len({m["id"] for _, m in got}) == 3
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(got)]
    assert min(gaps) >= 0.9 / 5.0  # at most 5 frames a second (Binance cuts at 10)


def test_proactive_reconnect_before_the_connection_age_limit_resyncs_the_book():
    conn0 = [*PRE, ("ev", 4), ("sleep", 5.0)]
    conn1 = [("ev", 6), ("ev", 7), ("snap", 2), ("ev", 8)]

    async def scenario():
        async with ScriptedServer([conn0, conn1], [2, 7]) as srv:
            feed, books = await run_feed(srv, synced_at(8), timeout=20, max_age_s=1.0, max_age_jitter_s=0.0)
            return srv, feed, books

    srv, feed, books = asyncio.run(scenario())
    assert_book_is(feed, 8, books)
    assert srv.public_conns == 2
    c = feed.counters()
    assert c["public_age"] == 1 and c["public_connects"] == 2 and c["public_stale"] == 0
