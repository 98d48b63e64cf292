"""Training data: recordings → book records (cached on disk) → lazily indexed windows, split by time.

Sources, found recursively under any file or folder given (both recordings layouts,
``<root>/<SYMBOL>/<date>/`` and ``<data_dir>/recordings/<source>/<SYMBOL>/<date>/``):

- ``book-*.parquet`` (what the recorder published: what a live model saw) are used as they are,
  through `hftbot.feed.recording.read_book`; a date folder that holds book files uses only those;
- ``raw-*.parquet`` alone (as `python -m hftbot.sim generate` writes) and ``.gz`` captures are
  rebuilt into book records by the feed's own code — `FeedCore` fed with `capture.iter_blocks`,
  exactly as `replay` and `feed check` drive it — never by a second book. All raw files of one
  (source, symbol) go through one `FeedCore` in time order, so a diff chain that runs across
  hourly files and date folders stays one book (gaps in the data resync as they did live).

Every source file becomes one cached ``.npy`` array of book records in ``.hftbot-cache/`` beside
it (a read-only folder falls back to the temp dir), written atomically (`hftbot.atomic`) and
named by a key: the file's name, size and mtime, for a raw file those of every file before it in
its chain (the book state depends on them), the levels, and a hash of the feed's book code — so a
changed source, or changed book code, invalidates exactly what it must. Caches are memory-mapped
per part load; a replaced cache is deleted only once it is a day old (a trainer started before
the change may still read it).

A dataset never mixes sources (sim | replay | binance | testnet, from the layout) or symbols
(from the layout, and checked against the stream names inside raw data): `DatasetError` says
which files disagree and how to choose. Files must not overlap in time either.

Windows are indexed, never materialised: a `Part` is a range of window *ends* inside one cached
file (large files are cut into chunks); loading it computes that range's normalised feature rows
once with `hftbot.model.features.rows_from_records` — the kernel the live `OnlineWindow` runs, so
training rows are bit-identical to served ones — plus the label change at every end. A window is
a strided view of W consecutive rows; batches copy only the windows they hold. `PartCache` keeps
loaded parts in a byte budget (LRU), and the training sampler shuffles within groups of parts
that fit it, so memory is bounded by the budget whatever the number of days. A window never spans
two files (each file's first record starts a segment, as a resync does live).

The split is chronological: train, validation, test in time order by window count, with a gap
of `split_gap(window, rule)` records between them so that no label of one part reads a record
any window or label of the next part reads. The data range (files, times, counts) of every
split goes into the checkpoint's metadata (`data_range`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numba
import numpy as np

from hftbot.filecache import NpyWriter, cache_folder, code_hash, file_identity
from hftbot.model.features import FeatureSpec, rows_from_records
from hftbot.model.labels import LabelRule, mid_prices, segment_ids, smoothed_change, usable_mask, window_ends
from hftbot.records import BOOK_RESYNC, TRADE_DTYPE, book_dtype, book_levels

SOURCES = ("sim", "replay", "binance", "testnet")
UNKNOWN = "unknown"
CACHE_VERSION = 1
DEFAULT_CHUNK_RECORDS = 500_000
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")
_STREAM_RE = re.compile(rb'^\{"stream":"([a-z0-9]+)@')
_FEED_CODE = ("core.py", "book.py", "decode.py", "fastpath.py", "sync.py", "capture.py")
NS = 1_000_000_000


class DatasetError(ValueError):
    """Training data that cannot be used as given; the message names the files and the fix."""


# ------------------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class SourceFile:
    """One recording file and what its place in the layout (or its content) says it is."""

    path: Path
    kind: str  # "book" (recorded records), "raw" (raw Parquet), "capture" (.gz)
    symbol: str | None
    source: str  # one of SOURCES, or "unknown" (a layout without a source folder, a loose file)


def _layout_of(path: Path) -> tuple[str | None, str]:
    """(symbol, source) from ``.../<source>/<SYMBOL>/<YYYY-MM-DD>/file``; None / unknown if absent."""
    parts = path.parts[:-1]
    for i in range(len(parts) - 1, 0, -1):
        if _DATE_RE.match(parts[i]):
            sym = parts[i - 1] if _SYMBOL_RE.match(parts[i - 1]) else None
            src = parts[i - 2] if i >= 2 and parts[i - 2] in SOURCES else UNKNOWN
            return sym, src
    return None, UNKNOWN


def _frame_symbol(frame: bytes) -> str | None:
    m = _STREAM_RE.match(frame[:64])
    return m.group(1).decode().upper() if m else None


def _block_symbol(block, limit: int = 256) -> str | None:
    """The symbol of the first combined-stream frame in a block (snapshots carry none)."""
    for i in range(min(len(block), limit)):
        s = _frame_symbol(block.frame(i))
        if s:
            return s
    return None


def _list_files(paths: Sequence[Path], kind: str) -> list[Path]:
    """Recording files of one kind under paths, in time order, without compacted duplicates.

    The recordings module's own listing (`_expand`): the one place that knows part numbers and
    compaction, so the trainer never reads a duplicate a crash left behind."""
    from hftbot.feed.recording import _expand

    return _expand(list(paths), kind)


def discover(paths: Iterable[str | os.PathLike], symbol: str | None = None,
             source: str | None = None) -> list[SourceFile]:
    """Every usable recording file under `paths`, checked to be one source and one symbol.

    `symbol` / `source` select among several (a data root holding many); without them, finding
    more than one is an error that lists what was found."""
    roots = [Path(p) for p in paths]
    if not roots:
        raise DatasetError("dataset: no data path given (--data)")
    for r in roots:
        if not r.exists():
            raise DatasetError(f"dataset: data path does not exist: {r}")
    given = {r.resolve() for r in roots if r.is_file()}

    def named(p: Path) -> bool:
        """A recording by its name, or a file given by itself: other Parquet found in a folder
        (trade logs, order records beside the recordings) is not training data."""
        return p.resolve() in given or p.name.endswith(".gz") or p.name.startswith(("book-", "raw-"))

    book = [p for p in _list_files(roots, "book") if named(p) and not p.name.endswith(".gz")]
    with_books = {p.parent for p in book}
    raw = [p for p in _list_files(roots, "raw") if named(p) and p.parent not in with_books]
    found: list[SourceFile] = []
    book_set = set(book)
    for p in book + raw:
        kind = "book" if p in book_set else ("capture" if p.name.endswith(".gz") else "raw")
        found.append(SourceFile(p, kind, *_symbol_and_source(p)))
    if not found:
        raise DatasetError(f"dataset: no book-*.parquet, raw-*.parquet or .gz recording under "
                           f"{', '.join(map(str, roots))}")
    if symbol:
        found = [f for f in found if f.symbol == symbol.upper()]
    if source:
        found = [f for f in found if f.source == source]
    if not found:
        raise DatasetError(f"dataset: no recording of symbol {symbol or 'any'} / source {source or 'any'} "
                           f"under {', '.join(map(str, roots))}")
    nameless = [f for f in found if f.symbol is None]
    if nameless:
        raise DatasetError(f"dataset: cannot tell the symbol of {nameless[0].path} (put recordings under "
                           f"<SYMBOL>/<YYYY-MM-DD>/ as the recorder does)")
    groups: dict[tuple[str, str], list[SourceFile]] = {}
    for f in found:
        groups.setdefault((f.source, str(f.symbol)), []).append(f)
    if len(groups) > 1:
        listing = "; ".join(f"source {s}, symbol {y}: {len(v)} file(s), e.g. {v[0].path}"
                            for (s, y), v in sorted(groups.items()))
        raise DatasetError(f"dataset: one dataset must be one source and one symbol, found {listing}. "
                           f"Give folders of one, or choose with --symbol / --source")
    return found


def _symbol_and_source(path: Path) -> tuple[str | None, str]:
    """The symbol from the layout and from the file itself (its Parquet metadata, else its stream
    names: `recording.file_symbols`), which must agree; the source from the layout."""
    from hftbot.feed.recording import RecordingError, file_symbols

    sym, src = _layout_of(path)
    try:
        inside = file_symbols(path)
    except RecordingError as e:
        raise DatasetError(f"dataset: {e}") from None
    if len(inside) > 1:
        raise DatasetError(f"dataset: {path} mixes symbols {', '.join(sorted(inside))}; one dataset is one symbol")
    if inside:
        (own,) = inside
        if sym is not None and own != sym:
            raise DatasetError(f"dataset: {path} holds {own} messages, its layout says {sym}; "
                               f"one dataset is one symbol")
        sym = own
    return sym, src


# ------------------------------------------------------------------------------ book cache


@dataclass(frozen=True)
class BookFile:
    """One source file's book records, cached as .npy (memory-mapped on use)."""

    origin: Path
    cache: Path
    n: int
    first_ns: int
    last_ns: int
    levels: int
    lo: int = 0  # first record of the cache this file stands for (a `Recordings.between` slice)

    def open(self) -> np.ndarray:
        a = np.load(self.cache, mmap_mode="r")
        return a if self.lo == 0 and self.n == len(a) else a[self.lo : self.lo + self.n]

    def between(self, start_ns: int, end_ns: int) -> BookFile | None:
        """The records received in [start_ns, end_ns), or None when there is none."""
        t = self.open()["recv_ns"]
        if len(t) > 1 and np.any(t[1:] < t[:-1]):
            raise DatasetError(f"dataset: {self.origin}: book records are not in receive-time order; "
                               f"cannot cut them by time")
        a, b = int(np.searchsorted(t, start_ns, "left")), int(np.searchsorted(t, end_ns, "left"))
        if b <= a:
            return None
        return BookFile(self.origin, self.cache, b - a, int(t[a]), int(t[b - 1]), self.levels, self.lo + a)


