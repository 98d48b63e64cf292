"""The simulated venue: one symbol's market, account and API, composed from parts with one job each.

`Venue` owns the market (model → matching engine → publisher) and the clock, and wires the parts
that answer requests:

| part | module | job |
|---|---|---|
| `Router` | `routing` | REST and WS API requests → auth, rate limits → an endpoint |
| `MarketDesk` | `marketdata` | ping, time, exchangeInfo, depth, book ticker |
| `OrderDesk` | `orders` | order parsing, the symbol's filters, order endpoints, countdownCancelAll |
| `AccountDesk` | `positions` | account, balance and position endpoints, account settings |
| `ListenKeys`, `UserEvents` | `userstream` | listen keys; order events → account, user-stream payloads |
| `RateLimiter` | `ratelimit` | request weight and order counts, the 418 ban |

The server (`hftbot.sim.server`) only moves bytes: it calls `rest()` / `ws_api()` with what
arrived and sends what comes back, and it forwards the market and user-data messages the venue
hands to its two callbacks. Every refusal answers with the documented Binance error code and
HTTP status (`hftbot.sim.errors`; docs/sim.md lists them).

Never does I/O; the wall clock comes in through `clock_ns` so tests and the generator can drive it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from hftbot.config import SimConfig
from hftbot.sim import auth
from hftbot.sim.account import Account
from hftbot.sim.errors import ApiError
from hftbot.sim.faults import Faults
from hftbot.sim.market import MarketModel, ModelParams
from hftbot.sim.marketdata import MarketDesk, exchange_info
from hftbot.sim.matching import QUEUE_MODELS, FeeModel, MatchingEngine, QueueModel
from hftbot.sim.orders import OrderDesk
from hftbot.sim.positions import AccountDesk
from hftbot.sim.ratelimit import Limits, RateLimiter
from hftbot.sim.routing import Router, Session, rest_routes, ws_routes
from hftbot.sim.streams import MarketPublisher, Message
from hftbot.sim.userstream import ListenKeys, UserEvents

__all__ = ["ApiError", "Faults", "Limits", "Session", "Venue", "VenueSettings", "exchange_info"]

MS = 1_000_000


@dataclass
class VenueSettings:
    """How the venue behaves beyond the market model.

    The `[sim]` config section gives the fees, wallet, leverage, queue model, update-id gap and
    the starting faults (read from `sim` where they are used: a setting is defined once, in
    `hftbot.config.SimConfig` and `defaults.toml`); the rest are knobs only code sets.
    """

    sim: SimConfig = field(default_factory=SimConfig)
    limits: Limits = field(default_factory=Limits)
    faults: Faults | None = None  # None: the section's fault_* values; replaced at run time
    queue_model: QueueModel | None = None  # a queue model object instead of `sim.queue_model`
    market: Callable | None = None  # builds the market in place of MarketModel(params, engine, start_ns=)
    listen_key_validity_s: float = 3600.0
    max_recv_window_ms: int = 60000

    def __post_init__(self) -> None:
        if self.faults is None:
            self.faults = Faults.from_config(self.sim)


class Venue:
    """One symbol's simulated exchange: market, account, and the API in front of them."""

    def __init__(
        self,
        params: ModelParams | None = None,
        settings: VenueSettings | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.params = params or ModelParams()
        self.settings = settings or VenueSettings()
        self.clock_ns = clock_ns
        p, s, sim = self.params, self.settings, self.settings.sim
        self.symbol = p.symbol.upper()
        self.engine = MatchingEngine(
            tick=p.tick,
            lot=p.lot,
            fees=FeeModel(Decimal(repr(sim.maker_fee)), Decimal(repr(sim.taker_fee))),
            queue=s.queue_model or QUEUE_MODELS[sim.queue_model](),
        )
        self.engine.update_gap = sim.update_id_gap
        self.model = (s.market or MarketModel)(p, self.engine, start_ns=clock_ns())
        self.pub = MarketPublisher(self.engine, p.symbol, speeds_ms=())  # speeds start on subscription
        self.fmt = self.pub.fmt
        self.account = Account(
            Decimal(repr(p.tick)), Decimal(repr(p.lot)), Decimal(repr(sim.wallet_usdt)), sim.leverage
        )
        self.keys = auth.KeyRing()
        self.on_market: Callable[[Message], None] = lambda m: None
        self.on_user: Callable[[str, bytes], None] = lambda key, payload: None
        self.event_ns = 0  # when the messages now being handed to on_market were due (publish delay)
        self.counters = {"requests": 0, "errors": 0, "orders": 0, "events": 0}

        self.limiter = RateLimiter(s.limits)
        self.listen_keys = ListenKeys(p.seed, self._listen_validity_ms, self.now_ms, self._emit_user)
        self.user = UserEvents(self.symbol, self.fmt, self.account, self.listen_keys, self.mark)
        self._trades = self.user.trades  # our fills (the list userTrades reads)
        self.market_desk = MarketDesk(p, s.limits, self.engine, self.model, self.pub, self.now_ms)
        self.orders = OrderDesk(
            self.symbol,
            self.fmt,
            p.lot,
            self.engine,
            self.account,
            self.mark,
            self.clock_ns,
            self._publish,
            lambda: self.settings.faults,
            self.user.trades,
            self.counters,
        )
        self.account_desk = AccountDesk(self.symbol, self.fmt, self.account, self.engine, self.mark, self.now_ms)
        desks = (self.market_desk, self.orders, self.account_desk, self.listen_keys)
        self.router = Router(
            rest_routes(*desks, self.limiter),
            ws_routes(*desks),
            self.keys,
            self.limiter,
            lambda: self.settings.max_recv_window_ms,
            self.now_ms,
            self.counters,
        )

    # -- clock & market -----------------------------------------------------------------------
    def now_ms(self) -> int:
        return self.clock_ns() // MS

    def mark(self) -> int:
        """Mark price in ticks: the mid (rounded down), or the one side left."""
        e = self.engine
        if e.best_bid and e.best_ask:
            return (e.best_bid + e.best_ask) // 2
        return e.best_bid or e.best_ask or round(self.params.start_price / self.params.tick)

    def advance(self, now_ns: int | None = None) -> int:
        """Apply every model event due by `now_ns` and publish; returns ns until the next thing due."""
        now_ns = self.clock_ns() if now_ns is None else now_ns
        model = self.model
        n = 0
        while True:
            t = model.next_event_ns()
            self._flush_windows(min(t, now_ns))
            if t > now_ns:
                break
            model.step()
            self._publish(t)
            n += 1
            if n > 100_000:  # far behind (a paused process): skip ahead rather than spin forever
                break
        self.counters["events"] += n
        self.orders.check_countdown(now_ns // MS)
        self.listen_keys.check(now_ns // MS)
        next_window = min(
            (st.due_ms for s, st in self.pub.diff.items() if s and st.due_ms), default=now_ns // MS + 100
        )
        return max(0, min(model.next_event_ns() - now_ns, next_window * MS - now_ns))

    def _flush_windows(self, t_ns: int) -> None:
        ms = t_ns // MS
        txn = self.model.time_ns // MS
        msgs = self.pub.due(ms, txn)
        if msgs:
            self.event_ns = ms * MS  # a window's messages are due when it ends
            for m in msgs:
                self.on_market(m)

    def commit(self, event_ns: int) -> None:
        """Publish a book change made from outside the market model (the mirror venue's records)."""
        self._publish(event_ns)

    def _publish(self, event_ns: int) -> None:
        """Hand what the last engine transaction changed to the market streams and the user stream."""
        ch = self.engine.drain()
        if ch is None:
            return
        now = self.clock_ns()
        self.event_ns = event_ns
        for m in self.pub.on_changes(ch, now // MS, event_ns // MS):
            self.on_market(m)
        if ch.order_events:
            self.user.on_order_events(ch.order_events, now // MS)

    # -- the API ---------------------------------------------------------------------------------
    def rest(self, method: str, target: str, body: str, headers: dict[str, str]) -> tuple[int, bytes, dict]:
        """Answer one HTTP request: (status, JSON body, extra headers). Never raises."""
        return self.router.rest(method, target, body, headers)

    def ws_api(self, text: str | bytes, session: Session) -> bytes:
        """Answer one WS API request frame. Never raises."""
        return self.router.ws_api(text, session)

    def rate_limits(self, now_ms: int, orders: bool) -> list[dict]:
        return self.limiter.rate_limits(now_ms, orders)

    # -- listen keys -----------------------------------------------------------------------------
    def _listen_validity_ms(self) -> int:
        f = self.settings.faults.expire_listen_key_after_s
        return int((f if f > 0 else self.settings.listen_key_validity_s) * 1000)

    def _emit_user(self, key: str, payload: bytes) -> None:
        self.on_user(key, payload)  # late-bound: the server sets on_user after construction

    def listen_key_valid(self, key: str) -> bool:
        return self.listen_keys.valid(key)

    def expire_listen_key(self) -> None:
        """Expire the active key now (fault injection, and the 60-minute rule)."""
        self.listen_keys.expire()
