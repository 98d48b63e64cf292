"""The supervisor: `python -m hftbot.run`.

Loads and checks the config (a replay's recording must exist; its symbol comes from the data),
sweeps stale segments of a crashed earlier run, creates the shared-memory rings and the
heartbeat table (it owns them all), spawns the processes of the mode in order (each must send its
first heartbeat before the next starts), restarts one that dies or goes silent (backoff doubling
up to a cap, at most `max_restarts` within `restart_window_s`), and shuts down in `stop_rank`
order on SIGINT/SIGTERM, `--duration`, a finished replay or a fatal failure.

Signals: any number of SIGINT/SIGTERM at any moment end in the same ordered shutdown, summary
included; the handler only counts (it never raises into whatever the supervisor was doing). The
first asks each stop group to stop within `stop_timeout_s`; a second cuts every remaining grace
to `HURRY_GRACE_S`; a third kills what is left at once, still in order. Children run in their own
process groups, so a Ctrl-C or a SIGTERM to the supervisor's group (systemd) reaches only the
supervisor: the recorder still stops after the feed and records every row.

Helpers: a child and everything it started die together. The supervisor signals a child's whole
process group, kills the group after any exit of the child (crash, kill -9, heartbeat timeout,
stop), and is a child subreaper for the run, so an orphaned helper is re-parented to it, killed
and reaped instead of lingering under pid 1 (helpers also ask for `PR_SET_PDEATHSIG`, see
`hftbot.model.verifier`). Every exit path unlinks every segment.

Exit status: 0 only when nothing failed. A process that hit its restart limit, one that had to be
terminated or killed at stop, a run whose feed never published a synced book, or processes left
over after the stop make it `failed: true` and rc 1; each reason is listed in the summary.

It shows a live status panel on a terminal (rich, 80 columns) and plain log lines otherwise, and
prints an exit summary (per-process final counters, start/restart-to-serving times, ring
throughput, latency percentiles, failures) ending with one JSON line. The panel and the summary
are built from per-process and per-topic sections (`SUMMARY_SECTIONS`, `ProcessSpec.panel`), so a
process or a topic is one addition. It never trades, parses market data or runs a model itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from hftbot import linux
from hftbot.config import Config, ConfigError, load_config
from hftbot.exec.modes import preflight as exec_preflight
from hftbot.exec.status import STATUS_CAPACITY, ExecMonitor
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring, RingReader, accelerator_missing
from hftbot.process import HeartbeatTable, ProcessContext, ProcessSpec, child_main, configure_logging
from hftbot.processes import processes_for
from hftbot.records import (
    BOOK_VALID,
    EXEC_STATUS_DTYPE,
    ORDER_DTYPE,
    SIGNAL_DTYPE,
    SIGNAL_NO_MODEL,
    SIGNAL_NONFINITE,
    SIGNAL_WARMUP,
    TRADE_DTYPE,
    book_dtype,
)

log = logging.getLogger("hftbot.supervisor")

HURRY_GRACE_S = 1.0  # per stop group, once a second signal arrived
TERM_WAIT_S = 2.0  # after SIGTERM, before SIGKILL (0.5 s in a hurry)
RESTART_TARGET_S = 5.0  # restart to serving again: printed beside the figures
PANEL_WIDTH = 80


@dataclass
class Child:
    spec: ProcessSpec
    slot: int
    proc: Any = None  # multiprocessing.Process
    state: str = "new"  # starting | running | backoff | failed | finished | stopped
    restarts: int = 0  # in total
    recent: list[float] = field(default_factory=list)  # restart times inside runtime.restart_window_s
    started_at: float = 0.0
    next_start_at: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # last seen, kept after the table is gone
    pids: list[int] = field(default_factory=list)  # every pid it ran as = its process groups
    start_ns: int = 0  # spawn time of the current incarnation (wall ns)
    down_ns: int = 0  # when it was seen dead or was killed; 0 when not waiting to serve again
    serving_seen: bool = False
    start_to_serving_s: float | None = None
    restart_to_serving_s: list[float] = field(default_factory=list)
    stop_note: str = ""  # how the stop went when it was not by itself


# ------------------------------------------------------------------------------------- monitor
class LatencyMonitor:
    """Reads the book and signal rings from the supervisor and keeps latency samples.

    Measured by the system itself from the timestamps every record carries: feed latency
    (book publish - receive), inference time, and tick-to-signal (signal end - book receive).
    """

    KEEP = 200_000

    def __init__(self, rings: dict[str, Ring]) -> None:
        self.readers = {n: RingReader(rings[n], start="next") for n in ("book", "signal") if n in rings}
        self.valid_books = 0  # book records in sync (BOOK_VALID): "market data was received"
        self.samples: dict[str, list[np.ndarray]] = {
            "feed_us": [],
            "inference_us": [],
            "tick_to_signal_us": [],
        }
        self.exec = ExecMonitor(rings)  # tick-to-order and the execution status
        self.last_book: np.void | None = None  # the newest valid book record (the panel's book line)
        self.last_signal: np.void | None = None  # the newest signal record (the panel's signal line)
        self.books = 0
        self.signals = 0

    def poll(self) -> None:
        self.exec.poll()
        for name, reader in self.readers.items():
            while True:
                recs = reader.read_many(4096, timeout_s=0)
                if len(recs) == 0:
                    break
                if name == "book":
                    valid = recs["flags"] & BOOK_VALID
                    self.valid_books += int(np.count_nonzero(valid))
                    self.books += len(recs)
                    if valid[-1]:
                        self.last_book = recs[-1].copy()
                    elif np.any(valid):
                        self.last_book = recs[np.flatnonzero(valid)[-1]].copy()
                    else:
                        self.last_book = None  # resyncing: the panel says so
                    ok = recs["recv_ns"] > 0
                    self._add("feed_us", (recs["publish_ns"][ok] - recs["recv_ns"][ok]) / 1e3)
                else:
                    self.signals += len(recs)
                    self.last_signal = recs[-1].copy()
                    ok = recs["model_id"] != 0
                    self._add("inference_us", (recs["infer_end_ns"][ok] - recs["infer_start_ns"][ok]) / 1e3)
                    ok &= recs["book_recv_ns"] > 0
                    self._add(
                        "tick_to_signal_us", (recs["infer_end_ns"][ok] - recs["book_recv_ns"][ok]) / 1e3
                    )

    def _add(self, key: str, values: np.ndarray) -> None:
        if len(values):
            self.samples[key].append(values.astype(np.float64))
            if sum(map(len, self.samples[key])) > 2 * self.KEEP:
                self.samples[key] = [np.concatenate(self.samples[key])[-self.KEEP :]]

    def percentiles(self) -> dict[str, dict[str, float]]:
        out = {}
        for key, chunks in self.samples.items():
            if chunks:
                v = np.concatenate(chunks)
                p50, p99, p999 = np.percentile(v, [50, 99, 99.9])
                out[key] = {"n": len(v), "p50": round(p50, 1), "p99": round(p99, 1), "p99.9": round(p999, 1)}
        return {**out, **self.exec.latency()}

    def lost(self) -> int:
        return sum(r.lost for r in self.readers.values())


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def endpoints_for(cfg: Config) -> dict[str, Any]:
    """Base URLs the feed and the gateway use in this mode (one client code path for all)."""
    mode = cfg.runtime.mode
    if mode == "sim":
        host, port = cfg.sim.host, cfg.sim.port or free_port(cfg.sim.host)
        return {
            "rest": f"http://{host}:{port}",
            "ws": f"ws://{host}:{port}",
            "ws_api": f"ws://{host}:{port}/ws-fapi/v1",
            "sim_port": port,
        }
    if mode in ("live", "paper"):
        e = cfg.endpoints
        live = {"rest": e.live_rest, "ws": e.live_ws, "ws_api": e.live_ws_api}
        return live if mode == "live" else {**live, **_mirror_endpoints(cfg)}
    if mode == "testnet":
        e = cfg.endpoints
        return {"rest": e.testnet_rest, "ws": e.testnet_ws, "ws_api": e.testnet_ws_api}
    return _mirror_endpoints(cfg) if mode == "replay" else {}


def _mirror_endpoints(cfg: Config) -> dict[str, Any]:
    """Replay and paper: orders go to the mirror venue (hftbot.sim.mirror) on a port of its own."""
    from hftbot.sim.mirror import endpoints

    port = cfg.sim.port or free_port(cfg.sim.host)
    return {"orders": endpoints(cfg, port), "orders_port": port}

# -------------------------------------------------------------------------------------- helpers
def preflight(cfg: Config) -> Config:
    """Checks that need the disk, before anything is spawned; returns the config to run.

    Replay: the path must hold recordings or captures of one symbol, and that symbol (from the
    data: stream names, payload `s`, file metadata) becomes `runtime.symbol`, so what the replay
    publishes is recorded under its own symbol, never under the configured one."""
    if cfg.runtime.mode != "replay":
        return cfg
    from hftbot.feed.recording import RecordingError, recording_symbol

    try:
        symbol = recording_symbol(cfg.replay.path)
    except (RecordingError, OSError) as e:
        raise ConfigError(f"config: replay.path {cfg.replay.path!r} cannot be replayed: {e}") from None
    if symbol and symbol != cfg.runtime.symbol.upper():
        log.warning("replay: %s holds %s; runtime.symbol %s replaced by it", cfg.replay.path, symbol,
                    cfg.runtime.symbol)
        cfg = cfg.override("runtime", symbol=symbol)
    return cfg


def _fmt_count(v: int) -> str:
    """Counters in the 80-column panel: 1234 -> 1234, 123456 -> 123k, 12345678 -> 12.3M."""
    a = abs(v)
    if a < 100_000:
        return str(v)
    if a < 10_000_000:
        return f"{v / 1e3:.0f}k"
    return f"{v / 1e6:.1f}M"


def book_line(rec: np.void | None, now_ns: int) -> str:
    """The panel's book line: best bid / ask (size), spread in ticks and bps, age of the record."""
    if rec is None:
        return "book    - (no synced book yet, or resyncing)"
    tick, lot = float(rec["tick"]), float(rec["lot"])
    bid, ask = int(rec["bid_px"][0]), int(rec["ask_px"][0])
    if bid <= 0 or ask <= 0:
        return "book    one side empty"
    mid = (bid + ask) / 2
    age_s = max(0.0, (now_ns - int(rec["recv_ns"])) / 1e9)
    d = max(0, math.ceil(-math.log10(tick) - 1e-9)) if tick > 0 else 2  # the tick's decimals
    return (f"book    {bid * tick:.{d}f} x {rec['bid_qty'][0] * lot:g} / {ask * tick:.{d}f} x "
            f"{rec['ask_qty'][0] * lot:g}  spread {ask - bid} tick {(ask - bid) / mid * 1e4:.2f} bps"
            f"  age {age_s:.1f}s")