def feed_code_hash() -> str:
    """sha256 of the feed's book code: rebuilt records change when it does."""
    import hftbot.feed

    return code_hash(hftbot.feed.__file__, _FEED_CODE)


def _cache_path(origin: Path, levels: int, key: str) -> Path:
    return cache_folder(origin) / f"{origin.name}.L{levels}.{key[:20]}.npy"


STALE_CACHE_S = 86400.0  # a replaced cache is deleted once it is this old (see _drop_stale)


def _drop_stale(origin: Path, levels: int, keep: Path) -> None:
    """Delete this file's caches under other keys — only those untouched for a day: a trainer that
    started before the source (or the feed code) changed may still be reading the old one."""
    now = time.time()
    for p in keep.parent.glob(f"{origin.name}.L{levels}.*.npy"):
        if p != keep:
            try:
                if now - p.stat().st_mtime >= STALE_CACHE_S:
                    p.unlink()
            except FileNotFoundError:
                pass


def _describe(origin: Path, cache: Path) -> BookFile:
    a = np.load(cache, mmap_mode="r")
    n = len(a)
    first = int(a["recv_ns"][0]) if n else 0
    last = int(a["recv_ns"][-1]) if n else 0
    return BookFile(origin, cache, n, first, last, book_levels(a.dtype))


