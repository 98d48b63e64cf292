"""The trade log: closed round trips (`positions.TradeRecord`) as Parquet and CSV, crash-safe.

Layout: `<data_dir>/trades/<source>/<SYMBOL>/parquet/trades-<YYYY-MM-DD>.parquet` and
`.../csv/trades-<YYYY-MM-DD>.csv` (apart, so a folder read picks one format), one pair per UTC
day of the trades' exit time (`source` as for recordings: sim, replay, paper, testnet, live —
never mixed, so a simulated trade cannot inflate a live win rate). One row per trade, the columns
of `TradeRecord` plus `entry_time` / `exit_time` (UTC timestamps of `entry_ms` / `exit_ms`);
pandas reads either file without this package:

    pd.read_parquet("data/trades/live/SOLUSDT/parquet")    # every day
    (df.net_pnl > 0).mean()                                 # win rate, net of fees

Crash safety: a day's files are rewritten whole on each `flush` through `hftbot.atomic` (temporary
name, fsync, rename), so a visible file is always complete and a kill -9 loses at most the trades
since the last flush (`exec.trades_flush_s`). A day's file is read back before the first write of
that day, so a restarted process continues it (each row names its `run`). Trades are rare next to
book updates (one per round trip), so rewriting a day is cheap; only the newest day is kept in
memory after a flush.

It holds no secret and writes none: the columns are the trade's figures, tags and ids only.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hftbot.atomic import atomic_path
from hftbot.exec.positions import TradeRecord

_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string()}
_HINTS = typing.get_type_hints(TradeRecord)
SCHEMA = pa.schema(
    [(f.name, _TYPES[_HINTS[f.name]]) for f in dataclasses.fields(TradeRecord)]
    + [("entry_time", pa.timestamp("ms", tz="UTC")), ("exit_time", pa.timestamp("ms", tz="UTC"))]
)
COLUMNS = tuple(SCHEMA.names)


def trades_dir(data_dir: str | os.PathLike, source: str, symbol: str) -> Path:
    """`<data_dir>/trades/<source>/<SYMBOL>`."""
    return Path(data_dir) / "trades" / source / symbol.upper()


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def trades_table(rows: list[TradeRecord]) -> pa.Table:
    """Trade records as the one Parquet/CSV schema (the trade log and the backtest report share it)."""
    cols: dict[str, list] = {f: [] for f in COLUMNS}
    for t in rows:
        for f in dataclasses.fields(TradeRecord):
            cols[f.name].append(getattr(t, f.name))
        cols["entry_time"].append(t.entry_ms)
        cols["exit_time"].append(t.exit_ms)
    return pa.table(cols, schema=SCHEMA)


class TradeLog:
    """Appends trade records; `flush` makes them durable. Not thread-safe (one executor owns it)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        for sub in ("parquet", "csv"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self._tables: dict[str, pa.Table] = {}
        self._pending: dict[str, list[TradeRecord]] = {}
        self.rows_written = 0
        self.flushes = 0

    def path(self, day: str, ext: str = "parquet") -> Path:
        return self.folder / ext / f"trades-{day}.{ext}"

    def append(self, trades: Iterable[TradeRecord]) -> int:
        """Queue closed trades for the next flush; returns how many."""
        n = 0
        for t in trades:
            self._pending.setdefault(_day(t.exit_ms), []).append(t)
            n += 1
        return n

    def _existing(self, day: str) -> pa.Table:
        table = self._tables.get(day)
        if table is not None:
            return table
        p = self.path(day)
        if p.exists():
            try:
                return pq.read_table(p).select(list(COLUMNS)).cast(SCHEMA)
            except (pa.ArrowInvalid, KeyError, OSError) as e:
                raise ValueError(f"trade log: {p} cannot be read as a trade log ({e}); move it away") from None
        return SCHEMA.empty_table()

    def flush(self) -> int:
        """Rewrite the days that have new trades (Parquet and CSV, atomically); returns rows added."""
        if not self._pending:
            return 0
        added = 0
        for day, rows in sorted(self._pending.items()):
            table = pa.concat_tables([self._existing(day), trades_table(rows)])
            with atomic_path(self.path(day)) as tmp:
                pq.write_table(table, tmp, compression="zstd")
            with atomic_path(self.path(day, "csv")) as tmp:
                pacsv.write_csv(table, tmp)
            self._tables[day] = table
            added += len(rows)
        self._pending.clear()
        newest = max(self._tables)
        self._tables = {newest: self._tables[newest]}
        self.rows_written += added
        self.flushes += 1
        return added

    def close(self) -> None:
        self.flush()