def signal_line(rec: np.void | None) -> str:
    """The panel's signal line: p_down / p_flat / p_up and the id of the model that made them."""
    if rec is None:
        return "signal  - (none yet)"
    model = int(rec["model_id"])
    flags = int(rec["flags"])
    if model == 0 or flags & SIGNAL_NO_MODEL:
        return "signal  NO MODEL (no checkpoint verified): execution opens nothing on signals"
    note = " WARMUP" if flags & SIGNAL_WARMUP else (" NONFINITE" if flags & SIGNAL_NONFINITE else "")
    return (f"signal  down {rec['p_down']:.3f} flat {rec['p_flat']:.3f} up {rec['p_up']:.3f}"
            f"  model {model}{note}")


PANEL_LATENCIES = (  # (key, label): the panel's latency lines, µs p50/p99
    ("feed_us", "feed"), ("inference_us", "infer"), ("tick_to_signal_us", "tick>signal"),
    ("tick_to_order_us", "tick>order"), ("read_to_order_us", "read>order"),
)


def latency_lines(lat: dict[str, dict[str, float]], width: int = PANEL_WIDTH) -> list[str]:
    """The panel's latency figures, `label p50/p99` in µs, folded at `width` columns."""
    parts = [f"{label} {lat[k]['p50']:.0f}/{lat[k]['p99']:.0f}" for k, label in PANEL_LATENCIES if k in lat]
    if not parts:
        return []
    lines, line = [], "lat µs p50/p99:"
    for p in parts:
        if len(line) + 1 + len(p) > width:
            lines.append(line)
            line = " " * 15
        line += " " + p
    return [*lines, line]