def _cache_book_file(f: SourceFile, log: Callable[[str], None]) -> BookFile:
    from hftbot.feed.recording import read_book

    key = hashlib.sha256(f"{CACHE_VERSION}|book|{file_identity(f.path)}".encode()).hexdigest()
    # the level count is what the file holds; known only after reading it, so look for any
    existing = sorted(cache_folder(f.path).glob(f"{f.path.name}.L*.{key[:20]}.npy"))
    if existing:
        return _describe(f.path, existing[0])
    recs = read_book(f.path)
    lv = book_levels(recs.dtype)
    cache = _cache_path(f.path, lv, key)
    w = NpyWriter(cache, recs.dtype)
    try:
        w.write(recs)
    except BaseException as e:
        w.abort(e)
        raise
    w.close()
    _drop_stale(f.path, lv, cache)
    log(f"dataset: cached {len(recs):,} book records of {f.path}")
    return _describe(f.path, cache)


def _rebuild_chain(files: list[SourceFile], levels: int, code: str,
                   log: Callable[[str], None]) -> list[BookFile]:
    """Raw files of one (source, symbol), in time order, through one FeedCore; a cache per file."""
    from hftbot.feed.capture import iter_blocks
    from hftbot.feed.core import FeedCore

    keys, h = [], hashlib.sha256(f"{CACHE_VERSION}|raw|{levels}|{code}".encode())
    for f in files:
        h.update(file_identity(f.path).encode())
        keys.append(h.copy().hexdigest())
    caches = [_cache_path(f.path, levels, k) for f, k in zip(files, keys, strict=True)]
    if all(c.exists() for c in caches):
        return [_describe(f.path, c) for f, c in zip(files, caches, strict=True)]
    symbol = files[0].symbol
    core = FeedCore(levels=levels, replay=True)
    dt = book_dtype(levels)
    out_b = np.zeros(8192, dtype=dt)
    out_t = np.zeros(8192, dtype=TRADE_DTYPE)
    result: list[BookFile] = []
    for f, cache in zip(files, caches, strict=True):
        writer = None if cache.exists() else NpyWriter(cache, dt)  # state must still pass through
        try:
            for block in iter_blocks([f.path]):
                s = _block_symbol(block)
                if s is not None and s != symbol:
                    raise DatasetError(f"dataset: {f.path} holds {s} messages, its layout says {symbol}; "
                                       f"one dataset is one symbol")
                i, n = 0, len(block)
                while i < n:
                    i, nb, _ = core.run(block.data, block.starts, block.ends, block.nss, i, n, out_b, out_t)
                    if nb and writer is not None:
                        writer.write(out_b[:nb])
        except BaseException as e:
            if writer is not None:
                writer.abort(e)
            raise
        if writer is not None:
            writer.close()
            _drop_stale(f.path, levels, cache)
            log(f"dataset: rebuilt {writer.n:,} book records from {f.path}")
        result.append(_describe(f.path, cache))
    c = core.counters()
    if c["malformed"] or c["rejected"]:
        log(f"dataset: rebuilding {symbol}: {c['malformed']} malformed frames, {c['rejected']} rejected "
            f"levels (last: {core.last_error}); their records are resync markers, never trained on")
    return result


