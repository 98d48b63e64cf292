"""The backtester's order latency and queue model, from `[backtest]` (docs/backtest.md, "Replay loop").

Order latency is constant (`order_entry_us` to the matching engine, `order_response_us` back) or
drawn from recorded order round trips: execution's `orders-*.parquet` files (`ORDER_DTYPE`, the
recorder's "orders" kind) hold the local time each place left (`ORDER_PLACE.send_ns`) and the local
time its first answer with a time arrived (the first fill's or the reject's `send_ns`, a receive
time). Only answers that cannot have waited in the book count as round trips: rejects and taker
fills (a maker fill's delay is the market's, not the network's). Each round trip is split half each
way (the venue's own processing time is inside it, and a one-way split is not observable).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from hftbot.config import BacktestConfig
from hftbot.feed.recording import _expand
from hftbot.records import ORDER_FILL, ORDER_MAKER, ORDER_PLACE, ORDER_REJECT
from hftbot.sim.models import (
    ConstantLatency,
    EmpiricalLatency,
    LatencyModel,
    PowerProbQueue,
    ProportionalQueue,
    QueueModel,
    RiskAverseQueue,
)

US = 1_000


def queue_model(bt: BacktestConfig) -> QueueModel:
    """The `[backtest] queue_model` the matching engine uses for anonymous cancels at our level."""
    if bt.queue_model == "risk_averse":
        return RiskAverseQueue()
    if bt.queue_model == "proportional":
        return ProportionalQueue()
    return PowerProbQueue(bt.queue_power)


def round_trips_ns(paths: list[Path]) -> np.ndarray:
    """Recorded order round trips (ns): place sent → its reject or first taker fill received."""
    files = _expand(paths, "orders")
    if not files:
        raise FileNotFoundError(f"backtest: order_latency = 'recorded' but no orders-*.parquet under {paths}")
    cols = ["kind", "send_ns", "flags", "client_id"]
    sent: dict[str, int] = {}
    answered: dict[str, int] = {}
    for f in files:
        t = pq.read_table(f, columns=cols)
        kind = t.column("kind").to_numpy()
        ns = t.column("send_ns").to_numpy()
        flags = t.column("flags").to_numpy()
        cid = t.column("client_id").to_pylist()
        for k, n, fl, c in zip(kind.tolist(), ns.tolist(), flags.tolist(), cid, strict=True):
            if k == ORDER_PLACE:
                sent.setdefault(c, n)
            elif c not in answered and (k == ORDER_REJECT or (k == ORDER_FILL and not fl & ORDER_MAKER)):
                answered[c] = n
    rt = [answered[c] - s for c, s in sent.items() if c in answered and answered[c] >= s]
    if not rt:
        raise ValueError(
            f"backtest: no usable order round trips (a place and its reject or taker fill) in {len(files)} "
            f"orders file(s) under {paths}"
        )
    return np.asarray(sorted(rt), dtype=np.int64)


def latency_model(bt: BacktestConfig, data_paths: list[Path]) -> LatencyModel:
    """`[backtest] order_latency`: constant, or each way half a recorded round trip."""
    if bt.order_latency == "constant":
        return LatencyModel(
            order_entry=ConstantLatency(int(bt.order_entry_us * US)),
            order_response=ConstantLatency(int(bt.order_response_us * US)),
        )
    where = [Path(bt.orders_path)] if bt.orders_path else data_paths
    half = tuple(int(x) for x in (round_trips_ns(where) // 2).tolist())
    return LatencyModel(order_entry=EmpiricalLatency(half), order_response=EmpiricalLatency(half))
