"""The execution process: `main(ctx)` reads the rings, asks strategy → risk, writes the socket.

A thin loop. It blocks on the ring whose record is due (books; for a strategy that trades on the
model, signals while one is owed for a book already read: see `run`), then takes whatever else
arrived without waiting, in the order that keeps decisions honest: books first (the risk manager
checks every order against the newest book), then public trades, then signals. Every record
goes to the strategy, and each call's intents go through the risk manager (and, approved, to the
gateway) before the next call: approval enters the order in `positions.view`, which is all a
strategy knows of its orders (the contract of docs/exec.md). When behind, the risk manager's
stale-book guard is what stops an old decision. The gateway writes the frame on this thread; the
order record (journal) is written after the frame has left.

Between records it applies the venue's events (fills, order updates, rejections) to positions,
runs the risk manager's PnL limits and its HALTED requests, checks the kill switch (the file
`risk.kill_file`, SIGUSR1, `python -m hftbot.exec kill`), counts position mismatches against the
venue, and once per heartbeat publishes a status record and beats.

Faults (issue 13; the table is `hftbot.exec.faults`): the gateway settles unknown outcomes,
retries after -1021 and renews streams; this loop does the rest through the risk manager, the
only door — `reconciling` holds every place and modify while the gateway is `syncing` (a stream
or the WS API dropped, until the full reconciliation is applied), a `RateLimited` event backs off
until the venue's retry time and every `RateUsage` teaches the limiter the venue's counts, -2019
holds entries for `risk.margin_backoff_ms`, a precision refusal (-1111 / -4014) halts. It watches
its inputs too: a book that stops being valid and fresh (the feed died, or resyncs) is a
`stale_book` episode until a valid book comes back, a signal strategy's stale or unusable signal a
`stale_signal` one; a position mismatch asks for a reconciliation. A process that finds an
earlier run's status in the exec ring was restarted: its fault report continues that run's.

On stop (it stops first, rank 10, while the feed still runs): cancel everything, flatten if
`exec.flatten_on_stop` (a reduce-only MARKET order through the risk manager, which still refuses
it on a stale book), wait up to `gateway.flatten_wait_s` for the venue to confirm, then close the
gateway (a REST cancel-all as the last safety net, the dead-man switch off).

The wiring lives in `Executor` so tests and the benchmark drive the same code with real rings and
a real venue. It owns no trading logic: strategies, the risk manager and positions do.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import signal as signals
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hftbot.exec.faults import classify
from hftbot.exec.gateway import Gateway, GatewayError, VenueSnapshot
from hftbot.exec.ids import ClientIds, base36
from hftbot.exec.journal import Journal, fault_report
from hftbot.exec.messages import (
    BUY,
    GTX,
    LIMIT,
    PENDING_NEW,
    SELL,
    UNKNOWN,
    CancelAllRequest,
    CancelRequest,
    Fill,
    ModifyRequest,
    OrderRequest,
    OrderUpdate,
    Place,
    RateLimited,
    RateUsage,
    Refused,
    Rejected,
)
from hftbot.exec.modes import signer, venue_urls
from hftbot.exec.positions import Positions
from hftbot.exec.ratelimit import parse_rate_limits
from hftbot.exec.risk import HALTED, RiskManager
from hftbot.exec.tradelog import TradeLog, trades_dir
from hftbot.ipc.ring import RingReader
from hftbot.process import short_gil_slices

IDLE_S = 0.001  # longest wait on the driving ring before venue events are looked at
HOUSEKEEPING_NS = 50_000_000  # risk limits, kill switch, mismatch check
MISMATCH_SETTLE_NS = 2_000_000_000  # our position may differ from the venue's this long after a fill
BATCH = 4096
MS = 1_000_000


def kill_file(cfg) -> Path:
    """Where the kill switch file lives (`risk.kill_file`, default `<data_dir>/KILL`)."""
    return Path(cfg.risk.kill_file or Path(cfg.runtime.data_dir) / "KILL")


class TradeLogThread:
    """The trade log's files written off the trading thread.

    A flush rewrites a day's Parquet and CSV files (tens to hundreds of ms on a busy machine); on
    the loop's thread that stall would age every book waiting in the ring, and the orders decided
    on them after it would leave with a tick-to-order of that stall. So closed trades go through
    a queue to this thread, which owns the `TradeLog` (not thread-safe) and flushes every
    `exec.trades_flush_s` and at close.
    """

    def __init__(self, log: TradeLog, flush_s: float, logger: logging.Logger) -> None:
        self.log = log
        self.flush_s = flush_s
        self.logger = logger
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="trade-log", daemon=True)
        self.thread.start()

    def put(self, trades: list) -> None:
        self.queue.put(trades)

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_s
        while True:
            try:
                item = self.queue.get(timeout=max(0.0, next_flush - time.monotonic()))
            except queue.Empty:
                item = ()
            if item is None:
                break
            self.log.append(item)
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + self.flush_s
                self._flush()
        self._flush()

    def _flush(self) -> None:
        try:
            self.log.flush()
        except (OSError, ValueError) as e:  # a full disk must not stop trading: say it loudly
            self.logger.error("trade log: flush failed: %s", e)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(30.0)


class Executor:
    """Strategy → risk → gateway, and venue events → positions; everything on one thread."""

    def __init__(
        self,
        gateway: Gateway,
        positions: Positions,
        risk: RiskManager,
        strategy,
        journal: Journal,
        log: logging.Logger,
        kill_path: Path | None = None,
        trade_log: TradeLog | None = None,
        trades_flush_s: float = 5.0,
        clock_ns: Callable[[], int] = time.time_ns,
        rehearse_ms: float = 0.0,
    ) -> None:
        self.gw = gateway
        self.positions = positions
        self.view = positions.view
        self.risk = risk
        self.strategy = strategy
        self.journal = journal
        self.log = log
        self.kill_path = kill_path
        self.trade_log = TradeLogThread(trade_log, trades_flush_s, log) if trade_log is not None else None
        self.clock_ns = clock_ns
        self.needs_signal = bool(strategy is not None and strategy.needs_signal)
        self.reads_trades = bool(strategy is not None and strategy.reads_trades)
        self.book = None  # the newest book record
        self.signal = None  # the newest signal record
        self.kill_requested = ""  # set from a signal handler: acted on at the next housekeeping
        self.orders = 0  # order.place frames written
        self.rejects = 0
        self.refused = 0
        self.books = self.trades = self.signals = 0
        self.mismatches = 0
        self._mismatch_since = 0
        self._mismatch_counted = False
        self._last_fill_ns = 0
        self.faults = gateway.faults  # one fault report: the gateway's faults and this loop's
        self._holding = False  # risk holds "reconciling" while the gateway is syncing
        self._seen_book = False  # stale_book episodes count after the first usable book only
        self._seen_signal = False
        self._book_stale = False
        self._signal_stale = False
        self.rehearse_ns = int(rehearse_ms * MS)  # 0: never
        self.rehearsals = 0

    # -------------------------------------------------------------------------------- inputs

    def on_books(self, recs, read_ns: int) -> None:
        strategy, view = self.strategy, self.view
        for i in range(len(recs)):
            rec = recs[i : i + 1].reshape(())  # a 0-d view: its fields read ~2x faster than a row's
            self.book = rec
            self.books += 1
            if strategy is not None:
                view.now_ns = read_ns
                intents = strategy.on_book(rec, view)
                if intents:
                    self._decide(intents, read_ns, 0)
        if self._book_stale:  # the episode ends with the first usable book, not at the next check
            self._watch_book(read_ns)

    def on_trades(self, recs, read_ns: int) -> None:
        strategy, view = self.strategy, self.view
        if strategy is None or not strategy.reads_trades:  # counted, not handed to a strategy that
            self.trades += len(recs)  # ignores them: they are read just before the signals
            return
        for i in range(len(recs)):
            self.trades += 1
            view.now_ns = read_ns
            intents = strategy.on_trade(recs[i : i + 1].reshape(()), view)
            if intents:
                self._decide(intents, read_ns, 0)

    def on_signals(self, recs, read_ns: int) -> None:
        strategy, view = self.strategy, self.view
        for i in range(len(recs)):
            rec = recs[i : i + 1].reshape(())
            self.signal = rec
            self.signals += 1
            if strategy is not None:
                view.now_ns = read_ns
                intents = strategy.on_signal(rec, view)
                if intents:
                    self._decide(intents, read_ns, int(rec["seq"]))
        if self._signal_stale:
            self._watch_signal(read_ns)

    # ------------------------------------------------------------------------------- decisions

    def _decide(self, intents, read_ns: int, signal_seq: int) -> None:
        risk, book, sig = self.risk, self.book, self.signal
        for intent in intents:
            r = risk.check(intent, book, self.clock_ns(), sig)
            if type(r) is Refused:
                self.refused += 1
                continue
            self.send(r, read_ns, signal_seq, self.clock_ns())

    def send(self, req, read_ns: int = 0, signal_seq: int = 0, approve_ns: int = 0) -> None:
        """One approved request to the gateway, then its journal record(s). `approve_ns`: when
        the risk manager approved it (the e2e benchmark splits strategy + risk from the send)."""
        t = type(req)
        gw, journal = self.gw, self.journal
        book_ns = int(self.book["recv_ns"]) if self.book is not None else 0
        if t is CancelAllRequest:  # one order.cancel per open order: each is journalled
            for cid in list(gw.orders):
                sent = gw.cancel(cid)
                if sent:
                    journal.cancel(cid, req.tag, sent, read_ns, book_ns)
            return
        sent = gw.send(req)
        if not sent:
            return  # refused before it left, or its outcome is unknown: the gateway reports it
        if t is OrderRequest:
            self.orders += 1
            journal.sent(req, sent, read_ns, signal_seq, req.model_id, req.book_recv_ns, approve_ns)
        elif t is ModifyRequest:
            journal.sent(req, sent, read_ns, signal_seq, 0, book_ns, approve_ns)
        elif t is CancelRequest:
            journal.cancel(req.client_id, req.tag, sent, read_ns, book_ns)

    def rehearse(self, now_ns: int) -> bool:
        """The order path once, with no effect: the strategy's decision on the newest book (and
        signal, for a signal strategy) by a throwaway copy (`Strategy.rehearsal_copy`; its intents
        dropped), a post-only buy at the best bid through `RiskManager.rehearse` and, approved,
        `Gateway.rehearse` (the frame built, not written).

        Why: on a shared 2-vCPU VM the caches do not survive a few ms of idle, and the same risk
        check costs ~190 µs cold against ~20 µs hot; run every ~1 ms while idle, the order that
        follows finds its code warm (docs/exec.md "Rehearsal"). Only with a strategy and a
        usable book; False when nothing was rehearsed."""
        book, risk = self.book, self.risk
        if self.strategy is None or book is None:
            return False
        bid = book["bid_px"].item(0)
        if bid <= 0:
            return False
        f = risk.filters
        qty = max(1, int(f.min_notional_usdt / (bid * f.tick * f.lot)) + 1)
        view, strategy = self.view, self.strategy
        seen_ns = view.now_ns
        view.now_ns = now_ns
        try:
            rehearsal = strategy.rehearsal_copy()
            rehearsal.on_book(book, view)
            if self.needs_signal and self.signal is not None:
                rehearsal.on_signal(self.signal, view)
        finally:
            view.now_ns = seen_ns
        r = risk.rehearse(Place(BUY, qty, bid, LIMIT, GTX, False, "rehearsal"), book, now_ns, self.signal)
        if type(r) is not OrderRequest:
            return False
        self.gw.rehearse(r)
        self.rehearsals += 1
        return True

    # ---------------------------------------------------------------------------- venue events

    def drain_events(self) -> int:
        """Apply what the venue said since the last call; returns how many events."""
        gw = self.gw
        events = gw.poll()
        if gw.syncing != self._holding:
            self._hold_for_sync(gw.syncing)
        if not events:
            if gw.has_unknown():
                self._mark_unknown()
            return 0
        now = self.clock_ns()
        pos, journal = self.positions, self.journal
        for ev in events:
            t = type(ev)
            if t is Fill:
                o = pos.orders.get(ev.client_id)
                replays = pos.replays
                if pos.on_fill(ev):
                    journal.fill(ev, now, o.tag if o is not None else "")
                    self._last_fill_ns = now
                    if pos.replays != replays:  # older than one applied: inserted, ledger replayed
                        self.faults.event("late_fill")
            elif t is OrderUpdate:
                pos.on_update(ev)
            elif t is RateUsage:
                limiter = self.risk.limiter
                if ev.rate_limits:
                    limiter.learn_from(list(ev.rate_limits), now)
                for kind, interval_ns, used in ev.used:
                    limiter.learn(kind, interval_ns, used, now)
            elif t is RateLimited:
                until = now + max(0, ev.retry_at_ms - gw.now_ms()) * MS if ev.retry_at_ms else 0
                self.risk.backoff(now, until, ev.weight)
            elif t is Rejected:
                self.rejects += 1
                if ev.request == "place":  # a refused cancel or modify leaves the order as it was
                    pos.on_rejected(ev)
                journal.rejected(ev, now)
                self.log.warning("venue refused %s %s: %d %s", ev.request, ev.client_id, ev.code, ev.msg)
                self._act_on_rejection(ev, now)
        if gw.has_unknown():
            self._mark_unknown()
        return len(events)

    def _hold_for_sync(self, syncing: bool) -> None:
        """No place or modify while the gateway re-establishes a stream and reconciles."""
        self._holding = syncing
        if syncing:
            self.risk.hold("reconciling")
            self.log.warning("execution: holding orders until the venue is reconciled")
        else:
            self.risk.release("reconciling")
            self.log.info("execution: reconciled with the venue: trading resumes")

    def _act_on_rejection(self, r: Rejected, now_ns: int) -> None:
        """The actions of `hftbot.exec.faults` that are the risk manager's to take."""
        kind = classify(0, r.code, r.request)
        if kind == "precision":
            reason = f"venue refused {r.request} {r.client_id}: {r.code} {r.msg} (a tick/step bug: halting)"
            self.log.error("execution: %s", reason)
            for req in self.risk.halt(reason, now_ns, self.book):
                self.send(req)
        elif kind == "margin" and r.request == "place":
            self.risk.hold("margin", now_ns + int(self.risk.cfg.margin_backoff_ms * MS), entries_only=True)

    def _mark_unknown(self) -> None:
        """A place whose outcome is unknown counts as open, both ways, until the venue settles it
        (an order the venue already reported keeps its status: the venue's word wins)."""
        orders = self.positions.orders
        for cid in self.gw.take_unknown():
            o = orders.get(cid)
            if o is not None and o.status == PENDING_NEW:
                self.positions.set_status(cid, UNKNOWN)

    # ---------------------------------------------------------------------------- housekeeping

    def housekeeping(self, now_ns: int) -> None:
        """PnL limits (and HALTED's requests), the kill switch, the position check."""
        if not self.kill_requested and self.kill_path is not None and self.kill_path.exists():
            self.kill_requested = f"file {self.kill_path}"
        if self.kill_requested and not self.risk.killed:
            self.log.error(
                "kill switch (%s): cancelling everything%s",
                self.kill_requested,
                ", flattening" if self.risk.cfg.flatten_on_halt else "",
            )
            for req in self.risk.kill(self.kill_requested, now_ns, self.book):
                self.send(req)
        for req in self.risk.update(now_ns, self.book):
            self.send(req)
        self._watch_book(now_ns)
        if self.needs_signal:
            self._watch_signal(now_ns)
        if self.faults.is_open("rate_limit") and not self.risk.limiter.paused(now_ns):
            self.faults.recover("rate_limit", now_ns)  # the backoff the venue asked for is over
        self._check_position(now_ns)
        if self.trade_log is not None:
            closed = self.positions.take_closed()
            if closed:
                self.trade_log.put(closed)

    def _watch_book(self, now_ns: int) -> None:
        """A `stale_book` episode: from the book turning unusable (no BOOK_VALID, too old, one-sided)
        to the first usable one. Before the first usable book nothing counts (start-up)."""
        ok = not self.risk.book_problem(self.book, now_ns)
        if ok:
            self._seen_book = True
            if self._book_stale:
                self._book_stale = False
                self.faults.recover("stale_book", now_ns)
        elif self._seen_book and not self._book_stale:
            self._book_stale = True
            self.faults.observe("stale_book", now_ns)
            self.log.warning("execution: no usable book (%s): no order until a valid one",
                             self.risk.book_problem(self.book, now_ns))

    def _watch_signal(self, now_ns: int) -> None:
        """A `stale_signal` episode of a signal strategy: nothing opens until a fresh usable signal."""
        ok = not self.risk.signal_problem(self.signal, now_ns)
        if ok:
            self._seen_signal = True
            if self._signal_stale:
                self._signal_stale = False
                self.faults.recover("stale_signal", now_ns)
        elif self._seen_signal and not self._signal_stale:
            self._signal_stale = True
            self.faults.observe("stale_signal", now_ns)
            self.log.warning("execution: %s: no entries until fresh signals (exits go on)",
                             self.risk.signal_problem(self.signal, now_ns))

    def _check_position(self, now_ns: int) -> None:
        """Count a mismatch when ours and the venue's differ past the settling time after a fill,
        and ask for a full reconciliation (trading holds until it is applied)."""
        ours, venue = self.positions.position, self.gw.position.lots
        if ours == venue:
            self._mismatch_since = 0
            self._mismatch_counted = False
            self.faults.recover("mismatch", now_ns)
            return
        if not self._mismatch_since:
            self._mismatch_since = now_ns
        settled = now_ns - max(self._mismatch_since, self._last_fill_ns) > MISMATCH_SETTLE_NS
        if settled and not self._mismatch_counted:
            self._mismatch_counted = True
            self.mismatches += 1
            self.faults.observe("mismatch", now_ns)
            self.gw.request_reconcile()
            self.log.error("position mismatch: ours %d lots, the venue's %d lots: reconciling", ours, venue)

    def mark_px(self) -> float:
        """The newest valid mid in ticks (0.0 before the first two-sided book)."""
        b = self.book
        if b is None:
            return self.risk.mark_px
        bid, ask = int(b["bid_px"][0]), int(b["ask_px"][0])
        return (bid + ask) * 0.5 if 0 < bid < ask else self.risk.mark_px

    def publish_status(self) -> None:
        self.journal.publish_status(
            self.positions,
            self.risk,
            self.gw.position.lots,
            self.orders,
            self.rejects,
            self.mismatches,
            self.mark_px(),
            self.faults,
        )

    def close(self) -> None:
        """Write the last closed trades and a final status record (after `shutdown`)."""
        if self.trade_log is not None:
            self.trade_log.put(self.positions.take_closed())
            self.trade_log.close()
        self.publish_status()

    def counters(self) -> dict[str, int]:
        """At most 12 integers for the heartbeat (the floats go in the status record)."""
        g = self.gw.counters
        return {
            "orders": self.orders,
            "fills": self.positions.fills,
            "rejects": self.rejects,
            "refused": self.refused,
            "open_orders": len(self.positions.orders),
            "position": self.positions.position,
            "venue_position": self.gw.position.lots,
            "mismatches": self.mismatches,
            "unknown": g["unknown"],
            "halted": int(self.risk.state == HALTED),
            "signals": self.signals,
            "books": self.books,
        }

    # -------------------------------------------------------------------------------- shutdown

    def shutdown(self, flatten: bool, wait_s: float) -> None:
        """Cancel every order, flatten if asked, wait for the venue to confirm (bounded)."""
        now = self.clock_ns()
        self.drain_events()
        self.send(self.risk.cancel_all(now, "stop"))
        deadline = time.monotonic() + wait_s
        flat_sent = False
        while time.monotonic() < deadline:
            self.drain_events()
            if flatten and self.positions.position and not flat_sent:
                req = self.risk.flatten(self.clock_ns(), self.book, tag="flatten_stop")
                if req is not None:
                    self.send(req)
                    flat_sent = True
                elif self.book is None:
                    self.log.error("stop: cannot flatten %d lots: no book", self.positions.position)
                    break
            pending = [o for o in self.positions.orders.values() if not o.tag.startswith("flatten")]
            done_flat = not flatten or self.positions.position == 0
            if done_flat and not self.gw.orders and not pending:
                break
            time.sleep(0.005)
        if flatten and self.positions.position:
            self.log.error(
                "stop: still %d lots after %.1f s (the venue says %d)",
                self.positions.position,
                wait_s,
                self.gw.position.lots,
            )


