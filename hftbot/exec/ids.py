"""Client order ids: unique in a run and across restarts, within Binance's 36-character alphabet.

An id is `<prefix>-<run>-<n>`: `run` is the run's start time in nanoseconds in base 36 (13
characters until the year 2087), optionally followed by a salt the process draws at start (two
processes started in the same nanosecond, a clock stepped back), and `n` a counter in base 36.
A restarted process has a later start time, so its ids never repeat the previous run's, which
is what settling an unknown outcome by client order id (issue 13) and the venue's -4116
"duplicated" check need. Binance's rule: `^[\\.A-Z\\:/a-z0-9_-]{1,36}$`.

Pure: the start time and the salt come from the caller.
"""

from __future__ import annotations

import re

MAX_LEN = 36
VALID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int) -> str:
    if n < 0:
        raise ValueError(f"base36: {n} is negative")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if not n:
            return out


class ClientIds:
    """`next()` gives a fresh client order id; `run` names this run in every id and in the trade log."""

    def __init__(self, start_ns: int, salt: str = "", prefix: str = "hb") -> None:
        self.run = base36(start_ns) + salt
        self.prefix = f"{prefix}-{self.run}-"
        room = MAX_LEN - len(self.prefix)
        if room < 6 or not VALID.match(self.prefix):
            raise ValueError(
                f"client ids: prefix {self.prefix!r} must use [.A-Za-z:/0-9_-] and leave 6 of 36 characters"
            )
        self._max = 36**room - 1
        self.issued = 0

    def next(self) -> str:
        self.issued += 1
        if self.issued > self._max:
            raise OverflowError(f"client ids: run {self.run} has issued {self._max} ids")
        return self.prefix + base36(self.issued)

    def owns(self, client_id: str) -> bool:
        """Whether this run issued `client_id` (a reconciled open order may be another run's)."""
        return client_id.startswith(self.prefix)
