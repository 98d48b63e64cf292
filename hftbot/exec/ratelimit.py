"""Order-rate limiting under the exchange's limits: token buckets fed with the caller's clock.

Binance USDⓈ-M counts, per account, ORDERS per 10 s (300) and per minute (1200) — every place and
every modify — and, per IP, REQUEST_WEIGHT per minute (2400): a cancel weighs 1, a place or modify
over the WS API 0 (../shared/reference/binance-usdm.md sections 3 and 6). Breaking one gives 429,
and continuing after 429s gives an IP ban of minutes to days, so we stay under them ourselves.

One bucket per limit. A bucket of capacity C refilled at r tokens/s lets through at most C + r·T
in any window of length T, whether the venue counts in rolling or in fixed windows. We choose
C + r·T = L·f, the venue's limit L times our share f (`risk.rate_limit_fraction`), with C a part
of it (`risk.rate_burst_fraction`): bursts up to C, a sustained rate of (L·f − C)/T, and never
more than L·f in any window — a plain "capacity L, refill L per T" bucket would allow 2L.

Cancels keep a reserve: an order (place, modify) is refused while the weight bucket holds less
than `reserve` tokens, a cancel only when it is empty, so pulling quotes still works when
quoting has used the budget. The limiter learns from the venue (issue 13): `learn_from` takes a WS
API answer's `rateLimits` (the venue's own limits, which replace ours when they differ, and the
counts used in the current windows), `learn` one used count (the REST `X-MBX-*` headers, read by
`usage_from_headers`); a count only ever lowers our level. `pause(until_ns, weight)` is the
backoff after a 429 / 418: no order (and with `weight`, no request but a forced cancel-all)
before the time the venue named.

Pure: no clock of its own (`now_ns` comes in), no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

NS = 1_000_000_000
INTERVAL_NS = {"SECOND": NS, "MINUTE": 60 * NS, "HOUR": 3600 * NS, "DAY": 86_400 * NS}


class TokenBucket:
    """Tokens refill continuously up to `capacity`; `take(n, now_ns)` spends them if there are enough."""

    __slots__ = ("capacity", "rate_per_ns", "tokens", "updated_ns")

    def __init__(self, capacity: float, refill_per_s: float, now_ns: int = 0) -> None:
        if not (capacity > 0 and refill_per_s >= 0):
            raise ValueError(f"token bucket: capacity must be > 0 and refill >= 0, got {capacity}, {refill_per_s}")
        self.capacity = float(capacity)
        self.rate_per_ns = refill_per_s / NS
        self.tokens = float(capacity)
        self.updated_ns = now_ns

    def level(self, now_ns: int) -> float:
        """Tokens available at `now_ns` (refills first; a clock that goes back refills nothing)."""
        dt = now_ns - self.updated_ns
        if dt > 0:
            t = self.tokens + dt * self.rate_per_ns
            self.tokens = t if t < self.capacity else self.capacity
            self.updated_ns = now_ns
        return self.tokens

    def can_take(self, n: float, now_ns: int, keep: float = 0.0) -> bool:
        return self.level(now_ns) - n >= keep - 1e-9

    def take(self, n: float, now_ns: int, keep: float = 0.0) -> bool:
        """Spend `n` tokens if at least `keep` remain afterwards; False (nothing spent) otherwise."""
        if self.level(now_ns) - n >= keep - 1e-9:
            self.tokens -= n
            return True
        return False

    def spend(self, n: float, now_ns: int) -> None:
        """Spend unconditionally (the venue counted it anyway); the level may go below zero."""
        self.level(now_ns)
        self.tokens -= n


@dataclass(frozen=True)
class Limit:
    """One venue limit: `limit` requests of `kind` per `interval_ns`."""

    kind: str  # "ORDERS" | "REQUEST_WEIGHT"
    interval_ns: int
    limit: int


BINANCE_DEFAULTS = (
    Limit("ORDERS", 10 * NS, 300),
    Limit("ORDERS", 60 * NS, 1200),
    Limit("REQUEST_WEIGHT", 60 * NS, 2400),
)


def parse_rate_limits(rate_limits: list[dict]) -> list[Limit]:
    """`exchangeInfo.rateLimits` (or a WS API answer's `rateLimits`) as `Limit`s; RAW_REQUESTS ignored."""
    out = []
    for r in rate_limits:
        kind = r.get("rateLimitType")
        if kind not in ("ORDERS", "REQUEST_WEIGHT"):
            continue
        try:
            interval_ns = INTERVAL_NS[str(r["interval"]).upper()] * int(r.get("intervalNum", 1))
            limit = int(r["limit"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"rateLimits: cannot read {r!r}") from None
        if limit <= 0 or interval_ns <= 0:
            raise ValueError(f"rateLimits: limit and interval must be > 0 in {r!r}")
        out.append(Limit(kind, interval_ns, limit))
    return out


class RateLimiter:
    """Buckets for every ORDERS and REQUEST_WEIGHT limit; `allow(...)` spends or refuses."""

    def __init__(self, limits: tuple[Limit, ...] | list[Limit] = BINANCE_DEFAULTS, fraction: float = 0.8,
                 burst_fraction: float = 0.5, cancel_reserve: float = 0.1, now_ns: int = 0) -> None:
        if not (0 < fraction <= 1 and 0 < burst_fraction < 1 and 0 <= cancel_reserve < 1):
            raise ValueError(  # a burst of the whole budget would leave nothing to refill with
                f"rate limiter: fraction in (0, 1], burst_fraction in (0, 1), cancel_reserve in [0, 1); "
                f"got {fraction}, {burst_fraction}, {cancel_reserve}"
            )
        self.fraction = fraction
        self.burst_fraction = burst_fraction
        self.cancel_reserve = cancel_reserve
        self.limits: list[Limit] = []
        self.orders: list[TokenBucket] = []
        self.weight: list[TokenBucket] = []
        self._reserve: list[float] = []
        self.paused_until_ns = 0  # backoff after a 429 / 418 (orders)
        self.weight_paused = False  # the pause covers every request (weight limit, IP ban)
        self.learned = 0  # venue counts applied
        self.configure(limits, now_ns)

    def configure(self, limits: tuple[Limit, ...] | list[Limit], now_ns: int) -> None:
        """(Re)build the buckets for these limits (start-up: exchangeInfo's `rateLimits`)."""
        self.limits = list(limits)
        self.orders, self.weight, self._reserve = [], [], []
        for lim in self.limits:
            budget = lim.limit * self.fraction
            cap = max(1.0, budget * self.burst_fraction)
            refill = max(0.0, budget - cap) * NS / lim.interval_ns
            bucket = TokenBucket(cap, refill, now_ns)
            if lim.kind == "ORDERS":
                self.orders.append(bucket)
            else:
                self.weight.append(bucket)
                self._reserve.append(cap * self.cancel_reserve)

    def allow(self, orders: int, weight: int, now_ns: int, cancel: bool = False, spend: bool = True) -> str:
        """Spend `orders` ORDERS and `weight` REQUEST_WEIGHT tokens; '' if allowed, else what ran out.

        Either every bucket is spent or none is. A cancel (`cancel=True`) may use the reserve.
        During a backoff (`pause`) orders are refused with "backoff", and every request when the
        weight limit or an IP ban caused it. `spend=False` answers without spending (the risk
        manager's rehearsal: the same code, no effect).
        """
        if now_ns < self.paused_until_ns and (orders or not cancel or self.weight_paused):
            return "backoff"
        for b in self.orders:
            if orders and not b.can_take(orders, now_ns):
                return "rate_orders"
        for b, reserve in zip(self.weight, self._reserve, strict=True):
            if weight and not b.can_take(weight, now_ns, 0.0 if cancel else reserve):
                return "rate_weight"
            if not weight and not cancel and b.level(now_ns) < reserve:
                return "rate_weight"  # an order with no IP weight still leaves the reserve alone
        if not spend:
            return ""
        for b in self.orders:
            if orders:
                b.tokens -= orders
        for b in self.weight:
            if weight:
                b.tokens -= weight
        return ""

    def spend(self, orders: int, weight: int, now_ns: int) -> None:
        """Spend without asking (a cancel-all on halt or shutdown goes out whatever the budget)."""
        for b in self.orders:
            if orders:
                b.spend(orders, now_ns)
        for b in self.weight:
            if weight:
                b.spend(weight, now_ns)

    def pause(self, until_ns: int, weight: bool = False) -> None:
        """Back off until `until_ns` (the venue's Retry-After / retryAfter); `weight`: every request."""
        if until_ns > self.paused_until_ns:
            self.paused_until_ns = until_ns
            self.weight_paused = weight
        elif weight:
            self.weight_paused = True

    def paused(self, now_ns: int) -> bool:
        return now_ns < self.paused_until_ns

    def learn_from(self, rate_limits: list[dict], now_ns: int) -> None:
        """A WS API answer's `rateLimits`: the venue's limits (adopted where they differ from ours)
        and the counts used in the current windows (our levels lowered to match)."""
        usage = parse_usage(rate_limits)
        limits = list(self.limits)
        changed = False
        for lim, _ in usage:
            i = next((i for i, x in enumerate(limits) if (x.kind, x.interval_ns) == (lim.kind, lim.interval_ns)), -1)
            if i < 0:
                limits.append(lim)
                changed = True
            elif limits[i].limit != lim.limit:
                limits[i] = lim
                changed = True
        if changed:
            self.configure(limits, now_ns)
        for lim, used in usage:
            if used is not None:
                self.learn(lim.kind, lim.interval_ns, used, now_ns)

    def learn(self, kind: str, interval_ns: int, used: int, now_ns: int) -> None:
        """The venue says `used` of this limit is spent in the current window: never believe we have more.

        Tokens left = min(ours, our budget − used); only ever lowers the level (issue 13 feeds it
        from `X-MBX-ORDER-COUNT-10S` / `X-MBX-USED-WEIGHT-1M` and WS API `rateLimits` counts).
        """
        buckets = self.orders if kind == "ORDERS" else self.weight
        same = [lim for lim in self.limits if lim.kind == kind]
        for lim, b in zip(same, buckets, strict=True):
            if lim.interval_ns == interval_ns:
                self.learned += 1
                left = min(b.capacity, lim.limit * self.fraction - used)
                if b.level(now_ns) > left:
                    b.tokens = left


def parse_usage(rate_limits: list[dict]) -> list[tuple[Limit, int | None]]:
    """`rateLimits` entries as (limit, count used in the current window or None)."""
    out = []
    for r in rate_limits:
        lims = parse_rate_limits([r])
        if lims:
            count = r.get("count")
            out.append((lims[0], int(count) if count is not None else None))
    return out


_UNITS_NS = {"S": NS, "M": 60 * NS, "H": 3600 * NS, "D": 86_400 * NS}


def usage_from_headers(headers: dict[str, str]) -> list[tuple[str, int, int]]:
    """REST `X-MBX-USED-WEIGHT-(n)(unit)` and `X-MBX-ORDER-COUNT-(n)(unit)` headers as
    (kind, interval ns, used) for `RateLimiter.learn`; headers that do not parse are skipped."""
    out = []
    for name, value in headers.items():
        h = name.upper()
        for prefix, kind in (("X-MBX-USED-WEIGHT-", "REQUEST_WEIGHT"), ("X-MBX-ORDER-COUNT-", "ORDERS")):
            if h.startswith(prefix):
                spec = h[len(prefix) :]
                try:
                    n, unit = int(spec[:-1]), spec[-1]
                    out.append((kind, n * _UNITS_NS[unit], int(value)))
                except (ValueError, KeyError, IndexError):
                    pass
    return out
