"""The inference process: book ring in, signal ring out, models swapped without stopping.

A thin loop around `hftbot.model.engine`: read every pending book record, feed them all to the
window (features stay exact), compute one signal for the newest (the older ones are counted as
`skipped`: when behind it skips to the newest update, never to a stale one), publish it, and
between two updates swap in a model the watcher has loaded and verified. The records a new model
must see (the last W + 24, then whatever arrives) are fed to it one at a time when the ring read
would wait (idle time), so neither the swap nor the loader thread does model work beside the
updates; only after `engine.max_defer` updates without idle time does the swap catch up itself.
A lapped reader (records lost in the ring) empties the window: what came before is not
continuous.

One thread for the model (numba, and torch limited to `inference.threads` for the checkpoint
checks); the watcher's loader is a background thread that never holds the update path. This
module owns no logic that a test cannot drive through `run()` with real rings.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from hftbot.ipc.ring import RingReader, RingWriter
from hftbot.model.checkpoint import Compat, read_pointer
from hftbot.model.engine import InferenceEngine, ModelWatcher
from hftbot.process import short_gil_slices


def _counters(engine: InferenceEngine, watcher: ModelWatcher, reader: RingReader) -> dict[str, int]:
    return dict(updates=engine.updates, signals=engine.signals, skipped=engine.skipped,
                decimated=engine.decimated, lost=reader.lost, gaps=engine.gaps, swaps=engine.swaps,
                refused=watcher.refused, model_id=engine.model_id, nonfinite=engine.nonfinite,
                fallbacks=watcher.fallbacks, no_model=watcher.no_model)


def _serving_now(engine: InferenceEngine, watcher: ModelWatcher) -> bool:
    """Doing its job: publishing the model's probabilities, or settled on having no model."""
    if engine.served:
        return True
    return watcher.settled and watcher.no_model == 1 and engine.pending is None and engine.signals > 0


def _process(recs, reader: RingReader, writer: RingWriter, engine: InferenceEngine, lost_seen: int) -> int:
    """Push a batch, publish one signal for its newest record; returns the reader's loss count."""
    start_ns = time.time_ns()
    if reader.lost != lost_seen:
        lost_seen = reader.lost
        engine.gap()
    last = len(recs) - 1
    for i in range(last + 1):
        engine.push(recs[i])
        if engine.due(newest=i == last):
            sig = engine.signal(recs[i], start_ns)
            sig["publish_ns"] = time.time_ns()
            writer.publish(sig)
    return lost_seen


def run(
    reader: RingReader,
    writer: RingWriter,
    engine: InferenceEngine,
    watcher: ModelWatcher,
    stopping: Callable[[], bool],
    beat: Callable[..., None] | None = None,
    heartbeat_s: float = 0.5,
    max_batch: int = 4096,
    read_timeout_s: float = 0.05,
    serving: Callable[[], None] | None = None,
    drain: bool = True,
) -> None:
    """Serve until `stopping()`; every `heartbeat_s` report counters through `beat`; call
    `serving()` once the engine does its job. On stop, with `drain`, the records already in the
    ring are served too (a finished replay's tail), in batches, without waiting for more."""
    next_beat = 0.0
    lost_seen = reader.lost
    while not stopping():
        now = time.monotonic()
        watcher.poll(now)
        pending = watcher.take()
        if pending is not None:
            engine.offer(pending)
        installed = engine.install_ready()  # between two updates; a pointer swap unless overdue
        if installed is not None:
            watcher.mark_serving(installed.path)
        if serving is not None and _serving_now(engine, watcher):
            serving()
            serving = None
        if beat is not None and now >= next_beat:
            next_beat = now + heartbeat_s
            beat(**_counters(engine, watcher, reader))
        if engine.idle_work:  # swap work (catch-up, warm-up, tidy-up): do it while no update waits
            recs = reader.read_many(max_batch, timeout_s=0)
            if len(recs) == 0:
                engine.idle_step()
                continue
        else:
            recs = reader.read_many(max_batch, timeout_s=read_timeout_s)
        if len(recs) == 0:
            continue
        lost_seen = _process(recs, reader, writer, engine, lost_seen)
    while drain and len(recs := reader.read_many(max_batch, timeout_s=0)):
        lost_seen = _process(recs, reader, writer, engine, lost_seen)


