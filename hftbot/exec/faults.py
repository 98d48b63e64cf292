"""Faults: what the venue (or our own processes) can do wrong, what we do about each, and the count.

One table says it all. `KINDS` names every fault kind execution recognises, in a fixed order (the
status record carries one counter per kind by index: append new kinds at the end, never reorder);
`ACTIONS` says how each kind is handled; `CODES` maps the venue's error codes to a kind, and
`classify(status, code, request)` is the one place a refusal is turned into a kind, so neither the
gateway nor the executor decides by code itself. docs/faults.md has the table with its reasons.

- `unknown_outcome` (HTTP 503, -1006, -1007, no answer in time, the socket closed with the request
  in flight) → `settle`: `order.status` by client order id, never a resend; -2013 is believed only
  after a second query a little later (the query may overtake the order); until settled the order
  counts as open, on both sides.
- `timestamp` (-1021, -5028) → `resync_retry`: measure the server-time offset again, resend once with
  a fresh timestamp and signature (the venue refused it before executing: a resend is safe).
- `rate_limit` (HTTP 429 / 418, -1003, -1015, -1008) → `backoff` until the server's `Retry-After` /
  `retryAfter` (else `risk.rate_backoff_ms`, doubling); the limiter learns the venue's counts.
- `margin` (-2019, -2018) → `pause_entries`: the order is dead, position-increasing orders wait
  `risk.margin_backoff_ms`, exits go on.
- `post_only` (-5022) → `requote`: the order is dead; the strategy sees it gone and decides again on
  the next record (a requote at the new touch, or nothing when the edge has gone).
- `min_notional` (-4164) → `skip`: the order is dead, never resent.
- `precision` (-1111, -4014, -4023) → `halt`: our tick / step handling is wrong.
- `unknown_order` (-2011 on a cancel, -2013 on a modify) → `reconcile`: query it, adopt its state.
- `rejected` (any other refusal) → `reject`: counted; a refused place is dead.
- `user_stream` (a drop), `listen_key` (`listenKeyExpired`, -1125) → `renew_stream`: a new listenKey,
  reconnect, full reconciliation before trading resumes; `ws_api` (a drop) → `reconnect`: log on
  again, full reconciliation before trading resumes.
- `duplicate_fill` → `ignore`; `late_fill` → `replay` (inserted in venue order, ledger replayed).
- `stale_book` (no valid fresh book: the feed died or resyncs) → `hold`: no order until a valid book;
  `stale_signal` (a signal strategy without fresh usable signals) → `hold_entries`: exits go on.
- `restart` (execution started after an earlier run) → `reconcile` before the first order;
  `dead_man` (a countdownCancelAll refresh failed) → `retry`; `mismatch` (our position differs from
  the venue's after the settling time) → `reconcile`.

`FaultLog` counts them: each observation, each recovery, and how long recovery took (ms) from the
fault to the state it restores (an unknown order settled; the resend after -1021 answered; a
request answered after the backoff; the stream back and reconciled; a valid book again). Pure: no
I/O, no clock.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from hftbot.records import MAX_FAULT_KINDS

KINDS = (
    "unknown_outcome",
    "timestamp",
    "rate_limit",
    "margin",
    "post_only",
    "min_notional",
    "precision",
    "unknown_order",
    "rejected",
    "user_stream",
    "listen_key",
    "ws_api",
    "duplicate_fill",
    "late_fill",
    "stale_book",
    "stale_signal",
    "restart",
    "dead_man",
    "mismatch",
)
INDEX = {k: i for i, k in enumerate(KINDS)}
assert len(KINDS) <= MAX_FAULT_KINDS, "the status record has no slot for every fault kind"

SETTLE = "settle"
RESYNC_RETRY = "resync_retry"
BACKOFF = "backoff"
PAUSE_ENTRIES = "pause_entries"
REQUOTE = "requote"
SKIP = "skip"
HALT = "halt"
RECONCILE = "reconcile"
REJECT = "reject"
RENEW_STREAM = "renew_stream"
RECONNECT = "reconnect"
IGNORE = "ignore"
REPLAY = "replay"
HOLD = "hold"
HOLD_ENTRIES = "hold_entries"
RETRY = "retry"

ACTIONS = {
    "unknown_outcome": SETTLE,
    "timestamp": RESYNC_RETRY,
    "rate_limit": BACKOFF,
    "margin": PAUSE_ENTRIES,
    "post_only": REQUOTE,
    "min_notional": SKIP,
    "precision": HALT,
    "unknown_order": RECONCILE,
    "rejected": REJECT,
    "user_stream": RENEW_STREAM,
    "listen_key": RENEW_STREAM,
    "ws_api": RECONNECT,
    "duplicate_fill": IGNORE,
    "late_fill": REPLAY,
    "stale_book": HOLD,
    "stale_signal": HOLD_ENTRIES,
    "restart": RECONCILE,
    "dead_man": RETRY,
    "mismatch": RECONCILE,
}

CODES = {
    -1006: "unknown_outcome",
    -1007: "unknown_outcome",
    -1021: "timestamp",
    -5028: "timestamp",
    -1003: "rate_limit",
    -1015: "rate_limit",
    -1008: "rate_limit",
    -2018: "margin",
    -2019: "margin",
    -5022: "post_only",
    -4164: "min_notional",
    -1111: "precision",
    -4014: "precision",
    -4023: "precision",
    -1125: "listen_key",
}

# Kinds whose refusal means the request was not executed: a refused place never existed.
DEAD = frozenset(("timestamp", "rate_limit", "margin", "post_only", "min_notional", "precision", "rejected"))


def classify(status: int, code: int, request: str = "place") -> str:
    """The fault kind of a refusal: HTTP `status` (0: none), Binance `code`, and what was asked
    (`"place"`, `"cancel"`, `"modify"`, `"settle"`, ...).

    Any 503 is an unknown outcome: Binance's "Service Unavailable" 503 is a definite failure, but
    querying is always safe (the query then says -2013) and telling the two apart by message is not.
    """
    if status in (429, 418):
        return "rate_limit"
    kind = CODES.get(code)
    if kind is not None:
        return kind
    if status == 503:
        return "unknown_outcome"
    if (code == -2011 and request == "cancel") or (code == -2013 and request in ("modify", "cancel")):
        return "unknown_order"
    return "rejected"


def action(kind: str) -> str:
    return ACTIONS[kind]


class FaultLog:
    """Per kind: faults seen, recovered, given up on, open now, and recovery times (ms).

    An episode is keyed by `(kind, key)` (a client order id for order faults, "" for a stream):
    `observe` counts every sighting and opens the episode if it is not open, `recover` closes it
    and records how long it took, `fail` closes it without recovery (e.g. -1021 twice), `event`
    is a fault that is handled the moment it is seen (a duplicate fill: 0 ms).
    """

    def __init__(self, keep: int = 4096) -> None:
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.recovered: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.failed: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._open: dict[tuple[str, str], int] = {}
        self._ms: dict[str, deque[float]] = {k: deque(maxlen=keep) for k in KINDS}
        self.max_ms: dict[str, float] = dict.fromkeys(KINDS, 0.0)

    def observe(self, kind: str, now_ns: int, key: str = "") -> bool:
        """Count one sighting; True when it opened a new episode."""
        self.counts[kind] += 1
        k = (kind, key)
        if k in self._open:
            return False
        self._open[k] = now_ns
        return True

    def is_open(self, kind: str, key: str = "") -> bool:
        return (kind, key) in self._open

    def open_keys(self, kind: str) -> list[str]:
        return [key for (k, key) in self._open if k == kind]

    def open_count(self, kind: str) -> int:
        return sum(1 for (k, _) in self._open if k == kind)

    def recover(self, kind: str, now_ns: int, key: str = "") -> float | None:
        """Close the episode; returns its recovery time in ms (None if none was open)."""
        start = self._open.pop((kind, key), None)
        if start is None:
            return None
        ms = max(0.0, (now_ns - start) / 1e6)
        self.recovered[kind] += 1
        self._ms[kind].append(ms)
        if ms > self.max_ms[kind]:
            self.max_ms[kind] = ms
        return ms

    def fail(self, kind: str, key: str = "") -> None:
        """Close the episode without recovery (the handling gave up: counted in `failed`)."""
        if self._open.pop((kind, key), None) is not None:
            self.failed[kind] += 1

    def event(self, kind: str, n: int = 1) -> None:
        """Faults handled as they are seen (a duplicate fill is dropped: recovered in 0 ms)."""
        self.counts[kind] += n
        self.recovered[kind] += n

    def p50_ms(self, kind: str) -> float:
        v = self._ms[kind]
        return float(np.median(np.fromiter(v, dtype=np.float64, count=len(v)))) if v else float("nan")

    def seed(self, counts: dict[str, int], recovered: dict[str, int] | None = None,
             failed: dict[str, int] | None = None, p50_ms: dict[str, float] | None = None,
             max_ms: dict[str, float] | None = None) -> None:
        """Carry an earlier run's report (a restarted process continues it): counts as they were,
        the longest recovery, and its median standing for each of its recoveries (the samples
        themselves died with the process, so the combined median is an approximation)."""
        for k, n in counts.items():
            if k in self.counts:
                self.counts[k] += int(n)
        for k, n in (failed or {}).items():
            if k in self.failed:
                self.failed[k] += int(n)
        for k, n in (recovered or {}).items():
            if k in self.recovered:
                self.recovered[k] += int(n)
                p50 = (p50_ms or {}).get(k, float("nan"))
                if n and p50 == p50:
                    self._ms[k].extend([float(p50)] * min(int(n), self._ms[k].maxlen or 0))
        for k, v in (max_ms or {}).items():
            if k in self.max_ms and v > self.max_ms[k]:
                self.max_ms[k] = float(v)

    def summary(self) -> dict[str, dict]:
        """Kinds seen so far: `{kind: {count, recovered, failed, open, action, recovery_ms: {p50, max}}}`."""
        out = {}
        for k in KINDS:
            n = self.counts[k]
            if not n:
                continue
            out[k] = {
                "count": n,
                "recovered": self.recovered[k],
                "failed": self.failed[k],
                "open": self.open_count(k),
                "action": ACTIONS[k],
                "recovery_ms": {"p50": round(self.p50_ms(k), 3), "max": round(self.max_ms[k], 3)},
            }
        return out
