"""The venue's rate limits: request weight per minute, orders per 10 s and per minute, the 418 ban.

Fixed windows aligned to the clock, as Binance counts them (`X-MBX-USED-WEIGHT-1M`,
`X-MBX-ORDER-COUNT-10S/1M`, the WS API's `rateLimits`). Going over the weight answers -1003 with
429; more than `ban_after_429` such refusals in a minute ban the IP (418) for `ban_s`. Going over
an order count answers -1015 with 429.

Pure: the time comes in as `now_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hftbot.sim.errors import ApiError, api_error


@dataclass
class Limits:
    """Rate limits (Binance defaults); tests shrink them to trigger the errors."""

    weight_1m: int = 2400
    orders_10s: int = 300
    orders_1m: int = 1200
    ws_incoming_per_s: int = 10  # market-stream control messages per connection
    ban_after_429: int = 10  # requests refused with 429 in a minute before a 418 ban
    ban_s: float = 120.0


@dataclass
class Window:
    """A count over a fixed, clock-aligned window."""

    interval_ms: int
    start: int = 0
    count: int = 0

    def add(self, now_ms: int, n: int) -> int:
        start = now_ms - now_ms % self.interval_ms
        if start != self.start:
            self.start, self.count = start, 0
        self.count += n
        return self.count

    def peek(self, now_ms: int) -> int:
        return self.count if now_ms - now_ms % self.interval_ms == self.start else 0


@dataclass
class RateLimiter:
    """Counts every request's weight and every order; refuses what goes over."""

    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.weight = Window(60_000)
        self.orders_10s = Window(10_000)
        self.orders_1m = Window(60_000)
        self.refused = Window(60_000)
        self.banned_until_ms = 0

    def _ban_error(self) -> ApiError:
        return ApiError(-1003, f"Way too many requests; IP banned until {self.banned_until_ms}.", 418)

    def charge(self, weight: int, orders: bool, now_ms: int) -> None:
        """Count one request (and one order when `orders`); raise the error when over a limit."""
        lim = self.limits
        if now_ms < self.banned_until_ms:
            raise self._ban_error()
        used = self.weight.add(now_ms, weight)
        if used > lim.weight_1m:
            if self.refused.add(now_ms, 1) > lim.ban_after_429:
                self.banned_until_ms = now_ms + int(lim.ban_s * 1000)
                raise self._ban_error()
            raise api_error(
                -1003,
                f"Too many requests; current limit of IP(127.0.0.1) is {lim.weight_1m} requests per "
                "minute. Please use the websocket for live updates to avoid polling the API.",
            )
        if orders:
            c10 = self.orders_10s.add(now_ms, 1)
            c1m = self.orders_1m.add(now_ms, 1)
            if c10 > lim.orders_10s or c1m > lim.orders_1m:
                raise api_error(
                    -1015, f"Too many new orders; current limit is {lim.orders_10s} orders per 10 SECOND."
                )

    def order_limits(self, now_ms: int | None = None) -> list[dict]:
        """The ORDERS limits as exchangeInfo and `GET /fapi/v1/rateLimit/order` show them (with
        `count` when `now_ms` is given, as the WS API's `rateLimits` do)."""
        lim = self.limits
        out = [
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": lim.orders_10s},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": lim.orders_1m},
        ]
        if now_ms is not None:
            out[0]["count"] = self.orders_10s.peek(now_ms)
            out[1]["count"] = self.orders_1m.peek(now_ms)
        return out

    def rate_limits(self, now_ms: int, orders: bool) -> list[dict]:
        """The WS API's `rateLimits` of an answer: weight, and the order counts for order requests."""
        out = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.limits.weight_1m,
                "count": self.weight.peek(now_ms),
            }
        ]
        if orders:
            out += self.order_limits(now_ms)
        return out

    def headers(self, now_ms: int, orders: bool) -> dict[str, str]:
        """The REST answer's `X-MBX-*` count headers."""
        h = {"X-MBX-USED-WEIGHT-1M": str(self.weight.peek(now_ms))}
        if orders:
            h["X-MBX-ORDER-COUNT-10S"] = str(self.orders_10s.peek(now_ms))
            h["X-MBX-ORDER-COUNT-1M"] = str(self.orders_1m.peek(now_ms))
        return h

    def ep_rate_limit_order(self, params: dict) -> list:
        """`GET /fapi/v1/rateLimit/order`."""
        return self.order_limits()
