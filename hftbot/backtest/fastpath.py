"""The replay loop's quiet stretches in numba: the records where nothing happens, done without Python.

On the bundled capture most of `mm`'s book records change nothing a trader could see: the
strategy updates its variance estimate and its quote targets and wants no order, the risk
manager's 50 ms housekeeping finds every limit far away, no venue answer is due and none of our
orders filled. `drive` runs such a stretch record by record in one compiled call and stops, with
nothing of that record committed, before the first record where any of that is not so; the loop
(`hftbot.backtest.engine.Replay._loop`) then runs that record through the live Python code as
always. After the head of the next book record (its rows, the engine's clock, the answers due:
Python's, since they make messages) the loop hands the rest of it back (`resume`), and the
stretch goes on from there.

What a quiet record does here is exactly what the Python does on it, in the same IEEE double
arithmetic (no `fastmath`), and nothing else:
- the market rows due by its time go through the same kernel (`kernels.run_rows`); an order event
  of ours or a kernel stop hands the record to Python with its rows applied (`STAGE_ROWS`), a
  request in flight or an answer due before its rows;
- the engine's clock as `MatchingEngine.advance` moves it with nothing in flight;
- the equity sample of each elapsed period (`Replay._sample`);
- the risk manager's housekeeping (`RiskManager.update` on a fresh, valid, two-sided book, RUNNING,
  no limit crossed, the same day): the mark and the PnL figures it keeps;
- `mm`'s book step (`MarketMaker.on_book` → `_quote`) when both sides' `_side` would return
  None: the variance EWMA, the mid, the reservation price and the quote targets.
Anything else — a trade or signal record, a limit near, a quote to place, move or cancel, a
book without BOOK_VALID or with BOOK_RESYNC, a duplicate quote — stops the stretch, and Python
decides. The live objects stay the state of record: they are read into two flat arrays before
each call (`FastPath.load`) and what `drive` advanced is written back after it.

Two copies of a rule can drift apart, so the fast path is checked against the code it mirrors:
`[backtest] fast_path = "check"` runs every record through Python and takes the fast path's
verdict on a copy of the state first; a record it calls quiet that Python does anything on, or
one whose state they leave different, raises `FastPathMismatch` (tests/backtest/test_fastpath.py
runs it over the capture and the simulator's market). Results with the fast path on and off are
byte-identical (same orders, fills, equity and trades; tested).

Which strategies have one: `mm` (`FastPath.supports`). Another strategy gets one by adding its
state to `load` / the stores and its quiet step here, checked the same way; without one the loop
is the plain Python loop. docs/backtest.md ("The fast path") has the figures.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from hftbot.exec.risk import DAY_NS, RUNNING
from hftbot.exec.strategies.mm import _RESTING, NS, RETRY_NS, MarketMaker, resting_quotes
from hftbot.records import BOOK_RESYNC, BOOK_VALID
from hftbot.sim import kernels as k

NONE = -(1 << 62)  # "no such time"

# ------------------------------------------------------------------------------ the state arrays
# Two arrays carry everything across the call: `si` (int64) and `sf` (float64). Each opens with
# what the Python side writes before every call, in one block (`FastPath.run`), then what `drive`
# writes back, then the run's settings (`FastPath._static`).

# si, written before each call: the loop, the risk manager, mm and its two quotes
(I_K, I_R, I_RESUME, I_NEXT_HOUSE, I_NEXT_SAMPLE, I_T_LAST, I_PB_HAS, I_PB_FLAGS, I_PB_RECV, I_PB_BID, I_PB_ASK,
 I_NEXT_DUE, I_START, I_DAY, I_EPISODE, I_POSITION, I_HOUSE_NS, I_LAST_NS, I_QTY, I_MAX_INV, I_SIGNAL_NS,
 I_SIGNAL_OK, I_HAS_LOT, I_BLOCKED, I_POS) = range(25)
I_Q_BID, I_Q_ASK = 25, 34  # a side's quote: 9 int64 from here
Q_EXISTS, Q_RESTING, Q_PX, Q_REMAINING, Q_CANCEL_NS, Q_HAS_MOD, Q_MOD_PX, Q_MOD_NS, Q_CREATED = range(9)
I_LOADED = 43
# si, written by drive
(I_GOT, I_STAGE, I_BOOK_J, I_EQ_N, I_EVENTS, I_WHY, I_BID, I_ASK, I_TARGET_BID, I_TARGET_ASK) = range(43, 53)
# si, the run's settings
I_PERIOD, I_END, I_STALE_NS, I_CANCEL_ON_STALE, I_REQUOTE, I_MIN_LIFE, I_STALE_SIGNAL = range(53, 60)
I_SIZE = 60

# sf, written before each call
(F_MID, F_PB_TICK, F_MARK, F_PEAK, F_DAILY, F_DRAWDOWN, F_DAY_START, F_REALISED, F_FEES, F_AVG_PX,
 F_LAST_MID, F_DM2, F_DT_S, F_SIGNAL_EDGE) = range(14)
F_LOADED = 14
# sf, written by drive
F_MM_MID, F_RESERVATION, F_HALF = range(14, 17)
# sf, the run's settings
(F_USDT, F_DAILY_HALT, F_DD_HALT, F_DAILY_REDUCE, F_DD_REDUCE, F_TICK, F_EQ_TICK, F_ALPHA, F_TAU_S, F_GAMMA,
 F_SPREAD_CONST, F_FLOOR_FRAC, F_SKEW_FRAC) = range(17, 30)
F_SIZE = 30

# a chunk's records (`FastPath.chunk`): int64 columns, the book's fields gathered per record
C_TIME, C_KIND, C_WHERE, C_UPTO, C_FLAGS, C_RECV, C_BID, C_ASK = range(8)
C_MID, C_TICK = range(2)  # float64 columns

STAGE_NONE, STAGE_ROWS = 0, 1  # the record at si[I_K]: untouched / its rows applied (si[I_GOT]: run_rows' answer)
# why a stretch stopped (si[I_WHY]; FastPath.stops counts them)
WHY = ("end", "not a book", "answer due", "request in flight", "equity sample", "strategy", "risk", "order event",
       "chunk end")
_NO_QUOTE = (0,) * 9


# ------------------------------------------------------------------------------ compiled steps


@nb.njit(cache=True, inline="always")
def _side_quiet(si, q, px, qty, now):
    """Whether `MarketMaker._side` would return None for this side (its branches, in its order)."""
    if qty <= 0:  # _cancel(o, now, "inventory") when a quote rests
        if si[q + Q_EXISTS] == 0 or si[q + Q_RESTING] == 0:
            return True
        return si[q + Q_CANCEL_NS] != NONE and now - si[q + Q_CANCEL_NS] < RETRY_NS
    if si[q + Q_EXISTS] == 0:
        return False  # a place
    if si[q + Q_RESTING] == 0:
        return True  # pending or unknown: wait for the venue
    if si[q + Q_CANCEL_NS] != NONE:  # _cancel(o, now, "retry")
        return now - si[q + Q_CANCEL_NS] < RETRY_NS
    if abs(si[q + Q_PX] - px) < si[I_REQUOTE] and si[q + Q_REMAINING] <= qty:
        return True
    born = si[q + Q_CREATED]
    if si[q + Q_HAS_MOD]:
        if si[q + Q_PX] != si[q + Q_MOD_PX] and now - si[q + Q_MOD_NS] < RETRY_NS:
            return True  # our amendment is on its way
        if si[q + Q_MOD_NS] > born:
            born = si[q + Q_MOD_NS]
    return now - born < si[I_MIN_LIFE]


@nb.njit(cache=True)
def mm_step(si, sf, flags, bid, ask, now, commit):
    """`MarketMaker.on_book` on a book record when it would return no intent: True, and the state
    advanced as it would be (`commit`); False, and the state untouched, when Python must decide."""
    if not flags & BOOK_VALID or flags & BOOK_RESYNC or si[I_HAS_LOT] == 0 or si[I_BLOCKED]:
        return False
    if not 0 < bid < ask:
        return False
    mid = (bid + ask) * 0.5
    dm2 = sf[F_DM2]
    dt_s = sf[F_DT_S]
    last_ns = si[I_LAST_NS]
    if sf[F_LAST_MID] != 0.0 and now > last_ns:
        a = sf[F_ALPHA]
        d = mid - sf[F_LAST_MID]
        dm2 += a * (d * d - dm2)
        dt_s += a * ((now - last_ns) / NS - dt_s)
    qty = si[I_QTY]
    pos = si[I_POS]  # the view's position
    quoting = qty > 0
    r = half = 0.0
    bid_px = ask_px = 0
    if quoting:
        var_rate = dm2 / dt_s if dt_s > 0 else 0.0
        s2t = var_rate * sf[F_TAU_S]
        skew = 0.0
        if si[I_SIGNAL_OK] and now - si[I_SIGNAL_NS] <= si[I_STALE_SIGNAL]:
            skew = sf[F_SIGNAL_EDGE] * sf[F_SKEW_FRAC] * mid
        gamma = sf[F_GAMMA]
        r = mid - (pos / qty) * gamma * s2t + skew
        half = 0.5 * gamma * s2t + sf[F_SPREAD_CONST]
        floor = sf[F_FLOOR_FRAC] * mid
        if half < floor:
            half = floor
        bid_px = math.floor(r - half + 1e-9)
        ask_px = math.ceil(r + half - 1e-9)
        if bid_px >= ask:
            bid_px = ask - 1
        if ask_px <= bid:
            ask_px = bid + 1
        max_inv = si[I_MAX_INV]
        room_buy = max_inv - pos
        room_sell = max_inv + pos
        bid_qty = qty if qty < room_buy else room_buy
        ask_qty = qty if qty < room_sell else room_sell
        if not (_side_quiet(si, I_Q_BID, bid_px, bid_qty, now) and _side_quiet(si, I_Q_ASK, ask_px, ask_qty, now)):
            return False
    if commit:
        sf[F_DM2] = dm2
        sf[F_DT_S] = dt_s
        sf[F_LAST_MID] = mid
        sf[F_MM_MID] = mid
        si[I_LAST_NS] = now
        si[I_BID] = bid
        si[I_ASK] = ask
        if quoting:
            sf[F_RESERVATION] = r
            sf[F_HALF] = half
            si[I_TARGET_BID] = bid_px
            si[I_TARGET_ASK] = ask_px
    return True


@nb.njit(cache=True, inline="always")
def _net_pnl(sf, pos, mark):
    """`Positions.net_pnl(mark)`: realised − fees + unrealised (0 when flat or without a mark)."""
    u = 0.0
    if pos != 0 and mark > 0:
        u = (mark - sf[F_AVG_PX]) * pos * sf[F_USDT]
    return sf[F_REALISED] - sf[F_FEES] + u


@nb.njit(cache=True)
def risk_step(si, sf, has, flags, recv, bid, ask, tick, now, commit):
    """`RiskManager.update(now, book)` when it returns no request and moves no state but its
    figures: True, and the mark, peak, daily PnL and drawdown advanced (`commit`); False, and the
    state untouched, when Python must run it (a stale, invalid or off-grid book, a new day, a
    limit crossed, not RUNNING)."""
    if not has or not flags & BOOK_VALID or si[I_HOUSE_NS] == 0:
        return False
    if now - recv > si[I_STALE_NS]:
        return False
    if bid <= 0 or ask <= 0 or bid >= ask or tick != sf[F_TICK]:
        return False
    if si[I_DAY] != now // DAY_NS:
        return False
    mark = (bid + ask) * 0.5
    pnl = _net_pnl(sf, si[I_POSITION], mark)
    peak = sf[F_PEAK]
    if pnl > peak:
        peak = pnl
    daily = pnl - sf[F_DAY_START]
    dd = peak - pnl
    if daily <= -sf[F_DAILY_HALT] or dd >= sf[F_DD_HALT] or daily <= -sf[F_DAILY_REDUCE] or dd >= sf[F_DD_REDUCE]:
        return False
    if commit:
        sf[F_MARK] = mark
        sf[F_PEAK] = peak
        sf[F_DAILY] = daily
        sf[F_DRAWDOWN] = dd
        if si[I_CANCEL_ON_STALE]:
            si[I_EPISODE] = 0
    return True


@nb.njit(cache=True)
def drive(si, sf, ci, cf, lad, mem, words, eq_i, eq_f):
    """Quiet records from si[I_K] on; see the module docstring. Returns the number done.

    With si[I_RESUME] the first record's head — its rows, the engine's clock, the answers due —
    has been done by Python (which then found nothing left for it but the quiet part)."""
    n = len(ci)
    kk = si[I_K]
    k0 = kk
    r = si[I_R]
    resume = si[I_RESUME] != 0
    next_house = si[I_NEXT_HOUSE]
    next_sample = si[I_NEXT_SAMPLE]
    next_due = si[I_NEXT_DUE]
    period = si[I_PERIOD]
    start, end = si[I_START], si[I_END]
    eq_n = 0
    eq_cap = len(eq_i)
    pos = si[I_POSITION]  # the ledger's (the equity rows')
    mid = sf[F_MID]
    pb_has, pb_flags, pb_recv = si[I_PB_HAS], si[I_PB_FLAGS], si[I_PB_RECV]
    pb_bid, pb_ask, pb_tick = si[I_PB_BID], si[I_PB_ASK], sf[F_PB_TICK]
    book_j = -1
    t_last = si[I_T_LAST]
    events = 0
    stage = STAGE_NONE
    got = 0
    why = 8
    while kk < n:
        t = ci[kk, C_TIME]
        if t >= end or t < start:
            why = 0
            break
        if not resume:
            if ci[kk, C_KIND] != 0:
                why = 1
                break
            if next_due <= t:
                why = 2
                break
            if mem[k.S_NREQ] > 0:
                why = 3
                break
        if t >= next_sample:
            why = 4
            if next_sample == 0:
                break
            m = 0
            s = next_sample
            while s <= t:
                m += 1
                s += period
            if eq_n + m > eq_cap:
                break
        flags, bid, ask = ci[kk, C_FLAGS], ci[kk, C_BID], ci[kk, C_ASK]
        # side-effect-free verdicts first: nothing of this record is committed unless all are quiet
        if not mm_step(si, sf, flags, bid, ask, t, False):
            why = 5
            break
        house = t >= next_house
        if house and not risk_step(si, sf, pb_has, pb_flags, pb_recv, pb_bid, pb_ask, pb_tick, t, False):
            why = 6
            break
        u = ci[kk, C_UPTO]
        if u > r:
            got = k.run_rows(lad, mem, words, r, u, 0)
            if got != u or mem[k.S_NEV] > 0:
                stage = STAGE_ROWS
                why = 7
                break
            events += u - r
            r = u
        if not resume:
            if t > mem[k.S_NOW_NS]:  # MatchingEngine.advance with nothing in flight
                mem[k.S_NOW_NS] = t
            mem[k.S_RESP_CUR] = -1
        resume = False
        if t >= next_sample:
            while next_sample <= t:
                eq_i[eq_n, 0] = next_sample
                eq_i[eq_n, 1] = pos
                eq_f[eq_n, 0] = mid * sf[F_EQ_TICK]
                eq_f[eq_n, 1] = sf[F_REALISED]
                eq_f[eq_n, 2] = sf[F_FEES]
                eq_f[eq_n, 3] = _net_pnl(sf, pos, mid)
                eq_n += 1
                next_sample += period
        if house:
            risk_step(si, sf, pb_has, pb_flags, pb_recv, pb_bid, pb_ask, pb_tick, t, True)
            next_house = t + si[I_HOUSE_NS]
        m = cf[kk, C_MID]
        if m == m:
            mid = m
        pb_has, pb_flags, pb_recv, pb_bid, pb_ask, pb_tick = 1, flags, ci[kk, C_RECV], bid, ask, cf[kk, C_TICK]
        book_j = ci[kk, C_WHERE]
        mm_step(si, sf, flags, bid, ask, t, True)
        t_last = t
        kk += 1
    si[I_K] = kk
    si[I_R] = r
    si[I_GOT] = got
    si[I_STAGE] = stage
    si[I_BOOK_J] = book_j
    si[I_NEXT_HOUSE] = next_house
    si[I_NEXT_SAMPLE] = next_sample
    si[I_T_LAST] = t_last
    si[I_EQ_N] = eq_n
    si[I_EVENTS] = events
    si[I_WHY] = why
    sf[F_MID] = mid
    return kk - k0


# ------------------------------------------------------------------------------ the Python side


class FastPath:
    """`drive` for one replay: the state arrays, read from the live objects before each call and
    written back after it. Built by `Replay` when its strategy has a fast step (`supports`)."""

    def __init__(self, rep, house_ns: int) -> None:
        self.rep = rep
        self.house_ns = house_ns
        self.si = np.zeros(I_SIZE, np.int64)
        self.sf = np.zeros(F_SIZE, np.float64)
        self.eq_i = np.zeros((256, 2), np.int64)
        self.eq_f = np.zeros((256, 4), np.float64)
        self.records = 0  # records done here (the rest went through Python)
        self.calls = 0
        self.stops = dict.fromkeys(WHY, 0)
        self.stop_k = -1  # the record the last call stopped at for its own verdict (strategy, risk, sample)
        # calls that did nothing in a row, and the first record worth another: a regime where no
        # record is quiet (a strategy asking on every record, refused while the risk manager is
        # REDUCING) would otherwise pay a call a record for nothing; results do not depend on it
        self.misses = 0
        self.next_try = 0
        self._static(rep)

    @staticmethod
    def supports(strategy) -> bool:
        """Exactly `MarketMaker` (a subclass may change what a quiet record is)."""
        return type(strategy) is MarketMaker

    def _static(self, rep) -> None:
        """What does not change during a run: the loop's, the strategy's and the risk manager's settings."""
        s, risk = rep.strategy, rep.risk
        c = risk.cfg
        self.si[I_PERIOD : I_SIZE] = (rep.period_ns, rep.end_ns, risk._stale_book_ns,
                                      int(c.cancel_on_stale_book), s.requote_ticks, s.min_life_ns, s.stale_signal_ns)
        self.sf[F_USDT : F_SIZE] = (rep.positions.usdt, c.daily_loss_halt_usdt, c.drawdown_halt_usdt,
                                    c.daily_loss_reduce_usdt, c.drawdown_reduce_usdt, risk.filters.tick, rep.tick,
                                    s.alpha, s.tau_s, s.gamma, s.spread_const, s.floor_frac, s.skew_frac)

    def load(self, k: int = 0, r: int = 0, resume: bool = False) -> None:
        """The live objects' state into the arrays: the loop's, the risk manager's, `MarketMaker`'s
        and its two quotes as `_quote` would find them."""
        rep = self.rep
        s, risk, led, view = rep.strategy, rep.risk, rep.positions._led, rep.view
        book = rep.book
        if book is None:
            vals = [k, r, resume, rep.next_house, rep.next_sample, rep.t_last, 0, 0, 0, 0, 0]
            tick = 0.0
        else:
            vals = [k, r, resume, rep.next_house, rep.next_sample, rep.t_last, 1, book["flags"].item(),
                    book["recv_ns"].item(), book["bid_px"].item(0), book["ask_px"].item(0)]
            tick = book["tick"].item()
        cancels, mods = s._cancels, s._mods
        bid_o, ask_o, extra = resting_quotes(view.orders)
        # a second quote on one side (Python cancels it), or _quote would _forget: changes Python makes
        blocked = extra is not None or len(cancels) + len(mods) > 32
        vals += (rep.venue.next_ns(), rep.start_ns, risk.day, risk._stale_episode, led.position,
                 self.house_ns if risk.state == RUNNING else 0,  # 0: not RUNNING, Python runs it
                 s.last_ns, s.qty, s.max_inventory, s.signal_ns, s.signal_ok, 1 if s.lot else 0, blocked,
                 view.position)
        for o in (bid_o, ask_o):
            if o is None:
                vals += _NO_QUOTE
                continue
            cid = o.client_id
            mod = mods.get(cid)
            if mod is None:
                vals += (1, o.status in _RESTING, o.px, o.remaining, cancels.get(cid, NONE), 0, 0, 0, o.created_ns)
            else:
                vals += (1, o.status in _RESTING, o.px, o.remaining, cancels.get(cid, NONE), 1, mod[0], mod[1],
                         o.created_ns)
        self.si[:I_LOADED] = vals
        self.sf[:F_LOADED] = (rep.mid, tick, risk.mark_px, risk.peak_pnl, risk.daily_pnl, risk.drawdown,
                              risk.day_start_pnl, led.realised, led.fees, led.avg_px, s.last_mid, s.dm2, s.dt_s,
                              s.signal_edge)

    def store_strategy(self, si: list, sf: list) -> None:
        """`drive`'s mm state back into the strategy (`si`, `sf`: the arrays as lists)."""
        s = self.rep.strategy
        s.last_mid, s.dm2, s.dt_s, s.mid = sf[F_LAST_MID], sf[F_DM2], sf[F_DT_S], sf[F_MM_MID]
        s.last_ns, s.bid, s.ask, s.book_ok = si[I_LAST_NS], si[I_BID], si[I_ASK], True
        if s.qty > 0:
            s.reservation, s.half_spread = sf[F_RESERVATION], sf[F_HALF]
            s.target_bid, s.target_ask = si[I_TARGET_BID], si[I_TARGET_ASK]

    def store_risk(self, si: list, sf: list) -> None:
        risk = self.rep.risk
        risk.mark_px, risk.peak_pnl, risk.daily_pnl, risk.drawdown = sf[F_MARK : F_DRAWDOWN + 1]
        risk._stale_episode = bool(si[I_EPISODE])

    # -------------------------------------------------------------------------- a stretch

    def chunk(self, books: np.ndarray, times: np.ndarray, kinds: np.ndarray, where: np.ndarray, upto: np.ndarray,
              mids: np.ndarray, words: np.ndarray) -> None:
        """The chunk's records as the flat arrays `drive` reads (a book record's fields on its row)."""
        n = len(times)
        ci = np.zeros((n, 8), np.int64)
        cf = np.zeros((n, 2), np.float64)
        ci[:, C_TIME], ci[:, C_KIND], ci[:, C_WHERE], ci[:, C_UPTO] = times, kinds, where, upto
        b = np.flatnonzero(kinds == 0)
        j = where[b]
        ci[b, C_FLAGS] = books["flags"][j]
        ci[b, C_RECV] = books["recv_ns"][j]
        ci[b, C_BID] = books["bid_px"][j, 0]
        ci[b, C_ASK] = books["ask_px"][j, 0]
        cf[b, C_MID] = mids[j]
        cf[b, C_TICK] = books["tick"][j]
        self.ci, self.cf = ci, cf
        self.books = books
        self.words = words
        self.next_try = 0  # (record indices start again)

    def run(self, k: int, r: int, resume: bool = False) -> tuple[int, int, int | None]:
        """Records from `k` (rows applied up to `r`) through `drive`: (next record, next row, the
        kernel's answer when the rows of record `next` were applied and Python goes on from there,
        else None). `resume`: record `k`'s head is done (see `drive`)."""
        rep = self.rep
        eng = rep.engine
        if eng._events:  # order events not yet collected: Python first
            return k, r, None
        self.load(k, r, resume)
        self.calls += 1
        done = drive(self.si, self.sf, self.ci, self.cf, eng.lad, eng.mem, self.words, self.eq_i, self.eq_f)
        si = self.si.tolist()
        why = si[I_WHY]
        self.stops[WHY[why]] += 1
        kk = si[I_K]
        self.stop_k = kk if why in (4, 5, 6) else -1
        got = si[I_GOT] if si[I_STAGE] == STAGE_ROWS else None
        if not done:
            self.misses += 1
            self.next_try = k + (1 << min(max(self.misses - 3, 0), 6))  # after 3 misses: 2, 4 … 64 records on
            return k, r, got
        self.misses = 0
        sf = self.sf.tolist()
        self.records += done
        rep.events += si[I_EVENTS]
        rep.next_house, rep.next_sample = si[I_NEXT_HOUSE], si[I_NEXT_SAMPLE]
        rep.t_last = rep.view.now_ns = si[I_T_LAST]
        rep.mid = sf[F_MID]
        j = si[I_BOOK_J]
        rep.book = self.books[j : j + 1].reshape(())
        m = si[I_EQ_N]
        if m:
            rep.equity.extend(
                (t, mid, pos, re, fe, eq)
                for (t, pos), (mid, re, fe, eq) in zip(self.eq_i[:m].tolist(), self.eq_f[:m].tolist(), strict=True)
            )
        self.store_strategy(si, sf)
        self.store_risk(si, sf)
        if got is None:
            eng._after()  # the cached best prices (no order event: the stretch stops before one)
        return kk, si[I_R], got


