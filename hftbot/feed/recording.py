"""Recordings on disk: raw exchange messages and published books as Parquet, crash-safe.

Layout (docs/contracts.md "Recordings"): ``<root>/<source>/<SYMBOL>/<YYYY-MM-DD>/`` (UTC date of
the receive time), zstd Parquet readable with pandas alone:

- ``raw-<YYYYmmddTHHMMSS>-<n>.parquet``: ``recv_ns`` int64, ``stream`` string, ``payload`` string;
- ``book-<YYYYmmddTHHMMSS>-<n>.parquet``: every scalar field of the book record, ``bid_px_0..`` /
  ``bid_qty_0..`` / ``ask_px_0..`` / ``ask_qty_0..`` as floats (price, quantity).

Sources never mix (`SOURCES`: ``sim`` the simulator and the offline generator, ``replay`` books
republished from a recording, ``binance`` real Binance data (paper and live), ``testnet``), nor do
symbols: every file's Parquet schema metadata carries ``hftbot.symbol`` and ``hftbot.source``, a
raw writer refuses a frame of another symbol's stream, and the readers (`iter_raw`, `read_book`,
`hftbot.feed.capture.iter_blocks`) refuse input that mixes symbols, naming the files and symbols
(`RecordingError`). `recording_symbol(paths)` tells which one a path holds.

Crash safety (the decision): a writer keeps rows in memory and, every ``flush_s`` seconds of wall
time (or when the buffer grows large), writes them as one *part* file ``...-<n>.parquet`` with
``n >= 1``: written to a dot-prefixed temporary name, fsynced, then atomically renamed. A kill -9
therefore loses at most the rows of the last ``flush_s`` seconds and every visible file is whole
(pyarrow/pandas ignore dot-files when reading a folder). The segment key ``<YYYYmmddTHHMMSS>`` is
the start of the rotation period (``rotate_s``) that holds the row's ``recv_ns`` - keyed on the
receive time, not the wall clock, so an offline generator can write simulated time.

At rotation (and on ``close``) the parts of the finished segment are compacted into one file
``...-0.parquet`` whose Parquet metadata records ``hftbot.compacted_through`` = the highest part
number it contains; then those parts are deleted. A crash between the rename and the deletes
leaves duplicates on disk only until the next writer starts: readers here (``iter_raw``,
``read_book``) skip parts already compacted, and a new writer deletes them and stale temp files.

This module must never drop a row silently, never leave a half-written file under a visible name,
and never read the package's shared config: it is plain file I/O usable by any process.
"""

from __future__ import annotations

import gzip
import re
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hftbot.atomic import atomic_path
from hftbot.records import ORDER_DTYPE, book_dtype, book_levels

NS = 1_000_000_000
DAY_NS = 86_400 * NS
MAX_BUFFER_ROWS = 250_000  # flush early past this many rows so memory stays bounded
_COMPACTED_KEY = b"hftbot.compacted_through"
SYMBOL_KEY = b"hftbot.symbol"
SOURCE_KEY = b"hftbot.source"
_NAME_RE = re.compile(r"^(raw|book|orders)-(\d{8}T\d{6})-(\d+)\.parquet$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,32}$")

SOURCES = ("sim", "replay", "binance", "testnet")
_MODE_SOURCE = {"sim": "sim", "replay": "replay", "paper": "binance", "live": "binance", "testnet": "testnet"}


def source_for_mode(mode: str) -> str:
    """The recordings source of a runtime mode: paper and live record real Binance data."""
    try:
        return _MODE_SOURCE[mode]
    except KeyError:
        raise ValueError(f"no recordings source for mode {mode!r}; modes: {', '.join(_MODE_SOURCE)}") from None


def recordings_dir(root: Path | str, source: str, symbol: str) -> Path:
    """`<root>/<source>/<SYMBOL>`: where one source's recordings of one symbol go."""
    if source not in SOURCES:
        raise ValueError(f"recordings source must be one of {', '.join(SOURCES)}, got {source!r}")
    sym = symbol.upper()
    if not _SYMBOL_RE.match(sym):
        raise ValueError(f"recordings symbol must be 2-32 letters or digits, got {symbol!r}")
    return Path(root) / source / sym


