"""The shared-memory ring: torn reads, exact loss counting, order, wait strategies, segments."""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftbot.ipc import ring as ring_mod
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring, RingError, RingReader, RingWriter
from hftbot.records import book_dtype

# Both implementations of the per-record hot paths: the C accelerator (when built) and Python.
IMPLS = [
    pytest.param(False, id="python"),
    pytest.param(True, id="c", marks=pytest.mark.skipif(ring_mod._fastring is None, reason="C accelerator not built")),
]

LEVELS = 10
DT = book_dtype(LEVELS)
# Large records (64 KiB) make each copy slow, so a writer in another process can overwrite a slot
# while the reader copies it.
BIG = np.dtype([("seq", "<i8"), ("update_id", "<i8"), ("payload", "<i8", (8192,))])


def fill(rec: np.ndarray, v: int) -> None:
    """Every field derived from v, so a record mixing two writes is detectable."""
    rec["update_id"] = v
    rec["event_ms"] = v * 3
    rec["recv_ns"] = v * 7
    rec["bid_px"] = v
    rec["ask_px"] = v + 1
    rec["bid_qty"] = -v
    rec["ask_qty"] = v * 2


def publish_values(w: RingWriter, values) -> None:
    """Publish one record per value (each filled by `fill`) through the writer's staging record."""
    for v in values:
        fill(w.staging, v)
        w.publish(w.staging)


def _writer_server(name: str, conn, accelerated: bool) -> None:
    """A writer process: for each command (values, batch) publish values as fast as possible."""
    ring = Ring.attach(name)
    w = RingWriter(ring, accelerated=accelerated)
    while True:
        cmd = conn.recv()
        if cmd is None:
            break
        values, batch = cmd
        if batch <= 1:
            for v in values:
                w.staging["update_id"] = v
                w.staging["payload"] = v
                w.publish(w.staging)
        else:
            arr = np.zeros(len(values), dtype=BIG)
            arr["update_id"] = values
            arr["payload"] = np.asarray(values)[:, None]
            for lo in range(0, len(values), batch):
                w.publish_many(arr[lo : lo + batch])
        conn.send(w.seq)
    del w
    ring.close()


@pytest.fixture
def make_ring():
    """Create rings for a test; every one is closed and unlinked afterwards, pass or fail."""
    made = []

    def make(tag: str, dtype: np.dtype = DT, capacity: int = 8) -> Ring:
        made.append(Ring.create(shm.segment_name(tag), dtype, capacity))
        return made[-1]

    yield make
    for ring in made:
        ring.close()
        ring.unlink()


@pytest.fixture(scope="module", params=IMPLS)
def writer_proc(request):
    """One ring (capacity 8: easy to lap) and a writer in another process, shared by examples."""
    name = shm.segment_name("test-ring-prop")
    ring = Ring.create(name, BIG, 8)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_writer_server, args=(name, child, request.param))
    p.start()
    yield ring, parent, request.param
    parent.send(None)
    p.join(10)
    ring.close()
    ring.unlink()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.integers(min_value=1, max_value=2**40), min_size=1, max_size=1500),
    batch=st.sampled_from([1, 1, 2, 8]),
    reader_batch=st.sampled_from([0, 0, -1, -1, 1, 3, 64]),  # 0: poll, -1: read (waits on the slot)
    dawdle_us=st.sampled_from([0, 20, 40, 60, 80, 300]),
    wait=st.sampled_from(["spin", "spin_yield"]),
)
def test_cross_process_reader_never_sees_torn_record_and_counts_loss_exactly(
    writer_proc, values, batch, reader_batch, dawdle_us, wait
):
    ring, conn, accelerated = writer_proc
    r = RingReader(ring, wait=wait, start="next", spin_count=64, accelerated=accelerated)
    base = r.last_seq
    conn.send((values, batch))
    got = []
    final = None
    while True:
        if final is None and conn.poll():
            final = conn.recv()
        if reader_batch <= 0:
            rec = r.poll() if reader_batch == 0 else r.read(timeout_s=0.002)
            recs = np.empty(0, BIG) if rec is None else rec.reshape(1)
        else:
            recs = r.read_many(reader_batch, timeout_s=0)
        if len(recs):
            got.append(recs)
            # A reader that falls behind by about the ring's capacity copies slots the writer is
            # about to overwrite: the torn-read window this test exists for.
            until = time.perf_counter() + dawdle_us * 1e-6
            while time.perf_counter() < until:
                pass
        elif final is not None and r.last_seq >= final:
            break
    recs = np.concatenate(got)
    assert (recs["payload"] == recs["update_id"][:, None]).all(), "a torn record was returned"
    seqs = recs["seq"]
    assert (np.diff(seqs) > 0).all(), "order not preserved"
    # Each returned record is exactly the one written under its sequence number.
    assert (recs["update_id"] == np.asarray(values)[seqs - base - 1]).all()
    assert r.last_seq == final == base + len(values)
    assert len(recs) + r.lost == len(values), "loss not counted exactly"
    assert seqs[-1] == final, "a lapped reader must end on the newest record"


