"""A recording's replay input, prepared once: the loop's chunks cached as arrays beside the data.

What a backtest reads from a recording — the live feed's book and trade records and the
engine's rows, `chunk_frames` raw frames at a time (`engine.chunks`) — depends only on the raw
files, the book levels, the chunk size and the code that builds them. Decoding gzip and JSON is
most of a run on a capture, and a trader replays the same data many times (several strategies,
walk-forward windows, parameter sweeps), so the first run also writes what it built, and later
runs read arrays back: the way hftbacktest replays from its pre-converted event files, but
without a separate conversion step for the user to run or forget.

Layout: ``.hftbot-cache/backtest.<key>/`` beside the first data file (`hftbot.filecache`: a
read-only folder falls back to the temp dir) with ``books.npy``, ``trades.npy``, ``rows.npy``
(each chunk's arrays end to end, streamed, so writing holds one chunk) and ``chunks.npy`` (per
chunk: its counts, raw frames and last receive time), then ``meta.json`` last — a folder without
it was never finished and is ignored. The key covers every data file's identity in order (a diff
chain runs across files), the levels, the chunk size and the feed's and the row builder's code.

Reading memory-maps the arrays (copy-on-write) and hands out one chunk at a time as views of the
file: no copy per run (a copy of the 345 s capture's 30 MB of rows cost ~8-11 ms of a ~80 ms run),
and what a run touches is the page cache's: the pages of chunks already replayed are dropped from
the process (`_PageReleaser`; a 24 h run's peak RSS was 727 MB without, 280 MB with), so its memory
stays bounded by the chunk, as when building. A cache that does not match its meta.json, or cannot
be read, is reported on stderr and rebuilt from the recording: it is only ever a copy. A run that
stops early (`--end`) or fails finishes no cache (its files are temporary until the last chunk went
through). Two processes building the same key write the same bytes, each file atomically, so either
may finish it. `[backtest] cache = false` neither reads nor writes one. Size: about 56 bytes per
engine row (30 MB for the 345 s BTCUSDT capture), plus the book records; a cache no run has read
for a day is removed when another one in the same folder is finished (every read touches its
meta.json), so caches of old code or changed files do not pile up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hftbot.atomic import write_bytes_atomic
from hftbot.feed.core import Instrument
from hftbot.feed.recording import RecordingError, _expand
from hftbot.filecache import NpyWriter, cache_folder, code_hash, file_identity
from hftbot.model.dataset import feed_code_hash
from hftbot.records import TRADE_DTYPE, book_dtype
from hftbot.sim.kernels import MARKET_EVENT_DTYPE

VERSION = 2  # 2: rows cached with their exchange times clamped to the receive times
CHUNK_DTYPE = np.dtype([("books", "i8"), ("trades", "i8"), ("rows", "i8"), ("frames", "i8"), ("last_recv_ns", "i8")])
_PARTS = ("books", "trades", "rows", "chunks")


@dataclass
class Chunk:
    """One piece of the recording: the records execution reads and the engine's rows."""

    books: np.ndarray  # book_dtype(levels)
    trades: np.ndarray  # TRADE_DTYPE
    rows: np.ndarray  # MARKET_EVENT_DTYPE, receive order
    frames: int
    last_recv_ns: int


class Grid:
    """What the loop needs of the row builder once built: the instrument's tick and lot (1e-8)."""

    def __init__(self, inst: Instrument | None) -> None:
        self.inst = inst


def cache_key(files: list[Path], levels: int, chunk_frames: int) -> str:
    import hftbot.sim

    code = feed_code_hash() + code_hash(hftbot.sim.__file__, ("replayrows.py", "kernels.py"))
    ids = "|".join(file_identity(f) for f in files)
    return hashlib.sha256(f"{VERSION}|{levels}|{chunk_frames}|{code}|{ids}".encode()).hexdigest()[:20]


