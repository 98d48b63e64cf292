"""The supervisor's view of execution: latency from the order ring, PnL from the status ring.

`ExecMonitor(rings)` reads, from the supervisor, the "order" ring the execution process writes
(`hftbot.exec.journal`) and keeps latency samples measured by the system itself:

- `tick_to_order_us`: order frame written − receive time of the book update behind it (every
  order.place and order.modify that a market-data record triggered: `read_ns` and `book_recv_ns`
  set; an order a timer or a venue answer sent — the flatten at the stop, a halt's retry, a
  replacement after a cancel — waited on no tick, and its book may be any age);
- `read_to_order_us`: order frame written − when execution read the record that triggered it
  (strategy, risk and the gateway's send path), and `signal_to_order_us`, the same for the
  orders a signal record triggered (the "signal read → order frame ≤ 200 µs" target).

and the newest record of the "exec" status ring (position, open orders, PnL, trades, win rate,
and the fault report: per kind of `hftbot.exec.faults.KINDS`, how many were seen, recovered,
given up on and are open now, the action that handles them, and the recovery time p50 / max).
`panel_lines()` renders that for the status panel (each line ≤ 80 columns; a third line lists the
faults seen), `summary()` for the exit summary and its JSON line (`"faults"`). Reads only; never
blocks (the rings' writers never wait for it).
"""

from __future__ import annotations

import math

import numpy as np

from hftbot.bench.common import percentiles_us
from hftbot.exec.faults import ACTIONS, KINDS
from hftbot.ipc.ring import Ring, RingReader
from hftbot.records import (
    EXEC_HALTED,
    EXEC_REDUCING,
    ORDER_CANCEL,
    ORDER_FILL,
    ORDER_MODIFY,
    ORDER_PLACE,
    ORDER_REJECT,
)

STATUS_CAPACITY = 64  # status records (one a heartbeat; only the newest matters)
STATES = {0: "RUNNING", EXEC_REDUCING: "REDUCING", EXEC_HALTED: "HALTED"}
KEEP = 200_000


class ExecMonitor:
    """Latency samples from the order ring and the newest execution status (supervisor side)."""

    def __init__(self, rings: dict[str, Ring]) -> None:
        self.order_reader = (
            RingReader(rings["order"], wait="spin_yield", start="next") if "order" in rings else None
        )
        self.status_reader = (
            RingReader(rings["exec"], wait="spin_yield", start="next") if "exec" in rings else None
        )
        self.samples: dict[str, list[np.ndarray]] = {
            "tick_to_order_us": [],
            "read_to_order_us": [],
            "signal_to_order_us": [],
        }
        self.counts = {"orders": 0, "modifies": 0, "cancels": 0, "fills": 0, "rejects": 0}
        self.status: dict | None = None

    def poll(self) -> None:
        r = self.order_reader
        while r is not None:
            recs = r.read_many(4096, timeout_s=0)
            if not len(recs):
                break
            kind = recs["kind"]
            for name, k in (
                ("orders", ORDER_PLACE),
                ("modifies", ORDER_MODIFY),
                ("cancels", ORDER_CANCEL),
                ("fills", ORDER_FILL),
                ("rejects", ORDER_REJECT),
            ):
                self.counts[name] += int(np.count_nonzero(kind == k))
            sent = (kind == ORDER_PLACE) | (kind == ORDER_MODIFY)
            tick = sent & (recs["book_recv_ns"] > 0) & (recs["read_ns"] > 0)
            self._add("tick_to_order_us", (recs["send_ns"][tick] - recs["book_recv_ns"][tick]) / 1e3)
            read = sent & (recs["read_ns"] > 0)
            self._add("read_to_order_us", (recs["send_ns"][read] - recs["read_ns"][read]) / 1e3)
            sig = read & (recs["signal_seq"] > 0)
            self._add("signal_to_order_us", (recs["send_ns"][sig] - recs["read_ns"][sig]) / 1e3)
        s = self.status_reader
        if s is not None:
            recs = s.read_many(STATUS_CAPACITY, timeout_s=0)
            if len(recs):
                last = recs[-1]
                self.status = {
                    name: (last[name].tolist() if last[name].ndim else last[name].item())
                    for name in recs.dtype.names
                }

    def _add(self, key: str, values: np.ndarray) -> None:
        if len(values):
            self.samples[key].append(values.astype(np.float64))
            if sum(map(len, self.samples[key])) > 2 * KEEP:
                self.samples[key] = [np.concatenate(self.samples[key])[-KEEP:]]

    def latency(self) -> dict[str, dict[str, float]]:
        """{name: {n, p50, p99, p99.9}} in µs, as the supervisor's own latency figures."""
        out = {}
        for key, chunks in self.samples.items():
            if chunks:
                v = np.concatenate(chunks)
                p = percentiles_us(v, scale=1.0)
                out[key] = {
                    "n": len(v),
                    "p50": round(p["p50"], 1),
                    "p99": round(p["p99"], 1),
                    "p99.9": round(p["p99.9"], 1),
                }
        return out

    def summary(self) -> dict:
        """The exit summary's "execution" object (empty before the first status record)."""
        st = self.status
        if st is None:
            return {}
        lot = st["lot"] or 1.0
        trades = int(st["trades"])
        win = st["win_rate"]
        return {
            "state": STATES.get(int(st["state"]), "?"),
            "position_lots": int(st["position"]),
            "position": round(st["position"] * lot, 10),
            "venue_position_lots": int(st["venue_position"]),
            "avg_px": st["avg_px"],
            "mark_px": st["mark_px"],
            "open_orders": int(st["open_orders"]),
            "orders": int(st["orders"]),
            "fills": int(st["fills"]),
            "rejects": int(st["rejects"]),
            "refusals": int(st["refusals"]),
            "trades": trades,
            "wins": int(st["wins"]),
            "win_rate": None if math.isnan(win) else round(win, 4),
            "realised_usdt": round(st["realised"], 6),
            "unrealised_usdt": round(st["unrealised"], 6),
            "fees_usdt": round(st["fees"], 6),
            "net_pnl_usdt": round(st["net_pnl"], 6),
            "mismatches": int(st["mismatches"]),
            "faults": faults_of(st),
        }

    def panel_lines(self) -> list[str]:
        """Two lines for the status panel, each at most 80 columns."""
        s = self.summary()
        if not s:
            return []
        pos = f"{s['position']:+g}"
        at = f" @ {s['avg_px']:.2f}" if s["position_lots"] else ""
        venue = (
            ""
            if s["venue_position_lots"] == s["position_lots"]
            else f" (venue {s['venue_position_lots']} lots)"
        )
        win = "-" if s["win_rate"] is None else f"{100 * s['win_rate']:.0f}%"
        lines = [
            f"exec {s['state']} pos {pos}{at}{venue} open {s['open_orders']} orders {s['orders']} fills {s['fills']}",
            f"PnL net {s['net_pnl_usdt']:+.2f} real {s['realised_usdt']:+.2f} unreal {s['unrealised_usdt']:+.2f} "
            f"fees {s['fees_usdt']:.2f} trades {s['trades']} win {win}",
        ]
        faults = s["faults"]
        if faults:
            text = " ".join(f"{_SHORT.get(k, k)} {f['count']}" for k, f in faults.items())
            lines.append(f"faults {text}")
        return [line[:80] for line in lines]

    def print_lines(self) -> list[str]:
        """The exit summary's text lines."""
        s = self.summary()
        if not s:
            return []
        win = "-" if s["win_rate"] is None else f"{100 * s['win_rate']:.1f}%"
        return [
            f"  execution  {s['state']}: position {s['position']:+g} (venue {s['venue_position_lots']} lots), "
            f"open orders {s['open_orders']}, orders {s['orders']}, fills {s['fills']}, rejects {s['rejects']}, "
            f"refusals {s['refusals']}",
            f"  PnL        net {s['net_pnl_usdt']:+.4f} USDT = realised {s['realised_usdt']:+.4f} "
            f"+ unrealised {s['unrealised_usdt']:+.4f} - fees {s['fees_usdt']:.4f}; "
            f"{s['trades']} trades, win rate {win}",
            *fault_lines(s["faults"]),
        ]

    def close(self) -> None:
        for r in (self.order_reader, self.status_reader):
            if r is not None:
                r.close()


