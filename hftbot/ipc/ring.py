"""Single-writer, many-reader ring of fixed-size numpy records in shared memory.

Layout of a segment (offsets in bytes):

    0     header: magic, capacity, itemsize, dtype length        (written once by the creator)
    64    write_seq  i64   last published sequence number (0 = nothing yet)
    128   wake_word  u32   futex word, bumped on every publish once a blocking reader exists
    224   blockers   i64   how many blocking-reader slots have ever been claimed (high-water)
    256   dtype description (JSON of `dtype.descr`), up to 3584
    3584  reader slots: 32 x (pid i64, asleep i64), one per blocking reader
    4096  slot_seq   i64[capacity]   per-slot sequence number (seqlock)
    ...   records    dtype[capacity]

Writing sequence `s` into slot `(s - 1) % capacity`: the slot's sequence becomes `-s` (busy),
the record is copied, the slot's sequence becomes `s`, then `write_seq = s`. A reader that wants
`r` copies the record and accepts it only if the slot's sequence was `r` before *and* after the
copy; otherwise the writer lapped it. So a reader never returns a torn or overwritten record, and
the writer never waits for anyone.

A lapped reader (the writer is `capacity` or more records ahead, or overwrote the record while it
was being copied) counts every record it did not return in `lost` and jumps to the newest one:
for every reader, `last_seq == records returned + lost` holds exactly.

Ordering relies on x86-64 TSO (stores are seen in program order; loads are not reordered with
loads); the one store->load handshake (the writer publishes then checks the readers' `asleep`
flags, a reader sets its flag then re-checks `write_seq`) is fenced (see `hftbot.ipc.futex`).
Each blocking reader owns its flag (claimed under a file lock at construction): only its owner
writes it, so no announcement can be overwritten by another process.

Wait strategies for `read`: "spin" (lowest latency, burns a core), "spin_yield" (spin a while,
then `sched_yield`), "block" (futex sleep, woken by the writer).

The two per-record hot paths - publishing the writer's `staging` record and the spinning take -
run in C (`_fastring.c`) when that optional extension was built; the Python code below does the
same thing otherwise (or with HFTBOT_RING_PYTHON=1, or `accelerated=False`). Writer and reader
then hold an export of the mapping (`_pin`), so the segment stays mapped while they live and C
never writes to an unmapped address.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import json
import os
import struct
import time
from collections.abc import Callable

import numpy as np

from hftbot.ipc import futex, shm
from hftbot.ipc.shm import Segment

try:
    from hftbot.ipc import _fastring
except ImportError:  # built without a C compiler: the Python paths serve
    _fastring = None
PYTHON_FORCED = os.environ.get("HFTBOT_RING_PYTHON") == "1"  # read once: the paths are chosen at import
if PYTHON_FORCED:
    _fastring = None
_C_SPINS = 1 << 14  # C slot checks per `take` call: about as long as 256 Python ones (~20 µs)

MAGIC = 0x3147_4E49_5254_4648  # "HFTRING1" little-endian
DATA_OFFSET = 4096
_DESCR_OFFSET = 256
_WRITE_SEQ = 64 // 8  # index of write_seq in the header's i64 view
_BLOCKERS = 224 // 8
_READER_SLOTS_OFFSET = 3584
MAX_BLOCKING_READERS = 32
# A blocking reader re-checks at least this often even if no wakeup arrives. Wakeups are real
# (futex); this only bounds the cost of one lost to something unforeseen (we saw one unexplained
# multi-second stall once on a loaded machine) to a few tens of milliseconds, never seconds.
_BACKSTOP_S = 0.05
# Wake calls in a row that woke nobody before a writer looks for dead readers' flags. A live
# reader's flag is set without it sleeping only between its announcement and its futex wait.
_IDLE_WAKES_SWEEP = 64
WAIT_STRATEGIES = ("spin", "spin_yield", "block")


def _descr_to_json(dtype: np.dtype) -> str:
    return json.dumps(np.lib.format.dtype_to_descr(dtype))


def _dtype_from_json(text: str) -> np.dtype:
    def fields(descr):  # JSON turned numpy's tuples into lists; rebuild them
        if isinstance(descr, str):
            return descr
        return [tuple([f[0], fields(f[1]), *([tuple(f[2])] if len(f) > 2 else [])]) for f in descr]

    return np.lib.format.descr_to_dtype(fields(json.loads(text)))


class RingError(RuntimeError):
    pass


class Ring:
    """A mapped ring segment. Use `create` (owner) or `attach` (everyone else)."""

    def __init__(self, seg: Segment) -> None:
        self.segment = seg
        self.name = seg.name
        hdr = np.frombuffer(seg.mm, dtype="<i8", count=4, offset=0)
        if int(hdr[0]) != MAGIC:
            raise RingError(f"segment {seg.name!r} is not an hftbot ring (bad magic)")
        self.capacity = int(hdr[1])
        itemsize = int(hdr[2])
        descr_len = int(hdr[3])
        descr = bytes(seg.mm[_DESCR_OFFSET : _DESCR_OFFSET + descr_len]).decode()
        self.dtype = _dtype_from_json(descr)
        if self.dtype.itemsize != itemsize:
            raise RingError(f"ring {seg.name!r}: dtype size {self.dtype.itemsize} != header {itemsize}")
        self.mask = self.capacity - 1
        self.slot_seq = np.frombuffer(seg.mm, dtype="<i8", count=self.capacity, offset=DATA_OFFSET)
        data_off = DATA_OFFSET + 8 * self.capacity
        self.records = np.frombuffer(seg.mm, dtype=self.dtype, count=self.capacity, offset=data_off)
        self._wake_word = ctypes.c_uint32.from_buffer(seg.mm, 128)
        self.wake_addr = ctypes.addressof(self._wake_word)
        # Records move as raw bytes and sequence words through memoryviews: numpy's per-record
        # structured assignment costs 10-100 µs, a memoryview slice copy well under 1 µs, and a
        # memoryview element ~40 ns against ~100 ns for a numpy scalar.
        self.itemsize = itemsize
        self.data_offset = data_off
        self.view = memoryview(seg.mm).cast("B")
        self.hdr_q = self.view[:_DESCR_OFFSET].cast("q")
        self.readers_q = self.view[_READER_SLOTS_OFFSET:DATA_OFFSET].cast("q")  # (pid, asleep) pairs
        self.slots_q = self.view[DATA_OFFSET:data_off].cast("q")
        aligned = itemsize % 8 == 0
        self.data_q = self.view[data_off : data_off + itemsize * self.capacity].cast("q") if aligned else None

    @staticmethod
    def segment_size(dtype: np.dtype, capacity: int) -> int:
        return DATA_OFFSET + 8 * capacity + dtype.itemsize * capacity

    @classmethod
    def create(cls, name: str, dtype: np.dtype, capacity: int) -> Ring:
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"ring capacity must be a power of two >= 2, got {capacity}")
        dtype = np.dtype(dtype)
        descr = _descr_to_json(dtype).encode()
        if len(descr) > _READER_SLOTS_OFFSET - _DESCR_OFFSET:
            raise ValueError(f"dtype description too long for the ring header ({len(descr)} bytes)")
        seg = Segment.create(name, cls.segment_size(dtype, capacity))
        hdr = np.frombuffer(seg.mm, dtype="<i8", count=4, offset=0)
        hdr[1] = capacity
        hdr[2] = dtype.itemsize
        hdr[3] = len(descr)
        seg.mm[_DESCR_OFFSET : _DESCR_OFFSET + len(descr)] = descr
        hdr[0] = MAGIC  # last: an attacher never sees a half-written header
        del hdr
        return cls(seg)

    @classmethod
    def attach(cls, name: str) -> Ring:
        return cls(Segment.attach(name))

    @property
    def write_seq(self) -> int:
        return self.hdr_q[_WRITE_SEQ]

    def close(self) -> None:
        """Drop every view, then unmap."""
        for attr in ("data_q", "slots_q", "hdr_q", "readers_q", "view"):
            mv = self.__dict__.pop(attr, None)
            if mv is not None:
                mv.release()
        for attr in ("slot_seq", "records", "_wake_word"):
            self.__dict__.pop(attr, None)
        self.segment.close()

    def unlink(self) -> None:
        self.segment.unlink()

    def reclaim_dead_readers(self, pids: set[int] | None = None) -> int:
        """Free the blocking-reader slots of dead processes (all dead ones, or only `pids`).

        A reader killed while asleep leaves its `asleep` flag set, and the writer would make a
        futex wake call on every publish for it. The supervisor calls this for a child it saw
        die; a writer calls it itself after a run of wake calls that woke nobody. Under the same
        file lock as `RingReader._claim_slot`, so a slot being claimed is never freed."""
        freed = 0
        with open(shm.SHM_DIR / self.name, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                rq = self.readers_q
                for k in range(min(int(self.hdr_q[_BLOCKERS]), MAX_BLOCKING_READERS)):
                    pid = int(rq[2 * k])
                    if pid and (pid in pids if pids is not None else True) and not shm.pid_alive(pid):
                        rq[2 * k + 1] = 0
                        rq[2 * k] = 0
                        freed += 1
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return freed


class RingWriter:
    """The one writer of a ring. Never blocks, never waits for readers.

    Records whose dtype has a `seq` field get it stamped with their sequence number.
    """

    def __init__(self, ring: Ring, accelerated: bool | None = None) -> None:
        self.ring = ring
        self.seq = ring.write_seq  # resume after a restart of the writing process
        self.staging = np.zeros((), dtype=ring.dtype)
        self._staging_bytes = _bytes_of(self.staging)
        fields = ring.dtype.fields or {}
        self._seq_offset = fields["seq"][1] if "seq" in fields else None
        self._seq_col = ring.records["seq"] if "seq" in fields else None
        # Hot-path constants, looked up once.
        self._mask, self._isz, self._doff = ring.mask, ring.itemsize, ring.data_offset
        self._view, self._slots, self._hdr = ring.view, ring.slots_q, ring.hdr_q
        fast = ring.data_q is not None and self._seq_offset is not None and self._seq_offset % 8 == 0
        self._seq_word = self._seq_offset // 8 if fast else None
        self._words_per_record = self._isz // 8
        self._staging_q = self._staging_bytes.cast("q") if self._seq_word is not None else None
        self._next_i = -1  # slot whose view `_next_dst` is (publish prepares the next one)
        self._next_dst: memoryview | None = None
        self._c, self._base, self._pin = _accelerator(ring, accelerated)
        self._staging_addr = self.staging.ctypes.data
        self._c_seq_off = -1 if self._seq_offset is None else self._seq_offset
        self._idle_wakes = 0  # consecutive wake calls that woke nobody (see _wake)
        self.reclaimed = 0  # slots of dead blocking readers this writer freed

    def publish(self, record: np.ndarray | np.void) -> int:
        """Copy one record (of the ring's dtype) into the ring and return its sequence number.

        The hot path of every process, written flat on purpose: between the caller's last store
        and the slot turning to `s` (what a spinning reader waits for) it runs about ten
        statements. Publishing `self.staging` (how every process publishes) stamps `seq` into
        the staging record itself before the copy, and the next slot's view is made after the
        commit, not before the copy. Any other record goes through `_fill` and is left untouched.
        """
        s = self.seq + 1
        c = self._c
        if c is not None and record is self.staging:
            wake = c.publish(self._base, self._doff, self._staging_addr, self._isz, self._mask, s, self._c_seq_off)
            self.seq = s
            if wake:
                self._wake()
            return s
        i = (s - 1) & self._mask
        slots = self._slots
        if record is self.staging and i == self._next_i:
            self._staging_q[self._seq_word] = s  # type: ignore[index]
            slots[i] = -s
            self._next_dst[:] = self._staging_bytes  # type: ignore[index]
        else:
            self._fill(record, s, i)
        slots[i] = s
        self.seq = s
        hdr = self._hdr
        hdr[_WRITE_SEQ] = s
        if hdr[_BLOCKERS]:
            self._wake()
        if self._staging_q is not None and c is None:  # the next slot's view, now this record is out
            i = s & self._mask
            self._next_i = i
            self._next_dst = self._view[self._doff + i * self._isz : self._doff + (i + 1) * self._isz]
        return s

    def _fill(self, record: np.ndarray | np.void, s: int, i: int) -> None:
        """Mark slot i busy and copy `record` into it with `seq` = s (the general path of publish)."""
        isz = self._isz
        src = self._staging_bytes if record is self.staging else _bytes_of(record)
        if len(src) != isz:
            raise ValueError(f"record of {len(src)} bytes does not fit ring {self.ring.name!r} ({isz})")
        off = self._doff + i * isz
        self._slots[i] = -s
        self._view[off : off + isz] = src
        if self._seq_word is not None:
            self.ring.data_q[i * self._words_per_record + self._seq_word] = s  # type: ignore[index]
        elif self._seq_offset is not None:
            _I64.pack_into(self._view, off + self._seq_offset, s)

    def publish_many(self, records: np.ndarray) -> int:
        """Publish a batch (at most `capacity` records) with one seqlock pass; returns the last seq."""
        ring = self.ring
        n = len(records)
        if n == 0:
            return self.seq
        if n > ring.capacity:
            raise ValueError(f"batch of {n} records exceeds the ring capacity {ring.capacity}")
        if records.dtype != ring.dtype:
            raise ValueError(f"batch dtype does not match ring {ring.name!r}")
        first = self.seq + 1
        seqs = np.arange(first, first + n, dtype=np.int64)
        idx = (seqs - 1) & ring.mask
        ring.slot_seq[idx] = -seqs
        src = _bytes_of(np.ascontiguousarray(records))
        isz = ring.itemsize
        for lo, hi, start in _spans(int(idx[0]), n, ring.capacity):
            off = ring.data_offset + lo * isz
            ring.view[off : off + (hi - lo) * isz] = src[start * isz : (start + hi - lo) * isz]
        if self._seq_col is not None:
            self._seq_col[idx] = seqs
        ring.slot_seq[idx] = seqs
        self._commit(first + n - 1)
        return self.seq

    def _commit(self, s: int) -> None:
        self.seq = s
        hdr = self._hdr
        hdr[_WRITE_SEQ] = s
        if hdr[_BLOCKERS]:
            self._wake()

    def _wake(self) -> None:
        """Wake sleeping readers. Only rings that ever had a blocking reader pay for this.

        A flag that stays set while wake calls wake nobody belongs to a reader killed in its
        sleep: after `_IDLE_WAKES_SWEEP` such calls in a row the writer frees dead readers' slots,
        so a kill -9 costs at most that many wasted syscalls, not one per publish forever."""
        ring = self.ring
        ring._wake_word.value = (ring._wake_word.value + 1) & 0xFFFFFFFF
        futex.fence()
        rq = ring.readers_q
        for k in range(1, 2 * self._hdr[_BLOCKERS], 2):
            if rq[k]:
                if futex.futex_wake(ring.wake_addr) > 0:
                    self._idle_wakes = 0
                else:
                    self._idle_wakes += 1
                    if self._idle_wakes >= _IDLE_WAKES_SWEEP:
                        self._idle_wakes = 0
                        self.reclaimed += ring.reclaim_dead_readers()
                return


def accelerator_missing() -> str:
    """Why the rings run their Python paths although nobody asked ('' when the C accelerator is
    loaded or HFTBOT_RING_PYTHON=1 chose Python): an install without a C compiler, or one whose
    build was skipped, is slower by ~1 µs a hop and would otherwise say nothing."""
    if _fastring is not None or PYTHON_FORCED:
        return ""
    return ("rings run their Python code: the C accelerator (hftbot.ipc._fastring) is not built, ~1 µs "
            "more a hop; with a C compiler, `pip install --no-build-isolation -e .` builds it")


def _accelerator(ring: Ring, accelerated: bool | None):
    """(module, mapping base address, pin) for the C paths, or (None, 0, None).

    accelerated: None = use C when built; True = require it; False = the Python paths."""
    if accelerated is False or (accelerated is None and _fastring is None):
        return None, 0, None
    if _fastring is None:
        raise RingError("the C ring accelerator (hftbot.ipc._fastring) is not built")
    pin = ctypes.c_char.from_buffer(ring.segment.mm)  # keeps the mapping alive while we use it
    return _fastring, ctypes.addressof(pin), pin


_I64 = struct.Struct("<q")
_SPIN_CHUNK_CHECKS = 256  # Python slot checks between deadline / lap / yield checks (~20 µs)


def _bytes_of(a: np.ndarray | np.void) -> memoryview:
    """A flat byte view of a record or contiguous record array (no copy for arrays)."""
    if isinstance(a, np.void):
        return memoryview(a.tobytes())
    return memoryview(a.reshape(-1).view(np.uint8)).cast("B")


def _copy_records(src: memoryview) -> bytearray:
    """One `read_many` copy: a bytearray built from the slots' bytes in one pass (no zero fill
    first). A seam the lap-during-copy test wraps."""
    return bytearray(src)


def _spans(start: int, n: int, capacity: int) -> list[tuple[int, int, int]]:
    """Slot ranges [lo, hi) covering n slots from `start`, split where the ring wraps."""
    end = start + n
    if end <= capacity:
        return [(start, end, 0)]
    return [(start, capacity, 0), (0, end - capacity, capacity - start)]


class RingReader:
    """One reader's cursor into a ring. Many readers may read the same ring independently."""

    def __init__(
        self, ring: Ring, wait: str = "spin_yield", start: str = "next", spin_count: int = 2000,
        accelerated: bool | None = None,
    ) -> None:
        if wait not in WAIT_STRATEGIES:
            raise ValueError(f"wait strategy must be one of {WAIT_STRATEGIES}, got {wait!r}")
        if start not in ("next", "oldest"):
            raise ValueError(f"start must be 'next' or 'oldest', got {start!r}")
        self.ring = ring
        self.wait = wait
        self.spin_count = spin_count
        ws = ring.write_seq
        self.last_seq = ws if start == "next" else max(0, ws - ring.capacity)
        self.lost = 0
        self.buffer = np.zeros((), dtype=ring.dtype)  # what poll(copy=False) returns
        self._buffer_bytes = self._buffer_view = _bytes_of(self.buffer)
        # Hot-path constants, looked up once.
        self._hot = (
            ring.slots_q,
            ring.hdr_q,
            ring.view,
            ring.itemsize,
            ring.data_offset,
            ring.mask,
            ring.capacity,
        )
        self._slot = self._claim_slot() if wait == "block" else -1
        self._c, self._base, self._pin = _accelerator(ring, accelerated)
        self._buffer_addr = self.buffer.ctypes.data
        # what read_many returns when nothing came: one zero-length array, made once (it holds no
        # data, so a caller that keeps or writes into it changes nothing)
        self._empty = np.empty(0, dtype=ring.dtype)

    def _claim_slot(self) -> int:
        """Claim a reader slot (its `asleep` flag) under a lock on the segment file."""
        ring = self.ring
        with open(shm.SHM_DIR / ring.name, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                rq = ring.readers_q
                for k in range(MAX_BLOCKING_READERS):
                    pid = rq[2 * k]
                    if pid == 0 or not shm.pid_alive(pid):
                        rq[2 * k], rq[2 * k + 1] = os.getpid(), 0
                        ring.hdr_q[_BLOCKERS] = max(ring.hdr_q[_BLOCKERS], k + 1)
                        futex.fence()
                        return k
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        raise RingError(f"ring {ring.name!r}: more than {MAX_BLOCKING_READERS} blocking readers")

    def close(self) -> None:
        """Give back this reader's slot (blocking readers). Also done when it is collected."""
        if self._slot >= 0 and "readers_q" in self.ring.__dict__:
            rq = self.ring.readers_q
            if rq[2 * self._slot] == os.getpid():
                rq[2 * self._slot + 1] = 0
                rq[2 * self._slot] = 0
        self._slot = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def available(self) -> int:
        """Records published but not yet read (may exceed capacity if lapped)."""
        return self.ring.write_seq - self.last_seq

    def skip_to_newest(self) -> int:
        """Jump so the next read returns the newest record; returns how many were skipped."""
        ws = self.ring.write_seq
        skipped = max(0, ws - 1 - self.last_seq)
        if skipped:
            self.lost += skipped
            self.last_seq = ws - 1
        return skipped

    def poll(self, copy: bool = True) -> np.ndarray | None:
        """The next unread record, or None if there is none. Never blocks.

        With copy=False the record is returned in `self.buffer`, which the next read overwrites
        (no allocation: the low-latency path).
        """
        slots, hdr, view, isz, doff, mask, cap = self._hot
        while True:
            ws = hdr[_WRITE_SEQ]
            r = self.last_seq + 1
            if ws < r:
                return None
            if ws - r >= cap:
                self.lost += ws - r
                self.last_seq = ws - 1
                r = ws
            i = (r - 1) & mask
            if slots[i] != r:
                self._lapped()
                continue
            off = doff + i * isz
            self._buffer_bytes[:] = view[off : off + isz]
            if slots[i] != r:  # overwritten while we copied: the copy may be torn
                self._lapped()
                continue
            self.last_seq = r
            return self.buffer if not copy else self._copy_out()

    def _lapped(self) -> None:
        """The record we wanted was overwritten: count everything up to the newest as lost."""
        ws = self.ring.hdr_q[_WRITE_SEQ]
        skipped = ws - 1 - self.last_seq
        if skipped > 0:
            self.lost += skipped
            self.last_seq = ws - 1

    def read(self, timeout_s: float | None = None, copy: bool = True) -> np.ndarray | None:
        """The next record, waiting with this reader's strategy; None on timeout."""
        rec = self.poll(copy)
        if rec is not None:
            return rec
        if self.wait != "block":
            return self._spin_read(timeout_s, copy)
        if not self._wait(timeout_s):
            return None
        return self.poll(copy)

    def _spin_read(self, timeout_s: float | None, copy: bool) -> np.ndarray | None:
        """Spin on the wanted record's own slot word and take the record the moment it lands.

        Why not spin on `write_seq` and then `poll`: the slot word turns to `r` a few statements
        before the writer bumps `write_seq`, it is the word the seqlock check reads anyway (one
        cache line fetched from the writer's core instead of two), and after it flips only the
        copy and the re-check stand between the writer and the caller - no header reads.
        Each `take` spins ~20 µs (in C when built, `_fastring.take`, else `_python_take`) and
        answers 1 (copied), 0 (not yet) or -1 (lapped, or overwritten during the copy); anything
        unusual goes through `poll`, which counts the loss. `spin_yield` yields after
        `spin_count` checks' worth of spinning; both honour the timeout.
        """
        _, hdr, _, isz, doff, mask, _ = self._hot
        r = self.last_seq + 1
        if self._c is not None:
            take = functools.partial(self._c.take, self._base, doff, self._buffer_addr, isz, mask, r, _C_SPINS)
        else:
            take = self._python_take(r)
        yield_every = self.spin_count if self.wait == "spin_yield" else 0
        spins = 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            got = take()
            if got > 0:
                self.last_seq = r
                return self.buffer if not copy else self._copy_out()
            if got < 0 or hdr[_WRITE_SEQ] >= r:  # lapped: the slot will never hold r
                return self.poll(copy)
            spins += _SPIN_CHUNK_CHECKS
            if yield_every and spins >= yield_every:
                os.sched_yield()
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _python_take(self, r: int) -> Callable[[], int]:
        """`_fastring.take` in Python: up to `_SPIN_CHUNK_CHECKS` checks of record r's slot."""
        slots, _, view, isz, doff, mask, _ = self._hot
        i = (r - 1) & mask
        src = view[doff + i * isz : doff + (i + 1) * isz]  # made before the wait, not after it
        dst = self._buffer_bytes
        chunk = range(_SPIN_CHUNK_CHECKS)

        def take() -> int:
            for _ in chunk:
                if slots[i] == r:
                    dst[:] = src
                    return 1 if slots[i] == r else -1  # re-check: overwritten while we copied?
            return 0

        return take

    def _copy_out(self) -> np.ndarray:
        """A new 0-d record holding what `buffer` holds. np.frombuffer over a fresh bytearray:
        ~2 µs, where ndarray.copy() of a structured record costs ~13 µs."""
        return np.frombuffer(bytearray(self._buffer_view), dtype=self.ring.dtype).reshape(())

    def read_many(self, max_n: int, timeout_s: float | None = None) -> np.ndarray:
        """Up to `max_n` consecutive unread records (a new array); empty on timeout.

        Written with plain-int slot checks and one bytearray copy (`_copy_records`), no numpy
        call but the final `frombuffer`: the caller has usually just woken from a sleep, with cold
        caches, and there numpy's fancy indexing, `array_equal` and a structured `empty` cost
        ~340 µs between the wakeup and the records (measured on the 2-core dev VM: a `block`
        reader woken after 100 ms idle), against ~5 µs for this. The seqlock check needs only the first record's
        slot: the single writer overwrites slots in sequence order, so while slot `r` still holds
        `r` after the copy, no later slot of the batch has been touched either (x86-64 TSO)."""
        slots, hdr, view, isz, doff, mask, cap = self._hot
        for _ in range(2):
            while True:
                ws = hdr[_WRITE_SEQ]
                r = self.last_seq + 1
                if ws < r:
                    break
                if ws - r >= cap:
                    self.lost += ws - r
                    self.last_seq = ws - 1
                    r = ws
                n = min(max_n, ws - r + 1)
                i = (r - 1) & mask
                if slots[i] != r:
                    self._lapped()
                    continue
                end = i + n
                out = _copy_records(view[doff + i * isz : doff + min(end, cap) * isz])
                if end > cap:  # the batch wraps: the second span from the ring's start
                    out += view[doff : doff + (end - cap) * isz]
                if slots[i] != r:  # the writer lapped us while we copied
                    self._lapped()
                    continue
                self.last_seq = r + n - 1
                return np.frombuffer(out, dtype=self.ring.dtype)
            if not self._wait(timeout_s):
                break
        return self._empty

    def _wait(self, timeout_s: float | None) -> bool:
        """Wait until a record past `last_seq` is published; False on timeout.

        A timeout of 0 (or less) is a poll: the caller has just looked, so this answers at once.
        (It used to spin `spin_count` checks first: ~130 µs of CPU per empty poll of a spin_yield
        reader, paid by execution on every pass between a signal and its order.)"""
        if timeout_s is not None and timeout_s <= 0:
            return False
        ring = self.ring
        target = self.last_seq + 1
        hdr = ring.hdr_q
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if self.wait == "spin":
            n = 0
            while hdr[_WRITE_SEQ] < target:
                n += 1
                if deadline is not None and n & 1023 == 0 and time.monotonic() >= deadline:
                    return False
            return True
        if self.wait == "spin_yield":
            n = 0
            while hdr[_WRITE_SEQ] < target:
                n += 1
                if n > self.spin_count:
                    os.sched_yield()
                    if deadline is not None and time.monotonic() >= deadline:
                        return False
            return True
        # block: announce in our own flag, re-check, sleep; the writer wakes flagged sleepers
        rq, flag = ring.readers_q, 2 * self._slot + 1
        try:
            while True:
                v = ring._wake_word.value
                if hdr[_WRITE_SEQ] >= target:
                    return True
                rq[flag] = 1
                futex.fence()
                if hdr[_WRITE_SEQ] >= target:
                    return True
                remaining = _BACKSTOP_S if deadline is None else min(deadline - time.monotonic(), _BACKSTOP_S)
                if remaining <= 0:
                    return False
                futex.futex_wait(ring.wake_addr, v, remaining)
        finally:
            rq[flag] = 0
