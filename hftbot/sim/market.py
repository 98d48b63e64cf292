"""A seeded stochastic order-flow model of a SOLUSDT-like perpetual, driving a MatchingEngine.

Everyone else's flow is three kinds of events — limit adds, cancels and market orders — in integer
ticks and lots, sent through `hftbot.sim.matching.MatchingEngine`, so our own resting orders are hit
in price-time priority. The stylised facts it aims at, and the mechanism behind each:

- spread mostly one tick: when the spread opens, most new limit orders land inside it;
- a depth profile: placement distance from the touch is a mix of "at the touch" and a
  geometric tail, cancels are proportional to size, so depth grows away from the touch, then thins;
- bursty order flow: event times follow a Hawkes process (exponential kernel, exact simulation);
- volatility clustering: the base rate is modulated by a slow log-Ornstein-Uhlenbeck activity
  regime, on top of the Hawkes bursts;
- heavy-tailed trade sizes: market-order sizes are Pareto (tail index `trade_tail`);
- short-horizon predictability, tunable: a latent order-flow signal z (OU, unit variance, time
  scale `signal_timescale_s`) tilts the side of market orders, adds and cancels by
  `predictability` × tanh(z). Buy pressure shows first as bid-queue build-up and ask-queue
  depletion, so queue imbalance and order-flow imbalance carry noisy information about the next
  mid move. `predictability = 0` leaves only the mechanical effect (a thin queue empties first).

Everything is drawn from one numpy Generator seeded by `seed`: the same seed and parameters give
the same event sequence, bit for bit. Pure logic: no I/O, no wall clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

from hftbot.sim.matching import BUY, SELL, MatchingEngine


@dataclass(frozen=True)
class ModelParams:
    """Knobs of the market model. Prices in ticks, sizes in lots unless the name says otherwise."""

    symbol: str = "SOLUSDT"
    tick: float = 0.01  # PRICE_FILTER tickSize
    lot: float = 0.01  # LOT_SIZE stepSize
    start_price: float = 150.0
    seed: int = 1
    rate_hz: float = 40.0  # mean book events per second in the calm regime
    hawkes_branching: float = 0.6  # share of events triggered by earlier events (< 1)
    hawkes_decay_hz: float = 4.0  # how fast a burst dies out (1/s)
    regime_timescale_s: float = 900.0  # activity regime (volatility clustering) time scale
    regime_vol: float = 0.6  # stationary std-dev of the log activity regime
    p_market: float = 0.10  # share of events that are market orders
    p_cancel: float = 0.42  # share that are cancels (the rest are limit adds)
    p_inside: float = 0.7  # when the spread is open, chance an add lands inside it
    p_at_touch: float = 0.6  # chance an add (outside the spread) joins the touch
    depth_scale_ticks: float = 25.0  # mean placement distance (geometric tail) behind the touch
    max_depth_ticks: int = 400  # placement never goes deeper than this
    prune_ticks: int = 1000  # levels further than this from the touch are dropped
    add_size_lots: float = 400.0  # median limit-order size (lognormal)
    add_size_sigma: float = 1.0
    cancel_share: float = 0.6  # a cancel removes up to this share of its level (uniform)
    trade_min_lots: float = 30.0  # Pareto scale of market-order sizes
    trade_tail: float = 1.5  # Pareto tail index (smaller: heavier)
    trade_max_levels: int = 3  # a market order takes at most this many levels' depth
    predictability: float = 0.5  # 0..1 strength of the latent signal in the order flow
    signal_timescale_s: float = 1.5
    initial_levels: int = 200  # levels per side in the opening book

    def __post_init__(self) -> None:
        checks = [
            ("tick", self.tick > 0),
            ("lot", self.lot > 0),
            ("start_price", self.start_price > 0),
            ("rate_hz", self.rate_hz > 0),
            ("hawkes_branching", 0 <= self.hawkes_branching < 1),
            ("hawkes_decay_hz", self.hawkes_decay_hz > 0),
            ("regime_timescale_s", self.regime_timescale_s > 0),
            ("regime_vol", self.regime_vol >= 0),
            ("p_market", 0 < self.p_market < 1),
            ("p_cancel", 0 <= self.p_cancel < 1 - self.p_market),
            ("p_inside", 0 <= self.p_inside <= 1),
            ("p_at_touch", 0 <= self.p_at_touch <= 1),
            ("depth_scale_ticks", self.depth_scale_ticks > 0),
            ("max_depth_ticks", self.max_depth_ticks >= 1),
            ("prune_ticks", self.prune_ticks > self.max_depth_ticks),
            ("add_size_lots", self.add_size_lots >= 1),
            ("cancel_share", 0 <= self.cancel_share <= 1),
            ("trade_min_lots", self.trade_min_lots >= 1),
            ("trade_tail", self.trade_tail > 0),
            ("trade_max_levels", self.trade_max_levels >= 1),
            ("predictability", 0 <= self.predictability <= 1),
            ("signal_timescale_s", self.signal_timescale_s > 0),
            ("initial_levels", self.initial_levels >= 1),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"sim model: {name} out of range, got {getattr(self, name)!r}")

    def with_(self, **kw: object) -> ModelParams:
        return replace(self, **kw)

    @classmethod
    def from_config(cls, sim: object) -> ModelParams:
        """The model knobs the `[sim]` config section sets: every field of both, by name (the
        symbol upper-cased); the rest keep their defaults here. A test keeps the shared defaults
        equal to the section's."""
        shared = {f.name for f in fields(cls)} & {f.name for f in fields(sim)}
        kw = {name: getattr(sim, name) for name in shared}
        if "symbol" in kw:
            kw["symbol"] = kw["symbol"].upper()
        return cls(**kw)


