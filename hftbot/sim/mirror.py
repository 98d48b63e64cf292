"""The mirror venue: the simulator's server whose matching engine follows the book and trade rings.

In `replay` and `paper` there is no exchange to take our orders, yet the gateway must speak the
same protocol as everywhere else. So the supervisor runs this process (as "venue"): the
simulator's own server — WS API, user data stream, REST, the account, fees, queue positions —
with its market model switched off and its book driven by what the feed publishes:

- every valid book record makes the engine's displayed book equal to the record's top N levels
  (`engine.replay_level`: levels not in the record are emptied, everyone else's size at our
  price keeps our place in the queue by the engine's queue model);
- every public trade record is printed through the engine (`engine.replay_trade`): a trade
  through our resting price fills us, a trade at our price fills us once the size queued ahead
  of us has traded;
- our own aggressive orders take the displayed liquidity; the next book record restores it
  (no market impact: the recorded or live market does not know about us).

What it knows of the market is the top N levels of each book record: deeper levels are empty
here, so an order sweeping past level N finds nothing (IOC remainders expire, as they would on a
thin book). Tick, lot and the starting price come from the first valid book record, so a
BTCUSDT capture gets BTCUSDT's grid. Books without BOOK_VALID (a resync) leave the engine as it
is. Our fills and order events reach the gateway on the user data stream exactly as from the
simulator.

`BookMirror` is the pure part (engine in, records in); `main(ctx)` is the process.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from hftbot.records import BOOK_VALID
from hftbot.sim.matching import BUY, SELL, MatchingEngine

ALL = 1 << 40  # a size that fills every resting order of ours a crossing book went through


class BookMirror:
    """Keeps a matching engine's displayed book equal to the book records it is given."""

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.books = 0
        self.trades = 0
        self.skipped = 0  # records without BOOK_VALID
        self.crossed = 0  # books that crossed one of our resting orders

    def on_book(self, rec, time_ns: int) -> bool:
        """Make the engine's book the record's top N (others' lots); False for an invalid record.

        A resting order of ours that the new book has crossed (the market's bid at or above our
        ask) is filled at its price first: at the real venue price priority would have executed
        it. The caller has opened a transaction (`engine.begin()`) and publishes it afterwards.
        """
        if not int(rec["flags"]) & BOOK_VALID:
            self.skipped += 1
            return False
        e = self.engine
        want = {BUY: _levels(rec["bid_px"], rec["bid_qty"]), SELL: _levels(rec["ask_px"], rec["ask_qty"])}
        bid, ask = max(want[BUY], default=0), min(want[SELL], default=0)
        ours = e.open_orders()
        if bid and any(o.side == SELL and o.px <= bid for o in ours):
            e.replay_trade(True, bid, ALL, time_ns)
            self.crossed += 1
        if ask and any(o.side == BUY and o.px >= ask for o in ours):
            e.replay_trade(False, ask, ALL, time_ns)
            self.crossed += 1
        # empty first what the record no longer shows, on both sides, so the book never crosses midway
        for side, book in ((BUY, e.bids), (SELL, e.asks)):
            keep = want[side]
            for px in [p for p in book if p not in keep]:
                if e.others(side, px):
                    e.replay_level(side, px, 0)
        for side in (BUY, SELL):
            for px, lots in want[side].items():
                if e.others(side, px) != lots:
                    e.replay_level(side, px, lots)
        self.books += 1
        return True

    def on_trade(self, rec, time_ns: int) -> None:
        """Print a public trade through the engine (fills our resting orders it reaches)."""
        taker_buy = not int(rec["buyer_is_maker"])
        self.engine.replay_trade(taker_buy, int(rec["px"]), int(rec["qty"]), time_ns)
        self.trades += 1


def _levels(px: np.ndarray, qty: np.ndarray) -> dict[int, int]:
    return {int(p): int(q) for p, q in zip(px.tolist(), qty.tolist(), strict=True) if p > 0 and q > 0}


