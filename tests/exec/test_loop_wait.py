"""Which ring the execution loop blocks on (`hftbot.exec.process.run`), over real shared-memory rings.

A strategy that needs signals blocks on the signal ring only while a signal is owed (a book was
read that no signal has answered); otherwise on the book ring, so a book-triggered order is
decided when its book arrives rather than at the next signal or the idle timeout. Asserted on the
waits themselves (which reader was asked to block), never on timings."""

from __future__ import annotations

import numpy as np
import pytest

from hftbot.exec import process as exec_process
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring, RingReader, RingWriter
from hftbot.records import SIGNAL_DTYPE, book_dtype


class Recording(RingReader):
    """A real reader that notes each blocking read (timeout > 0) in a shared log."""

    def __init__(self, ring: Ring, name: str, log: list[str]) -> None:
        super().__init__(ring, wait="block", start="next")
        self.name, self.log = name, log

    def read_many(self, max_n: int, timeout_s: float | None = None) -> np.ndarray:
        if timeout_s is None or timeout_s > 0:
            self.log.append(self.name)
        return super().read_many(max_n, timeout_s)


class Script:
    """The executor's side of the loop: it records what it was given, and between passes the
    test's script publishes the next records (what feed and inference would have done)."""

    def __init__(self, needs_signal: bool, steps: list, passes: int) -> None:
        self.needs_signal = needs_signal
        self.steps = steps
        self.passes = passes
        self.got: list[tuple[str, int]] = []
        self.n = 0
        self.rehearse_ns = 0  # no rehearsals unless a test asks for them
        self.rehearsed: list[int] = []  # the passes that rehearsed

    def rehearse(self, now) -> bool:
        self.rehearsed.append(self.n - 1)  # after this pass's drain_events
        return True

    def clock_ns(self) -> int:
        return 0

    def on_books(self, recs, now) -> None:
        self.got += [("book", int(s)) for s in recs["seq"]]

    def on_trades(self, recs, now) -> None:
        self.got += [("trade", int(s)) for s in recs["seq"]]

    def on_signals(self, recs, now) -> None:
        self.got += [("signal", int(s)) for s in recs["book_seq"]]

    def drain_events(self) -> None:
        if self.n < len(self.steps):
            self.steps[self.n]()
        self.n += 1

    def housekeeping(self, now) -> None:
        pass

    def publish_status(self) -> None:
        pass

    def counters(self) -> dict:
        return {}

    def stopping(self) -> bool:
        return self.n >= self.passes


@pytest.fixture
def rings():
    made = [Ring.create(shm.segment_name("loopbook"), book_dtype(10), 64),
            Ring.create(shm.segment_name("loopsig"), SIGNAL_DTYPE, 64)]
    yield made
    for r in made:
        r.close()
        r.unlink()


def _publishers(rings):
    bw, sw = RingWriter(rings[0]), RingWriter(rings[1])

    def book(seq: int):
        def go():
            rec = np.zeros((), book_dtype(10))
            rec["seq"] = seq
            bw.publish(rec)
        return go

    def signal(book_seq: int):
        def go():
            rec = np.zeros((), SIGNAL_DTYPE)
            rec["seq"], rec["book_seq"] = book_seq, book_seq
            sw.publish(rec)
        return go

    return book, signal


def test_a_signal_strategy_waits_on_books_unless_a_signal_is_owed(rings) -> None:
    book, signal = _publishers(rings)
    log: list[str] = []
    steps = [book(1), signal(1), book(2), lambda: None, signal(2), lambda: None]
    ex = Script(True, steps, passes=len(steps) + 1)
    exec_process.run(ex, Recording(rings[0], "book", log), None, Recording(rings[1], "signal", log), ex.stopping)
    # pass 1: nothing owed -> waits on books (times out: book 1 comes after it); pass 2 reads book 1
    # and then waits on the signal it owes; book 2 answered likewise; once answered, books again
    assert log == ["book", "book", "signal", "book", "signal", "signal", "book"]
    assert ex.got == [("book", 1), ("signal", 1), ("book", 2), ("signal", 2)]