def test_lapped_reader_counts_loss_and_jumps_to_newest(make_ring):
    ring = make_ring("test-ring-lap", DT, 8)
    w, r = RingWriter(ring), RingReader(ring, start="next")
    publish_values(w, range(1, 21))
    rec = r.poll()
    assert rec["seq"] == 20 and rec["update_id"] == 20
    assert r.lost == 19
    assert r.poll() is None
    fill(w.staging, 21)
    w.publish(w.staging)
    assert r.poll()["seq"] == 21 and r.lost == 19


def test_reader_within_capacity_loses_nothing_and_reads_in_order(make_ring):
    ring = make_ring("test-ring-inorder", DT, 64)
    w = RingWriter(ring)
    r1 = RingReader(ring, start="next")
    arr = np.zeros(50, DT)
    arr["update_id"] = np.arange(50)
    w.publish_many(arr[:30])
    w.publish_many(arr[30:])
    out = r1.read_many(1000)
    assert list(out["update_id"]) == list(range(50)) and list(out["seq"]) == list(range(1, 51))
    assert r1.lost == 0
    r2 = RingReader(ring, start="oldest")
    assert r2.read_many(1000)["seq"][0] == 1


def test_read_many_joins_a_batch_that_wraps_the_ring_and_honours_max_n(make_ring):
    ring = make_ring("test-ring-wrap-many", DT, 8)
    w, r = RingWriter(ring), RingReader(ring, start="next")
    publish_values(w, range(1, 7))
    assert list(r.read_many(16)["seq"]) == [1, 2, 3, 4, 5, 6]
    publish_values(w, range(7, 12))  # slots 6, 7, then 0, 1, 2: the batch crosses the ring's end
    first = r.read_many(3)
    assert list(first["seq"]) == [7, 8, 9]
    rest = r.read_many(16)
    assert list(rest["seq"]) == [10, 11]
    both = np.concatenate([first, rest])
    assert list(both["update_id"]) == list(range(7, 12)) and (both["ask_qty"] == both["update_id"][:, None] * 2).all()
    assert r.lost == 0 and len(r.read_many(16, timeout_s=0)) == 0


def test_skip_to_newest_counts_skipped(make_ring):
    ring = make_ring("test-ring-skip", DT, 64)
    w, r = RingWriter(ring), RingReader(ring)
    for _ in range(10):
        w.publish(w.staging)
    assert r.skip_to_newest() == 9
    assert r.poll()["seq"] == 10 and r.lost == 9


def _publish_later(name: str, delay_s: float, accelerated: bool = False) -> None:
    ring = Ring.attach(name)
    w = RingWriter(ring, accelerated=accelerated)
    time.sleep(delay_s)
    fill(w.staging, 42)
    w.publish(w.staging)
    del w
    ring.close()


@pytest.mark.parametrize("accelerated", IMPLS)
@pytest.mark.parametrize("wait", ["block", "spin_yield", "spin"])
def test_waiting_reader_is_woken_by_writer_in_another_process(make_ring, wait, accelerated):
    ring = make_ring(f"test-ring-wake-{wait}", DT, 16)
    name = ring.name
    r = RingReader(ring, wait=wait, accelerated=accelerated)
    assert r.read(timeout_s=0.05) is None  # times out with nothing published
    p = mp.get_context("spawn").Process(target=_publish_later, args=(name, 0.3, accelerated))
    p.start()
    rec = r.read(timeout_s=30)
    p.join(10)
    assert rec is not None and rec["update_id"] == 42


def test_attach_reads_layout_from_header_and_rejects_foreign_segment(make_ring):
    ring = make_ring("test-ring-attach", DT, 32)
    name = ring.name
    other = Ring.attach(name)
    assert other.dtype == DT and other.capacity == 32
    other.close()
    junk = shm.Segment.create(shm.segment_name("test-ring-junk"), 8192)
    try:
        with pytest.raises(RuntimeError, match="bad magic"):
            Ring.attach(junk.name)
    finally:
        junk.close()
        junk.unlink()


