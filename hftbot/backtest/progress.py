"""A progress bar for long replays: one line redrawn in place on a terminal, nothing otherwise.

The replay loop calls `progress(done, total)` (events or rows done of the run's total) as often
as it likes; the bar redraws at most every `min_interval_s` so the callback costs nothing
measurable, and it stays silent when its stream is not a terminal (a pipe, a log file, a test),
so logs carry no carriage-return noise. It never touches stdout's content otherwise: it writes
only `\\r`-redrawn lines and one final newline on `close()`.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


def _fmt_s(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressBar:
    """`bar(done, total)` draws `label [#####.....] 42.0%  1.2M/2.9M  3.4M ev/s  eta 0:01`; with
    `total` <= 0 (not known up front) `label  1.2M ev  3.4M ev/s  0:01`."""

    def __init__(self, label: str = "backtest", stream: TextIO | None = None, min_interval_s: float = 0.1,
                 unit: str = "ev", clock=time.monotonic) -> None:
        self.stream = sys.stdout if stream is None else stream
        try:
            self.enabled = bool(self.stream.isatty())
        except (AttributeError, ValueError):  # closed or not a file
            self.enabled = False
        self.label = label
        self.unit = unit
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._t0 = clock()
        self._last_draw = -float("inf")
        self._drawn = False
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if not self.enabled:
            return
        now = self._clock()
        if now - self._last_draw < self.min_interval_s and (done < total or total <= 0):
            return
        self._last_draw = now
        self.stream.write("\r" + self.line(now))
        self.stream.flush()
        self._drawn = True

    def line(self, now: float | None = None) -> str:
        """The bar as text (what is drawn)."""
        now = self._clock() if now is None else now
        elapsed = now - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total <= 0:  # total unknown (a replay that reads its files as it goes): count and rate
            return f"{self.label}  {_si(self.done)} {self.unit}  {_si(rate)} {self.unit}/s  {_fmt_s(elapsed)}"
        frac = min(1.0, self.done / self.total)
        fill = round(frac * WIDTH)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (f"{self.label} [{'#' * fill}{'.' * (WIDTH - fill)}] {frac * 100:5.1f}%  "
                f"{_si(self.done)}/{_si(self.total)}  {_si(rate)} {self.unit}/s  "
                f"{'eta ' + _fmt_s(eta) if self.done < self.total else 'in ' + _fmt_s(elapsed)}")

    def close(self) -> None:
        """Draw the final state and end the line (only when something was drawn)."""
        if self.enabled and self._drawn:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _si(v: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.1f}{suffix}"
    return f"{v:.0f}"