class FastCheck:
    """`[backtest] fast_path = "check"`: every record runs through Python as with the fast path
    off, and before each strategy book step and each housekeeping the fast path's verdict is
    taken on a copy of the state. A record it calls quiet must be one where Python returns
    nothing and leaves exactly the state the fast path would have written; anything else raises
    `FastPathMismatch`. `quiet` / `seen` count its verdicts (how much a run could skip)."""

    def __init__(self, fp: FastPath) -> None:
        self.fp = fp
        self.seen = {"book": 0, "house": 0}
        self.quiet = {"book": 0, "house": 0}

    def on_book(self, rec, view):
        """`strategy.on_book(rec, view)` (at `view.now_ns`, as the loop calls it), checked."""
        t = view.now_ns
        fp = self.fp
        s = fp.rep.strategy
        fp.load()
        si, sf = fp.si, fp.sf
        quiet = mm_step(si, sf, rec["flags"].item(), rec["bid_px"].item(0), rec["ask_px"].item(0), t, True)
        intents = s.on_book(rec, view)
        self.seen["book"] += 1
        if quiet:
            self.quiet["book"] += 1
            want = (sf[F_LAST_MID], sf[F_DM2], sf[F_DT_S], si[I_LAST_NS], si[I_BID], si[I_ASK])
            have = (s.last_mid, s.dm2, s.dt_s, s.last_ns, s.bid, s.ask)
            if s.qty > 0:
                want += (sf[F_RESERVATION], sf[F_HALF], si[I_TARGET_BID], si[I_TARGET_ASK])
                have += (s.reservation, s.half_spread, s.target_bid, s.target_ask)
            want = tuple(x.item() for x in want)
            if intents or want != have:
                raise FastPathMismatch(f"mm at {t}: fast path quiet, Python {intents!r}; state {want} vs {have}")
        return intents

    def update(self, t: int, book):
        fp = self.fp
        risk = fp.rep.risk
        fp.load()
        si, sf = fp.si, fp.sf
        if book is None:
            quiet = False
        else:
            quiet = risk_step(si, sf, 1, book["flags"].item(), book["recv_ns"].item(), book["bid_px"].item(0),
                              book["ask_px"].item(0), book["tick"].item(), t, True)
        reqs = risk.update(t, book)
        self.seen["house"] += 1
        if quiet:
            self.quiet["house"] += 1
            want = (*sf[F_MARK : F_DRAWDOWN + 1].tolist(), bool(si[I_EPISODE]))
            have = (risk.mark_px, risk.peak_pnl, risk.daily_pnl, risk.drawdown, risk._stale_episode)
            if reqs or want != have:
                raise FastPathMismatch(f"risk at {t}: fast path quiet, Python {reqs!r}; state {want} vs {have}")
        return reqs


class FastPathMismatch(AssertionError):
    """The fast path called a record quiet where the Python it mirrors did something."""