@dataclass
class Recordings:
    """The cached book files of one source and symbol, in time order."""

    files: list[BookFile]
    symbol: str
    source: str
    roots: list[str] = field(default_factory=list)

    @property
    def levels(self) -> int:
        return min(f.levels for f in self.files)

    @property
    def n_records(self) -> int:
        return sum(f.n for f in self.files)

    def newest(self, days: float) -> Recordings:
        """Only the files whose records reach into the last `days` days of the data."""
        if days <= 0:
            return self
        cut = max(f.last_ns for f in self.files) - int(days * 86400 * NS)
        return Recordings([f for f in self.files if f.last_ns >= cut], self.symbol, self.source, self.roots)

    def between(self, start_ns: int | None = None, end_ns: int | None = None) -> Recordings:
        """Only the records received in [start_ns, end_ns) (None: unbounded). The walk-forward
        trains each model on its past this way: windows and labels are cut from these records
        alone, so nothing at or after `end_ns` is read (hftbot/backtest/walkforward.py)."""
        lo = -(1 << 62) if start_ns is None else int(start_ns)
        hi = 1 << 62 if end_ns is None else int(end_ns)
        files = [g for f in self.files if f.last_ns >= lo and f.first_ns < hi
                 for g in [f.between(lo, hi)] if g is not None]
        if not files:
            span = f"{iso_utc(self.files[0].first_ns)} .. {iso_utc(self.files[-1].last_ns)}" if self.files else "none"
            raise DatasetError(f"dataset: no book record received in [{iso_utc(lo) if start_ns is not None else '-'}, "
                               f"{iso_utc(hi) if end_ns is not None else '-'}) (the data covers {span})")
        return Recordings(files, self.symbol, self.source, self.roots)


def open_recordings(paths: Iterable[str | os.PathLike], levels: int = 10, symbol: str | None = None,
                    source: str | None = None, log: Callable[[str], None] = print) -> Recordings:
    """Discover, rebuild or reuse caches, and check time order; `levels` = book levels to rebuild."""
    paths = [str(p) for p in paths]
    found = discover(paths, symbol, source)
    code = feed_code_hash()
    books = [_cache_book_file(f, log) for f in found if f.kind == "book"]
    raw = [f for f in found if f.kind != "book"]
    if raw:
        books += _rebuild_chain(raw, levels, code, log)
    books = [b for b in books if b.n > 0]
    if not books:
        raise DatasetError(f"dataset: the recordings under {', '.join(paths)} hold no book record")
    books.sort(key=lambda b: (b.first_ns, b.last_ns))
    for a, b in itertools.pairwise(books):
        if b.first_ns < a.last_ns:
            raise DatasetError(f"dataset: {a.origin} ({iso_utc(a.first_ns)} .. {iso_utc(a.last_ns)}) and {b.origin} "
                               f"({iso_utc(b.first_ns)} .. {iso_utc(b.last_ns)}) overlap in time; give each "
                               f"recording once")
    have = min(b.levels for b in books)
    if have < levels:
        short = min(books, key=lambda b: b.levels)
        raise DatasetError(f"dataset: {short.origin} carries {have} book levels, the model needs {levels}")
    return Recordings(books, str(found[0].symbol), found[0].source, paths)


