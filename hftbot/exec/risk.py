"""The risk manager: the only door between a strategy's intents and the gateway.

    req = risk.check(intent, book, now_ns, signal)   # OrderRequest | CancelRequest | ModifyRequest
                                                     # | CancelAllRequest, or Refused(reason, ...)
    for req in risk.update(now_ns, book): send(req)  # PnL limits; HALTED's cancel-all and flatten
    for req in risk.kill("SIGUSR1", now_ns, book): send(req)

An approved order gets a fresh client order id (`ClientIds`: unique in the run and across
restarts) and is entered in `Positions` as PENDING_NEW at once, so the very next check counts it
against the position and open-order limits (and so will an UNKNOWN outcome, issue 13). A refusal
names its reason, one of `REASONS`, each counted in `refusals` for the status panel.

What a place (and a modify, for its new price and quantity) must pass, cheapest first:
- engine state: RUNNING takes everything; REDUCING only position-reducing orders; HALTED nothing
  (its own cancel-all and flatten excepted). A reduce-only intent that would not reduce is refused;
- a sane intent (side, positive quantity, a limit price, a known type and time in force);
- the book: `BOOK_VALID`, both sides present, younger than `stale_book_ms` (a book that never
  updates is as dangerous as no book), and on the filters' grid (the feed and exchangeInfo agree);
- the signal, for a strategy that trades on one: younger than `stale_signal_ms` and flagged neither
  SIGNAL_NO_MODEL nor SIGNAL_WARMUP, or the order only reduces (exits go on without a model);
- size: quantity and notional per order; position and position notional in the worst case — the
  position plus every open and in-flight order on the same side filling (an order that can only
  reduce the position is exempt from all four: it cannot add risk, and an exit must never be
  stuck behind a limit);
- open orders: `max_open_orders` and the venue's MAX_NUM_ORDERS;
- price: within `price_band_bps` of the mid; the venue's PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE,
  MIN_NOTIONAL and PERCENT_PRICE (the mid standing in for the mark price);
- the order-rate limiter (`ratelimit.RateLimiter`) under ORDERS and REQUEST_WEIGHT.
Cancels pass in every state (only an unknown client id or an exhausted weight budget stops one).

Holds (issue 13): the venue's faults pause trading through the same door. `hold("reconciling")`
while the user stream or the WS API is being re-established and reconciled (no place or modify
at all: positions and orders are not known); `hold("margin", until_ns, entries_only=True)` after
-2019 (exits go on); `backoff(now_ns, until_ns, weight)` after a 429 / 418 (the limiter refuses
with "backoff" until the venue's retry time, or `rate_backoff_ms` doubling per repeat when it
named none). A HALTED flatten is not held: closing risk is what it is for, and reduce-only
cannot grow a position at the venue.

PnL limits, evaluated by `update` on the net PnL (realised − fees + unrealised at the mid): a daily
loss since 00:00 UTC or a drawdown from the run's peak beyond the `*_reduce_usdt` level moves
RUNNING → REDUCING (and resting orders that would grow |position| are cancelled); beyond
`*_halt_usdt` → HALTED: a cancel-all and, with `flatten_on_halt`, a
reduce-only MARKET order for the position, retried every `halt_retry_ms` until flat (but never on
a stale or invalid book). REDUCING lifts at the next UTC day when the drawdown is back under its
reduce level; HALTED, and the kill switch, last until the process restarts. With
`cancel_on_stale_book`, `update` also pulls every resting order (one cancel-all) when the book it
is given goes stale or out of sync: quotes must not rest on a feed that stopped. The day's starting
PnL is this run's: a restart within the day starts the daily count again (the trade log has the
day's trades for a process that wants to seed it).

Rehearsal: `rehearse(place, book, now_ns, signal)` runs a place through every check above and
builds its request, with no effect at all — no client id drawn, nothing entered in the account,
no token spent, no refusal counted. The execution loop rehearses while it idles so that the
code and data of the order path stay in the caches (docs/exec.md "Rehearsal"): on the 2-vCPU dev
VM the same check costs ~190 µs after 10 ms idle and ~40–50 µs when rehearsed every 0.5–1 ms.
Its request carries `REHEARSAL_ID`, which the gateway never writes.

Pure: no I/O, no clock (`now_ns` comes in); the process wires the kill switch's flag, signal and
file to `kill`.
"""