def test_bad_arguments_are_refused_with_clear_errors(make_ring):
    with pytest.raises(ValueError, match="power of two"):
        Ring.create(shm.segment_name("test-ring-cap"), DT, 100)
    ring = make_ring("test-ring-args", DT, 8)
    w = RingWriter(ring)
    with pytest.raises(ValueError, match="exceeds the ring capacity"):
        w.publish_many(np.zeros(9, DT))
    with pytest.raises(ValueError, match="does not fit"):
        w.publish(np.zeros((), book_dtype(20)))
    with pytest.raises(ValueError, match="wait strategy"):
        RingReader(ring, wait="nap")
    assert w.seq == 0  # refused writes published nothing
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Ring.attach(shm.segment_name("test-ring-missing"))


def test_segments_are_owner_only(make_ring):
    ring = make_ring("test-ring-mode", DT, 8)
    name = ring.name
    mode = stat.S_IMODE(os.stat(shm.SHM_DIR / name).st_mode)
    assert mode == 0o600


def test_stale_segments_of_dead_owner_are_removed_and_live_ones_kept():
    p = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
    p.start()
    p.join()
    dead = shm.Segment.create(shm.segment_name("stale", p.pid), 4096)
    live = shm.Segment.create(shm.segment_name("live"), 4096)
    try:
        removed = shm.remove_stale()
        assert dead.name in removed
        assert not (shm.SHM_DIR / dead.name).exists()
        assert (shm.SHM_DIR / live.name).exists()
    finally:
        for s in (dead, live):
            s.close()
            s.unlink()


HUGE = np.dtype([("seq", "<i8"), ("update_id", "<i8"), ("payload", "<i8", (131072,))])  # 1 MiB


def _huge_writer(name: str, n: int, accelerated: bool = False) -> None:
    """Publishes n 1 MiB records; record v carries payload v % 4 (four pre-filled buffers, so the
    writer's cost is the copy alone and it keeps lapping a reader that also checks what it read).
    Accelerated: through the staging record (the C path), one buffer copy more per record."""
    ring = Ring.attach(name)
    w = RingWriter(ring, accelerated=accelerated)
    bufs = [np.zeros((), HUGE) for _ in range(4)]
    for k, b in enumerate(bufs):
        b["payload"] = k
    stage = memoryview(w.staging.reshape(1).view(np.uint8))
    for v in range(1, n + 1):
        rec = bufs[v % 4]
        rec["update_id"] = v
        if accelerated:
            stage[:] = memoryview(rec.reshape(1).view(np.uint8))
            rec = w.staging
        w.publish(rec)
    del w, rec
    ring.close()


def _stress_run(ring: Ring, n: int, accelerated) -> tuple[RingReader, int, int]:
    """One writer process laps the reader over `n` records: (reader, records got, torn ones)."""
    r = RingReader(ring, wait="spin", accelerated=accelerated)
    p = mp.get_context("spawn").Process(target=_huge_writer, args=(ring.name, n, accelerated))
    p.start()
    got, torn, k = 0, 0, 0
    deadline = time.monotonic() + 60
    while r.last_seq < n and time.monotonic() < deadline:
        k += 1
        if k % 3 == 0:
            recs = r.read_many(2, timeout_s=0.5)
        else:
            rec = r.poll() if k % 3 == 1 else r.read(timeout_s=0.5)
            recs = np.empty(0, HUGE) if rec is None else rec.reshape(1)
        got += len(recs)
        torn += int((recs["payload"] != (recs["update_id"] % 4)[:, None]).any(axis=1).sum())
    p.join(30)
    return r, got, torn


@pytest.mark.parametrize("accelerated", IMPLS)
def test_reader_lapped_mid_copy_never_returns_torn_record(make_ring, accelerated):
    """Stress across processes: a writer of 1 MiB records in two slots laps a reader all the
    time. Whether a copy actually overlaps an overwrite here depends on scheduling; the two
    interleaving tests below force that race deterministically. A run in which the scheduler
    let the reader keep up with every record exercised nothing and is run again, up to three
    times (the C path's writer copies each record once more, so its reader keeps up more often:
    the likely cause of one failure of this test in a full suite on 2026-12-04, whose message was
    not kept and which 40 reruns under load did not repeat); every run must return no torn
    record and account for every one, and each assertion now names its run."""
    n = 1500
    for attempt in range(3):
        ring = make_ring(f"test-ring-stress{attempt}", HUGE, 2)
        r, got, torn = _stress_run(ring, n, accelerated)
        assert r.last_seq == n, (attempt, r.last_seq)
        assert torn == 0, (attempt, torn)
        assert got + r.lost == n, (attempt, got, r.lost)
        if r.lost > 0:
            break
    assert r.lost > 0, "the reader was never lapped in three runs: the torn-read path was not exercised"


