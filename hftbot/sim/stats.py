"""Stylised facts of a market-data message stream, so the model can be set beside a real capture.

Input is any iterator of (recv_ns, stream, payload) — a generated recording, a recorder file, or
the hftbacktest `.gz` capture via `hftbot.feed.recording.iter_raw` — with payloads either raw or
wrapped `{"stream","data"}`. Facts: message rates, spread distribution (ticks), depth profile
(mean size at levels 1..10, from the book rebuilt by snapshot + diffs), mid-return
autocorrelation (1 s grid), trade-size tail (percentiles and Hill tail index), and queue-imbalance
predictability (P(next mid move is up | top-of-book imbalance bucket)).

Pure computation over what it is given (`compute`, `table`); `reference_facts()` reads the facts
of the shared BTCUSDT capture that ship with the package (`capture_facts.json`, computed by
`compute` from `tests/data/btcusdt_20240808.gz`; a test keeps the two equal), so
`python -m hftbot.sim stats` needs no path and works from any folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson


@dataclass
class Facts:
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    tick: float = 0.0
    spread_share: dict[str, float] = field(default_factory=dict)
    depth_profile: list[float] = field(default_factory=list)  # mean size at level 1..10, in units of level 1
    ret_autocorr: list[float] = field(default_factory=list)  # lags 1..5 of 1 s mid returns
    mid_changes_per_s: float = 0.0
    trade_pct: dict[str, float] = field(default_factory=dict)  # size percentiles, in units of the median
    hill_alpha: float = float("nan")
    imbalance_up: dict[str, float] = field(default_factory=dict)  # P(up | imbalance bucket)


REFERENCE_FACTS = Path(__file__).with_name("capture_facts.json")
REFERENCE_NAME = "BTCUSDT 2024-08-08"


def reference_facts() -> Facts:
    """The shared BTCUSDT capture's facts, as shipped with the package."""
    return Facts(**json.loads(REFERENCE_FACTS.read_text()))


def facts_json(f: Facts) -> str:
    """Facts as the JSON `reference_facts` reads (floats exact, NaN as JSON's NaN)."""
    return json.dumps(dataclasses.asdict(f), indent=1, sort_keys=True) + "\n"


def _kind(stream: str, data: dict) -> str:
    e = data.get("e")
    if "lastUpdateId" in data:
        return "snapshot"
    if e == "depthUpdate":
        return "depth"
    if e == "bookTicker" or stream.endswith("@bookTicker"):
        return "bookTicker"
    if e in ("aggTrade", "trade"):
        return "trade"
    return e or "other"


def _hill(x: np.ndarray, frac: float = 0.05) -> float:
    x = np.sort(x[x > 0])[::-1]
    k = max(10, int(len(x) * frac))
    if len(x) <= k + 1:
        return float("nan")
    logs = np.log(x[:k]) - math.log(x[k])
    m = logs.mean()
    return float(1.0 / m) if m > 0 else float("nan")