from __future__ import annotations

from typing import Protocol

from hftbot.config import RiskConfig
from hftbot.exec.filters import SymbolFilters
from hftbot.exec.ids import ClientIds
from hftbot.exec.messages import (
    BUY,
    FOK,
    GTC,
    GTX,
    IOC,
    LIMIT,
    MARKET,
    NEW,
    PARTIALLY_FILLED,
    SELL,
    Cancel,
    CancelAll,
    CancelAllRequest,
    CancelRequest,
    Intent,
    Modify,
    ModifyRequest,
    OrderRequest,
    Place,
    Refused,
    Request,
)
from hftbot.exec.positions import OrderState
from hftbot.exec.ratelimit import NS, Limit, RateLimiter
from hftbot.records import BOOK_VALID, SIGNAL_NO_MODEL, SIGNAL_WARMUP

RUNNING = "RUNNING"
REDUCING = "REDUCING"
HALTED = "HALTED"
STATES = (RUNNING, REDUCING, HALTED)

REASONS = (
    "halted",
    "reducing",
    "not_reducing",
    "bad_intent",
    "unknown_order",
    "invalid_book",
    "stale_book",
    "tick_mismatch",
    "stale_signal",
    "max_order_qty",
    "max_order_notional",
    "max_position",
    "max_position_notional",
    "max_open_orders",
    "price_band",
    "price_filter",
    "lot_size",
    "min_notional",
    "percent_price",
    "rate_orders",
    "rate_weight",
    "reconciling",
    "backoff",
    "margin",
)

DAY_NS = 86_400 * NS
MS = 1_000_000
BPS = 1e-4
FLATTEN_TAG = "flatten"
REHEARSAL_ID = "rehearsal"  # the client id of a rehearsed request (not one `ClientIds` makes)
_TIFS = (GTC, IOC, FOK, GTX)
_OPEN = (NEW, PARTIALLY_FILLED)
_EMPTY: tuple = ()


class Account(Protocol):
    """What the risk manager reads and registers (`positions.Positions` is one)."""

    orders: dict[str, OrderState]

    @property
    def position(self) -> int: ...

    def open_lots(self) -> tuple[int, int]: ...

    def net_pnl(self, mark_px: float) -> float: ...

    def on_request(self, req: OrderRequest) -> OrderState: ...