def cache_dir(paths: list[Path], levels: int, chunk_frames: int) -> Path | None:
    """Where these paths' prepared chunks live (None: no raw data under them; the loop says why)."""
    try:
        files = _expand(paths, "raw")
    except (RecordingError, OSError):
        return None
    if not files:
        return None
    return cache_folder(files[0]) / f"backtest.{cache_key(files, levels, chunk_frames)}"


def _read(folder: Path, levels: int) -> tuple[Grid, Iterator[Chunk]] | None:
    """The cached chunks, or None (reported) when the folder is not a complete, consistent cache."""
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        # copy-on-write maps: a chunk is a view of the file (no copy per run), and a write into
        # one stays in this process (the loop copies a chunk it changes: a written page of a
        # private map is held until the map goes, which would grow with the run). np.asarray: a
        # plain ndarray over the map, as np.memmap's own slicing costs µs per record.
        maps = {p: np.load(folder / f"{p}.npy", mmap_mode="c") for p in _PARTS}
        arrays = {p: np.asarray(m) for p, m in maps.items()}
        idx = arrays["chunks"]
        want = {"books": book_dtype(levels), "trades": TRADE_DTYPE, "rows": MARKET_EVENT_DTYPE, "chunks": CHUNK_DTYPE}
        for p in _PARTS:
            if arrays[p].dtype != want[p] or len(arrays[p]) != meta["lengths"][p]:
                raise ValueError(f"{p}.npy holds {len(arrays[p])} of {arrays[p].dtype}, meta.json says "
                                 f"{meta['lengths'][p]}")
        for p in ("books", "trades", "rows"):  # chunks.npy has a count column of each
            if int(idx[p].sum()) != len(arrays[p]):
                raise ValueError(f"chunks.npy counts {int(idx[p].sum())} {p}, {p}.npy holds {len(arrays[p])}")
        inst = Instrument(int(meta["tick_u"]), int(meta["lot_u"])) if meta["tick_u"] else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"backtest: prepared cache {folder} is unusable ({e}); rebuilding it from the recording",
              file=sys.stderr)
        meta_path.unlink(missing_ok=True)  # not complete any more; the rebuild writes it last
        return None

    with contextlib.suppress(OSError):
        os.utime(meta_path)  # in use: not stale (see _prune)

    releasers = {p: _PageReleaser(maps[p]) for p in ("books", "trades", "rows")}

    def gen() -> Iterator[Chunk]:
        ob = ot = orow = 0
        for c in idx.tolist():
            nb, nt, nr, frames, last = c
            for p, upto in (("books", ob), ("trades", ot), ("rows", orow)):  # what earlier chunks held
                releasers[p].release(upto)
            yield Chunk(arrays["books"][ob : ob + nb], arrays["trades"][ot : ot + nt],
                        arrays["rows"][orow : orow + nr], frames, last)
            ob, ot, orow = ob + nb, ot + nt, orow + nr

    return Grid(inst), gen()


class _PageReleaser:
    """Drops the pages of a copy-on-write map below a record from this process's memory.

    A page of a file map that a run has read stays mapped, counted in the process's RSS, until the
    map goes: over a cache of 24 h (488 MB) the run's peak RSS grew by what it had read. Records
    before the chunk being handed out are done with; `MADV_DONTNEED` unmaps their pages (the page
    cache keeps them for the next run). It is safe for what is still referenced: a page of a
    private file map that was never written comes back from the file, unchanged, when touched
    again — and nothing writes into the cache's chunks (the loop copies a chunk it changes).
    A map that cannot be advised (an empty array, no `madvise`) is left as it is."""

    def __init__(self, arr: np.ndarray) -> None:
        mm = getattr(arr, "_mmap", None)  # np.memmap's own mmap.mmap
        self._mm = mm if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED") else None
        # np.memmap maps from the file's allocation-granularity boundary below the array's offset
        self._base = getattr(arr, "offset", 0) % mmap.ALLOCATIONGRANULARITY
        self._item = arr.dtype.itemsize
        self._done = 0  # bytes of the map released so far (page-aligned)

    def release(self, records: int) -> None:
        if self._mm is None:
            return
        end = (self._base + records * self._item) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > self._done:
            with contextlib.suppress(OSError, ValueError):
                self._mm.madvise(mmap.MADV_DONTNEED, self._done, end - self._done)
            self._done = end


