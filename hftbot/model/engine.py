"""The inference logic, apart from the process loop: book records in, signal records out.

- `ModelRuntime`: one verified checkpoint serving one live stream — its feature window
  (`OnlineWindow`, with the checkpoint's frozen normalisation) and its numba streaming state.
- `InferenceEngine`: keeps the last book records (to prime a new model), feeds every record to
  the serving runtime, and fills a signal: probabilities, or "no model" (SIGNAL_NO_MODEL, NaN,
  model id 0), or "window not full" (SIGNAL_WARMUP, NaN, the model's id), or "the model's output
  is not finite" (SIGNAL_NONFINITE, NaN, the model's id: never published as a normal signal).
- `ModelWatcher`: reads the checkpoint pointer every poll interval, loads and verifies a new
  checkpoint in a background thread (TorchScript in a worker process) and hands over a fresh
  runtime; the engine primes it with the recent records and feeds it what arrives, one record
  per idle step of the loop, warms it and swaps it in *between* two updates once it has seen
  them all, so the swap itself is a pointer swap, no update is missed and no update is
  computed by half of each model.
  A refused checkpoint is logged once (per pointer change) and the running model stays.

Nothing here reads rings or sleeps; the process module (`hftbot.model.inference`) is the loop.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hftbot.model.checkpoint import (
    POINTER,
    CheckpointError,
    Compat,
    LoadedCheckpoint,
    load_checkpoint,
    load_verified,
    read_pointer,
    save_verified,
)
from hftbot.model.features import OnlineWindow
from hftbot.model.streaming import RECEPTIVE, softmax
from hftbot.records import SIGNAL_DTYPE, SIGNAL_NO_MODEL, SIGNAL_NONFINITE, SIGNAL_WARMUP, book_dtype


class ModelRuntime:
    """A checkpoint bound to one stream of book records."""

    def __init__(self, ckpt: LoadedCheckpoint) -> None:
        self.ckpt = ckpt
        self.model_id = ckpt.model_id
        self.window = OnlineWindow(ckpt.spec)
        self.stream = ckpt.runtime()
        self.pushed = 0  # records seen (usable or not)

    def push(self, rec: np.ndarray | np.void) -> None:
        if self.window.push(rec):
            if self.window.filled == 1:  # a new segment: the conv caches start over too
                self.stream.reset()
            self.stream.push_row(self.window.last_row)
        else:
            self.stream.reset()
        self.pushed += 1

    @property
    def ready(self) -> bool:
        return self.window.full

    def probabilities(self) -> np.ndarray:
        """p(down), p(flat), p(up) for the window ending at the last pushed record (ready only)."""
        return softmax(self.stream.logits(self.window.window()))

    def warm(self) -> None:
        """Pull this runtime's LSTM weights and caches into the CPU cache; changes no state
        (`logits` writes only its own scratch), so a model swapped in does not serve cold."""
        if self.ready:
            self.probabilities()

    def reset(self) -> None:
        self.window.reset()
        self.stream.reset()


class RecordHistory:
    """The last `capacity` book records, in order, for priming a model that arrives mid-stream."""

    def __init__(self, dtype: np.dtype, capacity: int) -> None:
        self.capacity = capacity
        self._buf = np.zeros(2 * capacity, dtype=dtype)  # double-written: any tail is one slice
        self.total = 0  # records appended since the last clear
        self.epoch = 0  # bumped by clear(): totals of different epochs are not comparable
        self.lock = threading.Lock()

    def append(self, rec: np.ndarray | np.void) -> None:
        with self.lock:
            i = self.total % self.capacity
            self._buf[i] = rec
            self._buf[i + self.capacity] = rec
            self.total += 1

    def tail(self, n: int) -> tuple[np.ndarray, tuple[int, int]]:
        """A copy of the last min(n, kept) records and the (epoch, total) mark of that moment."""
        with self.lock:
            k = min(n, self.total, self.capacity)
            end = self.total % self.capacity + self.capacity
            return self._buf[end - k : end].copy(), (self.epoch, self.total)

    def since(self, mark: tuple[int, int], limit: int | None = None
              ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """Records appended after `mark` (the first `limit` of them) and the new mark, or None if
        no longer possible (cleared, overrun)."""
        with self.lock:
            epoch, start_total = mark
            k = self.total - start_total
            if epoch != self.epoch or k < 0 or k > self.capacity:
                return None
            end = self.total % self.capacity + self.capacity
            if limit is not None and k > limit:
                end -= k - limit
                k = limit
            return self._buf[end - k : end].copy(), (self.epoch, start_total + k)

    def lag(self, mark: tuple[int, int]) -> int | None:
        """Records appended after `mark`, or None if the mark is of a cleared epoch."""
        return self.total - mark[1] if mark[0] == self.epoch else None

    def clear(self) -> None:
        """Forget everything (a gap in the book stream: old records are not continuous)."""
        with self.lock:
            self.total = 0
            self.epoch += 1


def need_rows(ckpt: LoadedCheckpoint) -> int:
    """Records that rebuild a runtime's whole state (see `prime`)."""
    return ckpt.spec.window + RECEPTIVE + 1


