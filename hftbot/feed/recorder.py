"""The recorder process: `main(ctx)` writes the published book records to Parquet.

Reads the "book" ring (blocking reader, batches of up to 4096) and appends to a
`BookRecordingWriter` under `<recorder.root>/<SYMBOL>/<date>/book-*.parquet`, flushing a whole
part file every `recorder.flush_s` and compacting at each `recorder.rotate_s`. Raw exchange frames
are written by the feed process itself (`hftbot.feed.rawsink`, which explains why). A lapped reader
(the recorder fell a full ring behind) is counted in `lost` - never a silent hole.

It starts at the next record (a restart does not re-record what a previous run already flushed),
must never slow the feed (it only reads the ring) and flushes and compacts on a clean stop.
"""

from __future__ import annotations

from hftbot.feed.process import recordings_root
from hftbot.feed.recording import BookRecordingWriter
from hftbot.ipc.ring import RingReader
from hftbot.records import book_levels


def main(ctx) -> None:
    cfg = ctx.config
    ring = ctx.open_ring("book")
    reader = RingReader(ring, wait="block", start="next")
    writer = BookRecordingWriter(recordings_root(cfg), cfg.runtime.symbol, levels=book_levels(ring.dtype),
                                 flush_s=cfg.recorder.flush_s, rotate_s=cfg.recorder.rotate_s)
    poll_s = min(cfg.runtime.heartbeat_s / 2, cfg.recorder.flush_s / 2)
    rows = 0
    try:
        while not ctx.stopping():
            batch = reader.read_many(4096, timeout_s=poll_s)
            if len(batch):
                writer.append(batch)
                rows += len(batch)
            writer.maybe_flush()
            ctx.beat(book_rows=rows, book_files=writer.files_written, lost=reader.lost)
        # drain what the feed published before it stopped (the feed stops first)
        while len(batch := reader.read_many(4096, timeout_s=0)):
            writer.append(batch)
            rows += len(batch)
    finally:
        writer.close()
        ctx.log.info("recorder stopped: %d book rows, %d files, %d lost", rows, writer.files_written,
                     reader.lost)
