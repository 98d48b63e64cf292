"""Raw frames from the feed's event loop to Parquet, through a queue and one writer thread.

The decision on how raw frames reach the disk: the feed process itself records them. A
fixed-record shared-memory ring cannot carry variable-size frames (a depth frame is 100 B to
60 kB, a snapshot more), and a socket to the recorder process would cost the hot path a syscall
per frame. Here the event loop only appends a (recv_ns, bytes) tuple to a `SimpleQueue` (well
under a microsecond); the thread builds Arrow columns and writes zstd Parquet part files via
`RawRecordingWriter`, whose crash guarantees apply unchanged. The recorder process records the
published book records from the ring.

Loss on a kill -9 of the feed: raw frames live only in this process until a part file is
renamed into place (the book records, by contrast, wait in the ring for a restarted recorder).
So the thread writes a part at least every `RAW_FLUSH_S` (0.5 s, or `recorder.flush_s` if
shorter), and compacts a finished rotation segment in another thread, so a rotation never
delays a flush: a kill -9 loses the frames of the last <= 0.5 s plus one part's write time,
under 1 s (tests/feed/test_raw_kill.py measures it). The event loop's work is unchanged; only
this thread writes more, smaller files (compacted hourly as before).

It must never block the caller and never drop a frame silently: if the thread dies, `put` counts
what it could not record (`dropped`) and the error is logged once.

The thread drains the queue every `DRAIN_S` instead of waiting in it: a thread blocked in
`get()` is woken by every `put()` and then asks the event loop's thread for the GIL, each frame,
right while the loop decodes and publishes the book (the feed's receive → publish p99 was ~1.5 ms
with it). Frames wait in the queue at most `DRAIN_S`, well inside the kill -9 bound above.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from hftbot.feed.recording import RawRecordingWriter

_STOP = object()
RAW_FLUSH_S = 0.5  # part files at least this often: bounds a kill -9's loss of raw frames
DRAIN_S = 0.05  # the writer thread takes what the event loop queued this often (never woken per frame)


def stream_of(frame: bytes) -> str:
    """The combined-stream name at the start of a frame ('' for raw streams and replies)."""
    if frame.startswith(b'{"stream":"'):
        end = frame.find(b'"', 11)
        if end > 0:
            return frame[11:end].decode("ascii", "replace")
    return ""


class RawSink:
    """`put(recv_ns, stream, frame)` from the loop; a thread writes. `close()` flushes and joins."""

    def __init__(
        self,
        root: Path | str,
        symbol: str,
        flush_s: float = 5.0,
        rotate_s: float = 3600.0,
        log: logging.Logger | None = None,
        *,
        source: str,
    ) -> None:
        flush_s = min(flush_s, RAW_FLUSH_S)
        self.writer = RawRecordingWriter(root, symbol, flush_s=flush_s, rotate_s=rotate_s, source=source,
                                         compact_in_background=True)
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.log = log or logging.getLogger("hftbot.feed.raw")
        self.dropped = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="raw-recorder", daemon=True)
        self.thread.start()

    def put(self, recv_ns: int, stream: str, frame: bytes) -> None:
        if self.error is not None:
            self.dropped += 1
            return
        self.q.put((recv_ns, stream, frame))

    @property
    def rows_written(self) -> int:
        return self.writer.rows_written

    def _run(self) -> None:
        w = self.writer
        q = self.q
        try:
            stop = False
            while not stop:
                time.sleep(DRAIN_S)
                while True:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    ns, stream, frame = item
                    w.append(ns, stream or stream_of(frame), frame)
                w.maybe_flush()
            w.close()
        except BaseException as e:  # a full disk must not take the feed down; it is reported
            self.error = e
            self.log.error("raw recording stopped: %s", e)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued so far, compact, and stop the thread."""
        if self.thread.is_alive():
            self.q.put(_STOP)
            self.thread.join(timeout_s)