class StillMarket:
    """Stands in for the market model (`VenueSettings.market`): no events of its own, the rings
    drive the book. Built as the model is, `StillMarket(params, engine, start_ns=)`."""

    def __init__(
        self, params=None, engine=None, start_ns: int = 0, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.clock_ns = clock_ns

    @property
    def time_ns(self) -> int:
        return self.clock_ns()

    def next_event_ns(self) -> int:
        return self.clock_ns() + 1_000_000_000  # nothing due: the venue still runs its timers

    def step(self) -> None:  # pragma: no cover - never due
        raise RuntimeError("the mirror venue's market has no events of its own")


def endpoints(cfg, port: int) -> dict:
    """The URLs the gateway trades on in replay and paper (`ctx.endpoints["orders"]`)."""
    host = cfg.sim.host
    return {
        "rest": f"http://{host}:{port}",
        "ws": f"ws://{host}:{port}",
        "ws_api": f"ws://{host}:{port}/ws-fapi/v1",
    }


def first_book(reader, ctx, poll_s: float = 0.05):
    """Wait (beating) for the first valid book record: it gives the grid and the price."""
    while not ctx.stopping():
        recs = reader.read_many(4096, timeout_s=poll_s)
        valid = [r for r in recs if int(r["flags"]) & BOOK_VALID and r["tick"] > 0 and r["bid_px"][0] > 0]
        if valid:
            return valid[-1]
        ctx.beat(books=0, trades=0, orders=0)
    return None


def main(ctx) -> None:
    """The mirror venue as a supervised process ("venue" in replay and paper).

    The asyncio loop serves the simulator's server; a thread waits on the book ring (a blocking
    reader: no polling) and hands each batch, with the trades published meanwhile, to the loop.
    """
    import asyncio
    import threading

    from hftbot.ipc.ring import RingReader
    from hftbot.sim.process import from_config, load_kernels
    from hftbot.sim.server import SimServer, run_loop

    cfg = ctx.config
    port = int(ctx.endpoints["orders_port"])
    books = RingReader(ctx.open_ring("book"), wait="block", start="next")
    trades = (
        RingReader(ctx.open_ring("trade"), wait="spin_yield", start="next")
        if "trade" in ctx.segments
        else None
    )
    ctx.beat(books=0, trades=0, orders=0)
    if not load_kernels(ctx, books=0, trades=0, orders=0):
        return
    first = first_book(books, ctx)
    if first is None:
        return
    tick, lot = float(first["tick"]), float(first["lot"])
    mid_px = (int(first["bid_px"][0]) + int(first["ask_px"][0] or first["bid_px"][0])) / 2 * tick
    params, venue_settings, server_settings = from_config(cfg.sim, port)
    params = dataclasses.replace(
        params, symbol=cfg.runtime.symbol.upper(), tick=tick, lot=lot, start_price=mid_px
    )
    venue_settings.market = StillMarket

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = SimServer(params, venue_settings, server_settings)
        venue = server.venue
        mirror = BookMirror(venue.engine)
        engine = venue.engine
        stop = threading.Event()

        def apply(book_recs, trade_recs) -> None:  # on the loop: the venue is not thread-safe
            now = time.time_ns()
            for r in book_recs:
                engine.begin()
                if mirror.on_book(r, now):
                    venue.commit(now)
            for t in trade_recs:
                engine.begin()
                mirror.on_trade(t, now)
                venue.commit(now)

        def follow() -> None:
            empty = ()
            while not stop.is_set():
                b = books.read_many(4096, timeout_s=0.05)
                t = trades.read_many(4096, timeout_s=0) if trades is not None else empty
                if len(b) or len(t):
                    loop.call_soon_threadsafe(apply, b, t)

        apply([first], [])
        await server.start()
        ctx.log.info(
            "mirror venue for %s listening on %s (tick %g, lot %g)",
            params.symbol,
            server.urls["rest"],
            tick,
            lot,
        )
        thread = threading.Thread(target=follow, name="mirror-follow", daemon=True)
        thread.start()
        ctx.serving()  # listening, and following the book (the restart-to-serving figure)
        try:
            while not ctx.stopping():
                ctx.beat(
                    books=mirror.books,
                    trades=mirror.trades,
                    orders=venue.counters["orders"],
                    crossed=mirror.crossed,
                    position_lots=venue.account.position.lots,  # the venue's own: execution must equal it
                )
                await asyncio.sleep(cfg.runtime.heartbeat_s / 2)
        finally:
            stop.set()
            thread.join(2.0)
            await server.stop()

    run_loop(run())