class _Draws:
    """Uniform, exponential and normal draws taken in blocks (per-call Generator use is slow)."""

    BLOCK = 8192

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._fill()

    def _fill(self) -> None:
        self.u = self.rng.random(self.BLOCK).tolist()
        self.e = self.rng.standard_exponential(self.BLOCK).tolist()
        self.n = self.rng.standard_normal(self.BLOCK).tolist()
        self.i = 0

    def take(self) -> tuple[float, float, float, float, float, float, float, float, float]:
        """Five uniforms, one exponential and three normals, always in the same order."""
        i = self.i
        if i + 5 > self.BLOCK:
            self._fill()
            i = 0
        self.i = i + 5
        u, n = self.u, self.n
        return u[i], u[i + 1], u[i + 2], u[i + 3], u[i + 4], self.e[i], n[i], n[i + 1], n[i + 2]


@dataclass
class MarketModel:
    """Generates everyone else's flow, one event per `step()`, into `engine`."""

    params: ModelParams = field(default_factory=ModelParams)
    engine: MatchingEngine | None = None
    start_ns: int = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

    def __post_init__(self) -> None:
        p = self.params
        if self.engine is None:
            self.engine = MatchingEngine(tick=p.tick, lot=p.lot)
        self.rng = np.random.default_rng(p.seed)
        self._d = _Draws(self.rng)
        self.time_ns = self.start_ns
        self._beta = p.hawkes_decay_hz
        self._alpha = p.hawkes_branching * p.hawkes_decay_hz
        self._mu = p.rate_hz * (1.0 - p.hawkes_branching)
        self._inv_regime_t = 1.0 / p.regime_timescale_s
        self._inv_signal_t = 1.0 / p.signal_timescale_s
        self._regime_vol = p.regime_vol
        self.excite = 0.0  # Hawkes excess intensity (1/s)
        self.regime = 0.0  # log activity multiplier
        self.signal = 0.0  # latent order-flow signal z
        self.events = 0
        self._pending: tuple | None = None
        self._log_add_med = math.log(p.add_size_lots)
        self._geo_q = 1.0 / (1.0 + p.depth_scale_ticks)  # geometric success prob for the tail
        self._log_geo = math.log(1.0 - self._geo_q)
        self._seed_book()

    # -- opening book ------------------------------------------------------------------------

    def _seed_book(self) -> None:
        p, eng = self.params, self.engine
        assert eng is not None
        mid = round(p.start_price / p.tick)
        eng.begin()
        for k in range(p.initial_levels):
            # quantity grows with distance, as the stationary profile does near the touch
            scale = 0.4 + min(1.5, k / (p.depth_scale_ticks + 1))
            for side, px in ((BUY, mid - 1 - k), (SELL, mid + k)):
                u = self.rng.random()
                q = int(math.exp(self._log_add_med + p.add_size_sigma * self.rng.standard_normal()) * scale)
                if u < 0.9 and q > 0:  # a few holes, as real books have
                    eng.add(side, px, q)
        if not eng.best_bid:
            eng.add(BUY, mid - 1, int(p.add_size_lots))
        if not eng.best_ask:
            eng.add(SELL, mid, int(p.add_size_lots))
        eng.drain()  # the opening book is the snapshot, not a diff

    # -- one event ---------------------------------------------------------------------------

    def intensity(self) -> float:
        """Current event rate (1/s)."""
        return self._mu * math.exp(self.regime) + self.excite

    def next_event_ns(self) -> int:
        """Time of the next event, drawn now but not yet applied (publishers flush windows first)."""
        if self._pending is None:
            self._pending = self._draw()
        return self._pending[0]

    def _draw(self) -> tuple:
        u1, u2, u3, u4, u5, ex, n1, n2, n3 = self._d.take()
        # next arrival of a Hawkes process with exponential kernel (Dassios & Zhao 2013)
        beta = self._beta
        s2 = ex / (self._mu * math.exp(self.regime))
        h = self.excite
        if h > 1e-12:
            dd = 1.0 + beta * (math.log(u1) if u1 > 0.0 else -690.0) / h
            dt = -math.log(dd) / beta if dd > 0.0 else s2
            if s2 < dt:
                dt = s2
        else:
            dt = s2
        self.excite = h * math.exp(-beta * dt) + self._alpha
        # slow regime and latent signal: exact OU updates over dt
        a = math.exp(-dt * self._inv_regime_t)
        va = 1.0 - a * a
        self.regime = self.regime * a + self._regime_vol * math.sqrt(va if va > 0.0 else 0.0) * n1
        b = math.exp(-dt * self._inv_signal_t)
        vb = 1.0 - b * b
        self.signal = self.signal * b + math.sqrt(vb if vb > 0.0 else 0.0) * n2
        dt_ns = int(dt * 1e9)
        return (self.time_ns + (dt_ns if dt_ns > 0 else 1), u2, u3, u4, u5, n3)

    def step(self) -> int:
        """Apply the next event (one engine transaction); returns its time in ns."""
        p, eng = self.params, self.engine
        assert eng is not None
        t_ns, u2, u3, u4, u5, n3 = self._pending if self._pending is not None else self._draw()
        self._pending = None
        self.time_ns = t_ns
        self.events += 1
        tilt = p.predictability * math.tanh(self.signal)  # > 0: buy pressure
        eng.begin()
        if u2 < p.p_market:
            side = BUY if u3 < 0.5 + 0.35 * tilt else SELL
            self._market(side, u4)
        elif u2 < p.p_market + p.p_cancel:
            # buy pressure: asks are pulled more than bids
            side = SELL if u3 < 0.5 + 0.2 * tilt else BUY
            self._cancel(side, (u2 - p.p_market) / p.p_cancel, u5, n3)
        else:
            side = BUY if u3 < 0.5 + 0.2 * tilt else SELL
            self._add(side, (u2 - p.p_market - p.p_cancel) / (1.0 - p.p_market - p.p_cancel), u4, n3)
        if self.events % 4096 == 0:
            self._prune()
        return t_ns

    def _add(self, side: int, u: float, v: float, n: float) -> None:
        p, eng = self.params, self.engine
        assert eng is not None
        bb, ba = eng.best_bid, eng.best_ask
        lots = max(1, int(math.exp(self._log_add_med + p.add_size_sigma * n)))
        if not bb or not ba:
            ref = ba - 1 if side == BUY and ba else (bb + 1 if side == SELL and bb else 0)
            if not ref:
                ref = round(p.start_price / p.tick)
            eng.add(side, ref, lots)
            return
        spread = ba - bb
        if spread > 1 and u < p.p_inside:
            k = 1 + int((u / p.p_inside) * (spread - 1))  # 1 .. spread-1 ticks inside
            eng.add(side, bb + k if side == BUY else ba - k, lots)
            return
        if v < p.p_at_touch:
            d = 0
        else:
            w = (v - p.p_at_touch) / (1.0 - p.p_at_touch)
            d = 1 + int(math.log(max(1e-300, 1.0 - w)) / self._log_geo)
            d = min(d, p.max_depth_ticks)
        eng.add(side, bb - d if side == BUY else ba + d, lots)

    def _cancel(self, side: int, u: float, v: float, n: float) -> None:
        p, eng = self.params, self.engine
        assert eng is not None
        best = eng.best_bid if side == BUY else eng.best_ask
        if not best:
            return
        # choose a level: near the touch more often, like placements
        if u < 0.3:
            d = 0
        else:
            w = (u - 0.3) / 0.7
            d = min(p.max_depth_ticks, int(math.log(max(1e-300, 1.0 - w)) / self._log_geo))
        step = -1 if side == BUY else 1
        book = eng.bids if side == BUY else eng.asks
        px = best + step * d
        for _ in range(8):
            if px in book:
                break
            px -= step  # walk back toward the touch
        else:
            return
        if px not in book:
            return
        # an order-sized cancel, or a share of the level: cancels scale with queue size, which
        # is what keeps queues finite (as in Cont, Stoikov & Talreja's model)
        lots = max(
            1, int(math.exp(self._log_add_med + p.add_size_sigma * n)), int(book[px] * p.cancel_share * v)
        )
        # never empty the whole book side through cancels
        if len(book) <= 1:
            return
        eng.cancel(side, px, lots)

    def _market(self, side: int, v: float) -> None:
        p, eng = self.params, self.engine
        assert eng is not None
        lots = int(p.trade_min_lots * (max(v, 1e-12) ** (-1.0 / p.trade_tail)))
        cap = sum(q for _, q in eng.depth(SELL if side == BUY else BUY, p.trade_max_levels))
        lots = min(lots, cap)
        if lots <= 0:
            return
        eng.market(side, lots, self.time_ns)
        # the opposite side must never vanish: refill one level behind the new touch
        if side == BUY and not eng.best_ask:
            eng.add(SELL, eng.best_bid + 1, max(1, int(p.add_size_lots)))
        if side == SELL and not eng.best_bid:
            eng.add(BUY, eng.best_ask - 1, max(1, int(p.add_size_lots)))

    def _prune(self) -> None:
        p, eng = self.params, self.engine
        assert eng is not None
        if eng.best_bid:
            for px in [x for x in eng.bids if x < eng.best_bid - p.prune_ticks]:
                eng.cancel(BUY, px, eng.bids[px])
        if eng.best_ask:
            for px in [x for x in eng.asks if x > eng.best_ask + p.prune_ticks]:
                eng.cancel(SELL, px, eng.asks[px])

    def run_until(self, t_ns: int) -> int:
        """Apply every event due at or before `t_ns`; returns how many."""
        n = 0
        while self.next_event_ns() <= t_ns:
            self.step()
            n += 1
        return n
