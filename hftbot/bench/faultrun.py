"""A supervised sim-mode run with faults injected on a script: what `bench faults` and the process
fault tests share (a helper, not a benchmark of its own).

`FaultRun(cfg, script).run()` runs the real supervisor on this thread (it needs the signal
handlers) and the script on another: the script injects faults through the simulator's admin
hooks (`set_faults`, `admin`), kills or stops processes by pid (`kill`), waits on the heartbeat
counters (`wait`), and marks times. Meanwhile `RingWatch` copies what the run published — books,
signals, order frames — from its own mappings of the supervisor's rings, so the checks after the
run can ask what was sent on which book and signal (`orders_between`, `first_book_after`, ...).
The script's exception, if any, is kept in `error` and the run is stopped.
"""

from __future__ import annotations

import json
import os
import signal as signals
import threading
import time
import urllib.request
from collections.abc import Callable

import numpy as np

from hftbot.ipc.ring import Ring, RingReader
from hftbot.records import BOOK_VALID, ORDER_FILL, ORDER_MODIFY, ORDER_PLACE, SIGNAL_NO_MODEL, SIGNAL_WARMUP

BOOK_FIELDS = ("recv_ns", "flags")
SIGNAL_FIELDS = ("publish_ns", "flags", "model_id")
ORDER_FIELDS = ("kind", "send_ns", "book_recv_ns", "flags", "side", "qty", "client_id", "code")


class RingWatch:
    """Copies of the book, signal and order records a run publishes (fields in *_FIELDS)."""

    def __init__(self, segments: dict[str, str], fields: dict[str, tuple[str, ...]] | None = None) -> None:
        self.rings = {n: Ring.attach(segments[n]) for n in ("book", "signal", "order", "exec") if n in segments}
        self.readers = {n: RingReader(r, wait="spin_yield", start="oldest") for n, r in self.rings.items()}
        self.fields = {"book": BOOK_FIELDS, "signal": SIGNAL_FIELDS, "order": ORDER_FIELDS, **(fields or {})}
        self.chunks: dict[str, list[np.ndarray]] = {n: [] for n in self.rings if n != "exec"}
        self.status: dict | None = None  # the newest execution status record (the fault report)
        self.lost = 0
        self.lock = threading.Lock()

    def poll(self) -> None:
        from hftbot.exec.status import faults_of

        with self.lock:
            for name, r in self.readers.items():
                while len(recs := r.read_many(8192, timeout_s=0)):
                    if name == "exec":
                        last = recs[-1]
                        st = {n: (last[n].tolist() if last[n].ndim else last[n].item()) for n in recs.dtype.names}
                        self.status = {**st, "faults": faults_of(st)}
                    else:
                        self.chunks[name].append(recs[list(self.fields[name])].copy())
                self.lost = sum(x.lost for x in self.readers.values())

    def records(self, name: str) -> np.ndarray:
        with self.lock:
            chunks = self.chunks.get(name) or []
            return np.concatenate(chunks) if chunks else np.zeros(0, dtype=self._dtype(name))

    def _dtype(self, name: str) -> np.dtype:
        ring = self.rings.get(name)
        return ring.dtype[list(self.fields[name])] if ring is not None else np.dtype([])

    def close(self) -> None:
        with self.lock:
            for r in self.readers.values():
                r.close()
            for ring in self.rings.values():
                ring.close()
            self.readers = {}