def compute(messages: Iterable[tuple[int, str, str | bytes]], max_messages: int = 2_000_000) -> Facts:
    """Stylised facts of one message stream (see the module docstring)."""
    counts: dict[str, int] = {}
    first_ns = last_ns = 0
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    have_book = False
    profile_sum = np.zeros(10)
    profile_n = 0
    tops: list[tuple[int, float, float, float, float]] = []  # ns, bid, bidqty, ask, askqty
    trades: list[float] = []
    n = 0
    for recv_ns, stream, payload in messages:
        n += 1
        if n > max_messages:
            break
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            counts["malformed"] = counts.get("malformed", 0) + 1
            continue
        data = obj.get("data", obj) if isinstance(obj, dict) else {}
        if not isinstance(data, dict):
            continue
        kind = _kind(obj.get("stream", stream) if isinstance(obj, dict) else stream, data)
        counts[kind] = counts.get(kind, 0) + 1
        if not first_ns:
            first_ns = recv_ns
        last_ns = recv_ns
        if kind == "snapshot":
            bids = {float(p): float(q) for p, q in data["bids"]}
            asks = {float(p): float(q) for p, q in data["asks"]}
            have_book = True
        elif kind == "depth" and have_book:
            for p, q in data.get("b", ()):
                if float(q) == 0:
                    bids.pop(float(p), None)
                else:
                    bids[float(p)] = float(q)
            for p, q in data.get("a", ()):
                if float(q) == 0:
                    asks.pop(float(p), None)
                else:
                    asks[float(p)] = float(q)
            if counts["depth"] % 10 == 0 and len(bids) >= 10 and len(asks) >= 10:
                bb = sorted(bids, reverse=True)[:10]
                aa = sorted(asks)[:10]
                profile_sum += np.array([(bids[b] + asks[a]) / 2 for b, a in zip(bb, aa, strict=True)])
                profile_n += 1
        elif kind == "bookTicker":
            tops.append((recv_ns, float(data["b"]), float(data["B"]), float(data["a"]), float(data["A"])))
        elif kind == "trade":
            trades.append(float(data["q"]))
    f = Facts()
    f.seconds = (last_ns - first_ns) / 1e9
    f.counts = counts
    if tops:
        t = np.array(tops)
        spread = t[:, 3] - t[:, 1]
        pos = spread[spread > 0]
        tick = float(np.min(pos)) if len(pos) else 0.0
        f.tick = tick
        if tick > 0:
            ticks = np.rint(spread / tick).astype(int)
            for k in (1, 2, 3):
                f.spread_share[str(k)] = float(np.mean(ticks == k))
            f.spread_share[">3"] = float(np.mean(ticks > 3))
        mid = (t[:, 1] + t[:, 3]) / 2
        ns = t[:, 0]
        change = np.nonzero(np.diff(mid))[0]
        f.mid_changes_per_s = len(change) / f.seconds if f.seconds > 0 else 0.0
        # 1 s grid of mids (last value at or before each second)
        if f.seconds >= 20:
            grid = np.arange(ns[0], ns[-1], 1e9)
            idx = np.searchsorted(ns, grid, side="right") - 1
            r = np.diff(np.log(mid[idx]))
            f.ret_autocorr = [
                float(np.corrcoef(r[:-k], r[k:])[0, 1]) if len(r) > k + 2 and r.std() > 0 else float("nan")
                for k in range(1, 6)
            ]
        # imbalance before each mid change vs its direction
        if len(change):
            qb, qa = t[change, 2], t[change, 4]
            imb = (qb - qa) / np.maximum(qb + qa, 1e-12)
            up = mid[change + 1] > mid[change]
            for lo, hi, name in (
                (-1.01, -0.5, "I<-0.5"),
                (-0.5, 0, "-0.5..0"),
                (0, 0.5, "0..0.5"),
                (0.5, 1.01, "I>0.5"),
            ):
                sel = (imb >= lo) & (imb < hi)
                f.imbalance_up[name] = float(up[sel].mean()) if sel.any() else float("nan")
    if profile_n:
        prof = profile_sum / profile_n
        f.depth_profile = [float(x / prof[0]) for x in prof]
    if trades:
        x = np.array(trades)
        med = float(np.median(x))
        for q in (90, 99, 99.9):
            f.trade_pct[f"p{q}"] = float(np.percentile(x, q) / med) if med > 0 else float("nan")
        f.hill_alpha = _hill(x)
    return f


def table(model: Facts, real: Facts, real_name: str) -> str:
    """The two sets of facts side by side, one row per fact."""

    def fmt(v: float) -> str:
        return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    rows: list[tuple[str, str, str]] = []
    for k in ("depth", "bookTicker", "trade"):
        rows.append(
            (
                f"{k} msgs/s",
                fmt(model.counts.get(k, 0) / max(model.seconds, 1e-9)),
                fmt(real.counts.get(k, 0) / max(real.seconds, 1e-9)),
            )
        )
    rows.append(("mid changes/s", fmt(model.mid_changes_per_s), fmt(real.mid_changes_per_s)))
    for k in ("1", "2", "3", ">3"):
        rows.append(
            (f"spread = {k} tick share", fmt(model.spread_share.get(k)), fmt(real.spread_share.get(k)))
        )
    for i in range(10):
        a = model.depth_profile[i] if i < len(model.depth_profile) else float("nan")
        b = real.depth_profile[i] if i < len(real.depth_profile) else float("nan")
        rows.append((f"depth L{i + 1} / L1", fmt(a), fmt(b)))
    for i in range(5):
        a = model.ret_autocorr[i] if i < len(model.ret_autocorr) else float("nan")
        b = real.ret_autocorr[i] if i < len(real.ret_autocorr) else float("nan")
        rows.append((f"1s return autocorr lag {i + 1}", fmt(a), fmt(b)))
    for k in ("p90", "p99", "p99.9"):
        rows.append((f"trade size {k} / median", fmt(model.trade_pct.get(k)), fmt(real.trade_pct.get(k))))
    rows.append(("trade size Hill tail index", fmt(model.hill_alpha), fmt(real.hill_alpha)))
    for k in ("I<-0.5", "-0.5..0", "0..0.5", "I>0.5"):
        rows.append((f"P(next mid up | {k})", fmt(model.imbalance_up.get(k)), fmt(real.imbalance_up.get(k))))
    w = max(len(r[0]) for r in rows)
    head = f"{'fact':<{w}}  {'model':>10}  {real_name[:24]:>24}"
    lines = [head, "-" * len(head)]
    lines += [f"{a:<{w}}  {b:>10}  {c:>24}" for a, b, c in rows]
    return "\n".join(lines)