def run(
    ex: Executor,
    book: RingReader,
    trade: RingReader | None,
    signal: RingReader | None,
    stopping: Callable[[], bool],
    beat: Callable[..., None] | None = None,
    heartbeat_s: float = 0.5,
) -> None:
    """The loop: until `stopping()`, records → executor, venue events → executor, beats.

    Which ring it blocks on: the one whose record is due next. A strategy that trades on books
    alone always waits on books. One that needs signals waits on the signal ring only while a
    signal is owed (a book was read that no signal has answered yet: inference publishes one for
    it about a millisecond later), and on the book ring otherwise — so a book-triggered order (an
    exit at the horizon, a stop) is decided when its book arrives, not when the next signal or
    the idle timeout wakes the loop. The other rings are polled without waiting on every pass.
    A pass that read nothing, `rehearse_ms` after the last that did, rehearses the order path
    (`Executor.rehearse`)."""
    wants_signal = signal is not None and ex.needs_signal
    # trades go to the strategy before the signals of the same pass (their order in time); a
    # strategy that ignores them has them only counted, which waits until the signals' orders
    # are out (reading a batch of trades out of the ring is on that order's path otherwise)
    trades_first = trade is not None and ex.reads_trades
    clock = ex.clock_ns

    def poll_trades() -> int:
        """The trades waiting in their ring to the executor; 1 when there were any."""
        trades = trade.read_many(BATCH, timeout_s=0)
        if not len(trades):
            return 0
        ex.on_trades(trades, clock())
        return 1
    next_house = next_beat = 0
    beat_ns = int(heartbeat_s * 1e9)
    last_book_seq = answered_seq = 0  # the newest book read; the newest book a signal was computed on
    rehearse_ns, last_warm = ex.rehearse_ns, 0  # the last pass that ran the order path's code
    while not stopping():
        primary = signal if wants_signal and answered_seq < last_book_seq else book
        recs = primary.read_many(BATCH, timeout_s=IDLE_S)
        now = clock()
        books = recs if primary is book else book.read_many(BATCH, timeout_s=0)
        got = len(recs) + len(books)
        # Each batch is stamped when it was read (the orders' `read_ns`): a ring polled after the
        # primary one's records were handled may hold a record published meanwhile.
        if len(books):
            last_book_seq = int(books["seq"][-1])  # the ring's sequence: it outlives a feed restart
            ex.on_books(books, now if books is recs else clock())
        if trades_first:
            got += poll_trades()
        if signal is not None:
            sigs = recs if primary is signal else signal.read_many(BATCH, timeout_s=0)
            if len(sigs):
                got += 1
                answered_seq = max(answered_seq, int(sigs["book_seq"].max()))
                ex.on_signals(sigs, now if sigs is recs else clock())
        if trade is not None and not trades_first:  # only counted: after the signals' orders are out
            got += poll_trades()
        ex.drain_events()
        if got:
            last_warm = now
        elif rehearse_ns and now - last_warm >= rehearse_ns:  # idle: keep the order path warm
            last_warm = now
            ex.rehearse(now)
        if now >= next_house:
            next_house = now + HOUSEKEEPING_NS
            ex.housekeeping(now)
        if now >= next_beat:
            next_beat = now + beat_ns
            ex.publish_status()
            if beat is not None:
                beat(**ex.counters())