class FaultRun:
    """The supervisor in sim mode, driven by `script(run)` on a thread of its own."""

    def __init__(self, cfg, script: Callable[[FaultRun], None], poll_s: float = 0.02,
                 fields: dict[str, tuple[str, ...]] | None = None) -> None:
        from hftbot.run import Supervisor

        self.sup = Supervisor(cfg, panel=False)
        self.script = script
        self.poll_s = poll_s
        self.fields = fields  # the record fields RingWatch keeps, per ring (default: *_FIELDS)
        self.error: BaseException | None = None
        self.marks: dict[str, int] = {}
        self.notes: dict[str, object] = {}
        self.watch: RingWatch | None = None
        self.summary: dict = {}
        self.exit_code: int | None = None
        self._done = threading.Event()

    # ------------------------------------------------------------------------------ running

    def run(self) -> int:
        driver = threading.Thread(target=self._drive, name="fault-script", daemon=True)
        driver.start()
        self.exit_code = self.sup.run()
        self._done.set()
        driver.join(15)
        self.summary = self.sup.summary()
        if self.watch is not None:
            self.watch.poll()
            self.watch.close()
        return self.exit_code

    def _drive(self) -> None:
        sup = self.sup
        poller = None
        try:
            self.wait(lambda: bool(sup.rings) and sup.table is not None, 60, "the supervisor's rings")
            self.watch = RingWatch(dict(sup.segments), self.fields)
            poller = threading.Thread(target=self._poll, name="fault-watch", daemon=True)
            poller.start()
            self.script(self)
        except BaseException as e:  # kept for the caller: a test re-raises it
            self.error = e
        finally:
            sup.stop_reason = sup.stop_reason or "fault run: script done"

    def _poll(self) -> None:
        while not self._done.is_set() and self.watch is not None:
            try:
                self.watch.poll()
            except (ValueError, OSError):  # the segments went away under us at the very end
                return
            time.sleep(self.poll_s)

    # ------------------------------------------------------------------------------ helpers

    def child(self, name: str):
        return next(c for c in self.sup.children if c.spec.name == name)

    def counters(self, name: str) -> dict[str, int]:
        c = self.child(name)
        table = self.sup.table
        return table.counters(c.slot) if table is not None else dict(c.counters)

    def pid(self, name: str) -> int:
        proc = self.child(name).proc
        return proc.pid if proc is not None and proc.is_alive() else 0

    def wait(self, pred: Callable[[], bool], timeout_s: float, what: str) -> None:
        end = time.monotonic() + timeout_s
        while True:
            if self.sup.stop_reason and not self.sup.stop_reason.startswith("fault run"):
                raise RuntimeError(f"fault run: the run stopped ({self.sup.stop_reason}) waiting for {what}")
            try:
                if pred():
                    return
            except (KeyError, StopIteration, AttributeError, ValueError):
                pass  # not there yet (a process between restarts, a ring not yet attached)
            if time.monotonic() > end:
                raise TimeoutError(f"fault run: {what} did not happen within {timeout_s:g} s")
            time.sleep(0.05)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.sup.stop_reason:
                raise RuntimeError(f"fault run: the run stopped ({self.sup.stop_reason})")
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def mark(self, name: str) -> int:
        self.marks[name] = t = time.time_ns()
        return t

    def admin(self, path: str, body: dict | None = None) -> dict:
        """The simulator's `/sim/...` hooks (GET without a body, POST with one)."""
        url = self.sup.endpoints["rest"] + path
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def set_faults(self, **faults) -> dict:
        """Replace the simulator's faults (the ones left out are off)."""
        return self.admin("/sim/faults", faults)

    def kill(self, name: str, sig: int = signals.SIGKILL) -> tuple[int, int]:
        """Send `sig` to the process by pid; (pid, the time sent in ns)."""
        pid = self.pid(name)
        if not pid:
            raise RuntimeError(f"fault run: {name} is not running")
        t = time.time_ns()
        os.kill(pid, sig)
        return pid, t

    def kill_feed_until_trading(self, timeout_s: float = 60.0) -> tuple[int, int]:
        """kill -9 of the feed, then wait for its successor's first valid book and an order after
        it (the resync is done and trading resumed); (pid killed, the time sent in ns)."""
        pid, t = self.kill("feed")
        self.wait(lambda: self.pid("feed") not in (0, pid) and self.first_book_after(t), timeout_s, "a valid book")
        self.wait(lambda: len(self.orders_between(self.first_book_after(t), time.time_ns())) >= 1, timeout_s,
                  "orders after the resync")
        return pid, t

    # ------------------------------------------------------------------------------ after the run

    def orders_between(self, t0_ns: int, t1_ns: int, kinds=(ORDER_PLACE, ORDER_MODIFY)) -> np.ndarray:
        """Order frames written (place, modify) with `t0 < send_ns < t1`."""
        o = self.watch.records("order") if self.watch is not None else np.zeros(0)
        if not len(o):
            return o
        sel = np.isin(o["kind"], kinds) & (o["send_ns"] > t0_ns) & (o["send_ns"] < t1_ns)
        return o[sel]

    def first_book_after(self, t_ns: int) -> int:
        """Receive time of the first valid book received after `t_ns` (0: none)."""
        b = self.watch.records("book") if self.watch is not None else np.zeros(0)
        ok = b[(b["recv_ns"] > t_ns) & ((b["flags"] & BOOK_VALID) != 0)] if len(b) else b
        return int(ok["recv_ns"].min()) if len(ok) else 0

    def first_signal_after(self, t_ns: int) -> int:
        """Publish time of the first usable signal published after `t_ns` (0: none)."""
        s = self.watch.records("signal") if self.watch is not None else np.zeros(0)
        if not len(s):
            return 0
        ok = (s["publish_ns"] > t_ns) & (s["model_id"] != 0) & ((s["flags"] & (SIGNAL_NO_MODEL | SIGNAL_WARMUP)) == 0)
        return int(s["publish_ns"][ok].min()) if ok.any() else 0

    def faults(self) -> dict[str, dict]:
        """The execution's fault report as of its newest status record (the run goes on)."""
        st = self.watch.status if self.watch is not None else None
        return st["faults"] if st else {}

    def settled(self) -> bool:
        """No fault episode in progress (unsettled orders, streams reconciling, a backoff...)."""
        return all(not f["open"] for f in self.faults().values())

    def fills_before(self, t_ns: int) -> tuple[int, int]:
        """(position in lots, receive time of the last fill) from the fills journalled before `t_ns`
        (a run that starts flat)."""
        o = self.watch.records("order") if self.watch is not None else np.zeros(0)
        if not len(o):
            return 0, 0
        f = o[(o["kind"] == ORDER_FILL) & (o["send_ns"] < t_ns)]
        return int((f["side"] * f["qty"]).sum()), int(f["send_ns"].max()) if len(f) else 0

    def placed_client_ids(self) -> list[str]:
        o = self.watch.records("order") if self.watch is not None else np.zeros(0)
        return [c.decode() for c in o["client_id"][o["kind"] == ORDER_PLACE]] if len(o) else []
