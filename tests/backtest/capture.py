"""Hand-built market data as a real `.gz` capture (`<recv_ns> <json>` lines, the shared capture's
format), read by the same code as any recording, and scripted strategies for the loop's tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from hftbot.exec.strategy import NOTHING, Strategy

MS = 1_000_000
T0_MS = 1_722_000_000_000  # exchange time of the first event


class Tape:
    """Frames in receive order; exchange time `E` in ms, receive time E + feed latency."""

    def __init__(self, feed_latency_ms: float = 0.0, symbol: str = "SOLUSDT") -> None:
        self.lines: list[str] = []
        self.feed_ns = int(feed_latency_ms * MS)
        self.sym = symbol
        self.u = 10
        self.trade_id = 1
        self.fresh = False

    def _add(self, e_ms: int, obj: dict) -> None:
        self.lines.append(f"{e_ms * MS + self.feed_ns} {json.dumps(obj, separators=(',', ':'))}")

    def snapshot(self, e_ms: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> Tape:
        """The REST snapshot and the diff that starts the chain after it (the feed's sync)."""
        self.fresh = True
        self._add(e_ms, {"lastUpdateId": self.u, "E": e_ms, "T": e_ms, "bids": bids, "asks": asks})
        return self

    def diff(self, e_ms: int, bids: list[tuple[str, str]] = (), asks: list[tuple[str, str]] = ()) -> Tape:
        # the first diff after a snapshot straddles its lastUpdateId (the futures sync rule)
        first, last = (self.u - 1, self.u + 1) if self.fresh else (self.u + 1, self.u + 1)
        prev = first - 1 if self.fresh else self.u
        self.fresh = False
        self._add(e_ms, {"stream": f"{self.sym.lower()}@depth", "data": {
            "e": "depthUpdate", "E": e_ms, "T": e_ms, "s": self.sym, "U": first, "u": last, "pu": prev,
            "b": [list(b) for b in bids], "a": [list(a) for a in asks]}})
        self.u = last
        return self

    def trade(self, e_ms: int, px: str, qty: str, taker_sells: bool) -> Tape:
        self._add(e_ms, {"stream": f"{self.sym.lower()}@aggTrade", "data": {
            "e": "aggTrade", "E": e_ms, "a": self.trade_id, "s": self.sym, "p": px, "q": qty,
            "f": self.trade_id, "l": self.trade_id, "T": e_ms, "m": taker_sells}})
        self.trade_id += 1
        return self

    def write_raw(self, root: Path, rotate_s: float = 3600.0) -> Path:
        """The same frames as a raw Parquet recording (the recorder's layout, a file per `rotate_s`);
        the snapshot as the recorder stores it (`<symbol>@depthSnapshot` in the combined form)."""
        from hftbot.feed.recording import RawRecordingWriter

        with RawRecordingWriter(root, self.sym, flush_s=1e9, rotate_s=rotate_s, source="sim") as w:
            for line in self.lines:
                ns, text = line.split(" ", 1)
                obj = json.loads(text)
                if "stream" not in obj:
                    obj = {"stream": f"{self.sym.lower()}@depthSnapshot", "data": obj}
                w.append(int(ns), obj["stream"], json.dumps(obj, separators=(",", ":")))
        return root

    def write(self, path: Path) -> Path:
        with gzip.open(path, "wt") as f:
            f.write("\n".join(self.lines) + "\n")
        return path


class Scripted(Strategy):
    """Sends each planned intent at the first book at or after its time (ns): a known order flow."""

    name = "scripted"

    def __init__(self, plan: list[tuple[int, object]]) -> None:
        self.plan = sorted(plan, key=lambda p: p[0])
        self.books = 0

    def on_book(self, book, view):
        self.books += 1
        if not self.plan or view.now_ns < self.plan[0][0]:
            return NOTHING
        out = []
        while self.plan and view.now_ns >= self.plan[0][0]:
            out.append(self.plan.pop(0)[1])
        return out
