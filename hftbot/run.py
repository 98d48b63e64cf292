"""The supervisor: `python -m hftbot.run`.

Loads the config, sweeps stale segments of a crashed earlier run, creates the shared-memory rings
and the heartbeat table (it owns them all), spawns the processes of the mode in order (each must
send its first heartbeat before the next starts), restarts one that dies or goes silent (backoff
doubling up to a cap, at most `max_restarts` within `restart_window_s`), and on SIGINT/SIGTERM, `--duration` or a fatal
failure shuts down in `stop_rank` order. Every exit path unlinks every segment; a second Ctrl-C
skips the grace periods but still cleans up.

It shows a live status panel on a terminal (rich) and plain log lines otherwise, and prints an
exit summary (process counters, ring throughput, latency percentiles) ending with one JSON line.
It never trades, parses market data or runs a model itself: it only watches.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any

import numpy as np

from hftbot.config import Config, ConfigError, load_config
from hftbot.exec.modes import preflight
from hftbot.exec.status import STATUS_CAPACITY, ExecMonitor
from hftbot.ipc import shm
from hftbot.ipc.ring import Ring, RingReader
from hftbot.process import HeartbeatTable, ProcessContext, ProcessSpec, child_main, configure_logging
from hftbot.processes import processes_for
from hftbot.records import EXEC_STATUS_DTYPE, ORDER_DTYPE, SIGNAL_DTYPE, TRADE_DTYPE, book_dtype

log = logging.getLogger("hftbot.supervisor")


@dataclass
class Child:
    spec: ProcessSpec
    slot: int
    proc: Any = None  # multiprocessing.Process
    state: str = "new"  # starting | running | backoff | failed | stopped
    restarts: int = 0  # in total
    recent: list[float] = field(default_factory=list)  # restart times inside runtime.restart_window_s
    started_at: float = 0.0
    next_start_at: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # last seen, kept after the table is gone


class LatencyMonitor:
    """Reads the book and signal rings from the supervisor and keeps latency samples.

    Measured by the system itself from the timestamps every record carries: feed latency
    (book publish - receive), inference time, and tick-to-signal (signal end - book receive).
    """

    KEEP = 200_000

    def __init__(self, rings: dict[str, Ring]) -> None:
        self.readers = {n: RingReader(rings[n], start="next") for n in ("book", "signal") if n in rings}
        self.samples: dict[str, list[np.ndarray]] = {
            "feed_us": [],
            "inference_us": [],
            "tick_to_signal_us": [],
        }
        self.exec = ExecMonitor(rings)  # tick-to-order and the execution status

    def poll(self) -> None:
        self.exec.poll()
        for name, reader in self.readers.items():
            while True:
                recs = reader.read_many(4096, timeout_s=0)
                if len(recs) == 0:
                    break
                if name == "book":
                    ok = recs["recv_ns"] > 0
                    self._add("feed_us", (recs["publish_ns"][ok] - recs["recv_ns"][ok]) / 1e3)
                else:
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


class Supervisor:
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
        self.failed = False
        self.started_at = time.monotonic()
        self.monitor: LatencyMonitor | None = None
        self._interrupts = 0
        # Last values seen, kept for the summary and panel once the segments are gone.
        self._last_rings: dict[str, int] = {}
        self._last_latency: dict[str, dict[str, float]] = {}
        self._last_exec: dict[str, Any] = {}

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
        ctx = ProcessContext(
            name=c.spec.name,
            slot=c.slot,
            config=self.cfg,
            segments=dict(self.segments),
            endpoints=dict(self.endpoints),
            supervisor_pid=self.pid,
        )
        c.proc = self.mp.Process(target=child_main, args=(c.spec.entry, ctx), name=f"hftbot-{c.spec.name}")
        c.proc.start()
        c.state = "starting"
        c.started_at = time.monotonic()
        log.info("started %s (pid %d)", c.spec.name, c.proc.pid)

    def _ready(self, c: Child) -> bool:
        return self.table is not None and int(self.table.rows[c.slot]["beat_ns"]) > 0

    def _on_exit(self, c: Child, why: str) -> None:
        code = c.proc.exitcode if c.proc is not None else None
        c.exit_codes.append(code if code is not None else -1)
        rt = self.cfg.runtime
        now = time.monotonic()
        # Only restarts inside the window count towards the cap: a process that fails once a day
        # must not be given up on after a week.
        c.recent = [t for t in c.recent if now - t < rt.restart_window_s]
        if len(c.recent) >= rt.max_restarts:
            c.state = "failed"
            log.error(
                "%s %s; restart limit (%d in %g s) reached",
                c.spec.name,
                why,
                rt.max_restarts,
                rt.restart_window_s,
            )
            if c.spec.critical:
                self.failed = True
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
            c.proc.kill()
            c.proc.join(2.0)

    def check_children(self) -> None:
        rt = self.cfg.runtime
        now = time.monotonic()
        for c in self.children:
            if c.state in ("starting", "running"):
                if not c.proc.is_alive():
                    c.proc.join(0.1)
                    self._on_exit(c, f"exited with code {c.proc.exitcode}")
                    continue
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
                if c.state == "running" or c.state == "failed":
                    break
                time.sleep(0.01)

    def stop_all(self, grace: bool = True) -> None:
        """Ask each group to stop in stop_rank order; terminate, then kill, the ones that don't."""
        rt = self.cfg.runtime
        for rank in sorted({c.spec.stop_rank for c in self.children}):
            group = [c for c in self.children if c.spec.stop_rank == rank and c.proc is not None]
            for c in group:
                if self.table is not None:
                    self.table.rows[c.slot]["stop"] = 1
            deadline = time.monotonic() + (rt.stop_timeout_s if grace else 0.0)
            for c in group:
                c.proc.join(max(0.0, deadline - time.monotonic()))
                if c.proc.is_alive():
                    log.warning("%s did not stop within %.1f s: terminating", c.spec.name, rt.stop_timeout_s)
                    c.proc.terminate()
                    c.proc.join(2.0 if grace else 0.2)
                if c.proc.is_alive():
                    c.proc.kill()
                    c.proc.join(2.0)
                if c.state != "failed":
                    c.state = "stopped"
                self._counters(c)  # final counters, before the table goes
                log.info("%s stopped (exit code %s)", c.spec.name, c.proc.exitcode)

    # ---------------------------------------------------------------- main loop
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._interrupts += 1
        self.stop_reason = signal.Signals(signum).name
        if self._interrupts > 1:
            raise KeyboardInterrupt  # second Ctrl-C: skip the grace periods

    def run(self, duration_s: float | None = None) -> int:
        """Run until a signal, the duration, or a fatal failure. Returns the exit code."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        grace = True
        try:
            self.create_segments()
            self.started_at = time.monotonic()
            self.start_all()
            self._loop(duration_s)
        except KeyboardInterrupt:
            grace = False
            self.stop_reason = self.stop_reason or "interrupted"
        finally:
            try:
                self.stop_all(grace=grace)
                if self.monitor is not None:
                    self.monitor.poll()
                self.print_summary()
            finally:
                self.remove_segments()
                for s, h in old.items():
                    signal.signal(s, h)
        return 1 if self.failed else 0

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
                if end is not None and time.monotonic() >= end:
                    self.stop_reason = f"duration {duration_s:g} s reached"
                    break
                if time.monotonic() >= next_status:
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
            self._last_exec = self.monitor.exec.summary()
        return self._last_latency

    def _counters(self, c: Child) -> dict[str, int]:
        if self.table is not None:
            c.counters = self.table.counters(c.slot)
        return c.counters

    def render(self) -> Any:
        from rich.table import Table

        t = Table(title=f"hftbot · {self.cfg.runtime.mode} · {self.cfg.runtime.symbol}", expand=False)
        for col in ("process", "pid", "state", "restarts", "beat age", "counters"):
            t.add_column(col)
        now = time.time_ns()
        for c in self.children:
            beat = int(self.table.rows[c.slot]["beat_ns"]) if self.table is not None else 0
            age = f"{(now - beat) / 1e9:.1f} s" if beat else "-"
            pid = str(c.proc.pid) if c.proc is not None else "-"
            counters = " ".join(f"{k}={v}" for k, v in self._counters(c).items())
            t.add_row(c.spec.name, pid, c.state, str(c.restarts), age, counters)
        lat = self._latency()
        rings = "  ".join(f"{n}: {v}" for n, v in self._ring_counts().items())
        lats = "  ".join(f"{k} p50 {v['p50']} p99 {v['p99']}" for k, v in lat.items())
        ex = "".join(line + "\n" for line in self.monitor.exec.panel_lines()) if self.monitor else ""
        t.caption = (
            f"{ex}rings {rings}\n{lats}\nuptime {time.monotonic() - self.started_at:.0f} s · Ctrl-C stops"
        )
        return t

    def summary(self) -> dict[str, Any]:
        uptime = time.monotonic() - self.started_at
        return {
            "mode": self.cfg.runtime.mode,
            "symbol": self.cfg.runtime.symbol,
            "uptime_s": round(uptime, 2),
            "stop_reason": self.stop_reason,
            "failed": self.failed,
            "processes": {
                c.spec.name: {
                    "state": c.state,
                    "restarts": c.restarts,
                    "exit_codes": c.exit_codes + ([c.proc.exitcode] if c.proc is not None else []),
                    **self._counters(c),
                }
                for c in self.children
            },
            "rings": {
                n: {"records": v, "per_s": round(v / max(uptime, 1e-9), 1)}
                for n, v in self._ring_counts().items()
            },
            "latency_us": self._latency(),
            "execution": self._last_exec,
        }

    def print_summary(self) -> None:
        s = self.summary()
        print(f"\nhftbot {s['mode']} {s['symbol']}: ran {s['uptime_s']} s, stopped: {s['stop_reason']}")
        for name, p in s["processes"].items():
            extra = " ".join(f"{k}={v}" for k, v in p.items() if k not in ("state", "restarts", "exit_codes"))
            print(f"  {name:<10} {p['state']:<8} restarts={p['restarts']} {extra}")
        for name, r in s["rings"].items():
            print(f"  ring {name:<7} {r['records']} records ({r['per_s']}/s)")
        for line in self.monitor.exec.print_lines() if self.monitor is not None else ():
            print(line)
        for key, v in s["latency_us"].items():
            print(f"  {key:<18} p50 {v['p50']} µs  p99 {v['p99']} µs  p99.9 {v['p99.9']} µs  (n={v['n']})")
        print(json.dumps(s), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hftbot.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="a TOML file overriding hftbot/defaults.toml")
    p.add_argument("--mode", choices=("sim", "replay", "paper", "testnet", "live"), help="runtime.mode")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--symbol", help="runtime.symbol")
    p.add_argument("--replay", metavar="PATH", help="replay.path (implies --mode replay)")
    p.add_argument("--speed", type=float, help="replay.speed (0 = as fast as possible)")
    p.add_argument("--i-understand-live", action="store_true", help="confirm mode live (real money)")
    p.add_argument("--plain", action="store_true", help="log lines instead of the live panel")
    p.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    rt: dict[str, Any] = {}
    if args.replay:
        cfg = cfg.override("replay", path=args.replay)
        rt["mode"] = "replay"
    if args.speed is not None:
        cfg = cfg.override("replay", speed=args.speed)
    for key in ("mode", "symbol", "log_level"):
        if getattr(args, key, None):
            rt[key] = getattr(args, key)
    if args.i_understand_live:
        rt["live_confirm"] = True
    return cfg.override("runtime", **rt) if rt else cfg


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = build_config(args)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    try:
        preflight(cfg, args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    configure_logging(cfg.runtime.log_level, "supervisor")
    sup = Supervisor(cfg, panel=False if args.plain else None)
    missing = [c.spec.entry for c in sup.children if find_spec(c.spec.entry.partition(":")[0]) is None]
    if missing:
        print(f"hftbot: process modules not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    log.info(
        "mode %s, %d processes: %s", cfg.runtime.mode, len(sup.children), ", ".join(s.name for s in sup.specs)
    )
    return sup.run(args.duration)


if __name__ == "__main__":
    sys.exit(main())
