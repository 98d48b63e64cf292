"""Market event rows for the matching engine from captures and raw recordings (replay input).

The book is rebuilt by the documented futures procedure (`hftbot.feed.sync.DepthSync`, the feed's
own state machine): each snapshot becomes an EV_CLEAR row and one EV_LEVEL row per level, each
applied diff one EV_LEVEL row per level (bids, then asks; the last row of a message carries
MF_LAST), each trade one EV_TRADE row with the taker's side. bookTicker frames are skipped: they
carry nothing the diffs do not. Rows are in receive order, `exch_ns` is the exchange's event time
(depth) or trade time, `recv_ns` the local receive time; prices in ticks, quantities in lots.

Tick and lot are given, or inferred at the first snapshot as the feed does (greatest common
divisor of the snapshot's and the buffered diffs' prices and quantities). A level that is not a
whole number of ticks or lots is an error naming the file and frame, never a rounded row.

Reads files; never changes them. The rows are what `MatchingEngine.run` and a backtest consume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hftbot.feed import decode as d
from hftbot.feed.capture import CaptureError, iter_blocks
from hftbot.feed.core import Instrument
from hftbot.feed.sync import Action, DepthSync
from hftbot.sim.kernels import (
    EV_CLEAR,
    EV_LEVEL,
    EV_TRADE,
    MARKET_EVENT_DTYPE,
    MF_LAST,
)

BUY = 1
SELL = -1
MS = 1_000_000


@dataclass
class MarketRows:
    """Replay rows and what building them found."""

    rows: np.ndarray  # MARKET_EVENT_DTYPE
    tick_u: int  # 1e-8 units
    lot_u: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def tick(self) -> float:
        return self.tick_u / d.FIXED

    @property
    def lot(self) -> float:
        return self.lot_u / d.FIXED

    @property
    def level_rows(self) -> int:
        return int(np.count_nonzero(self.rows["kind"] == EV_LEVEL))

    def px_range(self) -> tuple[int, int]:
        """Lowest and highest price (ticks) of any level or trade: what `MatchingEngine.fit` needs."""
        px = self.rows["px"][self.rows["kind"] != EV_CLEAR]
        if not len(px):
            raise ValueError("market rows: no levels or trades")
        return int(px.min()), int(px.max())


def _level_rows(
    lv: np.ndarray, side: int, inst: Instrument, exch_ns: int, recv_ns: int, where: str
) -> np.ndarray:
    px, qty = lv[:, 0], lv[:, 1]
    if np.any(px % inst.tick_u) or np.any(qty % inst.lot_u) or np.any(px <= 0) or np.any(qty < 0):
        raise CaptureError(
            f"{where}: a level is not a whole number of ticks ({inst.tick_u}) and lots ({inst.lot_u})"
        )
    out = np.zeros(len(lv), dtype=MARKET_EVENT_DTYPE)
    out["exch_ns"] = exch_ns
    out["recv_ns"] = recv_ns
    out["kind"] = EV_LEVEL
    out["side"] = side
    out["px"] = px // inst.tick_u
    out["qty"] = qty // inst.lot_u
    return out


class _Builder:
    def __init__(self, inst: Instrument | None) -> None:
        self.inst = inst
        self.sync = DepthSync()
        self.dec = d.FrameDecoder()
        self.parts: list[np.ndarray] = []
        self.counts = {
            "snapshots": 0,
            "diffs": 0,
            "trades": 0,
            "trades_before_book": 0,
            "gaps": 0,
            "dropped": 0,
        }

    def _message(self, exch_ns: int, recv_ns: int, where: str, clear: bool) -> None:
        h = self.dec.hdr
        inst = self.inst
        assert inst is not None
        parts = [
            _level_rows(self.dec.bids[: h[d.H_NB]], BUY, inst, exch_ns, recv_ns, where),
            _level_rows(self.dec.asks[: h[d.H_NA]], SELL, inst, exch_ns, recv_ns, where),
        ]
        if clear:
            c = np.zeros(1, dtype=MARKET_EVENT_DTYPE)
            c[0] = (exch_ns, recv_ns, EV_CLEAR, 0, 0, 0, 0)
            parts.insert(0, c)
        rows = np.concatenate(parts)
        if len(rows):
            rows["flags"][-1] = MF_LAST
            self.parts.append(rows)

    def _diff(self, recv_ns: int, frame: bytes, where: str) -> None:
        h = self.dec.hdr
        act = self.sync.on_diff(int(h[d.H_FIRST]), int(h[d.H_LAST]), int(h[d.H_PREV]), (recv_ns, frame))
        if act in (Action.APPLY, Action.APPLY_FIRST):
            self.counts["diffs"] += 1
            self._message(int(h[d.H_E]) * MS, recv_ns, where, clear=False)
        elif act == Action.RESYNC:
            self.counts["gaps"] += 1
        elif act == Action.DROP:
            self.counts["dropped"] += 1

    def _snapshot(self, recv_ns: int, where: str) -> None:
        h = self.dec.hdr
        bids = self.dec.bids[: h[d.H_NB]].copy()
        asks = self.dec.asks[: h[d.H_NA]].copy()
        pending = self.sync.on_snapshot(int(h[d.H_LAST_ID]))
        if self.inst is None:
            px, qty = [bids[:, 0], asks[:, 0]], [bids[:, 1], asks[:, 1]]
            for _, _, _, (_, fr) in pending:
                if self.dec.decode(fr) == d.K_DEPTH:
                    px += [self.dec.bids[: h[d.H_NB], 0].copy(), self.dec.asks[: h[d.H_NA], 0].copy()]
                    qty += [self.dec.bids[: h[d.H_NB], 1].copy(), self.dec.asks[: h[d.H_NA], 1].copy()]
            self.inst = Instrument.infer(np.concatenate(px), np.concatenate(qty))
        self.counts["snapshots"] += 1
        self.dec.hdr[d.H_NB], self.dec.hdr[d.H_NA] = len(bids), len(asks)
        self.dec.lv[0, : len(bids)] = bids
        self.dec.lv[1, : len(asks)] = asks
        self._message(recv_ns, recv_ns, where, clear=True)  # a REST snapshot has no event time
        for _, _, _, (ns, fr) in pending:
            if self.dec.decode(fr) == d.K_DEPTH:
                self._diff(ns, fr, f"{where} (buffered)")

    def frame(self, recv_ns: int, frame: bytes, where: str) -> None:
        kind = self.dec.decode(frame)
        if kind < 0:
            raise CaptureError(f"{where}: {d.error_text(kind)}")
        h = self.dec.hdr
        if kind == d.K_DEPTH:
            self._diff(recv_ns, frame, where)
        elif kind == d.K_SNAPSHOT:
            if len(self.dec.bids) < h[d.H_NB] or len(self.dec.asks) < h[d.H_NA]:
                raise CaptureError(f"{where}: snapshot larger than the decoder holds")
            self._snapshot(recv_ns, where)
        elif kind == d.K_TRADE:
            if self.inst is None or not self.sync.synced:
                self.counts["trades_before_book"] += 1
                return
            px, qty = int(h[d.H_PX]), int(h[d.H_QTY])
            if px % self.inst.tick_u or qty % self.inst.lot_u:
                raise CaptureError(f"{where}: trade price/quantity not a whole number of ticks/lots")
            row = np.zeros(1, dtype=MARKET_EVENT_DTYPE)
            taker = SELL if h[d.H_MAKER] else BUY  # `m`: the buyer is the maker, so the taker sold
            row[0] = (
                int(h[d.H_T]) * MS,
                recv_ns,
                EV_TRADE,
                taker,
                px // self.inst.tick_u,
                qty // self.inst.lot_u,
                MF_LAST,
            )
            self.parts.append(row)
            self.counts["trades"] += 1


def load_rows(
    paths: list[Path | str] | Path | str, tick: str | None = None, lot: str | None = None
) -> MarketRows:
    """Rows for every book change and trade under `paths` (`.gz` captures, raw recordings or folders)."""
    inst = Instrument.from_strings(tick, lot) if tick and lot else None
    b = _Builder(inst)
    for block in iter_blocks(paths):
        for j in range(len(block)):
            b.frame(int(block.nss[j]), block.frame(j), f"{block.source} frame {j}")
    if b.inst is None:
        raise CaptureError(f"{paths}: no depth snapshot: cannot build a book")
    rows = np.concatenate(b.parts) if b.parts else np.zeros(0, dtype=MARKET_EVENT_DTYPE)
    b.counts["gaps"] = b.sync.gaps
    return MarketRows(rows, b.inst.tick_u, b.inst.lot_u, b.counts)
