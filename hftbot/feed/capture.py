"""Raw frames from files, as blocks of bytes with a line index - what replay, check and bench read.

Sources: `<ns> <json>` gzip captures (the shared BTCUSDT file's format) and raw Parquet
recordings (`hftbot.feed.recording`), given as files or folders, in time order. A block is one
contiguous uint8 buffer plus (recv_ns, start, end) per frame, so the numba fast path walks it
without a Python object per message: gzip text is decompressed in large chunks and indexed in
numba; a Parquet payload column is used in place (Arrow's string offsets and data buffers).

It must never change a byte of a frame, never skip a line silently (a line that does not start
with `<ns> ` is reported with its file and line number, `CaptureError`), and never mix symbols
(files of two symbols are refused, naming them: `RecordingError`). A file that cannot be read
whole says so with its name: an empty file, a gzip stream that ends before its end marker (a
truncated copy, or a capture still being written), a damaged Parquet file. A readable file with
no frames yields one empty block, so callers still see that the file was there.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hftbot.feed.fastpath import index_capture
from hftbot.feed.recording import RecordingError, _expand, check_one_symbol

CHUNK = 64 << 20  # decompressed bytes per block of a gzip capture


class CaptureError(RecordingError):
    """A capture line or recording that cannot be read as frames."""


def readonly(a: np.ndarray) -> np.ndarray:
    """Frame bytes are always passed to numba as read-only arrays: one compiled signature, not two
    (a first compile costs tens of seconds on a small core)."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


@dataclass
class Block:
    """Frames i of a block: data[starts[i]:ends[i]], received at nss[i] (local ns)."""

    source: str
    data: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    nss: np.ndarray

    def __len__(self) -> int:
        return len(self.nss)

    def frame(self, i: int) -> bytes:
        return self.data[self.starts[i] : self.ends[i]].tobytes()


def _empty(path: Path) -> Block:
    z = np.zeros(0, dtype=np.int64)
    return Block(str(path), readonly(np.zeros(0, dtype=np.uint8)), z, z.copy(), z.copy())


def _gzip_blocks(path: Path) -> Iterator[Block]:
    if path.stat().st_size == 0:
        raise CaptureError(f"{path}: empty file (0 bytes), not a gzip capture")
    d = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
    buf = bytearray()
    line0 = 1
    yielded = False
    with open(path, "rb") as f:
        while True:
            raw = f.read(8 << 20)
            final = not raw
            try:
                buf += d.flush() if final else d.decompress(raw)
                while d.eof and d.unused_data:  # concatenated gzip members
                    extra = d.unused_data
                    d = zlib.decompressobj(wbits=47)
                    buf += d.decompress(extra)
            except zlib.error as e:
                raise CaptureError(f"{path}: not a readable gzip file ({e})") from None
            if final and not d.eof:
                last = line0 + buf.count(b"\n") - 1
                cut_line = f" and part of line {last + 1}" if buf and not buf.endswith(b"\n") else ""
                raise CaptureError(
                    f"{path}: truncated gzip file: the compressed data ends before the end of its "
                    f"stream (a partial copy, or a capture still being written), after line {last}{cut_line}"
                )
            if len(buf) < CHUNK and not final:
                continue
            cut = len(buf) if final else buf.rfind(b"\n") + 1
            if final and cut == 0 and not yielded:
                yield _empty(path)
            if cut > 0:
                body = bytes(buf[:cut])
                del buf[:cut]
                data = np.frombuffer(body, dtype=np.uint8)  # read-only (bytes)
                nss, starts, ends = index_capture(data)
                bad = np.flatnonzero(nss < 0)
                if len(bad):
                    k = int(bad[0])
                    line = body[starts[k] : ends[k]][:60]
                    raise CaptureError(f"{path}: line {line0 + k} does not start with '<ns> ': {line!r}")
                line0 += len(nss)
                yielded = True
                yield Block(str(path), data, starts, ends, nss)
            if final:
                return


def _parquet_blocks(path: Path) -> Iterator[Block]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise CaptureError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    if not {"recv_ns", "payload"} <= set(names):
        raise CaptureError(f"{path}: not a raw recording (columns {names})")
    if pf.num_row_groups == 0:
        yield _empty(path)
    for rg in range(pf.num_row_groups):
        try:
            t = pf.read_row_group(rg, columns=["recv_ns", "payload"])
        except (pa.ArrowException, OSError) as e:
            raise CaptureError(f"{path}: row group {rg} is not readable ({e})") from None
        col = t.column("payload").combine_chunks()
        if isinstance(col, pa.ChunkedArray):  # pragma: no cover - pyarrow version dependent
            col = col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
        if col.null_count:
            raise CaptureError(f"{path}: payload has {col.null_count} null values")
        otype = np.int64 if pa.types.is_large_string(col.type) else np.int32
        bufs = col.buffers()
        offs = np.frombuffer(bufs[1], dtype=otype)[col.offset : col.offset + len(col) + 1].astype(np.int64)
        data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
        nss = np.array(t.column("recv_ns").to_numpy(), dtype=np.int64)  # writable, like the gz path
        yield Block(str(path), readonly(data), offs[:-1].copy(), offs[1:].copy(), nss)


def iter_blocks(paths: Iterable[Path | str] | Path | str) -> Iterator[Block]:
    """Blocks of frames from captures and raw recordings under paths, in time order; a
    RecordingError before the first block if the files mix symbols (a capture's symbol is read
    from its first lines; the numba indexer does not look at stream names)."""
    files = _expand(paths, "raw")
    if not files:
        raise CaptureError(f"no captures or raw recordings under {paths}")
    check_one_symbol(files)
    for p in files:
        if p.name.endswith(".gz"):
            yield from _gzip_blocks(p)
        else:
            yield from _parquet_blocks(p)