def _writing(folder: Path, levels: int, rb, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """`chunks` passed through, each also appended to the cache; the cache is finished (meta.json
    written) only when they all went through, else its writers' temporary files are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    writers = {
        "books": NpyWriter(folder / "books.npy", book_dtype(levels)),
        "trades": NpyWriter(folder / "trades.npy", TRADE_DTYPE),
        "rows": NpyWriter(folder / "rows.npy", MARKET_EVENT_DTYPE),
        "chunks": NpyWriter(folder / "chunks.npy", CHUNK_DTYPE),
    }
    done = False
    try:
        for ch in chunks:
            writers["books"].write(ch.books)
            writers["trades"].write(ch.trades)
            writers["rows"].write(ch.rows)
            writers["chunks"].write(np.array([(len(ch.books), len(ch.trades), len(ch.rows), ch.frames,
                                               ch.last_recv_ns)], CHUNK_DTYPE))
            yield ch
        done = True
    finally:
        if done:
            for w in writers.values():
                w.close()
            inst = rb.inst
            meta = {"version": VERSION, "levels": levels, "lengths": {p: w.n for p, w in writers.items()},
                    "tick_u": inst.tick_u if inst else 0, "lot_u": inst.lot_u if inst else 0}
            write_bytes_atomic(folder / "meta.json", json.dumps(meta, indent=1).encode())
            _prune(folder)
        else:  # stopped early (--end, an error, the consumer closed us): no half cache. The folder
            # stays (without meta.json it is ignored): another process may be writing the same key
            for w in writers.values():
                w.abort(GeneratorExit())


STALE_S = 86400.0


def _prune(keep: Path) -> None:
    """Remove the other prepared caches in this cache folder that no run has read for a day (an
    older code version's, another chunk size's, files since changed): disk is not a log."""
    now = time.time()
    for other in keep.parent.glob("backtest.*"):
        if other == keep or not other.is_dir():
            continue
        meta = other / "meta.json"
        try:
            age = now - (meta.stat().st_mtime if meta.exists() else other.stat().st_mtime)
        except FileNotFoundError:
            continue
        if age >= STALE_S:
            shutil.rmtree(other, ignore_errors=True)


def prepared_chunks(paths: list[Path], levels: int, chunk_frames: int, build, use_cache: bool = True):
    """(grid, iterator of Chunk) for `paths`: from the cache when there is a complete one, else
    `build(paths, levels, chunk_frames)` -> (row builder, chunks), written to the cache as it goes."""
    folder = cache_dir(paths, levels, chunk_frames) if use_cache else None
    if folder is not None:
        got = _read(folder, levels)
        if got is not None:
            return got
    rb, gen = build(paths, levels, chunk_frames)
    if folder is None:
        return rb, gen
    return rb, _writing(folder, levels, rb, gen)


def cached_books(paths: list[Path], levels: int, chunk_frames: int) -> Iterator[np.ndarray] | None:
    """The book records of the complete cache of `paths`, chunk by chunk (None: there is none;
    nothing is written). The batched signals read them instead of decoding the frames again."""
    folder = cache_dir(paths, levels, chunk_frames)
    got = _read(folder, levels) if folder is not None else None
    return None if got is None else (c.books for c in got[1])


def prepare(paths: list[Path], levels: int, chunk_frames: int, build) -> Path | None:
    """Finish the cache for `paths` now (one full decoding pass unless it is there): for callers
    about to replay parts of the same data several times (the promotion gate scores two models
    over the held-out period, each run stopping at its end). The folder, or None without raw data."""
    folder = cache_dir(paths, levels, chunk_frames)
    if folder is None or (folder / "meta.json").exists():
        return folder
    rb, gen = build(paths, levels, chunk_frames)
    for _ in _writing(folder, levels, rb, gen):
        pass
    return folder