def test_a_book_strategy_always_waits_on_books(rings) -> None:
    book, signal = _publishers(rings)
    log: list[str] = []
    steps = [book(1), signal(1), book(2), signal(2)]
    ex = Script(False, steps, passes=len(steps) + 1)
    exec_process.run(ex, Recording(rings[0], "book", log), None, Recording(rings[1], "signal", log), ex.stopping)
    assert set(log) == {"book"}
    assert sorted(ex.got) == sorted([("book", 1), ("signal", 1), ("book", 2), ("signal", 2)])


def test_a_ring_polled_after_another_stamps_its_records_when_it_read_them(rings) -> None:
    """An order's `read_ns` is when its record was read: a signal published while the pass was
    handling a book is stamped after that book, not with the pass's first clock reading."""
    book, signal = _publishers(rings)

    class Stamping(Script):
        ticks = 0

        def clock_ns(self) -> int:
            self.ticks += 1
            return self.ticks

        def on_books(self, recs, now) -> None:
            self.got.append(("book", now))
            signal(1)()  # inference answers while execution is still deciding on the book

        def on_signals(self, recs, now) -> None:
            self.got.append(("signal", now))

    ex = Stamping(False, [book(1)], passes=2)
    exec_process.run(ex, RingReader(rings[0], wait="block"), None, RingReader(rings[1], wait="block"), ex.stopping)
    (_, book_ns), (_, signal_ns) = ex.got
    assert signal_ns > book_ns


def test_the_order_path_is_rehearsed_only_on_idle_passes_at_most_every_rehearse_ms(rings) -> None:
    book, _ = _publishers(rings)

    class Clocked(Script):
        def clock_ns(self) -> int:
            return self.n * 400_000  # 0.4 ms per pass

    idle = lambda: None  # noqa: E731
    steps = [book(1), idle, idle, idle, idle, idle, idle, book(2), book(3), idle, idle, idle, idle]
    ex = Clocked(False, steps, passes=len(steps))
    ex.rehearse_ns = 1_000_000  # 1 ms: every third idle pass
    exec_process.run(ex, RingReader(rings[0], wait="block"), None, None, ex.stopping)
    # pass n reads what step n-1 published; books at passes 1, 8, 9: each restarts the 1 ms count
    # (the path has just run for real); rehearsals come 3 idle passes (1.2 ms) after the last read
    assert ex.got == [("book", 1), ("book", 2), ("book", 3)]
    assert ex.rehearsed == [4, 7, 12]


@pytest.mark.parametrize("reads_trades", [True, False])
def test_trades_a_strategy_ignores_are_counted_after_the_signals_orders(rings, reads_trades) -> None:
    """One pass reads a signal and a trade: a strategy that reads trades gets the trade first (its
    order in time); one that ignores them has the signal's order out before the trade is read."""
    from hftbot.records import TRADE_DTYPE

    trade_ring = Ring.create(shm.segment_name("looptrade"), TRADE_DTYPE, 64)
    try:
        book, signal = _publishers(rings)
        tw = RingWriter(trade_ring)

        def trade_and_signal():
            tw.publish(np.zeros((), TRADE_DTYPE))  # (the ring numbers it: seq 1)
            signal(1)()

        steps = [book(1), trade_and_signal, lambda: None]
        ex = Script(True, steps, passes=len(steps) + 1)
        ex.reads_trades = reads_trades
        exec_process.run(ex, RingReader(rings[0], wait="block", start="next"),
                         RingReader(trade_ring, wait="spin_yield", start="next"),
                         RingReader(rings[1], wait="block", start="next"), ex.stopping)
        want = [("trade", 1), ("signal", 1)] if reads_trades else [("signal", 1), ("trade", 1)]
        assert ex.got == [("book", 1), *want]
    finally:
        trade_ring.close()
        trade_ring.unlink()
