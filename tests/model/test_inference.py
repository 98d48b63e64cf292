"""Inference through real rings: cold start, hot reload under load, bad checkpoints refused."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hftbot.ipc import shm
from hftbot.ipc.ring import Ring, RingReader, RingWriter
from hftbot.model.checkpoint import Compat, load_checkpoint, set_current, write_checkpoint
from hftbot.model.deeplob import DeepLOB
from hftbot.model.engine import InferenceEngine, ModelRuntime, ModelWatcher, Pending, need_rows, prime
from hftbot.model.features import FeatureSpec, windows_from_records
from hftbot.model.inference import run
from hftbot.model.streaming import softmax
from hftbot.records import BOOK_RESYNC, SIGNAL_DTYPE, SIGNAL_NO_MODEL, SIGNAL_WARMUP, book_dtype

W = 30


def _write(d: Path, seed: int, flip: bool = False, window: int = W) -> Path:
    torch.manual_seed(seed)
    m = DeepLOB(levels=10, window=window, conv_filters=4, inception_filters=8, padding="valid")
    spec = FeatureSpec(levels=10, window=window, mean=tuple([0.1 * seed] * 40), std=tuple([1.0 + seed] * 40))
    return write_checkpoint(m, spec, d, trained=False, note=f"test seed {seed}", flip=flip, seed=seed)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("models")
    return [_write(d, s) for s in (1, 2, 3)]


class Harness:
    """A book ring, a signal ring, and the real `run()` loop in a thread."""

    def __init__(self, ckdir: Path, capacity: int = 1 << 15, poll_s: float = 0.01,
                 verify_in_process: bool = False) -> None:
        self.book = Ring.create(shm.segment_name(f"test-ib-{id(self)}"), book_dtype(10), capacity)
        self.sig = Ring.create(shm.segment_name(f"test-is-{id(self)}"), SIGNAL_DTYPE, 1 << 17)
        self.writer = RingWriter(self.book)
        self.reader = RingReader(self.book, wait="spin_yield", start="next")
        self.sig_reader = RingReader(self.sig, wait="spin_yield", start="oldest")
        self.engine = InferenceEngine(10, max_window=200)
        self.watcher = ModelWatcher(ckdir, Compat(10, 200), self.engine.history, poll_interval_s=poll_s,
                                    verify_in_process=verify_in_process)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=run, args=(self.reader, RingWriter(self.sig), self.engine, self.watcher, self.stop.is_set),
            kwargs={"read_timeout_s": 0.01}, daemon=True)
        self.signals: list[np.ndarray] = []

    def __enter__(self) -> Harness:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        self.watcher.close()
        for r in (self.book, self.sig):
            r.close()
            r.unlink()

    def drain(self) -> np.ndarray:
        while len(got := self.sig_reader.read_many(4096, timeout_s=0)):
            self.signals.append(got)
        return np.concatenate(self.signals) if self.signals else np.zeros(0, SIGNAL_DTYPE)

    def settled(self, updates: int) -> bool:
        """All `updates` book records taken in, each answered (a signal, or counted as skipped or
        decimated), and every signal published. The middle term matters: `updates` is counted when
        a record is pushed, before its signal is computed, and a drain between the two misses it."""
        e = self.engine
        return (e.updates == updates and e.signals + e.skipped + e.decimated == updates
                and self.sig.write_seq == e.signals)

    def wait_for(self, cond, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.002)


def _feed(h: Harness, books: np.ndarray, pace_s: float = 0.0) -> None:
    for rec in books:
        h.writer.publish(rec)
        if pace_s:
            time.sleep(pace_s)


def test_cold_start_serves_no_model_then_the_first_checkpoint_without_restart(real_books, tmp_path, models):
    with Harness(tmp_path, verify_in_process=True) as h:  # the production path: a worker process verifies
        _feed(h, real_books[:100], 0.0005)
        h.wait_for(lambda: h.settled(100))
        sig = h.drain()
        assert len(sig) > 0 and np.all(sig["model_id"] == 0) and np.all(sig["flags"] == SIGNAL_NO_MODEL)
        assert np.all(np.isnan(sig["p_up"]))
        for p in models[0].parent.iterdir():  # drop a checkpoint in: no restart
            (tmp_path / p.name).write_bytes(p.read_bytes())
        set_current(tmp_path, models[0].name)
        h.wait_for(lambda: h.engine.swaps == 1)
        _feed(h, real_books[100:200], 0.0005)
        h.wait_for(lambda: h.settled(200))
        sig = h.drain()
        served = sig[sig["model_id"] != 0]
        want = load_checkpoint(models[0]).model_id
        assert len(served) and np.all(served["model_id"] == want)
        ok = served[served["flags"] == 0]
        assert len(ok)  # primed from the history: the window is full at once
        total = ok["p_down"].astype(np.float64) + ok["p_flat"] + ok["p_up"]
        np.testing.assert_allclose(total, 1.0, atol=1e-5)
        assert np.all(ok["infer_end_ns"] >= ok["infer_start_ns"])


def test_bad_checkpoint_is_refused_and_the_running_model_keeps_serving(real_books, tmp_path, models, caplog):
    good = _write(tmp_path, 5, flip=True)
    bad = _write(tmp_path, 6)
    pt = bad.with_suffix(".pt")
    pt.write_bytes(pt.read_bytes()[:-100])  # truncated
    good_id = load_checkpoint(good).model_id
    with caplog.at_level(logging.ERROR, logger="hftbot.inference"), Harness(tmp_path) as h:
        _feed(h, real_books[:50], 0.0005)
        h.wait_for(lambda: h.engine.swaps == 1)
        set_current(tmp_path, bad.name)
        h.wait_for(lambda: h.watcher.refused == 1)
        _feed(h, real_books[50:150], 0.0005)
        h.wait_for(lambda: h.settled(150))
        sig = h.drain()
    assert h.engine.model_id == good_id and h.engine.swaps == 1
    assert np.all(sig[sig["book_seq"] > 50]["model_id"] == good_id)
    assert any("refused" in r.getMessage() and bad.name in r.getMessage() for r in caplog.records)


def test_hot_reload_under_load_misses_and_repeats_no_update(real_books, tmp_path, models):
    for p in models[0].parent.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    ids = {load_checkpoint(m).model_id: load_checkpoint(m) for m in models}
    books = real_books.copy()
    books["flags"][0] |= BOOK_RESYNC  # each lap of the capture is a new segment
    set_current(tmp_path, models[0].name)
    swaps_wanted = 7  # the first load + 6 hot swaps: each of the 3 models swapped in twice
    written = []
    with Harness(tmp_path, verify_in_process=True) as h:
        done = threading.Event()

        _feed(h, books[:64], 0.0005)  # a cold start is another test: begin with the first model served
        h.wait_for(lambda: h.engine.swaps == 1, 60)

        def writer():  # full speed; only kept within half a ring of the reader so the ring never laps
            n, chunk = 64, 32
            while not done.is_set():
                while h.writer.seq - h.reader.last_seq > h.book.capacity // 2:
                    time.sleep(0.0005)
                h.writer.publish_many(np.take(books, np.arange(n, n + chunk), mode="wrap"))
                n += chunk
                time.sleep(0)  # let the other threads have the GIL between chunks
            written.append(n)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            for k in range(1, swaps_wanted):
                set_current(tmp_path, models[k % 3].name)
                h.wait_for(lambda k=k: h.engine.swaps == k + 1, 90)  # a verify under the GIL load: seconds to tens
        finally:
            done.set()
            t.join(10)
        n = written[0]
        h.wait_for(lambda: h.settled(n))
        sig = h.drain()
    e = h.engine
    assert e.swaps == swaps_wanted and h.watcher.refused == 0 and h.reader.lost == 0 and e.gaps == 0
    assert e.updates == n == e.signals + e.skipped + e.decimated  # every update: a signal or counted
    assert len(sig) == e.signals
    assert np.all(np.diff(sig["book_seq"]) > 0)  # none duplicated, in order
    assert set(np.unique(sig["model_id"])) <= set(ids) | {0}
    first = int(np.argmax(sig["model_id"] != 0))
    assert np.all(sig["model_id"][first:] != 0)  # once served, never "no model" again
    assert len(set(np.unique(sig["model_id"])) - {0}) == 3
    # every served signal (the first after each swap included) equals an offline recomputation
    checked = _check_offline(sig[first:], books, ids)
    assert checked >= swaps_wanted - 1


def _check_offline(served: np.ndarray, books: np.ndarray, ids: dict) -> int:
    """Assert the first signal after each swap and 200 others equal an offline recomputation."""
    change = np.flatnonzero(np.diff(served["model_id"]) != 0) + 1  # the first signal after each swap
    pick = np.unique(np.concatenate([[0], change, np.linspace(0, len(served) - 1, 200).astype(int)]))
    checked = 0
    for s in served[pick]:
        c = ids[int(s["model_id"])]
        i = int(s["book_seq"]) - 1  # record i is books[i % len(books)]
        lo = max(0, i - c.spec.window)  # W rows + the one before (its mid is the first row's reference)
        recent = np.take(books, np.arange(lo, i + 1), mode="wrap")
        wins, ends = windows_from_records(recent, c.spec)
        complete = len(ends) > 0 and ends[-1] == len(recent) - 1
        assert complete == (not s["flags"] & SIGNAL_WARMUP)
        if complete:
            with torch.inference_mode():
                ref = softmax(c.script(torch.from_numpy(np.ascontiguousarray(wins[-1]))[None])[0].numpy())
            np.testing.assert_allclose([s["p_down"], s["p_flat"], s["p_up"]], ref, atol=1e-5)
            checked += 1
    return checked


def test_with_idle_time_a_swap_feeds_the_new_model_nothing_inside_an_update(real_books, tmp_path, models,
                                                                            caplog):
    for p in models[0].parent.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    ids = {load_checkpoint(m).model_id: load_checkpoint(m) for m in models}
    books = real_books.copy()
    books["flags"][0] |= BOOK_RESYNC
    set_current(tmp_path, models[0].name)
    swaps_wanted = 4
    n = 0
    with caplog.at_level(logging.INFO, logger="hftbot.inference"), Harness(tmp_path) as h:
        done = threading.Event()

        def writer():  # a live-like pace: the loop has idle time between updates
            nonlocal n
            while not done.is_set():
                h.writer.publish(books[n % len(books)])
                n += 1
                time.sleep(0.001)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            for k in range(swaps_wanted):
                set_current(tmp_path, models[k % 3].name)
                h.wait_for(lambda k=k: h.engine.swaps == k + 1, 90)  # a verify under the GIL load: seconds to tens
        finally:
            done.set()
            t.join(10)
        h.wait_for(lambda: h.settled(n))
        sig = h.drain()
    e = h.engine
    assert e.swaps == swaps_wanted and e.forced == 0 and h.reader.lost == 0
    assert e.install_fed == 0  # the swaps fed nothing: the catch-up ran while no update waited
    assert e.pending is None
    # the swap's log line is written in idle time too, but written: one per swap
    assert sum(r.getMessage().startswith("inference: serving") for r in caplog.records) == swaps_wanted
    assert e.updates == n == e.signals + e.skipped + e.decimated
    assert np.all(np.diff(sig["book_seq"]) > 0)
    first = int(np.argmax(sig["model_id"] != 0))
    assert np.all(sig["model_id"][first:] != 0)
    assert _check_offline(sig[first:], books, ids) >= swaps_wanted - 1


def test_without_idle_time_a_waiting_model_is_swapped_in_after_max_defer_updates(real_books, tmp_path, models):
    eng = InferenceEngine(10, max_window=200, max_defer=5)
    ref = InferenceEngine(10, max_window=200)
    for e in (eng, ref):
        e.install(Pending(models[0], *prime(load_checkpoint(models[0]), e.history)))
    for rec in real_books[:60]:
        eng.push(rec)
        ref.push(rec)
    ck = load_checkpoint(models[1])
    rt, upto = prime(ck, eng.history)
    eng.push(real_books[60])  # arrived after the loader's last look: the new model is 1 behind
    ref.push(real_books[60])
    assert eng.offer(Pending(models[1], rt, upto)) and eng.pending_lag == 1
    installed_at = None
    for i, rec in enumerate(real_books[61:80]):  # full load: no idle step between updates
        if eng.install_ready() is not None:
            installed_at = i
        eng.push(rec)
        ref.push(rec)
    assert installed_at == 5 and eng.forced == 1 and eng.install_fed == 6 and eng.model_id == ck.model_id
    # the late swap still caught up exactly: same output as a runtime that saw every record
    alone, _ = prime(ck, ref.history)
    np.testing.assert_allclose(eng.runtime.probabilities(), alone.probabilities(), atol=1e-6)
    assert eng.pending is None and eng.install_ready() is None


def test_an_idle_step_feeds_the_pending_model_one_record_and_then_it_installs_at_once(
        real_books, tmp_path, models):
    eng = InferenceEngine(10, max_window=200, max_defer=1000)
    for rec in real_books[:80]:
        eng.push(rec)
    ck = load_checkpoint(models[2])
    rt, upto = prime(ck, eng.history)
    for rec in real_books[80:83]:
        eng.push(rec)
    eng.offer(Pending(models[2], rt, upto))
    assert eng.install_ready() is None and eng.model_id == 0  # 3 behind: keeps serving what it had
    for left in (2, 1, 0):  # the step that catches up also warms it (no state change)
        assert eng.idle_step() and eng.pending_lag == left
    assert not eng.idle_step()
    assert eng.install_ready() is not None and eng.model_id == ck.model_id and eng.install_fed == 0
    alone, _ = prime(ck, eng.history)
    np.testing.assert_allclose(eng.runtime.probabilities(), alone.probabilities(), atol=1e-6)


def test_an_unprimed_model_is_primed_one_record_per_idle_step_and_restarts_when_left_behind(
        real_books, tmp_path, models):
    # What the watcher hands over: a fresh runtime. The engine rebuilds its state from the
    # history's tail in idle steps of one record each, never inside an update.
    eng = InferenceEngine(10, max_window=200, max_defer=1000)
    for rec in real_books[:300]:
        eng.push(rec)
    ck = load_checkpoint(models[1])
    need = need_rows(ck)
    eng.offer(Pending(models[1], ModelRuntime(ck)))
    assert eng.pending_lag == need
    # left behind by more than a full priming (no idle time): it starts over from the new tail
    for rec in real_books[300 : 300 + need + 5]:
        eng.push(rec)
    assert eng.install_ready() is None
    steps = 0
    while eng.idle_step():
        steps += 1
    assert eng.idle_fed == need and steps == need  # one record per step (the last one also warms it)
    assert eng.install_ready() is not None and eng.install_fed == 0 and eng.forced == 0
    alone, _ = prime(ck, eng.history)
    np.testing.assert_allclose(eng.runtime.probabilities(), alone.probabilities(), atol=1e-6)


def _fresh(d: Path, seeds, current=None) -> dict[int, Path]:
    out = {}
    for k, seed in enumerate(seeds):
        out[seed] = _write(d, seed)
        t = time.time() - 100 + k  # later seeds are newer
        os.utime(out[seed], (t, t))
    if current is not None:
        set_current(d, out[current].name)
    return out


def test_corrupt_current_at_start_falls_back_to_the_newest_checkpoint_that_verifies(real_books, tmp_path, caplog):
    ck = _fresh(tmp_path, (11, 12, 13))
    pt = ck[13].with_suffix(".pt")
    pt.write_bytes(pt.read_bytes()[:-50])  # the newest one is broken
    (tmp_path / "CURRENT").write_bytes(b"\xff\xfe torn write")
    with caplog.at_level(logging.ERROR, logger="hftbot.inference"), Harness(tmp_path) as h:
        _feed(h, real_books[:60], 0.0005)
        h.wait_for(lambda: h.engine.swaps == 1)
        _feed(h, real_books[60:120], 0.0005)
        h.wait_for(lambda: h.settled(120))
    assert h.engine.model_id == load_checkpoint(ck[12]).model_id  # newest that verifies
    assert h.watcher.fallbacks == 1 and h.watcher.no_model == 0
    assert any("FALLING BACK" in r.getMessage() and ck[12].name in r.getMessage() for r in caplog.records)


def test_with_no_checkpoint_that_verifies_it_serves_no_model_and_says_so(real_books, tmp_path, caplog):
    ck = _fresh(tmp_path, (14,), current=14)
    pt = ck[14].with_suffix(".pt")
    pt.write_bytes(b"garbage")
    with caplog.at_level(logging.ERROR, logger="hftbot.inference"), Harness(tmp_path) as h:
        _feed(h, real_books[:50], 0.0005)
        h.wait_for(lambda: h.watcher.settled and h.settled(50))
        sig = h.drain()
    assert h.watcher.no_model == 1 and h.engine.model_id == 0
    assert np.all(sig["flags"] == SIGNAL_NO_MODEL)
    assert any("SERVING NO MODEL" in r.getMessage() for r in caplog.records)


def test_current_rewritten_to_the_same_name_with_a_new_file_is_loaded(real_books, tmp_path):
    ck = _fresh(tmp_path, (15, 16), current=15)
    with Harness(tmp_path) as h:
        _feed(h, real_books[:40], 0.0005)
        h.wait_for(lambda: h.engine.swaps == 1)
        first = h.engine.model_id
        # the trainer replaces checkpoint 15's files under the same names with 16's content
        meta16 = json.loads(ck[16].read_text())
        meta15 = json.loads(ck[15].read_text())
        meta16["model_file"] = meta15["model_file"]
        from hftbot.atomic import write_bytes_atomic

        write_bytes_atomic(tmp_path / meta15["model_file"], ck[16].with_suffix(".pt").read_bytes())
        write_bytes_atomic(ck[15], json.dumps(meta16).encode())
        set_current(tmp_path, ck[15].name)  # CURRENT rewritten, same name
        h.wait_for(lambda: h.engine.swaps == 2)
        _feed(h, real_books[40:80], 0.0005)
        h.wait_for(lambda: h.settled(80))
    assert first == meta15["model_id"]
    assert h.engine.model_id == meta16["model_id"] != first


def test_deleted_current_keeps_the_running_model(real_books, tmp_path, caplog):
    _fresh(tmp_path, (17,), current=17)
    with caplog.at_level(logging.WARNING, logger="hftbot.inference"), Harness(tmp_path) as h:
        _feed(h, real_books[:40], 0.0005)
        h.wait_for(lambda: h.engine.swaps == 1)
        served = h.engine.model_id
        (tmp_path / "CURRENT").unlink()
        time.sleep(0.1)
        _feed(h, real_books[40:100], 0.0005)
        h.wait_for(lambda: h.settled(100))
        sig = h.drain()
    assert h.engine.model_id == served and h.engine.swaps == 1
    assert np.all(sig[sig["book_seq"] > 45]["model_id"] == served)
    assert any("CURRENT was removed; keeping" in r.getMessage() for r in caplog.records)


def test_non_finite_outputs_are_flagged_not_published_as_a_signal(real_books, tmp_path):
    """A model whose outputs turn non-finite at run time (here: a normalisation that blows real
    inputs up to inf; its self-test input passes) goes out flagged SIGNAL_NONFINITE, NaN."""
    from hftbot.records import SIGNAL_NONFINITE

    torch.manual_seed(18)
    m = DeepLOB(levels=10, window=W, conv_filters=4, inception_filters=8, padding="valid")
    spec = FeatureSpec(levels=10, window=W, std=tuple([1e-300] * 40))
    write_checkpoint(m, spec, tmp_path, trained=False, note="blows up", flip=True, seed=18)
    with Harness(tmp_path) as h:
        _feed(h, real_books[:10], 0.0005)
        h.wait_for(lambda: h.engine.swaps == 1)
        _feed(h, real_books[10:120], 0.0005)
        h.wait_for(lambda: h.settled(120))
        # the engine's counters are compared with what was published: stop its thread first
        # (`settled` can hold between an update's count and its signal's: seen once in CI)
        h.stop.set()
        h.thread.join(10)
        sig = h.drain()
    ready = sig[(sig["model_id"] != 0) & ((sig["flags"] & SIGNAL_WARMUP) == 0)]
    assert len(ready) and np.all(ready["flags"] == SIGNAL_NONFINITE) and np.all(np.isnan(ready["p_up"]))
    assert h.engine.nonfinite == len(ready) and h.engine.served == 0
