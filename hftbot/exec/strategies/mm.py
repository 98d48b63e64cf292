"""mm: two-sided post-only quotes around a reservation price skewed by inventory and by the signal.

Avellaneda & Stoikov (2008), in the stationary form practitioners use (a fixed horizon τ instead
of a session end), in ticks:

    reservation  r = mid − q·γ·σ²·τ + skew          q: position in quote sizes (signed)
    half spread  δ = ½·γ·σ²·τ + ln(1 + γ/κ) / γ      (→ 1/κ as γ → 0)
    bid = ⌊r − max(δ, floor)⌋,  ask = ⌈r + max(δ, floor)⌉

σ² is the mid's variance rate (ticks²/s), an EWMA of squared mid changes over an EWMA of the time
between updates (`mm_vol_halflife_updates`); before any move it is 0 and the quotes sit at the
fee floor without inventory skew. `skew = (p_up − p_down) × mm_signal_skew_bps × mid` from a fresh,
usable signal (0 otherwise): the model moves the quotes, it never crosses them. `floor = (maker
fee + mm_margin_bps) × mid`: a buy at the bid and a sell at the ask must at least pay both
makers' fees. Quotes never cross the book (a GTX order that would take is rejected, -5022): the
bid stays below the best ask, the ask above the best bid.

Inventory: the side that would take |position| past `min(mm_max_inventory, risk.max_position)` is
not quoted (its resting quote is cancelled) and the other side's size is capped so the position
cannot cross the limit either way. Requoting: a quote moves (`order.modify`, which keeps one
order id and one request; a partially filled one is cancelled and placed again) when its target
moved by `mm_requote_ticks` and it has rested `mm_min_quote_life_ms` — both to keep the request
rate within the venue's limits and to keep queue position when nothing important changed. On a
book without BOOK_VALID every quote is pulled. Signals are read, trades are not.

The backtester's fast path (`hftbot.backtest.fastpath.mm_step`) mirrors `on_book` → `_quote` in the
case where they return no intent, branch for branch; change the two together. Its check mode
(`[backtest] fast_path = "check"`, run by tests/backtest/test_fastpath.py) fails where they differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hftbot.config import ExecConfig, RiskConfig, StrategyConfig
from hftbot.exec.fees import BPS, FeeModel
from hftbot.exec.messages import BUY, GTX, LIMIT, NEW, PARTIALLY_FILLED, SELL, Cancel, Intent, Modify, Place
from hftbot.exec.positions import StrategyView
from hftbot.exec.strategy import NOTHING, Strategy
from hftbot.records import BOOK_RESYNC, BOOK_VALID, SIGNAL_NO_MODEL, SIGNAL_WARMUP

MS = 1_000_000
NS = 1_000_000_000
RETRY_NS = 1_000 * MS  # a cancel or modify the venue has not reflected within this is sent again
QUOTE_BID = "quote_bid"
QUOTE_ASK = "quote_ask"
_UNUSABLE = SIGNAL_NO_MODEL | SIGNAL_WARMUP
_RESTING = (NEW, PARTIALLY_FILLED)


def resting_quotes(orders: dict) -> tuple:
    """(our bid quote, our ask quote, any further quotes or None): the first order of each quote tag
    in `orders` (the view's, in the order the venue took them) is that side's quote."""
    bid_o = ask_o = None
    extra = None
    for o in orders.values():
        tag = o.tag
        if tag == QUOTE_BID:
            if bid_o is None:
                bid_o = o
                continue
        elif tag == QUOTE_ASK:
            if ask_o is None:
                ask_o = o
                continue
        else:
            continue
        if extra is None:
            extra = []
        extra.append(o)
    return bid_o, ask_o, extra


class MarketMaker(Strategy):
    name = "mm"

    def __init__(self, st: StrategyConfig, ex: ExecConfig, risk: RiskConfig, fees: FeeModel) -> None:
        self.qty_base = st.mm_qty
        self.max_inventory_base = min(st.mm_max_inventory, risk.max_position)
        self.gamma = st.mm_gamma
        self.tau_s = st.mm_tau_s
        self.spread_const = math.log1p(st.mm_gamma / st.mm_kappa) / st.mm_gamma if st.mm_gamma > 0 else (
            1.0 / st.mm_kappa if st.mm_kappa > 0 else 0.0)
        self.alpha = 1.0 - 0.5 ** (1.0 / st.mm_vol_halflife_updates)
        self.floor_frac = fees.maker + st.mm_margin_bps * BPS
        self.skew_frac = st.mm_signal_skew_bps * BPS
        self.requote_ticks = st.mm_requote_ticks
        self.min_life_ns = int(st.mm_min_quote_life_ms * MS)
        self.stale_signal_ns = int(risk.stale_signal_ms * MS)
        self.lot = 0.0
        self.qty = 0  # lots
        self.max_inventory = 0  # lots
        self.bid = 0
        self.ask = 0
        self.mid = 0.0
        self.book_ok = False
        # variance rate of the mid: EWMA(Δmid²) / EWMA(Δt)
        self.last_mid = 0.0
        self.last_ns = 0
        self.dm2 = 0.0
        self.dt_s = 0.0
        # the signal
        self.signal_edge = 0.0  # p_up − p_down of the last usable signal
        self.signal_ns = 0
        self.signal_ok = False
        # what the last decision wanted (status panel, tests)
        self.reservation = 0.0
        self.half_spread = 0.0
        self.target_bid = 0
        self.target_ask = 0
        self._cancels: dict[str, int] = {}  # client id → when we asked
        self._mods: dict[str, tuple[int, int]] = {}  # client id → (price asked, when)
        self.counts = {"place": 0, "modify": 0, "cancel": 0}

    @property
    def var_rate(self) -> float:
        """The mid's variance per second, ticks²/s."""
        return self.dm2 / self.dt_s if self.dt_s > 0 else 0.0

    # ------------------------------------------------------------------------- records

    def on_signal(self, signal, view: StrategyView) -> Sequence[Intent]:
        edge = signal["p_up"].item() - signal["p_down"].item()
        ok = not signal["flags"].item() & _UNUSABLE and edge == edge
        self.signal_ok = ok
        if ok:
            self.signal_edge = edge
            self.signal_ns = signal["publish_ns"].item()
        return NOTHING  # quotes move on book updates

    def on_book(self, book, view: StrategyView) -> Sequence[Intent]:
        now = view.now_ns
        flags = book["flags"].item()
        if not flags & BOOK_VALID:
            self.book_ok = False
            self.last_mid = 0.0
            return self._pull(view, now)
        if not self.lot or flags & BOOK_RESYNC:
            self.lot = book["lot"].item()
            self.qty = int(self.qty_base / self.lot + 1e-9)
            self.max_inventory = int(self.max_inventory_base / self.lot + 1e-9)
        bid = book["bid_px"].item(0)
        ask = book["ask_px"].item(0)
        if not 0 < bid < ask:
            self.book_ok = False
            return self._pull(view, now)
        self.bid, self.ask, self.book_ok = bid, ask, True
        mid = self.mid = (bid + ask) * 0.5
        if self.last_mid and now > self.last_ns:
            a = self.alpha
            d = mid - self.last_mid
            self.dm2 += a * (d * d - self.dm2)
            self.dt_s += a * ((now - self.last_ns) / NS - self.dt_s)
        self.last_mid, self.last_ns = mid, now
        return self._quote(view, now)

    # ------------------------------------------------------------------------- quoting

    def _quote(self, view: StrategyView, now: int) -> Sequence[Intent]:
        if self.qty <= 0:
            return NOTHING
        pos = view.position
        mid = self.mid
        s2t = self.var_rate * self.tau_s
        skew = 0.0
        if self.signal_ok and now - self.signal_ns <= self.stale_signal_ns:
            skew = self.signal_edge * self.skew_frac * mid
        r = mid - (pos / self.qty) * self.gamma * s2t + skew
        half = 0.5 * self.gamma * s2t + self.spread_const
        floor = self.floor_frac * mid
        if half < floor:
            half = floor
        bid_px = math.floor(r - half + 1e-9)
        ask_px = math.ceil(r + half - 1e-9)
        if bid_px >= self.ask:
            bid_px = self.ask - 1
        if ask_px <= self.bid:
            ask_px = self.bid + 1
        self.reservation, self.half_spread, self.target_bid, self.target_ask = r, half, bid_px, ask_px
        room_buy = self.max_inventory - pos
        room_sell = self.max_inventory + pos
        bid_qty = self.qty if self.qty < room_buy else room_buy
        ask_qty = self.qty if self.qty < room_sell else room_sell
        bid_o, ask_o, extra = resting_quotes(view.orders)
        out: list[Intent] | None = None
        if extra is not None:
            for o in extra:
                c = self._cancel(o, now, "duplicate")  # a second quote on one side: should not happen
                if c is not None:
                    out = out or []
                    out.append(c)
        a = self._side(bid_o, BUY, bid_px, bid_qty, now)
        b = self._side(ask_o, SELL, ask_px, ask_qty, now)
        if a is not None or b is not None:
            out = out or []
            if a is not None:
                out.append(a)
            if b is not None:
                out.append(b)
        if len(self._cancels) + len(self._mods) > 32:
            self._forget(view)
        return out or NOTHING

    def _side(self, o, side: int, px: int, qty: int, now: int) -> Intent | None:
        """The one intent (or None) that brings this side's quote to (px, qty); qty ≤ 0: no quote."""
        if qty <= 0:
            return self._cancel(o, now, "inventory") if o is not None else None
        if o is None:
            self.counts["place"] += 1
            return Place(side, qty, px, LIMIT, GTX, False, QUOTE_BID if side == BUY else QUOTE_ASK)
        if o.status not in _RESTING:
            return None  # pending or unknown: wait for the venue
        if o.client_id in self._cancels:
            return self._cancel(o, now, "retry")
        if abs(o.px - px) < self.requote_ticks and o.remaining <= qty:
            return None
        mod = self._mods.get(o.client_id)
        born = o.created_ns
        if mod is not None:
            if o.px != mod[0] and now - mod[1] < RETRY_NS:
                return None  # our amendment is on its way
            if mod[1] > born:
                born = mod[1]
        if now - born < self.min_life_ns:
            return None
        if o.filled == 0 and o.status == NEW:
            self._mods[o.client_id] = (px, now)
            self.counts["modify"] += 1
            return Modify(o.client_id, qty, px, "requote")
        return self._cancel(o, now, "requote")  # partly filled: cancel, place afresh next update

    def _cancel(self, o, now: int, tag: str) -> Cancel | None:
        if o.status not in _RESTING:
            return None
        asked = self._cancels.get(o.client_id)
        if asked is not None and now - asked < RETRY_NS:
            return None
        self._cancels[o.client_id] = now
        self.counts["cancel"] += 1
        return Cancel(o.client_id, tag)

    def _pull(self, view: StrategyView, now: int) -> Sequence[Intent]:
        """Cancel every resting quote (the book is not usable)."""
        out = None
        for o in view.orders.values():
            if o.tag in (QUOTE_BID, QUOTE_ASK):
                c = self._cancel(o, now, "book")
                if c is not None:
                    out = out or []
                    out.append(c)
        return out or NOTHING

    def _forget(self, view: StrategyView) -> None:
        live = view.orders
        self._cancels = {k: v for k, v in self._cancels.items() if k in live}
        self._mods = {k: v for k, v in self._mods.items() if k in live}
