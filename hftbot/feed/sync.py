"""Snapshot/diff synchronisation of the USDⓈ-M local book, as a pure state machine.

The documented futures procedure (reference/binance-usdm.md section 2):
buffer diffs -> snapshot (lastUpdateId) -> drop buffered events with ``u < lastUpdateId`` -> the
first applied event must satisfy ``U <= lastUpdateId <= u`` -> every later event must have
``pu == previous u`` -> otherwise the book is invalid: buffer again and take a new snapshot.
Not the spot rules (``u <= lastUpdateId``, ``U == prev u + 1``) - a common porting bug.

Two refinements, both safe by construction:
- an event with ``u <= last applied u`` (a duplicate, or a late straggler) carries nothing the book
  does not already include, so it is dropped and counted instead of forcing a resync;
- a snapshot that no buffered event can straddle (first event's ``U > lastUpdateId``: the
  snapshot is older than the stream) is discarded and a new one requested; the buffer is kept.

The machine says what to do (``Action``); the caller owns the book and the socket. It must never
do I/O or look at prices. ``SnapshotLimiter`` keeps snapshot requests inside a weight budget.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum
from typing import Any


class Action(IntEnum):
    BUFFER = 0  # out of sync: keep the event for after the snapshot
    APPLY = 1  # in sync: apply it
    APPLY_FIRST = 2  # the first event after a snapshot: apply it; the book is valid again (resync)
    DROP = 3  # older than the book: ignore
    RESYNC = 4  # the book is invalid from here: event buffered, request a new snapshot


class State(IntEnum):
    WAIT_SNAPSHOT = 0  # buffering, a snapshot is needed
    WAIT_FIRST = 1  # snapshot loaded, waiting for the event that straddles it
    SYNCED = 2


class DepthSync:
    """The futures diff-depth procedure; counts every deviation it sees."""

    def __init__(self, max_buffer: int = 100_000) -> None:
        self.state = State.WAIT_SNAPSHOT
        self.last_u = 0
        self.snapshot_id = 0
        self.buffer: deque[tuple[int, int, int, Any]] = deque(maxlen=max_buffer)
        self.ever_synced = False
        self.gaps = 0  # pu chain breaks while in sync
        self.resyncs = 0  # new snapshots needed after the first one (gaps, stale snapshots, resets)
        self.stale_snapshots = 0  # snapshots older than every buffered event
        self.dropped = 0  # events older than the book (u < lastUpdateId, duplicates)
        self.buffer_overflow = 0

    @property
    def synced(self) -> bool:
        return self.state == State.SYNCED

    @property
    def needs_snapshot(self) -> bool:
        return self.state == State.WAIT_SNAPSHOT

    def _lose_sync(self) -> None:
        if self.ever_synced or self.snapshot_id:
            self.resyncs += 1
        self.state = State.WAIT_SNAPSHOT
        self.buffer.clear()

    def reset(self) -> None:
        """Forget everything (reconnect): the next book needs a fresh snapshot."""
        self._lose_sync()

    def on_diff(self, first: int, last: int, prev: int, item: Any = None) -> Action:
        """Classify one diff event (U, u, pu); `item` is kept when buffered."""
        if self.state == State.SYNCED:
            if prev == self.last_u:
                self.last_u = last
                return Action.APPLY
            if last <= self.last_u:
                self.dropped += 1
                return Action.DROP
            self.gaps += 1
            self._lose_sync()
            self._buffer(first, last, prev, item)
            return Action.RESYNC
        if self.state == State.WAIT_FIRST:
            if last < self.snapshot_id:
                self.dropped += 1
                return Action.DROP
            if first <= self.snapshot_id:
                self.state = State.SYNCED
                self.ever_synced = True
                self.last_u = last
                return Action.APPLY_FIRST
            self.stale_snapshots += 1
            self._lose_sync()
            self._buffer(first, last, prev, item)
            return Action.RESYNC
        self._buffer(first, last, prev, item)
        return Action.BUFFER

    def _buffer(self, first: int, last: int, prev: int, item: Any) -> None:
        if len(self.buffer) == self.buffer.maxlen:
            self.buffer_overflow += 1  # the oldest goes; it is older than any useful snapshot
        self.buffer.append((first, last, prev, item))

    def on_snapshot(self, last_update_id: int) -> list[tuple[int, int, int, Any]]:
        """Take a snapshot; returns the buffered events to feed back through on_diff, in order.

        The caller loads the snapshot into the book first, then replays the returned events.
        """
        self.snapshot_id = int(last_update_id)
        self.state = State.WAIT_FIRST
        pending = list(self.buffer)
        self.buffer.clear()
        return pending


class SnapshotLimiter:
    """Keeps snapshot requests inside a request-weight budget per minute, with backoff.

    Binance counts REQUEST_WEIGHT per IP per minute (2400); a 1000-level snapshot weighs 20.
    Repeated snapshots (resync storms) back off exponentially from `min_interval_s`.
    """

    def __init__(
        self,
        weight: int = 20,
        budget_per_min: int = 200,
        min_interval_s: float = 1.0,
        max_interval_s: float = 60.0,
    ) -> None:
        if weight <= 0 or budget_per_min < weight:
            raise ValueError(f"snapshot weight {weight} does not fit budget {budget_per_min}/min")
        self.weight = weight
        self.budget = budget_per_min
        self.min_interval = min_interval_s
        self.max_interval = max_interval_s
        self.interval = 0.0
        self.sent: deque[float] = deque()
        self.last = -1e18

    def delay(self, now: float) -> float:
        """Seconds to wait before the next snapshot request may go out (0: now)."""
        while self.sent and now - self.sent[0] >= 60.0:
            self.sent.popleft()
        wait = max(0.0, self.last + self.interval - now)
        if (len(self.sent) + 1) * self.weight > self.budget:
            wait = max(wait, self.sent[0] + 60.0 - now)
        return wait

    def record(self, now: float) -> None:
        """A request went out: count its weight and lengthen the backoff."""
        self.sent.append(now)
        self.last = now
        self.interval = min(self.max_interval, max(self.min_interval, self.interval * 2))

    def success(self) -> None:
        """The book synced: the next resync may go quickly again."""
        self.interval = 0.0