def prime(ckpt: LoadedCheckpoint, history: RecordHistory) -> tuple[ModelRuntime, tuple[int, int]]:
    """A runtime for `ckpt` fed with the recent records; returns it and the history mark it covers.

    W + 23 + 1 records rebuild exactly the state a runtime that saw everything would have: a
    window needs W rows, their conv caches the 22 before, the first row the mid before it.
    """
    rt = ModelRuntime(ckpt)
    recs, upto = history.tail(need_rows(ckpt))
    for rec in recs:
        rt.push(rec)
    return rt, upto


def catch_up(rt: ModelRuntime, history: RecordHistory, mark: tuple[int, int],
             limit: int | None = None) -> tuple[ModelRuntime, tuple[int, int]]:
    """Feed `rt` the records appended since `mark` (at most `limit` of them); re-prime from the
    tail when that is cheaper.

    Only the last W + 24 records shape a runtime's state, so a long backlog (or a gap, or an
    overrun history) is replaced by priming from the tail: the work is bounded either way.
    """
    need = need_rows(rt.ckpt)
    lag = history.lag(mark)
    if lag is None or lag > need:
        return prime(rt.ckpt, history)
    got = history.since(mark, limit)
    if got is None:
        return prime(rt.ckpt, history)
    recs, mark = got
    for rec in recs:
        rt.push(rec)
    return rt, mark


def load_for_serving(target: Path, compat: Compat, threads: int = 1) -> LoadedCheckpoint:
    """Load and verify; keep only what serving needs (picklable: runs in the verify helper too).

    A checkpoint verified before comes from the verified-weights cache without torch
    (`load_verified`); any other is verified in full and its weights cached for next time."""
    ckpt = load_verified(target, compat)
    if ckpt is not None:
        return ckpt
    import torch

    torch.set_num_threads(threads)
    ckpt = load_checkpoint(target, compat)
    save_verified(ckpt)
    # free the TorchScript module here, off the update path: destroying one takes milliseconds
    ckpt.script = None
    return ckpt


_load_for_serving = load_for_serving  # the name it had


@dataclass
class Pending:
    """What the loader thread hands over: a runtime for a verified checkpoint, or the reason it
    was refused. ``upto`` is the history mark the runtime has seen; None: not primed yet (the
    engine primes it from the history's tail in the serving thread's idle time).
    ``fallback``: why the pointer's own target is not the one served (it is the newest
    checkpoint of the folder that verifies)."""

    path: Path
    runtime: ModelRuntime | None = None
    upto: tuple[int, int] | None = None
    error: str | None = None
    load_s: float = 0.0
    fallback: str | None = None