def start_position(positions: Positions, lots: int, entry_px: float, time_ms: int) -> None:
    """Enter a position found at the venue at start as one fill at its entry price.

    The ledger then equals the venue from the first record on; that fill (order 0, trade 0, no
    fee) opens the trade record the next exit closes.
    """
    if not lots:
        return
    px = round(entry_px / positions.tick) if entry_px > 0 else 0
    side = BUY if lots > 0 else SELL
    positions.on_fill(Fill("", 0, 0, side, abs(lots), px, 0.0, False, time_ms))


def assemble(
    cfg,
    gw: Gateway,
    snap: VenueSnapshot,
    journal_rings: tuple,
    mode: str,
    log: logging.Logger,
    started_ns: int = 0,
) -> Executor:
    """The executor of a started gateway: ledger seeded from the venue's snapshot, strategy, risk.
    `started_ns`: when the process started (a restart's recovery runs from its predecessor's last
    status record, or from this when that has no time)."""
    from hftbot.exec.strategy import fee_model, make_strategy

    filters = gw.units.filters
    fees = fee_model(cfg.exec)
    now = time.time_ns()
    ids = ClientIds(now, salt=base36(os.getpid() % 1296))
    positions = Positions(filters.tick, filters.lot, fees, cfg.runtime.symbol, cfg.exec.strategy, ids.run)
    start_position(positions, snap.position.lots, snap.position.entry_px, snap.position.time_ms)
    for up in snap.open_orders:
        positions.on_update(up)
    strategy = make_strategy(cfg.exec, cfg.strategy, cfg.risk, fees)
    limits = parse_rate_limits(gw.exchange_info.get("rateLimits", []))
    risk = RiskManager(
        cfg.risk,
        filters,
        positions,
        ids,
        strategy=cfg.exec.strategy,
        needs_signal=bool(strategy and strategy.needs_signal),
        now_ns=now,
        rate_limits=limits or None,
    )
    journal = Journal(*journal_rings, filters.tick, filters.lot)
    if journal.previous is not None:  # an earlier run of this supervisor left its status: a restart
        gw.faults.seed(**fault_report(journal.previous))
        # from the predecessor's last sign of life (its last status) to reconciled, before any order
        gw.faults.observe("restart", int(journal.previous["publish_ns"]) or started_ns)
        gw.faults.recover("restart", time.time_ns())
        log.warning(
            "execution: restarted: reconciled first (venue position %d lots, %d order(s) cancelled, "
            "%d adopted); client ids of run %s",
            snap.position.lots,
            snap.cancelled_at_start,
            len(snap.open_orders),
            ids.run,
        )
    trade_log = TradeLog(trades_dir(cfg.runtime.data_dir, mode, cfg.runtime.symbol))
    log.info(
        "execution: %s on %s, venue position %d lots, %d open order(s) adopted, %d cancelled at start",
        cfg.exec.strategy,
        mode,
        snap.position.lots,
        len(snap.open_orders),
        snap.cancelled_at_start,
    )
    return Executor(
        gw, positions, risk, strategy, journal, log, kill_file(cfg), trade_log, cfg.exec.trades_flush_s,
        rehearse_ms=cfg.exec.rehearse_ms,
    )