# ----------------------------------------------------------------------------------- supervisor
class StartError(RuntimeError):
    """A child process the OS would not start (fork or spawn refused): the run stops, naming it."""


class Supervisor:
    # Summary topics, in print order: each is `_section_<name>()` (its JSON) and `_lines_<name>()`
    # (its printed lines). A topic (positions and PnL, say) is one name here and two methods.
    SUMMARY_SECTIONS: tuple[str, ...] = ("processes", "serving", "rings", "execution", "latency_us", "failures")

    def __init__(
        self,
        cfg: Config,
        specs: Sequence[ProcessSpec] | None = None,
        *,
        panel: bool | None = None,
        endpoints: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.specs = list(processes_for(cfg) if specs is None else specs)
        self.panel = sys.stdout.isatty() if panel is None else panel
        self.endpoints = endpoints_for(cfg) if endpoints is None else endpoints
        self.mp = mp.get_context("spawn")
        self.pid = os.getpid()
        self.segments: dict[str, str] = {}
        self.rings: dict[str, Ring] = {}
        self.table: HeartbeatTable | None = None
        self.children: list[Child] = [Child(s, i) for i, s in enumerate(self.specs)]
        self.stop_reason: str | None = None
        self.failures: list[str] = []  # why the run failed (empty: it did not)
        self.warnings: list[str] = []  # worth knowing, not a failure (inference served no model)
        self.started_at = time.monotonic()
        self.monitor: LatencyMonitor | None = None
        self._interrupts = 0
        self._hurry_at: float | None = None  # when the second signal arrived
        self._was_subreaper = False
        self._next_reap = 0.0
        self._warned_no_data = False
        # Last values seen, kept for the summary and panel once the segments are gone.
        self._last_rings: dict[str, int] = {}
        self._last_latency: dict[str, dict[str, float]] = {}
        self._last_valid = 0
        self._last_exec: dict[str, Any] = {}

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def _fail(self, why: str) -> None:
        if why not in self.failures:
            self.failures.append(why)
            log.error("run failed: %s", why)

    # ----------------------------------------------------------------- segments
    def create_segments(self) -> None:
        removed = shm.remove_stale()
        if removed:
            log.warning(
                "removed %d stale segment(s) of a crashed earlier run: %s", len(removed), ", ".join(removed)
            )
        rc, levels = self.cfg.ring, self.cfg.feed.levels
        for name, dtype, cap in (
            ("book", book_dtype(levels), rc.book_capacity),
            ("trade", TRADE_DTYPE, rc.trade_capacity),
            ("signal", SIGNAL_DTYPE, rc.signal_capacity),
            ("order", ORDER_DTYPE, rc.order_capacity),
            ("exec", EXEC_STATUS_DTYPE, STATUS_CAPACITY),
        ):
            seg = shm.segment_name(name, self.pid)
            self.segments[name] = seg
            self.rings[name] = Ring.create(seg, dtype, cap)
        seg = shm.segment_name("heartbeats", self.pid)
        self.segments["heartbeats"] = seg
        self.table = HeartbeatTable.create(seg)
        self.monitor = LatencyMonitor(self.rings)

    def remove_segments(self) -> None:
        self._ring_counts()
        self._latency()
        if self.monitor is not None:
            self.monitor.exec.close()
        self.monitor = None
        for ring in self.rings.values():
            ring.close()
        if self.table is not None:
            self.table.close()
            self.table = None
        for name in self.segments.values():
            shm.unlink_segment(name)
        self.rings.clear()
        # Anything of ours a crashed child might have created under our pid goes too.
        for name in shm.list_segments(self.pid):
            shm.unlink_segment(name)

    # ------------------------------------------------------------------ children
    def _spawn(self, c: Child) -> None:
        assert self.table is not None
        row = self.table.rows[c.slot]
        row["name"] = c.spec.name.encode()[:16]
        row["beat_ns"] = 0
        row["stop"] = 0
        row["pid"] = 0
        row["serving_ns"] = 0
        row["finished"] = 0
        ctx = ProcessContext(
            name=c.spec.name,
            slot=c.slot,
            config=self.cfg,
            segments=dict(self.segments),
            endpoints=dict(self.endpoints),
            supervisor_pid=self.pid,
            nice=c.spec.nice,
            rt_priority=c.spec.rt_priority,
        )
        c.proc = self.mp.Process(target=child_main, args=(c.spec.entry, ctx), name=f"hftbot-{c.spec.name}")
        c.start_ns = time.time_ns()
        # Born with SIGINT/SIGTERM blocked (the mask survives fork and exec): a signal to our group
        # during its bootstrap, before it has its own group, waits in the child, which discards it
        # (child_main) instead of dying of it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            c.proc.start()
        except BaseException as e:
            # never started (the OS refused the fork, a spawn misused from an unguarded __main__):
            # no process to stop, join or count, so the stop that follows passes over it
            c.proc = None
            if isinstance(e, OSError):
                raise StartError(f"{c.spec.name}: the OS would not start its process ({e})") from e
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        c.pids.append(c.proc.pid)
        c.state = "starting"
        c.serving_seen = False
        c.started_at = time.monotonic()
        log.info("started %s (pid %d)", c.spec.name, c.proc.pid)

    def _ready(self, c: Child) -> bool:
        return self.table is not None and int(self.table.rows[c.slot]["beat_ns"]) > 0

    def _signal_group(self, c: Child, sig: int) -> None:
        """Signal a child and every helper in its process group (the child itself while it has
        not made its group yet, early in its start)."""
        pid = c.proc.pid
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
                return
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _after_exit(self, c: Child) -> None:
        """A child is gone: kill what is left of its group (its helpers), free ring slots its
        blocking readers held, and keep its last counters."""
        try:
            os.killpg(c.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for ring in self.rings.values():
            ring.reclaim_dead_readers({c.proc.pid})
        self._counters(c)
        self._reap_adopted()

    def _exited(self, c: Child) -> None:
        c.proc.join(0.1)
        code = c.proc.exitcode
        finished = self.table is not None and int(self.table.rows[c.slot]["finished"]) == 1
        if code == 0 and finished:
            c.exit_codes.append(0)
            c.state = "finished"
            self._after_exit(c)
            log.info("%s finished its work", c.spec.name)
            if c.spec.critical and not self.stop_reason:
                self.stop_reason = f"{c.spec.name} finished"
            return
        self._on_exit(c, f"exited with code {code}")

    def _on_exit(self, c: Child, why: str) -> None:
        code = c.proc.exitcode if c.proc is not None else None
        c.exit_codes.append(code if code is not None else -1)
        c.down_ns = c.down_ns or time.time_ns()
        self._after_exit(c)
        rt = self.cfg.runtime
        now = time.monotonic()
        # Only restarts inside the window count towards the cap: a process that fails once a day
        # must not be given up on after a week.
        c.recent = [t for t in c.recent if now - t < rt.restart_window_s]
        if len(c.recent) >= rt.max_restarts:
            c.state = "failed"
            c.down_ns = 0
            log.error(
                "%s %s; restart limit (%d in %g s) reached",
                c.spec.name,
                why,
                rt.max_restarts,
                rt.restart_window_s,
            )
            self._fail(f"{c.spec.name}: {why}; restart limit ({rt.max_restarts} in {rt.restart_window_s:g} s) "
                       f"reached" + ("" if c.spec.critical else " (not critical: the run went on without it)"))
            if c.spec.critical and not self.stop_reason:
                self.stop_reason = f"{c.spec.name} failed"
            return
        delay = min(rt.restart_backoff_s * (2 ** len(c.recent)), rt.restart_backoff_max_s)
        c.restarts += 1
        c.recent.append(now)
        c.state = "backoff"
        c.next_start_at = now + delay
        log.error(
            "%s %s; restart %d (%d/%d in the window) in %.2f s",
            c.spec.name,
            why,
            c.restarts,
            len(c.recent),
            rt.max_restarts,
            delay,
        )

    def _kill(self, c: Child) -> None:
        if c.proc is not None and c.proc.is_alive():
            c.down_ns = time.time_ns()
            self._signal_group(c, signal.SIGKILL)
            c.proc.join(2.0)

    def _check_serving(self, c: Child) -> None:
        if c.serving_seen or self.table is None:
            return
        at = int(self.table.rows[c.slot]["serving_ns"])
        if not at:
            return
        c.serving_seen = True
        if c.down_ns:
            c.restart_to_serving_s.append(round((at - c.down_ns) / 1e9, 3))
            c.down_ns = 0
        elif c.start_to_serving_s is None:
            c.start_to_serving_s = round((at - c.start_ns) / 1e9, 3)

    def check_children(self) -> None:
        rt = self.cfg.runtime
        now = time.monotonic()
        for c in self.children:
            if c.state in ("starting", "running"):
                if not c.proc.is_alive():
                    self._exited(c)
                    continue
                self._check_serving(c)
                if c.state == "starting":
                    if self._ready(c):
                        c.state = "running"
                    elif now - c.started_at > rt.start_timeout_s:
                        self._kill(c)
                        self._on_exit(c, f"sent no heartbeat within {rt.start_timeout_s} s of start")
                    continue
                age = time.time_ns() - int(self.table.rows[c.slot]["beat_ns"])  # type: ignore[union-attr]
                if age > rt.heartbeat_timeout_s * 1e9:
                    self._kill(c)
                    self._on_exit(c, f"silent for {age / 1e9:.1f} s (heartbeat timeout)")
            elif c.state == "backoff" and now >= c.next_start_at:
                self._spawn(c)

    def start_all(self) -> None:
        """Spawn in order; each gets until start_timeout_s to send its first heartbeat."""
        for c in self.children:
            if self.stop_reason:
                return
            self._spawn(c)
            deadline = time.monotonic() + self.cfg.runtime.start_timeout_s
            while not self.stop_reason and time.monotonic() < deadline:
                self.check_children()
                if c.state != "starting":
                    break
                time.sleep(0.01)

    # ------------------------------------------------------------------- stopping
    def _stop_deadline(self, t0: float) -> float:
        """When a stop group's grace ends: stop_timeout_s, cut by a second signal, gone at a third."""
        if self._interrupts >= 3:
            return t0
        end = t0 + self.cfg.runtime.stop_timeout_s
        if self._hurry_at is not None:
            end = min(end, max(t0, self._hurry_at) + HURRY_GRACE_S)
        return end

    def _wait_exit(self, group: list[Child], deadline_of) -> list[Child]:
        """Wait until each process of `group` exited or `deadline_of()` passed; the live ones."""
        live = [c for c in group if c.proc.is_alive()]
        while live and time.monotonic() < deadline_of():
            time.sleep(0.02)
            live = [c for c in live if c.proc.is_alive()]
        return live

    def stop_all(self) -> None:
        """Ask each group to stop in stop_rank order; terminate, then kill, the ones that don't.

        Each group gets `stop_timeout_s` (cut to HURRY_GRACE_S by a second signal, to nothing by
        a third); a process that has to be terminated or killed, or exits non-zero when asked to
        stop, makes the run fail."""
        rt = self.cfg.runtime
        for c in self.children:  # died on their own just before the stop: not a stop failure
            if c.state in ("starting", "running") and not c.proc.is_alive():
                self._exited(c)
        for rank in sorted({c.spec.stop_rank for c in self.children}):
            group = [c for c in self.children if c.spec.stop_rank == rank and c.proc is not None]
            for c in group:
                if self.table is not None and c.proc.is_alive():
                    self.table.rows[c.slot]["stop"] = 1
            t0 = time.monotonic()
            live = self._wait_exit(group, lambda t0=t0: self._stop_deadline(t0))
            for c in live:
                waited = time.monotonic() - t0
                log.warning("%s did not stop within %.1f s: terminating", c.spec.name, waited)
                c.stop_note = f"did not stop within {waited:.1f} s: terminated"
                self._signal_group(c, signal.SIGTERM)
            t1 = time.monotonic()
            live = self._wait_exit(
                live,
                lambda t1=t1: t1 if self._interrupts >= 3 else t1 + (0.5 if self._hurry_at else TERM_WAIT_S),
            )
            for c in live:
                c.stop_note = c.stop_note.replace("terminated", "killed")
                self._signal_group(c, signal.SIGKILL)
                c.proc.join(2.0)
            for c in group:
                running = c.state in ("starting", "running")  # asked to stop (not dead already)
                c.proc.join(0.5)
                self._after_exit(c)
                if running and not c.stop_note and c.proc.exitcode != 0:
                    c.stop_note = f"exited with code {c.proc.exitcode} at the stop"
                if c.state not in ("failed", "finished"):
                    c.state = "stopped"
                if c.stop_note:
                    limit = HURRY_GRACE_S if self._hurry_at else rt.stop_timeout_s
                    self._fail(f"{c.spec.name}: {c.stop_note} (stop grace {limit:g} s)")
                log.info("%s stopped (exit code %s)", c.spec.name, c.proc.exitcode)

    # ---------------------------------------------------------------- orphans
    def _adopt_orphans(self, on: bool) -> None:
        """Be a child subreaper during the run (helpers orphaned by a dead child come to us)."""
        if on:
            self._was_subreaper = linux.is_child_subreaper()
            linux.set_child_subreaper(True)
        elif not self._was_subreaper:
            linux.set_child_subreaper(False)

    def _groups(self) -> set[int]:
        return {pid for c in self.children for pid in c.pids}

    def _reap_adopted(self) -> None:
        """Kill and reap processes re-parented to us that belong to a child's process group."""
        groups = self._groups()
        ours = {c.proc.pid for c in self.children if c.proc is not None}
        for pid in linux.children():
            if pid in ours or linux.pid_group(pid) not in groups:
                continue  # a managed child, or not ours at all (multiprocessing's resource tracker)
            if linux.pid_state(pid) not in ("Z", "X"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def _leftovers(self, timeout_s: float = 3.0) -> list[int]:
        """After the stop: kill and reap every process left in any child's group; what remains."""
        groups = self._groups()
        deadline = time.monotonic() + timeout_s
        while True:
            self._reap_adopted()
            left = [pid for pg in groups for pid in linux.group_members(pg)]
            if not left or time.monotonic() >= deadline:
                return left
            for pg in groups:
                try:
                    os.killpg(pg, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.05)

    # ---------------------------------------------------------------- main loop
    def _on_signal(self, signum: int, _frame: Any) -> None:
        """Count and remember; never raise (the interrupted code finishes what it was doing)."""
        self._interrupts += 1
        if self.stop_reason is None:
            self.stop_reason = signal.Signals(signum).name
        if self._interrupts == 2:
            self._hurry_at = time.monotonic()

    def run(self, duration_s: float | None = None, *, ignore_late_signals: bool = False) -> int:
        """Run until a signal, the duration, a finished replay or a fatal failure. Returns the exit
        code (0: nothing failed, 1: see the summary's failures).

        ignore_late_signals: afterwards SIGINT/SIGTERM are ignored instead of given back to the
        caller's handlers (the CLI, about to exit: a late signal of a burst must not become a
        KeyboardInterrupt, nor kill the interpreter, whose finalisation puts back the default
        action of every signal with a Python handler, but leaves an ignored one ignored)."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._adopt_orphans(True)
        try:
            try:
                if slow := accelerator_missing():
                    log.warning("%s", slow)
                    self.warnings.append(slow)
                self.create_segments()
                self.started_at = time.monotonic()
                self.start_all()
                self._loop(duration_s)
            except StartError as e:  # the run cannot be what it was asked to be: stop, saying why
                self._fail(str(e))
                self.stop_reason = self.stop_reason or str(e)
            except Exception:  # a bug here must not leave processes running or segments behind
                log.exception("supervisor error: stopping everything")
                self._fail("supervisor: internal error (traceback in the log)")
                self.stop_reason = self.stop_reason or "supervisor error"
            finally:
                if self._interrupts:
                    log.info("stopping: %s (%d signal(s))", self.stop_reason, self._interrupts)
                self.stop_all()
                if self.monitor is not None:
                    self.monitor.poll()
                self._final_checks()
                self.print_summary()
        finally:
            self.remove_segments()
            self._adopt_orphans(False)
            for s, h in old.items():
                signal.signal(s, signal.SIG_IGN if ignore_late_signals else h)
        return 1 if self.failed else 0

    def _final_checks(self) -> None:
        left = self._leftovers()
        if left:
            self._fail(f"processes left after the stop: {', '.join(map(str, sorted(left)))}")
        if any(c.spec.name == "feed" and c.pids for c in self.children) and self._valid_books() == 0:
            self._fail("feed: never received market data (no synced book was published)")
        for c in self.children:
            if c.counters.get("no_model"):
                where = Path(self.cfg.runtime.checkpoints_dir).resolve()
                self.warnings.append(f"{c.spec.name}: served no model (no checkpoint verified in {where})")

    def _valid_books(self) -> int:
        return self.monitor.valid_books if self.monitor is not None else self._last_valid

    def _loop(self, duration_s: float | None) -> None:
        rt = self.cfg.runtime
        end = None if duration_s is None else self.started_at + duration_s
        live = None
        if self.panel:
            from rich.live import Live

            live = Live(self.render(), refresh_per_second=4, transient=False)
            live.start()
        next_status = time.monotonic() + (
            rt.status_interval_s if self.panel else max(5.0, rt.status_interval_s)
        )
        try:
            while not self.stop_reason:
                self.check_children()
                now = time.monotonic()
                if end is not None and now >= end:
                    self.stop_reason = f"duration {duration_s:g} s reached"
                    break
                if now >= self._next_reap:
                    self._next_reap = now + 0.5
                    self._reap_adopted()
                    self._watch_data(now)
                if now >= next_status:
                    if self.monitor is not None:
                        self.monitor.poll()
                    if live is not None:
                        live.update(self.render())
                        next_status += rt.status_interval_s
                    else:
                        log.info("status %s", json.dumps(self.status_line()))
                        next_status += max(5.0, rt.status_interval_s)
                time.sleep(0.02)
        finally:
            if live is not None:
                live.update(self.render())
                live.stop()
        log.info("stopping: %s", self.stop_reason)

    def _watch_data(self, now: float) -> None:
        """Say it loudly when the feed has published no synced book for start_timeout_s."""
        if self._warned_no_data or now - self.started_at < self.cfg.runtime.start_timeout_s:
            return
        if not any(c.spec.name == "feed" for c in self.children):
            return
        if self.monitor is not None:
            self.monitor.poll()
        if self._valid_books() == 0:
            self._warned_no_data = True
            log.error("no market data after %.0f s: the feed has published no synced book (network? "
                      "endpoints %s)", now - self.started_at, self.endpoints.get("ws", "-"))

    # ------------------------------------------------------------------ display
    def status_line(self) -> dict[str, Any]:
        procs = {}
        for c in self.children:
            procs[c.spec.name] = {"state": c.state, "restarts": c.restarts, **self._counters(c)}
        rings = self._ring_counts()
        return {"uptime_s": round(time.monotonic() - self.started_at, 1), "processes": procs, "rings": rings}

    def _ring_counts(self) -> dict[str, int]:
        """Records published per ring (the last seen values once the rings are gone)."""
        if self.rings:
            self._last_rings = {n: r.write_seq for n, r in self.rings.items()}
        return self._last_rings

    def _latency(self) -> dict[str, dict[str, float]]:
        if self.monitor is not None:
            self._last_latency = self.monitor.percentiles()
            self._last_valid = self.monitor.valid_books
            self._last_exec = self.monitor.exec.summary()
        return self._last_latency

    def _counters(self, c: Child) -> dict[str, int]:
        if self.table is not None and c.proc is not None:
            c.counters = self.table.counters(c.slot)
        return c.counters

    def _activity(self, c: Child) -> str:
        """A process's line in the panel: its chosen counters (`ProcessSpec.panel`) and notes."""
        counters = self._counters(c)
        keys = c.spec.panel or tuple(counters)
        parts = [f"{k}={_fmt_count(counters[k])}" for k in keys if k in counters]
        if counters.get("no_model"):
            parts.insert(0, "NO MODEL")
        if c.restart_to_serving_s:
            parts.append(f"back in {c.restart_to_serving_s[-1]:.1f}s")
        return " ".join(parts)

    def render(self) -> Any:
        """The status panel: at most PANEL_WIDTH (80) columns, counters folded onto more lines."""
        from rich import box
        from rich.table import Table

        uptime = time.monotonic() - self.started_at
        t = Table(
            title=f"hftbot · {self.cfg.runtime.mode} · {self.cfg.runtime.symbol} · up {uptime:.0f} s",
            box=box.SIMPLE_HEAD,
            width=PANEL_WIDTH,
            pad_edge=False,
            caption_justify="left",
        )
        t.add_column("process", no_wrap=True, max_width=10)
        t.add_column("pid", justify="right", no_wrap=True)
        t.add_column("state", no_wrap=True)
        t.add_column("rst", justify="right", no_wrap=True)
        t.add_column("beat", justify="right", no_wrap=True)
        t.add_column("activity", overflow="fold", ratio=1)
        now = time.time_ns()
        for c in self.children:
            beat = int(self.table.rows[c.slot]["beat_ns"]) if self.table is not None else 0
            age = f"{max(0, now - beat) / 1e9:.1f}s" if beat else "-"  # a beat after `now` was read: 0
            pid = str(c.proc.pid) if c.proc is not None else "-"
            t.add_row(c.spec.name, pid, c.state, str(c.restarts), age, self._activity(c))
        lat = self._latency()
        rings = "  ".join(f"{n} {_fmt_count(v)}" for n, v in self._ring_counts().items())
        m = self.monitor
        notes = []
        if m is not None:
            if "book" in m.readers:
                notes.append(book_line(m.last_book, now))
            if "signal" in m.readers:
                notes.append(signal_line(m.last_signal))
            notes += m.exec.panel_lines()
        notes += [f"rings: {rings}", *latency_lines(lat)]
        if self.failures:
            notes.append("FAILED: " + "; ".join(self.failures))
        notes.append("Ctrl-C stops (a second one hurries)")
        t.caption = "\n".join(notes)
        return t

    # ------------------------------------------------------------------ summary
    def _section_processes(self) -> dict[str, Any]:
        return {
            c.spec.name: {
                "state": c.state,
                "restarts": c.restarts,
                "exit_codes": c.exit_codes + ([c.proc.exitcode] if c.proc is not None and c.state == "stopped"
                                              else []),
                "pids": list(c.pids),
                **self._counters(c),
            }
            for c in self.children
        }

    def _lines_processes(self, data: dict[str, Any]) -> list[str]:
        out = []
        for name, p in data.items():
            extra = " ".join(f"{k}={v}" for k, v in p.items() if k not in ("state", "restarts", "exit_codes", "pids"))
            out.append(f"  {name:<10} {p['state']:<8} restarts={p['restarts']} {extra}")
        return out

    def _section_serving(self) -> dict[str, Any]:
        """Seconds from spawn (start) and from death (restart) to serving again, per process."""
        return {
            c.spec.name: {"start_s": c.start_to_serving_s, "restart_s": c.restart_to_serving_s,
                          "restart_max_s": max(c.restart_to_serving_s) if c.restart_to_serving_s else None}
            for c in self.children
        }

    def _lines_serving(self, data: dict[str, Any]) -> list[str]:
        out = []
        for name, v in data.items():
            if v["start_s"] is None and not v["restart_s"]:
                continue
            line = f"  {name:<10} serving after start {v['start_s'] if v['start_s'] is not None else '-'} s"
            if v["restart_s"]:
                r = v["restart_s"]
                ok = "ok" if v["restart_max_s"] <= RESTART_TARGET_S else "OVER"
                line += (f"; after {len(r)} restart(s): max {v['restart_max_s']:.2f} s, mean "
                         f"{sum(r) / len(r):.2f} s (target <= {RESTART_TARGET_S:g} s: {ok})")
            out.append(line)
        waiting = [c.spec.name for c in self.children if c.down_ns]
        if waiting:
            out.append(f"  not serving again at the stop: {', '.join(waiting)}")
        return out

    def _section_rings(self) -> dict[str, Any]:
        uptime = time.monotonic() - self.started_at
        return {
            n: {"records": v, "per_s": round(v / max(uptime, 1e-9), 1)} for n, v in self._ring_counts().items()
        }

    def _lines_rings(self, data: dict[str, Any]) -> list[str]:
        return [f"  ring {name:<7} {r['records']} records ({r['per_s']}/s)" for name, r in data.items()]

    def _section_execution(self) -> dict[str, Any]:
        """Position, PnL, orders and tick-to-order of the execution process (hftbot.exec.status)."""
        self._latency()
        return self._last_exec

    def _lines_execution(self, data: dict[str, Any]) -> list[str]:
        return list(self.monitor.exec.print_lines()) if self.monitor is not None else []

    def _section_latency_us(self) -> dict[str, Any]:
        return self._latency()

    def _lines_latency_us(self, data: dict[str, Any]) -> list[str]:
        return [
            f"  {key:<18} p50 {v['p50']} µs  p99 {v['p99']} µs  p99.9 {v['p99.9']} µs  (n={v['n']})"
            for key, v in data.items()
        ]

    def _section_failures(self) -> list[str]:
        return list(self.failures)

    def _lines_failures(self, data: list[str]) -> list[str]:
        return [f"  FAILED: {f}" for f in data] + [f"  warning: {w}" for w in self.warnings]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.cfg.runtime.mode,
            "symbol": self.cfg.runtime.symbol,
            "uptime_s": round(time.monotonic() - self.started_at, 2),
            "stop_reason": self.stop_reason,
            "signals": self._interrupts,
            "failed": self.failed,
        }
        for name in self.SUMMARY_SECTIONS:
            out[name] = getattr(self, f"_section_{name}")()
        out["warnings"] = list(self.warnings)
        return out

    def print_summary(self) -> None:
        s = self.summary()
        verdict = "FAILED" if s["failed"] else "ok"
        print(f"\nhftbot {s['mode']} {s['symbol']}: ran {s['uptime_s']} s, stopped: {s['stop_reason']}, {verdict}")
        for name in self.SUMMARY_SECTIONS:
            for line in getattr(self, f"_lines_{name}")(s[name]):
                print(line)
        print(json.dumps(s), flush=True)


# ------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hftbot.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="a TOML file overriding hftbot/defaults.toml")
    p.add_argument("--mode", choices=("sim", "replay", "paper", "testnet", "live"), help="runtime.mode")
    p.add_argument("--duration", metavar="SECONDS", help="stop after this many seconds (> 0)")
    p.add_argument("--symbol", help="runtime.symbol")
    p.add_argument("--replay", metavar="PATH", help="replay.path (implies --mode replay)")
    p.add_argument("--speed", metavar="X", help="replay.speed (0 = as fast as possible)")
    p.add_argument("--i-understand-live", action="store_true", help="confirm mode live (real money)")
    p.add_argument("--plain", action="store_true", help="log lines instead of the live panel")
    p.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p.parse_args(argv)


def _number(flag: str, text: str | None, *, positive: bool) -> float | None:
    """A flag's number, finite (and > 0 where asked), or a one-line ConfigError naming it."""
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or (positive and v <= 0):
        need = "a finite number > 0" if positive else "a finite number"
        raise ConfigError(f"config: {flag} must be {need}, got {text!r} (from command line)")
    return v


def build_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    rt: dict[str, Any] = {}
    if args.replay:
        cfg = cfg.override("replay", path=args.replay)
        rt["mode"] = "replay"
    speed = _number("--speed", args.speed, positive=False)
    if speed is not None:
        cfg = cfg.override("replay", speed=speed)
    for key in ("mode", "symbol", "log_level"):
        if getattr(args, key, None):
            rt[key] = getattr(args, key)
    if args.i_understand_live:
        rt["live_confirm"] = True
    return cfg.override("runtime", **rt) if rt else cfg


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        duration = _number("--duration", args.duration, positive=True)
        cfg = preflight(build_config(args))
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while loading: nothing was started
        return 130
    try:
        exec_preflight(cfg, args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    try:
        configure_logging(cfg.runtime.log_level, "supervisor")
        sup = Supervisor(cfg, panel=False if args.plain else None)
        missing = [c.spec.entry for c in sup.children if find_spec(c.spec.entry.partition(":")[0]) is None]
        if missing:
            print(f"hftbot: process modules not found: {', '.join(missing)}", file=sys.stderr)
            return 2
        linux.set_process_name("hftbot: supervisor")
        log.info(
            "mode %s, %d processes: %s", cfg.runtime.mode, len(sup.children), ", ".join(s.name for s in sup.specs)
        )
    except KeyboardInterrupt:  # before run() takes the signals over: nothing was started
        return 130
    return sup.run(duration, ignore_late_signals=True)


if __name__ == "__main__":
    sys.exit(main())
