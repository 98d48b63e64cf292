"""Offline recordings from the market model, written without sockets, far faster than real time.

The messages are built by the same `MarketPublisher` the server streams from, so a generated
recording is what the feed would have recorded from the simulator: a depth snapshot (stream
`<symbol>@depthSnapshot`, taken inside the first diff window so that the first diff straddles its
`lastUpdateId`), then diff depth at the chosen speed, bookTicker and aggTrade, each as the
combined-stream text `{"stream":…,"data":…}`, with `recv_ns` = simulated publish time.

This module never opens a socket and never reads the wall clock for data (only for its report).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from hftbot.sim.market import MarketModel, ModelParams
from hftbot.sim.streams import MarketPublisher, combined

MS = 1_000_000


@dataclass
class GenerateResult:
    sim_seconds: float
    wall_seconds: float
    events: int
    depth_messages: int
    messages: int

    @property
    def speedup(self) -> float:
        return self.sim_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")


def generate_messages(
    params: ModelParams,
    seconds: float,
    sink: Callable[[int, str, bytes], None],
    speed_ms: int = 100,
    start_ns: int | None = None,
    book_ticker: bool = True,
    agg_trade: bool = True,
) -> GenerateResult:
    """Run the model for `seconds` of simulated time; every message goes to `sink(recv_ns, stream, text)`."""
    if seconds <= 0:
        raise ValueError(f"generate: seconds must be > 0, got {seconds}")
    t0 = time.perf_counter()
    model = MarketModel(params) if start_ns is None else MarketModel(params, start_ns=start_ns)
    eng = model.engine
    assert eng is not None
    pub = MarketPublisher(eng, params.symbol, speeds_ms=(speed_ms,))
    depth_name = pub.diff_name(speed_ms)
    end_ns = model.time_ns + int(seconds * 1e9)
    window_ns = max(speed_ms, 1) * MS
    next_due = (model.time_ns // window_ns + 1) * window_ns
    snapshot_done = False
    n_depth = 0
    n_msgs = 0
    lsym = params.symbol.lower()
    while True:
        t = model.next_event_ns()
        # close every window that ended before this event
        while speed_ms and next_due <= t and next_due <= end_ns:
            due_ms = next_due // MS
            for m in pub.due(due_ms, model.time_ns // MS):
                sink(next_due, m.stream, combined(m.stream, m.payload))
                n_depth += m.stream == depth_name
                n_msgs += 1
            next_due += window_ns
        if t > end_ns:
            break
        model.step()
        ch = eng.drain()
        if ch is None:
            continue
        ms = t // MS
        for m in pub.on_changes(ch, ms, ms):
            if m.stream is pub.agg_name:
                if not agg_trade:
                    continue
            elif m.stream is pub.ticker_name:
                if not book_ticker:
                    continue
            else:
                n_depth += 1
            sink(t, m.stream, combined(m.stream, m.payload))
            n_msgs += 1
        if not snapshot_done:
            # inside the first window, after its first change: the first diff straddles it
            sink(t, f"{lsym}@depthSnapshot", pub.snapshot_json(1000, ms, ms))
            snapshot_done = True
            n_msgs += 1
    return GenerateResult(seconds, time.perf_counter() - t0, model.events, n_depth, n_msgs)


def generate_recording(
    out_dir: str,
    params: ModelParams,
    hours: float,
    speed_ms: int = 100,
    start_ns: int | None = None,
) -> GenerateResult:
    """Write a raw recording under `out_dir`, a recordings root, in the recorder's layout:
    `<out_dir>/sim/<SYMBOL>/<date>/raw-*.parquet` (source sim, like the simulator's live data)."""
    from hftbot.feed.recording import RawRecordingWriter

    if hours <= 0:
        raise ValueError(f"generate: --hours must be > 0, got {hours}")
    t0 = time.perf_counter()
    with RawRecordingWriter(out_dir, params.symbol, flush_s=1e9, source="sim") as w:
        res = generate_messages(params, hours * 3600.0, w.append, speed_ms=speed_ms, start_ns=start_ns)
    res.wall_seconds = time.perf_counter() - t0
    return res