class _CopyThenOverwrite:
    """Stands in for the reader's destination buffer: performs the real copy, then lets the
    writer lap the ring once, exactly as a writer in another process could mid-copy."""

    def __init__(self, dst: memoryview, writer: RingWriter, laps: int) -> None:
        self.dst, self.writer, self.laps = dst, writer, laps

    def __setitem__(self, key, value) -> None:
        self.dst[key] = value
        if self.laps:
            self.laps -= 1
            publish_values(self.writer, range(10_000, 10_000 + self.writer.ring.capacity))

    def __len__(self) -> int:
        return len(self.dst)


def test_poll_discards_a_record_overwritten_during_its_copy(make_ring):
    ring = make_ring("test-ring-interleave-poll", DT, 8)
    w, r = RingWriter(ring), RingReader(ring, start="next")
    publish_values(w, range(1, 4))
    r._buffer_bytes = _CopyThenOverwrite(r._buffer_bytes, w, laps=1)
    rec = r.poll()
    # The copy of seq 1 raced with the writer: it must not be returned; the reader skips to the
    # newest record and counts everything in between as lost.
    assert rec["seq"] == w.seq == 11 and rec["update_id"] == 10_007
    assert r.lost == 10


def test_read_many_discards_records_overwritten_during_the_copy(make_ring, monkeypatch):
    import hftbot.ipc.ring as ring_mod

    ring = make_ring("test-ring-interleave-many", DT, 8)
    w, r = RingWriter(ring), RingReader(ring, start="next")
    publish_values(w, range(1, 6))
    real = ring_mod._copy_records
    state = {"armed": True}

    def copy_then_lap(src):
        out = real(src)
        if state.pop("armed", False):  # the writer laps the ring right after the copy
            publish_values(w, range(10_000, 10_000 + ring.capacity))
        return out

    monkeypatch.setattr(ring_mod, "_copy_records", copy_then_lap)
    out = r.read_many(16)
    assert list(out["seq"]) == [13]  # the batch 1..5 was torn by the lap: dropped, newest instead
    assert out["update_id"][0] == 10_007
    assert r.lost == 12


def _block_reader(name: str, n: int, out) -> None:
    ring = Ring.attach(name)
    r = RingReader(ring, wait="block")
    lat = []
    while len(lat) < n:
        rec = r.read(timeout_s=10, copy=False)
        if rec is None:
            break
        lat.append(time.monotonic_ns() - int(rec["recv_ns"]))
    out.put(lat)
    r.close()
    del r, rec
    ring.close()