class RiskManager:
    """Checks intents, tracks the engine state, emits HALTED's cancel-all and flatten."""

    def __init__(self, cfg: RiskConfig, filters: SymbolFilters, account: Account, ids: ClientIds, *,
                 strategy: str = "", needs_signal: bool = False, now_ns: int = 0,
                 rate_limits: list[Limit] | None = None) -> None:
        for soft, hard in (("daily_loss_reduce_usdt", "daily_loss_halt_usdt"),
                           ("drawdown_reduce_usdt", "drawdown_halt_usdt")):
            if getattr(cfg, soft) > getattr(cfg, hard):
                raise ValueError(f"risk: {soft} ({getattr(cfg, soft)}) must be <= {hard} ({getattr(cfg, hard)})")
        self.cfg = cfg
        self.filters = filters
        self.account = account
        self.ids = ids
        self.strategy = strategy
        self.needs_signal = needs_signal
        self.max_position = filters.snap_qty(cfg.max_position)
        self.max_order_qty = filters.snap_qty(cfg.max_order_qty)
        self.max_open_orders = min(cfg.max_open_orders, filters.max_num_orders)
        self._usdt = filters.tick * filters.lot
        self._stale_book_ns = int(cfg.stale_book_ms * MS)
        self._stale_signal_ns = int(cfg.stale_signal_ms * MS)
        self._band = cfg.price_band_bps * BPS
        self.limiter = RateLimiter(
            rate_limits or [Limit("ORDERS", 10 * NS, cfg.orders_per_10s), Limit("ORDERS", 60 * NS, cfg.orders_per_min),
                            Limit("REQUEST_WEIGHT", 60 * NS, cfg.weight_per_min)],
            cfg.rate_limit_fraction, cfg.rate_burst_fraction, cfg.rate_cancel_reserve, now_ns,
        )
        self.state = RUNNING
        self.reason = ""  # why the state is what it is
        self.killed = False
        self.refusals: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.last_refusal: Refused | None = None
        self.approved = 0
        self.mark_px = 0.0  # the last valid mid, ticks
        self.peak_pnl = 0.0
        self.day = -1
        self.day_start_pnl = 0.0
        self.daily_pnl = 0.0
        self.drawdown = 0.0
        self._last_flatten_ns = -(1 << 62)
        self._stale_episode = False
        self.stale_cancels = 0
        self._reducing_asked: set[str] = set()
        self._holds: dict[str, tuple[int, bool]] = {}  # reason → (until ns or 0 = until released, entries only)
        self._backoff_streak = 0
        self._last_backoff_ns = -(1 << 62)
        self._rehearsing = False

    # ------------------------------------------------------------------------- the door

    def check(self, intent: Intent, book, now_ns: int, signal=None) -> Request | Refused:
        """Approve `intent` as a request for the gateway, or refuse it with a counted reason."""
        t = type(intent)
        if t is Place:
            return self._place(intent, book, now_ns, signal)
        if t is Cancel:
            if intent.client_id not in self.account.orders:
                return self._refuse("unknown_order", f"no open order {intent.client_id!r}", intent)
            why = self.limiter.allow(0, 1, now_ns, cancel=True)
            if why:
                return self._refuse(why, "cancel: weight budget empty", intent)
            self.approved += 1
            return CancelRequest(intent.client_id, intent.tag, now_ns)
        if t is Modify:
            return self._modify(intent, book, now_ns, signal)
        if t is CancelAll:
            return self.cancel_all(now_ns, intent.tag)
        return self._refuse("bad_intent", f"not an intent: {intent!r}", intent)

    def rehearse(self, place: Place, book, now_ns: int, signal=None) -> OrderRequest | Refused:
        """`check(place, ...)` with no effect: the request it would approve (client id
        `REHEARSAL_ID`) or the refusal, and nothing counted, spent or registered."""
        self._rehearsing = True
        try:
            return self._place(place, book, now_ns, signal)
        finally:
            self._rehearsing = False

    def _refuse(self, reason: str, detail: str, intent: Intent) -> Refused:
        r = Refused(reason, detail, intent)
        if not self._rehearsing:
            self.refusals[reason] += 1
            self.last_refusal = r
        return r

    def _book(self, book, now_ns: int) -> tuple[str, str, int, int]:
        """('', '', best bid, best ask) for a usable book, else (reason, detail, 0, 0)."""
        if book is None:
            return "invalid_book", "no book yet", 0, 0
        # `.item()`: a field as a Python number in one step (int(book["x"]) makes a numpy scalar first)
        if not book["flags"].item() & BOOK_VALID:
            return "invalid_book", "book out of sync (no BOOK_VALID)", 0, 0
        age = now_ns - book["recv_ns"].item()
        if age > self._stale_book_ns:
            return "stale_book", f"book is {age / MS:.0f} ms old (> {self.cfg.stale_book_ms:g} ms)", 0, 0
        bid = book["bid_px"].item(0)
        ask = book["ask_px"].item(0)
        if bid <= 0 or ask <= 0 or bid >= ask:
            return "invalid_book", f"no two-sided book (bid {bid}, ask {ask})", 0, 0
        tick = book["tick"].item()
        if tick != self.filters.tick and not self.filters.matches(tick, book["lot"].item()):
            return "tick_mismatch", f"book tick {tick} / lot {book['lot'].item()} differ from exchangeInfo", 0, 0
        return "", "", bid, ask

    def book_problem(self, book, now_ns: int) -> str:
        """Why no order may leave on this book ('' when it is usable): the executor's stale-book watch."""
        return self._book(book, now_ns)[0]

    def signal_problem(self, signal, now_ns: int) -> str:
        """Why a signal strategy may open nothing on this signal ('' when it is fresh and usable)."""
        return self._signal_fresh(signal, now_ns)

    def _signal_fresh(self, signal, now_ns: int) -> str:
        if signal is None:
            return "no signal yet"
        flags = signal["flags"].item()
        if flags & SIGNAL_NO_MODEL:
            return "signal has no model"
        if flags & SIGNAL_WARMUP:
            return "signal warming up"
        age = now_ns - signal["publish_ns"].item()
        if age > self._stale_signal_ns:
            return f"signal is {age / MS:.0f} ms old (> {self.cfg.stale_signal_ms:g} ms)"
        return ""

    def _reduces(self, side: int, qty: int, exclude: OrderState | None = None) -> bool:
        """Whether an order can only shrink |position|, even if every other same-side order fills."""
        pos = self.account.position
        if pos == 0 or (pos > 0) == (side == BUY):
            return False
        buy, sell = self.account.open_lots()
        same = sell if side == SELL else buy
        if exclude is not None:
            same -= exclude.remaining
        return same + qty <= abs(pos)

    def _limits(self, side: int, qty: int, px: int, typ: str, reduce_only: bool, reduces: bool,
                bid: int, ask: int, exclude: OrderState | None) -> tuple[str, str]:
        """Size, position, price and venue-filter checks shared by place and modify."""
        mid = (bid + ask) * 0.5
        market = typ == MARKET
        ref_px = (ask if side == BUY else bid) if market else px
        if not reduces:  # fat-finger limits; an order that can only reduce cannot add risk
            if qty > self.max_order_qty:
                return "max_order_qty", f"{qty} lots > max_order_qty {self.max_order_qty} lots"
            notional = ref_px * qty * self._usdt
            if notional > self.cfg.max_order_notional_usdt:
                return "max_order_notional", f"{notional:.2f} USDT > {self.cfg.max_order_notional_usdt:g}"
            pos = self.account.position
            buy, sell = self.account.open_lots()
            if exclude is not None:
                if exclude.side == BUY:
                    buy -= exclude.remaining
                else:
                    sell -= exclude.remaining
            worst = pos + buy + qty if side == BUY else pos - sell - qty
            if abs(worst) > self.max_position:
                return "max_position", f"worst-case position {worst} lots > max_position {self.max_position} lots"
            worst_usdt = abs(worst) * mid * self._usdt
            if worst_usdt > self.cfg.max_position_notional_usdt:
                return "max_position_notional", (
                    f"worst-case position {worst_usdt:.2f} USDT > {self.cfg.max_position_notional_usdt:g}")
        if not market and abs(px - mid) > self._band * mid:
            return "price_band", f"price {px} ticks is {abs(px - mid) / mid / BPS:.1f} bps from mid {mid:.1f}"
        bad = self.filters.check(side, qty, px, market, reduce_only, mid)
        if bad is not None:
            return bad
        return "", ""

    def _place(self, p: Place, book, now_ns: int, signal) -> OrderRequest | Refused:
        if self.state == HALTED:
            return self._refuse("halted", self.reason, p)
        side, qty, typ = p.side, p.qty, p.type
        if side not in (BUY, SELL) or qty <= 0 or typ not in (LIMIT, MARKET) or p.tif not in _TIFS or (
                typ == LIMIT and p.px <= 0):
            return self._refuse("bad_intent", f"side {side}, qty {qty}, type {typ}, tif {p.tif}, px {p.px}", p)
        why, detail, bid, ask = self._book(book, now_ns)
        if why:
            return self._refuse(why, detail, p)
        reduces = self._reduces(side, qty)
        if self._holds:
            held = self._held(reduces, now_ns)
            if held:
                return self._refuse(held, f"on hold: {held}", p)
        if not reduces:
            if p.reduce_only:
                return self._refuse("not_reducing", f"reduce-only {qty} lots would not reduce "
                                    f"position {self.account.position}", p)
            if self.state == REDUCING:
                return self._refuse("reducing", self.reason, p)
            if self.needs_signal:
                stale = self._signal_fresh(signal, now_ns)
                if stale:
                    return self._refuse("stale_signal", stale, p)
        why, detail = self._limits(side, qty, p.px, typ, p.reduce_only, reduces, bid, ask, None)
        if why:
            return self._refuse(why, detail, p)
        if len(self.account.orders) >= self.max_open_orders:
            return self._refuse("max_open_orders", f"{len(self.account.orders)} open >= {self.max_open_orders}", p)
        why = self.limiter.allow(1, 0, now_ns, spend=not self._rehearsing)
        if why:
            return self._refuse(why, "order rate budget spent", p)
        return self._approve(side, qty, p.px if typ == LIMIT else 0, typ, p.tif if typ == LIMIT else GTC,
                             p.reduce_only, p.tag, book, now_ns, signal)

    def _approve(self, side: int, qty: int, px: int, typ: str, tif: str, reduce_only: bool, tag: str,
                 book, now_ns: int, signal) -> OrderRequest:
        rehearsal = self._rehearsing
        req = OrderRequest(REHEARSAL_ID if rehearsal else self.ids.next(), side, qty, px, typ, tif, reduce_only,
                           tag, self.strategy, signal["model_id"].item() if signal is not None else 0,
                           book["recv_ns"].item(), now_ns)
        if not rehearsal:
            self.account.on_request(req)
            self.approved += 1
        return req

    def _modify(self, m: Modify, book, now_ns: int, signal) -> ModifyRequest | Refused:
        if self.state == HALTED:
            return self._refuse("halted", self.reason, m)
        o = self.account.orders.get(m.client_id)
        if o is None:
            return self._refuse("unknown_order", f"no open order {m.client_id!r}", m)
        if o.status not in _OPEN or o.type != LIMIT:
            return self._refuse("bad_intent", f"order {m.client_id} is {o.status} {o.type}: only a resting "
                                "LIMIT order can be modified", m)
        new_remaining = m.qty - o.filled
        if new_remaining <= 0 or m.px <= 0:
            return self._refuse("bad_intent", f"modify to qty {m.qty} (filled {o.filled}), px {m.px}", m)
        why, detail, bid, ask = self._book(book, now_ns)
        if why:
            return self._refuse(why, detail, m)
        reduces = self._reduces(o.side, new_remaining, exclude=o)
        if self._holds:
            held = self._held(reduces, now_ns)
            if held:
                return self._refuse(held, f"on hold: {held}", m)
        if not reduces:
            if o.reduce_only:
                return self._refuse("not_reducing", f"reduce-only {m.client_id} would not reduce", m)
            if self.state == REDUCING:
                return self._refuse("reducing", self.reason, m)
            if self.needs_signal:
                stale = self._signal_fresh(signal, now_ns)
                if stale:
                    return self._refuse("stale_signal", stale, m)
        why, detail = self._limits(o.side, new_remaining, m.px, LIMIT, o.reduce_only, reduces, bid, ask, o)
        if why:
            return self._refuse(why, detail, m)
        why = self.limiter.allow(1, 0, now_ns)
        if why:
            return self._refuse(why, "order rate budget spent", m)
        self.approved += 1
        return ModifyRequest(m.client_id, o.side, m.qty, m.px, m.tag, now_ns)

    # ------------------------------------------------------------------------- holds

    def hold(self, reason: str, until_ns: int = 0, entries_only: bool = False) -> None:
        """Refuse places and modifies with `reason` (one of REASONS) until `until_ns` (0: until
        `release`); `entries_only`: an order that can only reduce the position still passes."""
        if reason not in self.refusals:
            raise ValueError(f"risk: hold reason {reason!r} is not one of REASONS")
        self._holds[reason] = (until_ns, entries_only)

    def release(self, reason: str) -> None:
        self._holds.pop(reason, None)

    def held(self, reason: str, now_ns: int) -> bool:
        h = self._holds.get(reason)
        return h is not None and (h[0] == 0 or now_ns < h[0])

    def _held(self, reduces: bool, now_ns: int) -> str:
        for reason, (until, entries_only) in list(self._holds.items()):
            if until and now_ns >= until:
                del self._holds[reason]
            elif not (entries_only and reduces):
                return reason
        return ""

    def backoff(self, now_ns: int, until_ns: int = 0, weight: bool = False) -> int:
        """The venue refused a request for a rate limit: no order (with `weight`, no request) until
        `until_ns`, the venue's retry time; without one, `rate_backoff_ms` doubling per repeat
        within a minute. Returns the time the backoff ends."""
        if now_ns - self._last_backoff_ns > 60 * NS:
            self._backoff_streak = 0
        self._last_backoff_ns = now_ns
        if until_ns <= now_ns:
            until_ns = now_ns + int(self.cfg.rate_backoff_ms * MS * 2 ** min(self._backoff_streak, 6))
        self._backoff_streak += 1
        self.limiter.pause(until_ns, weight)
        return until_ns

    # ------------------------------------------------------------------------- engine state

    def update(self, now_ns: int, book=None) -> tuple[Request, ...] | list[Request]:
        """Re-evaluate the PnL limits and the book's age; the requests that follow (HALTED's
        cancel-all, flatten and its retries; a cancel-all when the book goes stale).

        `hftbot.backtest.fastpath.risk_step` mirrors the case where this returns no request (change
        the two together; its check mode, run by tests/backtest/test_fastpath.py, fails where they
        differ)."""
        why, _, bid, ask = self._book(book, now_ns)  # one read of the record serves both uses
        if why in ("stale_book", "tick_mismatch"):  # BOOK_VALID, but old or off-grid: it still marks
            bid, ask = book["bid_px"].item(0), book["ask_px"].item(0)
        if 0 < bid < ask:  # any BOOK_VALID two-sided book marks the position
            self.mark_px = (bid + ask) * 0.5
        stale = self._stale_cancel(why, now_ns)
        if stale is not None:
            return [stale, *self._pnl_limits(now_ns, book)]
        return self._pnl_limits(now_ns, book)

    def _stale_cancel(self, why: str, now_ns: int) -> CancelAllRequest | None:
        """Resting orders on a book that went stale or out of sync (`why`, `_book`'s verdict) are
        pulled, once per episode: quotes left on a dead feed are free options for everyone else."""
        if not self.cfg.cancel_on_stale_book:
            return None
        if why not in ("stale_book", "invalid_book"):
            self._stale_episode = False
            return None
        if self._stale_episode:
            return None
        for o in self.account.orders.values():
            if o.status in _OPEN:
                self._stale_episode = True
                self.stale_cancels += 1
                return self.cancel_all(now_ns, why)
        return None

    def _pnl_limits(self, now_ns: int, book) -> tuple[Request, ...] | list[Request]:
        pnl = self.account.net_pnl(self.mark_px)
        day = now_ns // DAY_NS
        if day != self.day:
            if self.day >= 0 and self.state == REDUCING and self.reason.startswith("daily") and \
                    self.peak_pnl - pnl < self.cfg.drawdown_reduce_usdt:
                self.state, self.reason = RUNNING, ""
            self.day = day
            self.day_start_pnl = pnl
        if pnl > self.peak_pnl:
            self.peak_pnl = pnl
        self.daily_pnl = daily = pnl - self.day_start_pnl
        self.drawdown = dd = self.peak_pnl - pnl
        c = self.cfg
        if self.state != HALTED:
            if daily <= -c.daily_loss_halt_usdt:
                return self.halt(f"daily loss {-daily:.2f} USDT >= {c.daily_loss_halt_usdt:g}", now_ns, book)
            if dd >= c.drawdown_halt_usdt:
                return self.halt(f"drawdown {dd:.2f} USDT >= {c.drawdown_halt_usdt:g}", now_ns, book)
            if self.state == RUNNING:
                if daily <= -c.daily_loss_reduce_usdt:
                    self.state, self.reason = REDUCING, f"daily loss {-daily:.2f} USDT >= {c.daily_loss_reduce_usdt:g}"
                elif dd >= c.drawdown_reduce_usdt:
                    self.state, self.reason = REDUCING, f"drawdown {dd:.2f} USDT >= {c.drawdown_reduce_usdt:g}"
            if self.state == REDUCING:
                return self._cancel_increasing(now_ns)
            return _EMPTY
        if c.flatten_on_halt and self.account.position and now_ns - self._last_flatten_ns >= c.halt_retry_ms * MS:
            req = self.flatten(now_ns, book)
            if req is not None:
                return [req]
        return _EMPTY

    def _cancel_increasing(self, now_ns: int) -> tuple[Request, ...] | list[Request]:
        """REDUCING: resting orders that would grow |position| are cancelled (each asked once; an
        order still pending is asked when the venue has acknowledged it)."""
        pos = self.account.position
        out: list[Request] | None = None
        for o in self.account.orders.values():
            if o.status not in _OPEN or o.client_id in self._reducing_asked:
                continue
            if pos == 0 or (pos > 0) == (o.side == BUY):
                self._reducing_asked.add(o.client_id)
                out = out or []
                out.append(CancelRequest(o.client_id, "reducing", now_ns))
                self.limiter.spend(0, 1, now_ns)
                self.approved += 1
        if len(self._reducing_asked) > 256:
            self._reducing_asked &= set(self.account.orders)
        return out or _EMPTY

    def halt(self, reason: str, now_ns: int, book=None) -> list[Request]:
        """HALTED now: cancel every order and, with `flatten_on_halt`, close the position."""
        if self.state == HALTED:
            return []
        self.state, self.reason = HALTED, reason
        out: list[Request] = [self.cancel_all(now_ns, "halt")]
        if self.cfg.flatten_on_halt and self.account.position:
            req = self.flatten(now_ns, book)
            if req is not None:
                out.append(req)
        return out

    def kill(self, reason: str, now_ns: int, book=None) -> list[Request]:
        """The kill switch (CLI flag, signal, file): HALTED for the rest of the run."""
        self.killed = True
        return self.halt(f"kill switch: {reason}", now_ns, book)

    def cancel_all(self, now_ns: int, tag: str = "cancel_all") -> CancelAllRequest:
        """A cancel-all that always goes out (shutdown, halt); its weight is spent even past the budget."""
        self.limiter.spend(0, 1, now_ns)
        self.approved += 1
        return CancelAllRequest(tag, now_ns)

    def flatten(self, now_ns: int, book=None, tag: str = FLATTEN_TAG) -> OrderRequest | None:
        """A reduce-only MARKET order closing the position (or MARKET_LOT_SIZE's maximum of it).

        None when flat, when a flatten order is already in flight, or when the book is invalid or
        stale (no order leaves on a stale book; `update` retries while HALTED). Bypasses the engine
        state and the position limits, never the book guard or the rate limiter (cancels' reserve
        included: closing risk is what the reserve is for).
        """
        pos = self.account.position
        if not pos:
            return None
        for o in self.account.orders.values():
            if o.tag.startswith(FLATTEN_TAG):
                return None
        self._last_flatten_ns = now_ns
        why, _, _, _ = self._book(book, now_ns)
        if why:
            return None
        qty = abs(pos)
        if self.filters.market_max_qty:
            qty = min(qty, self.filters.market_max_qty)
        if self.limiter.allow(1, 0, now_ns, cancel=True):
            return None
        return self._approve(SELL if pos > 0 else BUY, qty, 0, MARKET, GTC, True, tag, book, now_ns, None)

    def set_rate_limits(self, limits: list[Limit], now_ns: int) -> None:
        """The venue's own limits (exchangeInfo `rateLimits`) replace the configured defaults."""
        self.limiter.configure(limits, now_ns)

    def summary(self) -> dict:
        """Figures for the status panel and the exit summary."""
        return {
            "risk_state": self.state,
            "risk_reason": self.reason,
            "killed": self.killed,
            "approved": self.approved,
            "refused": sum(self.refusals.values()),
            "refusals": {k: v for k, v in self.refusals.items() if v},
            "holds": sorted(self._holds),
            "daily_pnl": self.daily_pnl,
            "drawdown": self.drawdown,
        }