FALLBACK_CANDIDATES = 8  # newest checkpoints tried when the pointer's own is unusable


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ModelWatcher:
    """Watches `<dir>/CURRENT`; loads and verifies what it names, off the update path.

    What counts as "something new": the pointer's text *and* the identity (inode, mtime, size)
    of the file it names, so a checkpoint rewritten under the same name is loaded again. A
    pointer that is unreadable, or names a checkpoint that does not verify, while no model is
    being served (a start after a crash mid-write, a corrupted folder) makes it fall back to the
    newest checkpoint of the folder that verifies, logged as an error; with none, it serves no
    model and says so (`no_model`). While a model is served, a bad pointer or a deleted CURRENT
    only logs (once per change) and the running model stays.
    """

    def __init__(self, directory: str | os.PathLike, compat: Compat, history: RecordHistory,
                 poll_interval_s: float = 0.5, log: logging.Logger | None = None,
                 background: bool = True, verify_in_process: bool = False, threads: int = 1,
                 cold_start_in_process: bool = True) -> None:
        self.dir = Path(directory)
        self.cold_start_in_process = cold_start_in_process
        self.threads = threads  # torch threads of a full verification (inference.threads)
        # verify_in_process: hot swaps run load_checkpoint (TorchScript, self-tests) in a helper
        # process (`hftbot.model.verifier`), so torch never holds this process's GIL while a
        # model is being served. The first load of a process's life (nothing served yet) runs
        # here (cold_start_in_process): nothing to protect, and a restart serves again sooner.
        # The helper starts at the first hot swap (a spawn: a few ms of this thread, once).
        self.verify_in_process = verify_in_process
        self._helper = None
        self.compat = compat
        self.history = history
        self.poll_interval_s = poll_interval_s
        self.log = log or logging.getLogger("hftbot.inference")
        self.background = background
        self._next_check = 0.0
        self._serving: Path | None = None
        self._seen: tuple | None = None  # key of the last pointer state handled
        self._thread: threading.Thread | None = None
        self._last_thread: threading.Thread | None = None  # joined only by wait_idle/close
        self._result: Pending | None = None
        self.refused = 0
        self.loaded = 0
        self.fallbacks = 0  # loads that served the newest verifying checkpoint instead of CURRENT's
        self.no_model = 0  # 1 while nothing is served because nothing in the folder verifies
        self.settled = False  # the first pointer state has been handled (served, refused or none)

    @property
    def helper_pid(self) -> int | None:
        """Pid of the verify helper process, when one runs."""
        return self._helper.pid if self._helper is not None else None

    def mark_serving(self, path: Path | None) -> None:
        self._serving = path
        if path is not None:
            self.no_model = 0

    def _key(self) -> tuple:
        """The pointer's state now: ("error", text) | ("none",) | ("target", path, stat)."""
        try:
            target = read_pointer(self.dir)
        except CheckpointError as e:
            return ("error", str(e))
        if target is None:
            return ("none",)
        return ("target", target, _stat_key(target))

    def poll(self, now: float | None = None) -> None:
        """Cheap: at most one read of the pointer (and a stat of its target) per interval;
        starts a load when either names something new.

        The pointer is read, not just stat'ed: two flips within one mtime tick can leave size and
        mtime equal and reuse the inode, and a missed flip would never be noticed.
        """
        now = time.monotonic() if now is None else now
        if now < self._next_check or self._thread is not None:
            return
        self._next_check = now + self.poll_interval_s
        key = self._key()
        if key == self._seen:
            return
        self._seen = key
        keeping = self._serving.name if self._serving else "no model"
        if key[0] == "none":
            if self._serving is not None:
                self.log.warning("inference: %s/%s was removed; keeping %s", self.dir, POINTER, keeping)
            else:
                self.no_model = 1
            self.settled = True
            return
        target: Path | None = None
        if key[0] == "error":
            self.refused += 1
            if self._serving is not None:
                self.log.error("inference: %s; keeping %s", key[1], keeping)
                return
            reason = key[1]
        else:
            target = key[1]
            reason = None
        self._start_load(target, fallback=self._serving is None, reason=reason)

    def _start_load(self, target: Path | None, fallback: bool, reason: str | None) -> None:
        use_helper = self.verify_in_process and (
            self._serving is not None or self.loaded > 0 or not self.cold_start_in_process)
        if use_helper and (self._helper is None or not self._helper.alive()):
            from hftbot.model.verifier import VerifyWorker

            if self._helper is not None:
                self._helper.close(1.0)
            # started here, in the caller's (main) thread: its parent-death signal is tied to the
            # thread that creates it, and the loader thread exits after each load
            self._helper = VerifyWorker()
        args = (target, fallback, reason, self._helper if use_helper else None)
        if self.background:
            self._thread = threading.Thread(target=self._load, args=args, name="ckpt-loader", daemon=True)
            self._last_thread = self._thread
            self._thread.start()
        else:
            self._load(*args)

    def _verify(self, target: Path, helper) -> LoadedCheckpoint:
        if helper is not None:
            return helper.verify(target, self.compat, threads=self.threads)
        return load_for_serving(target, self.compat, self.threads)

    def _candidates(self, exclude: Path | None) -> list[Path]:
        """Checkpoint metadata files of the folder, newest first (mtime, then name)."""
        found = []
        for p in self.dir.glob("*.json"):
            if p.name.startswith(".") or (exclude is not None and p.name == exclude.name):
                continue
            try:
                found.append((p.stat().st_mtime_ns, p.name, p))
            except OSError:
                continue
        return [p for _, _, p in sorted(found, reverse=True)][:FALLBACK_CANDIDATES]

    def _load(self, target: Path | None, fallback: bool, reason: str | None, helper) -> None:
        t0 = time.monotonic()
        res: Pending
        if target is not None:
            res = self._attempt(target, helper, t0)
            if res.error is None or not fallback:
                self._result = res  # a single reference store: atomic for the reader
                return
            reason = res.error
        for cand in self._candidates(target):
            got = self._attempt(cand, helper, t0)
            if got.error is None:
                got.fallback = reason
                self._result = got
                return
        what = target if target is not None else self.dir / POINTER
        self._result = Pending(what, error=f"{reason}; and no other checkpoint in {self.dir} verifies",
                               load_s=time.monotonic() - t0, fallback=reason)

    def _attempt(self, target: Path, helper, t0: float) -> Pending:
        try:
            ckpt = self._verify(target, helper)
            # not primed here: feeding records is model work, and a thread doing it takes the GIL
            # from the serving thread at every kernel call (up to the 0.2 ms switch interval);
            # the engine primes it in the serving thread's idle time instead
            return Pending(target, ModelRuntime(ckpt), load_s=time.monotonic() - t0)
        except CheckpointError as e:
            return Pending(target, error=str(e), load_s=time.monotonic() - t0)
        except Exception as e:  # never let a loader crash take the process down
            return Pending(target, error=f"checkpoint {target.name} refused: {type(e).__name__}: {e}",
                           load_s=time.monotonic() - t0)

    def take(self) -> Pending | None:
        """The finished load, if any (call between updates)."""
        res = self._result
        if res is None:
            return None
        self._result = None
        # not joined: its work is done and it exits by itself (a join here waits for the thread's
        # teardown to get the GIL, tens of µs between two updates)
        self._thread = None
        self.settled = True
        if res.error:
            if res.path.name != POINTER:  # a broken pointer was counted when it was read
                self.refused += 1
            if res.fallback is not None and self._serving is None:
                self.no_model = 1
                self.log.error("inference: %s: SERVING NO MODEL until a checkpoint that verifies appears",
                               res.error)
            else:
                self.log.error("inference: %s; keeping %s", res.error,
                               self._serving.name if self._serving else "no model (cold start)")
        else:
            self.loaded += 1
            if res.fallback is not None:
                self.fallbacks += 1
                self.log.error("inference: %s; FALLING BACK to the newest checkpoint that verifies: %s "
                               "(model_id %d)", res.fallback, res.path.name, res.runtime.model_id)
        return res

    def close(self) -> None:
        """Stop the verify helper process, if one was started."""
        self.wait_idle()
        if self._helper is not None:
            self._helper.close()
            self._helper = None

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Block until a running load finished (tests, shutdown)."""
        t = self._thread or self._last_thread
        if t is not None:
            t.join(timeout_s)


class InferenceEngine:
    """Book records in, signal records out; swaps models between updates."""

    def __init__(self, levels: int, max_window: int = 2000, every: int = 1,
                 log: logging.Logger | None = None, max_defer: int = 256) -> None:
        if every < 1:
            raise ValueError(f"inference.every must be >= 1, got {every}")
        if max_defer < 0:
            raise ValueError(f"max_defer must be >= 0, got {max_defer}")
        # updates a loaded model may wait for idle time to catch up before the swap does it itself
        self.max_defer = max_defer
        self.levels = levels
        self.every = every
        self.log = log or logging.getLogger("hftbot.inference")
        # room for a window to prime plus what arrives while a new model is verified
        self.history = RecordHistory(book_dtype(levels), max_window + RECEPTIVE + 8192)
        self.runtime: ModelRuntime | None = None
        self.updates = 0
        self.signals = 0
        self.skipped = 0  # updates with no signal because a newer one was already waiting
        self.decimated = 0  # updates with no signal because of `every`
        self.swaps = 0
        self.gaps = 0
        self.pending: Pending | None = None  # loaded, not yet caught up to lag 0 and warm
        self._pending_since = 0  # self.updates when it was offered
        self.forced = 0  # swaps that had to catch up themselves (no idle time within max_defer updates)
        self.install_fed = 0  # records fed to new runtimes by swaps themselves (0 when idle time sufficed)
        self.idle_fed = 0  # catch-up steps (one record each) done for pending runtimes in idle time
        self._warmed = False
        self._retired: tuple[Pending, ModelRuntime | None] | None = None  # released/logged in idle time
        self._since_signal = 0
        self._sig = np.zeros((), dtype=SIGNAL_DTYPE)
        self.served = 0  # signals with the model's probabilities (flags 0)
        self.nonfinite = 0  # signals flagged SIGNAL_NONFINITE: the model's output was NaN or inf

    @property
    def model_id(self) -> int:
        return self.runtime.model_id if self.runtime is not None else 0

    def push(self, rec: np.ndarray | np.void) -> None:
        """Take one book record into the window (every record, signalled or not)."""
        self.history.append(rec)
        if self.runtime is not None:
            self.runtime.push(rec)
        self.updates += 1
        self._since_signal += 1

    def remember(self, rec: np.ndarray | np.void) -> None:
        """Keep a record for priming only (read back from the ring at start): no update, no signal."""
        self.history.append(rec)

    def gap(self) -> None:
        """The book stream lost records (ring lapped): nothing before is continuous any more."""
        self.gaps += 1
        self.history.clear()
        if self.runtime is not None:
            self.runtime.reset()
        p = self.pending
        if p is not None and p.runtime is not None:  # it starts over with the live one: nothing to feed
            p.runtime.reset()
            p.upto = (self.history.epoch, self.history.total)

    def offer(self, pending: Pending) -> bool:
        """Keep a runtime to swap in once it has seen every record so far (a newer offer wins).

        An unprimed one (``upto`` None) starts from the history's last `need_rows` records: the
        idle steps feed them one at a time, which ends in the state `prime` would build."""
        if pending.runtime is None:
            return False
        if pending.upto is None:
            self._anchor(pending)
        self.pending = pending
        self._pending_since = self.updates
        self._warmed = False
        return True

    @property
    def pending_lag(self) -> int | None:
        """Records the pending runtime has not seen yet (None: nothing pending, or history cleared)."""
        p = self.pending
        return None if p is None else self.history.lag(p.upto)

    def idle_step(self) -> bool:
        """One bounded piece of swap work; call only when no update is waiting. False: nothing to do.

        In order: release the replaced runtime and log the swap (freeing a model's arrays and a
        log write cost tens of µs); feed the pending runtime one record it has not seen (the
        catch-up a swap would otherwise do inside an update); once caught up, warm it
        (`ModelRuntime.warm`, no state change) so it serves its first update from the CPU cache.
        """
        if self._retired is not None:
            old, self._retired = self._retired, None
            self._log_swap(*old)
            return True
        p = self.pending
        if p is None or p.runtime is None:
            return False
        lag = self.history.lag(p.upto)
        if lag is None or lag > need_rows(p.runtime.ckpt):  # fell behind the tail: start it over there
            self._anchor(p)
            lag = self.history.lag(p.upto)
        if lag != 0:
            p.runtime, p.upto = catch_up(p.runtime, self.history, p.upto, limit=1)
            self.idle_fed += 1
            if self.history.lag(p.upto) != 0:
                return True
            # caught up: warm it in this same idle step, as the swap follows at the loop's top
        if not self._warmed:
            p.runtime.warm()
            self._warmed = True
            return True
        return False

    def _anchor(self, pending: Pending) -> None:
        """Reset the pending runtime and mark it as having seen all but the last `need_rows`
        records, so idle steps rebuild its state one record at a time (no long step)."""
        h = self.history
        pending.runtime.reset()  # type: ignore[union-attr]
        back = min(need_rows(pending.runtime.ckpt), h.total, h.capacity)  # type: ignore[union-attr]
        pending.upto = (h.epoch, h.total - back)

    @property
    def idle_work(self) -> bool:
        """Whether `idle_step` has something to do (the loop then polls the ring instead of waiting)."""
        p = self.pending
        return self._retired is not None or (
            p is not None and (self.history.lag(p.upto) != 0 or not self._warmed))

    def install_ready(self) -> Pending | None:
        """Between two updates: swap in the pending runtime once it is caught up and warm (a
        pointer swap, no model work), or once it has waited `max_defer` updates without idle
        time for that (then the swap feeds the backlog itself, as `install` does, unwarmed).
        Returns what was installed.

        Why wait for the warm-up even when the loader hands a model over already caught up:
        swapped in at once, its first update ran from a cold cache and overlapped the loader
        thread's exit (which takes the GIL), ~60 µs over an ordinary update here; one idle step
        later it costs an ordinary update."""
        p = self.pending
        if p is None:
            return None
        lag = self.history.lag(p.upto)
        ready = lag == 0 and self._warmed
        if not ready and self.updates - self._pending_since < self.max_defer:
            return None
        if lag != 0:
            self.forced += 1
        self.install(p)
        return p

    def install(self, pending: Pending) -> bool:
        """Swap in a primed runtime now (between updates), catching it up on records it has not seen."""
        rt = pending.runtime
        if rt is None:
            return False
        if pending is self.pending:
            self.pending = None
        if pending.upto is None:  # handed straight over, never offered: prime it here
            self._anchor(pending)
        lag = self.history.lag(pending.upto)  # type: ignore[arg-type]
        if lag != 0:
            self.install_fed += lag if lag is not None else 0
            rt, _ = catch_up(rt, self.history, pending.upto)
        old = self.runtime
        self.runtime = rt
        self.swaps += 1
        if self._retired is not None:  # two swaps without idle time between: log the first now
            self._log_swap(*self._retired)
        pending.runtime = rt
        self._retired = (pending, old)  # freed and logged in idle time, not inside this update
        if lag != 0:  # a forced swap is slow anyway
            self._log_swap(*self._retired)
            self._retired = None
        return True

    def _log_swap(self, pending: Pending, old: ModelRuntime | None) -> None:
        rt = pending.runtime
        self.log.info("inference: serving %s (model_id %d, trained=%s, loaded in %.3f s), replaced %s",
                      pending.path.name, rt.model_id if rt else 0, rt.ckpt.meta.get("trained") if rt else None,
                      pending.load_s, old.ckpt.path.name if old else "no model")

    def due(self, newest: bool = True) -> bool:
        """Whether the record just pushed gets a signal (the newest, and `every` updates passed)."""
        if not newest:
            self.skipped += 1
            return False
        if self._since_signal < self.every:
            self.decimated += 1
            return False
        return True

    def _nonfinite(self, rt: ModelRuntime) -> None:
        """Count it; log the first and then every 1000th (a model gone bad must be seen, not flood)."""
        self.nonfinite += 1
        if self.nonfinite == 1 or self.nonfinite % 1000 == 0:
            self.log.error("inference: model %s (model_id %d) produced non-finite outputs (%d signals so "
                           "far): published flagged SIGNAL_NONFINITE, probabilities NaN",
                           rt.ckpt.path.name, rt.model_id, self.nonfinite)

    def signal(self, rec: np.ndarray | np.void, start_ns: int) -> np.ndarray:
        """Fill the signal for the last pushed record `rec` (0-d SIGNAL_DTYPE, reused buffer)."""
        s = self._sig
        s["book_seq"] = rec["seq"]
        s["book_recv_ns"] = rec["recv_ns"]
        s["infer_start_ns"] = start_ns
        rt = self.runtime
        if rt is None:
            s["model_id"] = 0
            s["flags"] = SIGNAL_NO_MODEL
            s["p_down"] = s["p_flat"] = s["p_up"] = math.nan
        elif not rt.ready:
            s["model_id"] = rt.model_id
            s["flags"] = SIGNAL_WARMUP
            s["p_down"] = s["p_flat"] = s["p_up"] = math.nan
        else:
            p = rt.probabilities()
            s["model_id"] = rt.model_id
            p0, p1, p2 = float(p[0]), float(p[1]), float(p[2])
            if math.isfinite(p0 + p1 + p2):  # NaN and inf propagate through the sum
                s["flags"] = 0
                s["p_down"], s["p_flat"], s["p_up"] = p0, p1, p2
                self.served += 1
            else:
                s["flags"] = SIGNAL_NONFINITE
                s["p_down"] = s["p_flat"] = s["p_up"] = math.nan
                self._nonfinite(rt)
        s["infer_end_ns"] = time.time_ns()
        self.signals += 1
        self._since_signal = 0
        return s