def start_gateway(cfg, ctx, log: logging.Logger) -> tuple[Gateway | None, VenueSnapshot | None]:
    """Connect to the venue, retrying while it cannot be reached (beating meanwhile).

    In replay and paper the mirror venue listens only once the first book has arrived, and the
    replay starts after us; a venue that answers and refuses (keys, filters) is not retried.
    (None, None) when asked to stop first.
    """
    urls, sign = venue_urls(cfg, ctx.endpoints), signer(cfg)
    delay = 0.1
    while True:
        gw = Gateway(urls, sign, cfg.gateway, log)
        try:
            return gw, gw.start()
        except GatewayError as e:
            gw.close(cancel_all=False)
            if e.status:  # the venue answered: retrying would not help
                raise
            log.warning("execution: venue not reachable yet (%s): retrying in %.1f s", e, delay)
        end = time.monotonic() + delay
        while time.monotonic() < end:
            if ctx.stopping():
                return None, None
            ctx.beat()
            time.sleep(min(0.1, delay))
        delay = min(delay * 2, 1.0)


def main(ctx) -> None:
    """Process entry (`hftbot.exec.process:main`), spawned by the supervisor at stop rank 10."""
    started_ns = time.time_ns()
    short_gil_slices()
    cfg = ctx.config
    log = ctx.log
    ctx.beat()  # alive while the venue comes up (the supervisor starts the next process on it)
    gw, snap = start_gateway(cfg, ctx, log)
    if gw is None:
        return
    rings = []
    try:

        def attach(name: str):
            if name not in ctx.segments:
                return None
            rings.append(ctx.open_ring(name))
            return rings[-1]

        ex = assemble(cfg, gw, snap, (attach("order"), attach("exec")), ctx.mode, log, started_ns or time.time_ns())
        signals.signal(signals.SIGUSR1, lambda *_: setattr(ex, "kill_requested", "SIGUSR1"))
        # the readers start at the next record from here, once everything is built: a reader made
        # before `assemble` queued the books of those milliseconds, and the first orders of a run
        # went out on a book ~8 ms old (tick-to-order p99 7.8 ms in a 20 s run)
        wait, spins = cfg.ring.wait, cfg.ring.spin_count
        book = RingReader(attach("book"), wait=wait, start="next", spin_count=spins)
        trade_ring = attach("trade")
        trade = RingReader(trade_ring, wait="spin_yield", start="next") if trade_ring is not None else None
        signal_ring = attach("signal") if cfg.inference.enabled else None
        signal = (
            RingReader(signal_ring, wait=wait, start="next", spin_count=spins)
            if signal_ring is not None
            else None
        )
        gc.collect()
        gc.freeze()  # everything built so far lives for the run: later collections skip it
        ctx.beat(**ex.counters())
        ctx.serving()  # connected and assembled: trading from here (the restart-to-serving figure)
        run(ex, book, trade, signal, ctx.stopping, ctx.beat, cfg.runtime.heartbeat_s)
        log.info("execution: stopping: cancel all%s", ", flatten" if cfg.exec.flatten_on_stop else "")
        ex.shutdown(cfg.exec.flatten_on_stop, cfg.gateway.flatten_wait_s)
        ex.close()
        ctx.beat(**ex.counters())
        p = ex.positions
        log.info(
            "execution stopped: %d orders, %d fills, position %d lots (venue %d), net PnL %.4f USDT; "
            "refusals %s; faults %s",
            ex.orders,
            p.fills,
            p.position,
            gw.position.lots,
            p.net_pnl(ex.mark_px()),
            ex.risk.summary()["refusals"],
            {k: f["count"] for k, f in ex.faults.summary().items()},
        )
    finally:
        gw.close(cancel_all=True)
        for r in rings:
            r.close()