def iso_utc(ns: int) -> str:
    """ISO-8601 UTC text of a nanosecond time (what the checkpoint metadata carries)."""
    return datetime.fromtimestamp(ns / NS, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------ parts and windows


@dataclass(frozen=True)
class Part:
    """Window ends lo .. hi−1 (record indices) of one cached file."""

    file: int
    lo: int
    hi: int


@dataclass
class PartData:
    """A loaded part: rows of records base .. base+len(rows)−1, the labelled window ends in it."""

    part: Part
    base: int
    rows: np.ndarray | None  # (m, F) float32, normalised by the spec's stats (None if not asked)
    ends: np.ndarray  # int64 record indices (in the file) of windows that have a label
    change: np.ndarray  # float64 smoothed change at each end
    recv_ns: np.ndarray  # int64 receive time of each end's record
    records: np.ndarray | None = None  # the loaded records (baselines ask for them)

    @property
    def nbytes(self) -> int:
        n = self.ends.nbytes + self.change.nbytes + self.recv_ns.nbytes
        if self.rows is not None:
            n += self.rows.nbytes
        if self.records is not None:
            n += self.records.nbytes
        return n

    def windows(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Windows (len(idx), W, F) for ends[idx]: W consecutive rows each, copied straight into
        `out` (a fresh array if None); nothing of N×W×F size ever exists."""
        assert self.rows is not None
        w = self.window
        if out is None:
            out = np.empty((len(idx), w, self.rows.shape[1]), dtype=np.float32)
        _gather_rows(self.rows, (self.ends[idx] - self.base - w + 1).astype(np.int64), w, out)
        return out

    window: int = 0


@numba.njit(cache=True, nogil=True)
def _gather_rows(rows, starts, w, out):  # pragma: no cover - compiled
    """out[j] = rows[starts[j] : starts[j] + w] (numpy's take on a strided window view is ~100×
    slower: it iterates element by element)."""
    for j in range(starts.shape[0]):
        s = starts[j]
        for r in range(w):
            out[j, r, :] = rows[s + r, :]


def split_gap(window: int, rule: LabelRule) -> int:
    """Records between the last window end of one split and the first of the next.

    The last train label reads mids up to t+k; the first validation window reads rows from
    t'−W+1 and its label mids from t'−k+1 (next_vs_prev): t' − t ≥ k + max(W, lookback) keeps
    every record read on one side only."""
    return rule.horizon + max(window, rule.lookback)


def chunk_parts(rec: Recordings, chunk: int = DEFAULT_CHUNK_RECORDS) -> list[Part]:
    """Every file cut into parts of at most `chunk` window ends."""
    if chunk < 1:
        raise ValueError(f"dataset: chunk must be >= 1, got {chunk}")
    return [Part(i, lo, min(lo + chunk, f.n)) for i, f in enumerate(rec.files) for lo in range(0, f.n, chunk)]


def load_part(rec: Recordings, part: Part, spec: FeatureSpec, rule: LabelRule, rows: bool = True,
              records: bool = False) -> PartData:
    """Rows and labelled window ends of a part, with the context rows its first windows need."""
    f = rec.files[part.file]
    w = spec.window
    a = max(0, part.lo - max(w, rule.lookback) - 1)
    b = min(f.n, part.hi + rule.horizon + 1)
    recs = np.array(f.open()[a:b])  # copy out of the mapping: the file is closed once this returns
    if rows:
        r, usable = rows_from_records(recs, spec)
    else:  # counting only: the kernel's own rule for a usable record, without computing rows
        r, usable = None, usable_mask(recs)
    seg = segment_ids(usable, (recs["flags"] & BOOK_RESYNC) != 0)
    ends = window_ends(seg, w)
    change = smoothed_change(mid_prices(recs), seg, rule)
    keep = (ends >= part.lo - a) & (ends < part.hi - a)
    ends = ends[keep]
    ends = ends[~np.isnan(change[ends])]
    return PartData(part, a, r, (ends + a).astype(np.int64), change[ends],
                    recs["recv_ns"][ends].astype(np.int64), recs if records else None, window=w)


class PartCache:
    """Loaded parts within a byte budget, least recently used evicted first."""

    def __init__(self, loader: Callable[[Part], PartData], max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"dataset: cache budget must be > 0 bytes, got {max_bytes}")
        self.loader = loader
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Part, PartData] = OrderedDict()
        self.bytes = 0
        self.peak_bytes = 0
        self.loads = 0

    def get(self, part: Part) -> PartData:
        d = self._items.get(part)
        if d is not None:
            self._items.move_to_end(part)
            return d
        d = self.loader(part)
        self.loads += 1
        self._items[part] = d
        self.bytes += d.nbytes
        while self.bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.nbytes
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        return d

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0


def part_bytes_estimate(part: Part, spec: FeatureSpec, rule: LabelRule) -> int:
    """What a loaded part holds at most: context + rows (4 bytes × F) + three arrays per end."""
    n = part.hi - part.lo
    return (n + max(spec.window, rule.lookback) + rule.horizon + 2) * 4 * spec.n_features + 24 * n


def max_chunk(spec: FeatureSpec, rule: LabelRule, budget_bytes: int, chunk: int) -> int:
    """Largest chunk (≤ `chunk`) of which two parts fit the cache budget (a group holds one, at least)."""
    per = 4 * spec.n_features + 24
    return max(1024, min(chunk, budget_bytes // (2 * per)))


# ------------------------------------------------------------------------------ split


@dataclass
class Split:
    """Parts of the train, validation and test periods (time order) and how many windows each has."""

    train: list[Part]
    val: list[Part]
    test: list[Part]
    counts: dict[str, int]
    gap: int
    bounds: dict[str, tuple[int, int]]  # first / last window end recv_ns of each part


def count_windows(rec: Recordings, parts: Sequence[Part], spec: FeatureSpec, rule: LabelRule
                  ) -> list[tuple[int, int, int]]:
    """(labelled windows, first end recv_ns, last end recv_ns) per part (one pass, bounded memory)."""
    out = []
    for p in parts:
        d = load_part(rec, p, spec, rule, rows=False)
        out.append((len(d.ends), int(d.recv_ns[0]) if len(d.ends) else 0,
                    int(d.recv_ns[-1]) if len(d.ends) else 0))
    return out


def split_by_time(rec: Recordings, parts: Sequence[Part], spec: FeatureSpec, rule: LabelRule,
                  val_frac: float, test_frac: float,
                  counts: list[tuple[int, int, int]] | None = None) -> Split:
    """Train / validation / test, in time order, `split_gap` records apart (see module doc)."""
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"dataset: val_frac and test_frac must be in (0, 1) with a sum < 1, "
                         f"got {val_frac}, {test_frac}")
    counts = counts if counts is not None else count_windows(rec, parts, spec, rule)
    n = sum(c[0] for c in counts)
    if n < 30:
        raise DatasetError(f"dataset: {n} labelled windows (window {spec.window}, horizon {rule.horizon}) "
                           f"in {rec.n_records:,} records; far too few to train on")
    gap = split_gap(spec.window, rule)
    n_test = max(1, round(test_frac * n))
    n_val = max(1, round(val_frac * n))
    n_train = n - n_val - n_test
    cum = np.cumsum([0] + [c[0] for c in counts])

    def end_at(k: int) -> tuple[int, int]:
        """(file, record index) of global labelled window k."""
        j = int(np.searchsorted(cum, k, side="right") - 1)
        d = load_part(rec, parts[j], spec, rule, rows=False)
        return parts[j].file, int(d.ends[k - cum[j]])

    f1, e1 = end_at(n_train - 1)  # last train window
    f2, e2 = end_at(n_train + n_val - 1)  # last validation window (before the second gap)

    def clip(lo_key: tuple[int, int] | None, hi_key: tuple[int, int] | None) -> list[Part]:
        out = []
        for p in parts:
            lo, hi = p.lo, p.hi
            if lo_key is not None:
                if p.file < lo_key[0]:
                    continue
                if p.file == lo_key[0]:
                    lo = max(lo, lo_key[1])
            if hi_key is not None:
                if p.file > hi_key[0]:
                    continue
                if p.file == hi_key[0]:
                    hi = min(hi, hi_key[1])
            if lo < hi:
                out.append(Part(p.file, lo, hi))
        return out

    train = clip(None, (f1, e1 + 1))
    val = clip((f1, e1 + gap), (f2, e2 + 1))
    test = clip((f2, e2 + gap), None)
    split = Split(train, val, test, {}, gap, {})
    for name, ps in (("train", train), ("val", val), ("test", test)):
        c = count_windows(rec, ps, spec, rule)
        split.counts[name] = sum(x[0] for x in c)
        firsts = [x[1] for x in c if x[0]]
        lasts = [x[2] for x in c if x[0]]
        split.bounds[name] = (min(firsts), max(lasts)) if firsts else (0, 0)
        if split.counts[name] == 0:
            raise DatasetError(f"dataset: the {name} period has no labelled window after the {gap}-record "
                               f"gap; give more data or change val_frac/test_frac")
    return split


def data_range(rec: Recordings, split: Split) -> dict:
    """What the checkpoint's `data` says: symbol, source, files, records and each period's times."""
    return {
        "symbol": rec.symbol,
        "source": rec.source,
        "start": iso_utc(rec.files[0].first_ns),
        "end": iso_utc(rec.files[-1].last_ns),
        "paths": rec.roots,
        "files": len(rec.files),
        "first_file": str(rec.files[0].origin),
        "last_file": str(rec.files[-1].origin),
        "records": rec.n_records,
        "split_gap_records": split.gap,
        "splits": {k: {"windows": split.counts[k], "start": iso_utc(v[0]), "end": iso_utc(v[1])}
                   for k, v in split.bounds.items()},
    }


# ------------------------------------------------------------------------------ normalisation


def fit_stats(rec: Recordings, parts: Sequence[Part], spec: FeatureSpec, rule: LabelRule
              ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per column of the raw (un-normalised) rows at the train windows' ends, streamed
    part by part (Chan's pooled update); std floored at 1e-6 as `features.fit_normalisation` does."""
    raw = FeatureSpec(spec.levels, spec.window, spec.price_ref)
    n_tot = 0
    mean = np.zeros(spec.n_features)
    m2 = np.zeros(spec.n_features)
    for p in parts:
        d = load_part(rec, p, raw, rule)
        assert d.rows is not None
        x = d.rows[d.ends - d.base].astype(np.float64)
        if not len(x):
            continue
        n = len(x)
        mu = x.mean(axis=0)
        q = ((x - mu) ** 2).sum(axis=0)
        delta = mu - mean
        tot = n_tot + n
        mean = mean + delta * n / tot
        m2 = m2 + q + delta**2 * n_tot * n / tot
        n_tot = tot
    if n_tot == 0:
        raise DatasetError("dataset: no training window to fit the normalisation on")
    return mean, np.maximum(np.sqrt(m2 / n_tot), 1e-6)


# ------------------------------------------------------------------------------ batches


@dataclass
class Batch:
    x: np.ndarray  # (B, W, F) float32
    change: np.ndarray  # (B,) float64 smoothed change (classify it with any threshold)


def _groups(parts: Sequence[Part], order: np.ndarray, spec: FeatureSpec, rule: LabelRule,
            budget: int) -> list[list[int]]:
    groups: list[list[int]] = [[]]
    used = 0
    for i in order:
        b = part_bytes_estimate(parts[i], spec, rule)
        if groups[-1] and used + b > budget:
            groups.append([])
            used = 0
        groups[-1].append(int(i))
        used += b
    return [g for g in groups if g]


def train_batches(parts: Sequence[Part], cache: PartCache, spec: FeatureSpec, rule: LabelRule,
                  batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  class_probs: Callable[[np.ndarray], np.ndarray] | None = None,
                  max_windows: int = 0) -> Iterator[Batch]:
    """One epoch of shuffled training batches, every rank the same number of them.

    Parts are shuffled, packed into groups that fit the cache budget, and windows shuffled within
    a group, so each part is loaded once per epoch. Every rank draws the same global batches of
    `batch_size × world` windows and keeps its slice (DDP). `class_probs(change)` → per-window
    sampling weights draws the group's windows with replacement by them (class-balance sampling).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(parts))
    gb = batch_size * world
    carry_x: list[np.ndarray] = []
    carry_c: list[np.ndarray] = []
    carried = 0
    served = 0
    for group in _groups(parts, order, spec, rule, cache.max_bytes):
        datas = [cache.get(parts[i]) for i in group]
        sizes = np.array([len(d.ends) for d in datas])
        total = int(sizes.sum())
        if total == 0:
            continue
        which = np.repeat(np.arange(len(datas)), sizes)
        local = np.concatenate([np.arange(s) for s in sizes])
        if class_probs is not None:
            w = class_probs(np.concatenate([d.change for d in datas]))
            pick = rng.choice(total, size=total, replace=True, p=w / w.sum())
        else:
            pick = rng.permutation(total)
        k = 0
        if carried:  # top up the previous group's remainder first
            need = gb - carried
            pick_now, k = pick[:need], min(need, total)
            x, c = _gather(datas, which, local, pick_now, spec)
            carry_x.append(x)
            carry_c.append(c)
            carried += len(pick_now)
            if carried < gb:
                continue
            x, c = np.concatenate(carry_x), np.concatenate(carry_c)
            carry_x, carry_c, carried = [], [], 0
            yield Batch(x[rank * batch_size:(rank + 1) * batch_size], c[rank * batch_size:(rank + 1) * batch_size])
            served += gb
            if max_windows and served >= max_windows:
                return
        while k + gb <= total:
            sel = pick[k + rank * batch_size:k + (rank + 1) * batch_size]
            x, c = _gather(datas, which, local, sel, spec)
            k += gb
            yield Batch(x, c)
            served += gb
            if max_windows and served >= max_windows:
                return
        if k < total:
            x, c = _gather(datas, which, local, pick[k:], spec)
            carry_x, carry_c, carried = [x], [c], total - k
    if carried:  # the last partial global batch: equal shares so every rank steps the same
        x, c = np.concatenate(carry_x), np.concatenate(carry_c)
        share = carried // world
        if share:
            yield Batch(x[rank * share:(rank + 1) * share], c[rank * share:(rank + 1) * share])


def _gather(datas: list[PartData], which: np.ndarray, local: np.ndarray, sel: np.ndarray,
            spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Windows `sel` of a group, grouped by part (order inside a batch does not matter)."""
    sel = np.sort(sel)
    x = np.empty((len(sel), spec.window, spec.n_features), dtype=np.float32)
    c = np.empty(len(sel), dtype=np.float64)
    w = which[sel]
    o = 0
    for j in np.unique(w):
        idx = local[sel[w == j]]
        d = datas[j]
        d.windows(idx, out=x[o:o + len(idx)])
        c[o:o + len(idx)] = d.change[idx]
        o += len(idx)
    return x, c


def eval_batches(rec: Recordings, parts: Sequence[Part], spec: FeatureSpec, rule: LabelRule,
                 batch_size: int, rank: int = 0, world: int = 1, stride: int = 1,
                 cache: PartCache | None = None) -> Iterator[Batch]:
    """Every (or every `stride`-th) labelled window of `parts` in time order; parts dealt round-robin
    to ranks (each rank scores its share, the caller adds the confusion matrices)."""
    for i, p in enumerate(parts):
        if i % world != rank:
            continue
        d = cache.get(p) if cache is not None else load_part(rec, p, spec, rule)
        idx = np.arange(0, len(d.ends), stride)
        for k in range(0, len(idx), batch_size):
            sel = idx[k:k + batch_size]
            yield Batch(d.windows(sel), d.change[sel])


def dataset_summary(rec: Recordings) -> str:
    return (f"{rec.symbol} ({rec.source}): {len(rec.files)} file(s), {rec.n_records:,} book records, "
            f"{iso_utc(rec.files[0].first_ns)} .. {iso_utc(rec.files[-1].last_ns)}")


def to_json(obj: dict) -> str:
    return json.dumps(obj, indent=1, default=str)