# panel abbreviations (the panel line has 80 columns; the summary uses the full names)
_SHORT = {
    "unknown_outcome": "unknown",
    "timestamp": "ts",
    "rate_limit": "429",
    "post_only": "gtx",
    "min_notional": "notional",
    "precision": "precision",
    "unknown_order": "gone",
    "user_stream": "user",
    "listen_key": "key",
    "ws_api": "wsapi",
    "duplicate_fill": "dup",
    "late_fill": "late",
    "stale_book": "book",
    "stale_signal": "signal",
    "dead_man": "deadman",
}


def faults_of(st: dict) -> dict[str, dict]:
    """The status record's fault arrays as `{kind: {count, recovered, failed, open, action,
    recovery_ms: {p50, max}}}`, kinds seen only (empty for a record without them)."""
    counts = st.get("fault_count")
    if counts is None:
        return {}
    out = {}
    for i, kind in enumerate(KINDS):
        n = int(counts[i])
        if not n:
            continue
        p50 = st["fault_p50_ms"][i]
        out[kind] = {
            "count": n,
            "recovered": int(st["fault_recovered"][i]),
            "failed": int(st["fault_failed"][i]),
            "open": int(st["fault_open"][i]),
            "action": ACTIONS[kind],
            "recovery_ms": {
                "p50": None if math.isnan(p50) else round(p50, 3),
                "max": round(st["fault_max_ms"][i], 3),
            },
        }
    return out


def fault_lines(faults: dict[str, dict]) -> list[str]:
    """The exit summary's fault report, one line per kind seen."""
    out = []
    for kind, f in faults.items():
        rec = f["recovery_ms"]
        p50 = "-" if rec["p50"] is None else f"{rec['p50']:.1f}"
        extra = (f", {f['failed']} failed" if f["failed"] else "") + (f", {f['open']} open" if f["open"] else "")
        out.append(
            f"  fault      {kind:<15} {f['count']:>6} → {f['action']:<13} recovered {f['recovered']}{extra}; "
            f"recovery p50 {p50} ms, max {rec['max']:.1f} ms"
        )
    return out