def test_two_blocking_readers_are_woken_for_every_publish(make_ring):
    """Each blocking reader owns its sleep flag; a wakeup is never lost (a lost one would show as
    a ~50 ms backstop delay, or seconds without the backstop)."""
    ring = make_ring("test-ring-2block", DT, 64)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    n = 150
    procs = [ctx.Process(target=_block_reader, args=(ring.name, n, out)) for _ in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 60
    while ring.hdr_q[224 // 8] < 2 and time.monotonic() < deadline:  # both readers claimed a slot
        time.sleep(0.01)
    w = RingWriter(ring)
    for _ in range(n):
        time.sleep(0.004)
        w.staging["recv_ns"] = time.monotonic_ns()
        w.publish(w.staging)
    lats = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    for lat in lats:
        assert len(lat) == n
        slow = sum(1 for x in lat if x > 25e6)
        assert slow <= 3, f"{slow} of {n} wakeups took > 25 ms"


def test_blocking_reader_slots_are_owned_and_given_back(make_ring):
    ring = make_ring("test-ring-slots", DT, 8)
    readers = [RingReader(ring, wait="block") for _ in range(32)]
    assert sorted(r._slot for r in readers) == list(range(32))
    with pytest.raises(RuntimeError, match="more than 32 blocking readers"):
        RingReader(ring, wait="block")
    readers[5].close()
    again = RingReader(ring, wait="block")
    assert again._slot == 5
    for r in [*readers, again]:
        r.close()
    assert all(ring.readers_q[k] == 0 for k in range(64))


@pytest.mark.skipif(ring_mod._fastring is None, reason="C accelerator not built")
def test_c_and_python_paths_write_the_same_bytes(make_ring):
    rings = [make_ring(f"test-ring-same-{k}", DT, 8) for k in range(2)]
    writers = [RingWriter(rings[0], accelerated=False), RingWriter(rings[1], accelerated=True)]
    other = np.zeros((), DT)
    for v in range(1, 21):  # laps the 8-slot rings twice
        for w in writers:
            fill(w.staging, v)
            w.publish(w.staging)
            fill(other, 1000 + v)
            w.publish(other)  # not the staging record: the Python path in both
    assert bytes(rings[0].segment.mm) == bytes(rings[1].segment.mm)
    assert all(int(w.staging["seq"]) == 39 for w in writers)  # staging carries its published seq
    assert int(other["seq"]) == 0  # a caller's own record is never written to
    for acc in (False, True):
        r = RingReader(rings[0], start="oldest", wait="spin", accelerated=acc)
        got = [int(r.read(timeout_s=1)["update_id"]) for _ in range(8)]
        assert got == [v for k in range(17, 21) for v in (k, 1000 + k)] and r.lost == 0
        assert r.read(timeout_s=0.01) is None


def test_requiring_the_c_path_without_it_is_a_clear_error(make_ring, monkeypatch):
    monkeypatch.setattr(ring_mod, "_fastring", None)
    ring = make_ring("test-ring-noc", DT, 8)
    with pytest.raises(RingError, match="not built"):
        RingWriter(ring, accelerated=True)
    assert RingWriter(ring)._c is None  # auto: the Python path


def _sleeping_reader(name: str) -> None:
    """A blocking reader that goes to sleep waiting for a record that never comes."""
    ring = Ring.attach(name)
    r = RingReader(ring, wait="block", start="next")
    r.read(timeout_s=None)


@pytest.mark.parametrize("accelerated", IMPLS)
def test_reader_killed_in_its_sleep_costs_the_writer_a_bounded_number_of_wake_calls(
    make_ring, monkeypatch, accelerated
):
    """kill -9 of a sleeping blocking reader leaves its `asleep` flag set; the writer must stop
    calling FUTEX_WAKE for it (it finds the owner dead, zombie included, and frees the slot)."""
    ring = make_ring("test-ring-deadsleeper", DT, 64)
    p = mp.get_context("spawn").Process(target=_sleeping_reader, args=(ring.name,))
    p.start()
    deadline = time.monotonic() + 60
    while ring.readers_q[1] != 1 and time.monotonic() < deadline:  # slot 0 announced: asleep
        time.sleep(0.01)
    assert ring.readers_q[0] == p.pid and ring.readers_q[1] == 1
    os.kill(p.pid, 9)
    while shm.pid_alive(p.pid) and time.monotonic() < deadline:  # dead, left unreaped (a zombie)
        time.sleep(0.01)
    calls = []
    real_wake = ring_mod.futex.futex_wake
    monkeypatch.setattr(ring_mod.futex, "futex_wake", lambda *a: calls.append(1) or real_wake(*a))
    w = RingWriter(ring, accelerated=accelerated)
    publish_values(w, range(1000))
    assert len(calls) <= ring_mod._IDLE_WAKES_SWEEP
    assert w.reclaimed == 1 and ring.readers_q[0] == 0 and ring.readers_q[1] == 0
    p.join(10)
    live = RingReader(ring, wait="block")  # the freed slot is claimed again
    assert live._slot == 0
    live.close()


def test_supervisor_frees_the_slots_of_a_reader_it_saw_die(make_ring):
    ring = make_ring("test-ring-reclaim", DT, 8)
    p = mp.get_context("spawn").Process(target=_sleeping_reader, args=(ring.name,))
    p.start()
    deadline = time.monotonic() + 60
    while ring.readers_q[1] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    mine = RingReader(ring, wait="block")
    assert ring.reclaim_dead_readers({p.pid}) == 0  # alive: kept
    p.kill()
    p.join(10)
    assert ring.reclaim_dead_readers({os.getpid()}) == 0  # only the pids asked about
    assert ring.reclaim_dead_readers({p.pid}) == 1
    assert ring.readers_q[0] == 0 and ring.readers_q[2 * mine._slot] == os.getpid()
    mine.close()


def test_segments_without_the_owner_pid_prefix_are_refused():
    """remove_stale finds a crashed run's (or test's) segments by the `hftbot-<pid>-` prefix, so
    no segment may be created without it."""
    for bad in ("hft-test-ring", "hftbot-ring", f"x-hftbot-{os.getpid()}-ring"):
        with pytest.raises(ValueError, match="segment name must be hftbot-<owner pid>-<name>"):
            Ring.create(bad, DT, 8)
        assert not (shm.SHM_DIR / bad).exists()