def stream_symbol(stream: str) -> str:
    """The symbol of a combined-stream name (`solusdt@depth@100ms` -> SOLUSDT; '' if none)."""
    at = stream.find("@")
    return stream[:at].upper() if at > 0 else ""

RAW_SCHEMA = pa.schema([("recv_ns", pa.int64()), ("stream", pa.string()), ("payload", pa.string())])


class RecordingError(ValueError):
    """A recording or capture file that cannot be read as what it claims to be."""


class MixedSymbolsError(RecordingError):
    """Recordings of more than one symbol were given together (readers refuse to mix them)."""


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // NS, tz=UTC)


def _write_atomic(table: pa.Table, path: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    """Write a Parquet file so that the visible name only ever holds a whole file."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _compacted_through(path: Path) -> int:
    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(_COMPACTED_KEY, b"0"))


class _SegmentWriter:
    """Shared machinery: buffer rows, write part files per flush, compact at rotation."""

    kind = ""

    def __init__(self, root: Path | str, symbol: str, flush_s: float, rotate_s: float, source: str,
                 compact_in_background: bool = False) -> None:
        if not flush_s > 0:
            raise ValueError(f"recording flush_s must be > 0, got {flush_s}")
        if not rotate_s >= 1:
            raise ValueError(f"recording rotate_s must be >= 1, got {rotate_s}")
        self.dir = recordings_dir(root, source, symbol)
        self.root = Path(root)
        self.source = source
        self.symbol = symbol.upper()
        self._meta = {SYMBOL_KEY: self.symbol.encode(), SOURCE_KEY: source.encode()}
        self.flush_s = float(flush_s)
        self.rotate_ns = int(rotate_s * NS)
        self._key: tuple[str, int] | None = None  # (date folder, period start ns)
        self._part = 0
        self._chunks: list = []
        self._rows = 0
        self._last_flush = time.monotonic()
        self._closed = False
        self.rows_written = 0
        self.files_written = 0
        # compacting a finished segment reads all its parts: in a thread, flushes go on meanwhile
        # (the raw sink's kill -9 bound must not grow by a compaction's duration at rotation)
        self._compact_in_background = compact_in_background
        self._compactors: list[threading.Thread] = []
        self.compact_error: BaseException | None = None

    # -- naming -------------------------------------------------------------------------------
    def _seg_key(self, recv_ns: int) -> tuple[str, int]:
        day = recv_ns - recv_ns % DAY_NS
        start = max(day, recv_ns - recv_ns % self.rotate_ns)  # a period never spans two dates
        return _utc(start).strftime("%Y-%m-%d"), start

    def _folder(self, key: tuple[str, int]) -> Path:
        return self.dir / key[0]

    def _stem(self, key: tuple[str, int]) -> str:
        return f"{self.kind}-{_utc(key[1]).strftime('%Y%m%dT%H%M%S')}"

    def _existing(self, key: tuple[str, int]) -> dict[int, Path]:
        folder = self._folder(key)
        stem = self._stem(key)
        out: dict[int, Path] = {}
        if folder.is_dir():
            for p in folder.iterdir():
                m = _NAME_RE.match(p.name)
                if m and p.name.startswith(stem + "-"):
                    out[int(m.group(3))] = p
        return out

    def _open_segment(self, key: tuple[str, int]) -> None:
        """Start a segment; clean up what a crashed writer left and continue its numbering."""
        folder = self._folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        stem = self._stem(key)
        for p in folder.glob(f".{stem}-*.tmp"):
            p.unlink(missing_ok=True)
        files = self._existing(key)
        through = _compacted_through(files[0]) if 0 in files else 0
        for n, p in files.items():
            if 0 < n <= through:
                p.unlink(missing_ok=True)  # already inside the compacted file
        self._key = key
        self._part = max([through, *files.keys()])

    # -- rows -----------------------------------------------------------------------------------
    def _route(self, first_ns: int, last_ns: int) -> None:
        key = self._seg_key(first_ns)
        if self._key is None:
            self._open_segment(key)
        elif key[1] > self._key[1]:
            self.flush()
            self._compact_finished(self._key)
            self._open_segment(key)

    def _add(self, chunk, n: int) -> None:
        self._chunks.append(chunk)
        self._rows += n
        if self._rows >= MAX_BUFFER_ROWS or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def maybe_flush(self) -> None:
        """Flush if flush_s has passed; call it from idle loops so quiet periods are saved too."""
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def _table(self) -> pa.Table:
        raise NotImplementedError

    def flush(self) -> None:
        """Write buffered rows as one whole part file (no-op when empty)."""
        self._last_flush = time.monotonic()
        if not self._rows or self._key is None:
            return
        table = self._table()
        self._part += 1
        _write_atomic(table, self._folder(self._key) / f"{self._stem(self._key)}-{self._part}.parquet", self._meta)
        self.rows_written += table.num_rows
        self.files_written += 1
        self._chunks = []
        self._rows = 0

    def _compact_finished(self, key: tuple[str, int]) -> None:
        if not self._compact_in_background:
            self._compact(key)
            return
        self._compactors = [t for t in self._compactors if t.is_alive()]

        def run() -> None:
            try:
                self._compact(key)
            except BaseException as e:  # the parts stay on disk, readable: nothing is lost
                self.compact_error = e

        t = threading.Thread(target=run, name=f"compact-{self.kind}", daemon=True)
        self._compactors.append(t)
        t.start()

    def _compact(self, key: tuple[str, int]) -> None:
        """Merge a finished segment's parts into `-0`; delete parts only after the rename."""
        files = self._existing(key)
        parts = sorted(n for n in files if n > 0)
        if not parts:
            return
        tables = [pq.read_table(files[n]) for n in ([0] if 0 in files else []) + parts]
        table = pa.concat_tables(tables, promote_options="default")
        _write_atomic(
            table.replace_schema_metadata(None),
            self._folder(key) / f"{self._stem(key)}-0.parquet",
            {**self._meta, _COMPACTED_KEY: str(parts[-1]).encode()},
        )
        for n in parts:
            files[n].unlink(missing_ok=True)

    def close(self) -> None:
        """Flush and compact the open segment (and wait for background compactions). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        if self._key is not None:
            self._compact(self._key)
        for t in self._compactors:
            t.join()
        if self.compact_error is not None:
            raise self.compact_error

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RawRecordingWriter(_SegmentWriter):
    """Raw exchange messages: (local receive ns, stream name, exact JSON text)."""

    kind = "raw"

    def __init__(self, root: Path | str, symbol: str, flush_s: float = 5.0, rotate_s: float = 3600.0, *,
                 source: str, compact_in_background: bool = False):
        super().__init__(root, symbol, flush_s, rotate_s, source, compact_in_background)
        self._stream_ok = ""  # the last stream name checked against the symbol

    def append(self, recv_ns: int, stream: str, payload: str | bytes) -> None:
        """Buffer one message; the segment (date folder, rotation) follows recv_ns. A message of
        another symbol's stream is refused (RecordingError): recordings never mix symbols."""
        if self._closed:
            raise RuntimeError("RawRecordingWriter is closed")
        if stream != self._stream_ok:
            other = stream_symbol(stream)
            if other and other != self.symbol:
                raise RecordingError(
                    f"raw recording {self.dir}: a {other} message (stream {stream!r}) in a {self.symbol} "
                    f"recording; recordings never mix symbols"
                )
            self._stream_ok = stream
        if isinstance(payload, (bytes, bytearray, memoryview)):
            payload = bytes(payload).decode("utf-8", errors="replace")
        recv_ns = int(recv_ns)
        self._route(recv_ns, recv_ns)
        self._add((recv_ns, stream, payload), 1)

    def _table(self) -> pa.Table:
        ns, streams, payloads = zip(*self._chunks, strict=True)
        return pa.Table.from_arrays(
            [pa.array(ns, pa.int64()), pa.array(streams, pa.string()), pa.array(payloads, pa.string())],
            schema=RAW_SCHEMA,
        )


def book_to_table(records: np.ndarray) -> pa.Table:
    """Book records -> columns: scalars as-is, levels as float price/quantity columns."""
    levels = book_levels(records.dtype)
    cols: dict[str, np.ndarray] = {}
    for name in records.dtype.names:
        if records.dtype[name].shape:
            continue
        cols[name] = records[name]
    tick = records["tick"][:, None]
    lot = records["lot"][:, None]
    for side in ("bid", "ask"):
        px = records[f"{side}_px"] * tick
        qty = records[f"{side}_qty"] * lot
        for i in range(levels):
            cols[f"{side}_px_{i}"] = px[:, i]
            cols[f"{side}_qty_{i}"] = qty[:, i]
    return pa.table(cols)


def table_to_book(table: pa.Table) -> np.ndarray:
    """Inverse of book_to_table: floats back to integer ticks/lots (exact for recorded data)."""
    names = table.column_names
    levels = sum(1 for n in names if n.startswith("bid_px_"))
    if levels < 1:
        raise RecordingError("not a book recording: no bid_px_0 column")
    dt = book_dtype(levels)
    out = np.zeros(table.num_rows, dtype=dt)
    for name in dt.names:
        if dt[name].shape:
            continue
        if name in names:
            out[name] = table.column(name).to_numpy()
    tick = out["tick"][:, None]
    lot = out["lot"][:, None]
    safe_tick = np.where(tick > 0, tick, 1.0)
    safe_lot = np.where(lot > 0, lot, 1.0)
    for side in ("bid", "ask"):
        px = np.stack([table.column(f"{side}_px_{i}").to_numpy() for i in range(levels)], axis=1)
        qty = np.stack([table.column(f"{side}_qty_{i}").to_numpy() for i in range(levels)], axis=1)
        out[f"{side}_px"] = np.rint(px / safe_tick).astype(np.int64)
        out[f"{side}_qty"] = np.rint(qty / safe_lot).astype(np.int64)
    return out


class BookRecordingWriter(_SegmentWriter):
    """Published top-N book records, as the model saw them."""

    kind = "book"

    def __init__(
        self,
        root: Path | str,
        symbol: str,
        levels: int,
        flush_s: float = 5.0,
        rotate_s: float = 3600.0,
        *,
        source: str,
    ):
        super().__init__(root, symbol, flush_s, rotate_s, source)
        self.dtype = book_dtype(levels)

    def append(self, records: np.ndarray) -> None:
        """Buffer a 1-d (or 0-d) array of book records; rows split across segments by recv_ns."""
        if self._closed:
            raise RuntimeError("BookRecordingWriter is closed")
        recs = np.atleast_1d(np.asarray(records))
        if recs.dtype != self.dtype:
            raise ValueError(
                f"book records have dtype with {book_levels(recs.dtype)} levels, "
                f"writer expects {book_levels(self.dtype)}"
            )
        while len(recs):
            self._route(int(recs["recv_ns"][0]), int(recs["recv_ns"][-1]))
            assert self._key is not None
            # rows up to the end of the current segment stay here; the rest go to the next one
            start = self._key[1]
            end = min(start - start % self.rotate_ns + self.rotate_ns, start - start % DAY_NS + DAY_NS)
            cut = max(1, int(np.searchsorted(recs["recv_ns"], end, side="left")))
            self._add(recs[:cut].copy(), cut)
            recs = recs[cut:]

    def _table(self) -> pa.Table:
        return book_to_table(np.concatenate(self._chunks))


class OrderRecordingWriter(_SegmentWriter):
    """Execution's order and fill records (`ORDER_DTYPE`, the "order" ring), routed by `publish_ns`.

    Columns: every field of the record (client id and tag as strings), plus `price` and
    `quantity` as floats (`px × tick`, `qty × lot`)."""

    kind = "orders"

    def __init__(self, root: Path | str, symbol: str, flush_s: float = 5.0, rotate_s: float = 3600.0, *,
                 source: str):
        super().__init__(root, symbol, flush_s, rotate_s, source)

    def append(self, records: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError("OrderRecordingWriter is closed")
        recs = np.atleast_1d(np.asarray(records))
        if recs.dtype != ORDER_DTYPE:
            raise ValueError("order records must have hftbot.records.ORDER_DTYPE")
        while len(recs):
            self._route(int(recs["publish_ns"][0]), int(recs["publish_ns"][-1]))
            assert self._key is not None
            start = self._key[1]
            end = min(start - start % self.rotate_ns + self.rotate_ns, start - start % DAY_NS + DAY_NS)
            cut = max(1, int(np.searchsorted(recs["publish_ns"], end, side="left")))
            self._add(recs[:cut].copy(), cut)
            recs = recs[cut:]

    def _table(self) -> pa.Table:
        recs = np.concatenate(self._chunks)
        cols = {n: recs[n] for n in recs.dtype.names if recs.dtype[n].kind != "S"}
        for n in ("client_id", "tag"):
            cols[n] = pa.array([b.decode() for b in recs[n].tolist()], pa.string())
        cols["price"] = recs["px"] * recs["tick"]
        cols["quantity"] = recs["qty"] * recs["lot"]
        return pa.table(cols)


# -- readers --------------------------------------------------------------------------------------


def _sort_key(p: Path) -> tuple:
    m = _NAME_RE.match(p.name)
    if m:
        return (str(p.parent), m.group(2), m.group(1), int(m.group(3)))
    return (str(p.parent), p.name, "", 0)


def _expand(paths: Iterable[Path | str] | Path | str, kind: str) -> list[Path]:
    """Files of one kind ("raw"/"book") under paths, in time order, without compacted duplicates."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"recording path does not exist: {p}")
    out: list[Path] = []
    for p in found:
        m = _NAME_RE.match(p.name)
        if m:
            if m.group(1) != kind:
                continue
            n = int(m.group(3))
            if n > 0:
                zero = p.with_name(f"{m.group(1)}-{m.group(2)}-0.parquet")
                if zero.exists() and n <= _compacted_through(zero):
                    continue
            out.append(p)
        elif p.suffix == ".parquet" or (kind == "raw" and p.name.endswith(".gz")):
            out.append(p)
    return sorted(set(out), key=_sort_key)


def _capture_symbols(path: Path, lines: int = 256) -> set[str]:
    """The symbol of a `<ns> <json>` capture, from the stream names of its first lines."""
    out: set[str] = set()
    try:
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            for _, line in zip(range(lines), f, strict=False):
                sp = line.find(" ")
                if line[sp + 1 : sp + 12] == '{"stream":"':
                    sym = stream_symbol(line[sp + 12 : line.find('"', sp + 12)])
                    if sym:
                        out.add(sym)
    except (OSError, EOFError, zlib.error) as e:
        raise RecordingError(f"{path}: not a readable gzip file ({e})") from None
    return out


def file_symbols(path: Path) -> set[str]:
    """The symbols one file holds: its Parquet metadata (every file this module writes has it);
    for older files without, the stream names (raw) or the `<SYMBOL>/<date>/` folder (book); for
    a capture, its first stream names. Empty when it cannot be told."""
    path = Path(path)
    if path.name.endswith(".gz"):
        return _capture_symbols(path)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise RecordingError(f"{path}: not a readable Parquet file ({e})") from None
    meta = schema.metadata or {}
    if SYMBOL_KEY in meta:
        return {meta[SYMBOL_KEY].decode()}
    if "stream" in schema.names:
        streams = pc.unique(pq.read_table(path, columns=["stream"]).column("stream")).to_pylist()
        return {stream_symbol(st) for st in streams if st} - {""}
    if _DATE_RE.match(path.parent.name) and _SYMBOL_RE.match(path.parent.parent.name):
        return {path.parent.parent.name}
    return set()


def check_one_symbol(files: Iterable[Path]) -> str:
    """The one symbol `files` hold ('' if none can be told); RecordingError naming the files and
    symbols if they mix (the trainer must never learn BTCUSDT and SOLUSDT books as one series)."""
    by_symbol: dict[str, list[Path]] = {}
    for f in files:
        for sym in file_symbols(f):
            by_symbol.setdefault(sym, []).append(f)
    if len(by_symbol) > 1:
        detail = "; ".join(
            f"{sym}: {', '.join(str(p) for p in fs[:3])}{f' and {len(fs) - 3} more' if len(fs) > 3 else ''}"
            for sym, fs in sorted(by_symbol.items())
        )
        raise MixedSymbolsError(f"recordings mix symbols {', '.join(sorted(by_symbol))} ({detail}); "
                             f"read one symbol's folder (<root>/<source>/<SYMBOL>/)")
    return next(iter(by_symbol), "")


def recording_symbol(paths: Iterable[Path | str] | Path | str) -> str:
    """The symbol of the raw recordings and captures under paths (what a replay would publish);
    RecordingError when there are none or they mix symbols, FileNotFoundError for a missing path."""
    files = _expand(paths, "raw")
    if not files:
        raise RecordingError(f"no captures or raw recordings under {paths}")
    return check_one_symbol(files)


def _iter_capture(path: Path) -> Iterator[tuple[int, str, str]]:
    """`<ns> <json>` gzip lines (the hftbacktest capture format)."""
    symbol = ""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            sp = line.find(" ")
            try:
                ns = int(line[:sp])
            except ValueError:
                raise RecordingError(
                    f"{path}:{lineno}: line does not start with '<ns> ': {line[:60]!r}"
                ) from None
            payload = line[sp + 1 :]
            if payload.startswith('{"stream":"'):
                end = payload.find('"', 11)
                stream = payload[11:end]
                if not symbol:
                    symbol = stream.split("@", 1)[0]
                elif not stream.startswith(symbol + "@"):
                    raise RecordingError(
                        f"{path}:{lineno}: stream {stream!r} is not {symbol.upper()}'s; a capture holds one symbol"
                    )
            elif '"lastUpdateId"' in payload[:40]:
                stream = f"{symbol}@depthSnapshot"
            else:
                stream = ""
            yield ns, stream, payload


def _iter_raw_parquet(path: Path) -> Iterator[tuple[int, str, str]]:
    table = pq.read_table(path)
    if not {"recv_ns", "stream", "payload"} <= set(table.column_names):
        raise RecordingError(f"{path}: not a raw recording (columns {table.column_names})")
    ns = table.column("recv_ns").to_pylist()
    st = table.column("stream").to_pylist()
    pl = table.column("payload").to_pylist()
    yield from zip(ns, st, pl, strict=True)


def iter_raw(paths: Iterable[Path | str] | Path | str) -> Iterator[tuple[int, str, str]]:
    """Yield (recv_ns, stream, payload) from raw recordings, folders of them, and `.gz` captures;
    RecordingError before the first row if they mix symbols."""
    files = _expand(paths, "raw")
    check_one_symbol(files)
    for p in files:
        if p.name.endswith(".gz"):
            yield from _iter_capture(p)
        else:
            yield from _iter_raw_parquet(p)


def read_book(paths: Iterable[Path | str] | Path | str) -> np.ndarray:
    """All book records under paths, as one book_dtype array in file order; RecordingError if they
    mix symbols."""
    files = _expand(paths, "book")
    if not files:
        raise RecordingError(f"no book recordings under {paths}")
    check_one_symbol(files)
    return np.concatenate([table_to_book(pq.read_table(p)) for p in files])
