"""Times given by people (command lines, configs) → integer ns since the epoch."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time_ns(text: str | None, what: str) -> int | None:
    """ISO-8601 (UTC when no zone is given) or integer ns since the epoch; None or "" → None.

    Whole seconds and microseconds are combined in integers (a float timestamp × 1e9 would round
    to ~256 ns at today's epoch). ValueError names `what` and the text."""
    if not text:
        return None
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is neither an ISO-8601 time nor integer ns since the epoch") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