def backfill(reader: RingReader, engine: InferenceEngine, n: int) -> int:
    """Give the engine's history the last `n` records the ring still holds (no signals for them).

    A (re)started inference primes a model from these at once instead of waiting for a window of
    new updates: after a kill -9 it serves again as soon as its model is verified."""
    ring = reader.ring
    ws = ring.write_seq
    reader.last_seq = max(0, ws - min(n, ring.capacity - 1))
    lost = reader.lost
    got = 0
    while reader.last_seq < ws:
        recs = reader.read_many(min(4096, ws - reader.last_seq), timeout_s=0)
        if len(recs) == 0:
            break
        if reader.lost != lost:  # lapped while reading back: what came before is not continuous
            lost = reader.lost
            engine.history.clear()
        for rec in recs:
            engine.remember(rec)
        got += len(recs)
    return got


def main(ctx) -> None:
    """Process entry (`hftbot.model.inference:main`), spawned by the supervisor.

    torch is not imported here: serving is numba, and a checkpoint verified before loads from the
    verified-weights cache; only a new checkpoint's first verification imports it (in the verify
    helper for hot swaps, here for the first model of a cold start)."""
    cfg = ctx.config
    # The checkpoint loader is a thread: let the update loop take the GIL back within 0.2 ms, not 5
    short_gil_slices()
    log: logging.Logger = ctx.log
    from hftbot.model.streaming import RECEPTIVE, warm_up

    warm_up()  # compile or load the numba kernels now, not on the first update
    book = ctx.open_ring("book")
    signal = ctx.open_ring("signal")
    try:
        reader = RingReader(book, wait=cfg.ring.wait, start="next", spin_count=cfg.ring.spin_count)
        writer = RingWriter(signal)
        engine = InferenceEngine(cfg.feed.levels, cfg.inference.max_window, cfg.inference.every, log)
        watcher = ModelWatcher(cfg.runtime.checkpoints_dir, Compat(cfg.feed.levels, cfg.inference.max_window),
                               engine.history, cfg.inference.poll_interval_s, log,
                               verify_in_process=cfg.inference.verify_in_process, threads=cfg.inference.threads)
        try:
            target = read_pointer(cfg.runtime.checkpoints_dir)
        except Exception as e:  # a broken pointer: the watcher falls back to the newest that verifies
            target = e
        if target is None:  # the path in full: a relative one is read from where the run started
            log.warning("inference: no checkpoint in %s (runtime.checkpoints_dir = %r, from %s): publishing "
                        "'no model' signals until one appears", Path(cfg.runtime.checkpoints_dir).resolve(),
                        cfg.runtime.checkpoints_dir, os.getcwd())
        kept = backfill(reader, engine, cfg.inference.max_window + RECEPTIVE + 1)
        if kept:
            log.info("inference: %d recent book records from the ring to prime the model with", kept)
        ctx.beat(updates=0)
        try:
            run(reader, writer, engine, watcher, ctx.stopping, ctx.beat, cfg.runtime.heartbeat_s,
                cfg.inference.max_batch, serving=ctx.serving)
        finally:
            watcher.close()
        ctx.beat(**_counters(engine, watcher, reader))  # final counters, for the exit summary
        log.info("inference: stopped after %d updates, %d signals, %d skipped, %d swaps, %d refused, "
                 "%d non-finite", engine.updates, engine.signals, engine.skipped, engine.swaps,
                 watcher.refused, engine.nonfinite)
    finally:
        book.close()
        signal.close()
