"""The backtester's fast path (hftbot.backtest.fastpath): the quiet records run compiled, with the
same results as the Python loop, and each verdict of it agrees with the Python it mirrors.

- The shipped capture and the simulator's market, `mm`, fast path on / off: byte-identical
  orders, fills, equity and trades (and the same events, refusals and rejections), with and
  without `--start` / `--end`, and most records done compiled.
- `fast_path = "check"` over the same data: every record through Python, each fast-path verdict
  checked against it (a quiet verdict where Python acts, or leaves another state, raises).
- Hand-driven `mm` through a venue played by the test (acks, partial fills, cancels,
  amendments, inventory at the limit, a pending modify, a retried cancel) and the risk
  manager's housekeeping near its limits and across a day: the verdicts agree on every step,
  and both kinds of verdict occur.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from hftbot.backtest import fastpath as f
from hftbot.backtest.engine import run_backtest
from hftbot.backtest.fastpath import FastCheck, FastPath, FastPathMismatch
from hftbot.config import load_config
from hftbot.exec.messages import BUY, NEW, PARTIALLY_FILLED
from hftbot.records import BOOK_RESYNC, BOOK_VALID
from tests.exec.helpers import MS, TICK, Harness, book, fill

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "btcusdt_20240808.gz"
BTC = ROOT / "configs" / "btcusdt.toml"


def _cfg(mode: str, path=BTC, **bt):
    values = {"fast_path": mode, "cache": False, "queue_model": "power_prob", "order_latency": "constant",
              "order_entry_us": 100.0, "order_response_us": 100.0}
    return load_config(path, env={}).override("backtest", **{**values, **bt})


def _same(a, b) -> None:
    assert a.orders == b.orders and a.order_log == b.order_log
    assert a.fills.tobytes() == b.fills.tobytes()
    assert a.equity.tobytes() == b.equity.tobytes()
    assert a.trades == b.trades
    assert (a.events, a.rejected, a.refusals) == (b.events, b.rejected, b.refusals)
    assert (a.start_ns, a.end_ns) == (b.start_ns, b.end_ns)


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cap") / CAPTURE.name
    shutil.copy2(CAPTURE, p)
    return p


@pytest.fixture(scope="module")
def sim_day(tmp_path_factory) -> Path:
    from hftbot.sim.generate import generate_recording
    from hftbot.sim.market import ModelParams

    root = tmp_path_factory.mktemp("sim")
    generate_recording(str(root), ModelParams(seed=7), 0.1)
    return root


@pytest.mark.parametrize("latency", [{}, {"order_entry_us": 1000.0, "order_response_us": 5000.0},
                                     {"feed_latency": "zero"}])
def test_the_capture_gives_the_same_results_with_and_without_the_fast_path(capture, latency):
    on = run_backtest([capture], strategy="mm", cfg=_cfg("on", **latency))
    off = run_backtest([capture], strategy="mm", cfg=_cfg("off", **latency))
    _same(on, off)
    assert on.orders > 100 and len(on.fills) > 100 and len(on.trades) > 10  # it traded: a real comparison
    assert on.settings["fast_path_records"] > 3000  # of 6,546 book records
    assert sum(on.settings["fast_path_stops"].values()) == on.settings["fast_path_calls"] < 3000
    assert off.settings["fast_path_records"] == 0 and "fast_path_calls" not in off.settings


def test_the_prepared_cache_gives_the_same_results_with_and_without_the_fast_path(tmp_path):
    """The default path: rows read in place from the cache's read-only maps (a first run writes it)."""
    cap = tmp_path / CAPTURE.name
    shutil.copy2(CAPTURE, cap)
    first = run_backtest([cap], strategy="mm", cfg=_cfg("on", cache=True))  # writes the cache
    on = run_backtest([cap], strategy="mm", cfg=_cfg("on", cache=True))
    off = run_backtest([cap], strategy="mm", cfg=_cfg("off", cache=True))
    assert any((tmp_path / ".hftbot-cache").iterdir())
    _same(on, off)
    _same(first, off)
    assert on.settings["fast_path_records"] > 3000


def test_a_wrong_fast_path_setting_is_refused():
    with pytest.raises(ValueError, match="fast_path"):
        load_config(env={}).override("backtest", fast_path="fast")


def test_start_and_end_inside_the_capture_give_the_same_results(capture):
    full = run_backtest([capture], strategy="mm", cfg=_cfg("off"))
    a, b = full.start_ns + 60 * 10**9, full.start_ns + 200 * 10**9
    on = run_backtest([capture], strategy="mm", cfg=_cfg("on"), start_ns=a, end_ns=b)
    off = run_backtest([capture], strategy="mm", cfg=_cfg("off"), start_ns=a, end_ns=b)
    _same(on, off)
    assert 0 < on.orders < full.orders and on.settings["fast_path_records"] > 0


def test_the_simulator_market_gives_the_same_results_with_and_without_the_fast_path(sim_day):
    sol = None  # the defaults' SOLUSDT sizes
    on = run_backtest([sim_day], strategy="mm", cfg=_cfg("on", path=sol))
    off = run_backtest([sim_day], strategy="mm", cfg=_cfg("off", path=sol))
    _same(on, off)
    assert on.orders > 20 and len(on.fills) > 10
    assert on.settings["fast_path_records"] > 0


@pytest.mark.parametrize("data", ["capture", "sim_day"])
def test_every_verdict_agrees_with_the_python_in_check_mode(data, request):
    path = request.getfixturevalue(data)
    cfg_path = BTC if data == "capture" else None
    chk = run_backtest([path], strategy="mm", cfg=_cfg("check", path=cfg_path))  # raises on a disagreement
    off = run_backtest([path], strategy="mm", cfg=_cfg("off", path=cfg_path))
    _same(chk, off)
    seen, quiet = chk.settings["fast_path_seen"], chk.settings["fast_path_quiet"]
    for part in ("book", "house"):
        assert 0 < quiet[part] < seen[part]  # both verdicts occur, so both were checked


def test_a_strategy_without_a_fast_step_runs_the_plain_loop(capture):
    r = run_backtest([capture], strategy="imbalance", cfg=_cfg("on"))
    assert r.settings["fast_path_records"] == 0 and r.events > 0


# ------------------------------------------------------------------------------ hand-driven


def _rep(h: Harness) -> SimpleNamespace:
    """What `FastPath` reads of a `Replay`, around a harness (the loop's own state at rest)."""
    return SimpleNamespace(strategy=h.strategy, risk=h.risk, positions=h.pos, view=h.view, tick=TICK,
                           period_ns=10**9, end_ns=1 << 62, start_ns=0, book=None, mid=0.0, t_last=0,
                           next_house=0, next_sample=0, venue=SimpleNamespace(next_ns=lambda: 1 << 62))


def _mm(**st):
    import dataclasses

    from hftbot.config import ExecConfig, RiskConfig, StrategyConfig
    from hftbot.exec.fees import FeeModel
    from hftbot.exec.strategies.mm import MarketMaker

    cfg = dataclasses.replace(StrategyConfig(), **st)
    return MarketMaker(cfg, ExecConfig(), RiskConfig(max_position=3.0), FeeModel(maker=0.0002, taker=0.0005))


def test_mm_verdicts_agree_with_on_book_through_a_played_venue():
    """Random books and a venue that acks, fills (partly), cancels and amends at random delays."""
    h = Harness(_mm(mm_qty=1.0, mm_max_inventory=2.0, mm_requote_ticks=2, mm_min_quote_life_ms=30.0),
                risk_cfg={"max_position": 3.0})
    check = FastCheck(FastPath(_rep(h), 50 * MS))
    rnd = random.Random(5)
    mid = 15000
    pending: list[tuple[int, str, object]] = []  # (due ms, what, request)
    for step in range(4000):
        now_ms = 1_000 + step * 7
        now = now_ms * MS
        for due, what, req in [p for p in pending if p[0] <= now_ms]:
            pending.remove((due, what, req))
            o = h.pos.orders.get(req.client_id)
            if what == "ack" and o is not None and o.status not in (NEW, PARTIALLY_FILLED):
                h.ack(req)
            elif what == "fill" and o is not None and o.status in (NEW, PARTIALLY_FILLED) and o.remaining:
                h.fill(req, qty=rnd.randint(1, o.remaining))
            elif what == "cancel" and o is not None and o.status in (NEW, PARTIALLY_FILLED):
                h.cancelled(req.client_id)
            elif what == "amend" and o is not None and o.status == NEW:
                h.amended(req.client_id, req.qty, req.px)
        resting = [o for o in h.pos.orders.values() if o.status in (NEW, PARTIALLY_FILLED) and o.remaining]
        if resting and rnd.random() < 0.05:  # the market trades into one of our quotes
            o = rnd.choice(resting)
            h.fill(SimpleNamespace(client_id=o.client_id, side=o.side, qty=o.remaining, px=o.px),
                   qty=rnd.randint(1, o.remaining))
        mid += rnd.choice((-2, -1, 0, 0, 0, 1, 2)) if rnd.random() < 0.6 else 0
        flags = BOOK_VALID if rnd.random() > 0.01 else (0 if rnd.random() < 0.5 else BOOK_VALID | BOOK_RESYNC)
        spread = 1 if rnd.random() < 0.9 else 3
        rec = book(mid, mid + spread, recv_ns=now, flags=flags)
        h.last_book = rec
        h.view.now_ns = now
        intents = check.on_book(rec, h.view)
        for req in h._route(intents, now):
            kind = type(req).__name__
            lag = rnd.choice((0, 1, 5, 40, 1500))  # some answers come late: retries and waits
            if kind == "OrderRequest":
                pending.append((now_ms + lag, "ack", req))
                if rnd.random() < 0.3:
                    pending.append((now_ms + lag + rnd.randint(1, 200), "fill", req))
            elif kind == "CancelRequest":
                pending.append((now_ms + lag, "cancel", req))
            elif kind == "ModifyRequest":
                pending.append((now_ms + lag, "amend", req))
    seen, quiet = check.seen["book"], check.quiet["book"]
    assert seen == 4000 and 0.2 * seen < quiet < seen - 100  # both verdicts, each many times
    c = h.strategy.counts
    assert c["place"] > 20 and c["modify"] > 20 and c["cancel"] > 5  # the branches were reached
    assert h.pos.position != 0 or any(t for t in h.pos.trades)


def test_a_verdict_that_disagrees_with_the_python_is_caught():
    h = Harness(_mm(mm_qty=1.0, mm_requote_ticks=2, mm_min_quote_life_ms=0.0))
    fp = FastPath(_rep(h), 50 * MS)
    check = FastCheck(fp)

    def step(ms: int, bid: int):
        rec = h.last_book = book(bid, bid + 1, recv_ns=ms * MS)
        h.view.now_ns = ms * MS
        return check.on_book(rec, h.view)

    for r in h._route(step(1_000, 15000), 1_000 * MS):
        h.ack(r)
    assert step(1_010, 15000) == () and check.quiet["book"] == 1  # the quotes rest at their targets
    # a fast path that believes the requote threshold is wider than mm's: a move of 3 ticks is
    # "quiet" to it, while mm moves its quotes
    fp.si[f.I_REQUOTE] = 100
    with pytest.raises(FastPathMismatch, match="mm at"):
        step(1_020, 15003)


@pytest.mark.parametrize("limits", [{}, {"daily_loss_reduce_usdt": 0.5, "daily_loss_halt_usdt": 1.0,
                                         "drawdown_reduce_usdt": 0.3, "drawdown_halt_usdt": 2.0}])
def test_risk_housekeeping_verdicts_agree_near_the_limits_and_across_days(limits):
    h = Harness(_mm(), risk_cfg={"stale_book_ms": 100.0, **limits})
    check = FastCheck(FastPath(_rep(h), 50 * MS))
    h.pos.on_fill(fill(BUY, 100, 15000, trade_id=1))
    rnd = random.Random(3)
    mid = 15000
    day = 86_400_000
    t_ms = day - 30_000  # half a minute before midnight: a new day on the way
    asked = 0
    for step in range(2000):
        t_ms += 50
        mid += rnd.choice((-3, -1, 0, 1, 3))
        age = 0 if rnd.random() < 0.95 else 150  # now and then a stale book
        flags = BOOK_VALID if rnd.random() < 0.98 else 0
        rec = book(mid, mid + 1, recv_ns=(t_ms - age) * MS, flags=flags)
        reqs = check.update(t_ms * MS, rec if step else None)
        asked += len(reqs)
    seen, quiet = check.seen["house"], check.quiet["house"]
    assert seen == 2000 and 0 < quiet < seen
    if limits:
        assert h.risk.state != "RUNNING" or asked  # the limits were reached on the walk
    assert h.risk.day == (t_ms * MS) // (86_400 * 10**9)  # the day turned during the walk


def test_the_fast_state_round_trips_exactly():
    """Reading the live objects into the arrays and writing them back changes nothing."""
    h = Harness(_mm(mm_qty=1.0))
    fp = FastPath(_rep(h), 50 * MS)
    for i in range(50):
        h.on_book(book(15000 + i % 3, 15001 + i % 3, recv_ns=(1_000 + 13 * i) * MS))
    s, r = h.strategy, h.risk
    r.mark_px, r.peak_pnl, r.daily_pnl, r.drawdown = 15000.5, 0.25, -0.125, 0.375

    def state():
        return (s.last_mid, s.dm2, s.dt_s, s.last_ns, s.mid, s.bid, s.ask, s.reservation, s.half_spread,
                s.target_bid, s.target_ask, r.mark_px, r.peak_pnl, r.daily_pnl, r.drawdown, r._stale_episode)

    before = state()
    fp.load()
    si, sf = fp.si, fp.sf  # what only drive writes, as it would write it
    sf[f.F_MM_MID], si[f.I_BID], si[f.I_ASK] = s.mid, s.bid, s.ask
    sf[f.F_RESERVATION], sf[f.F_HALF], si[f.I_TARGET_BID], si[f.I_TARGET_ASK] = (
        s.reservation, s.half_spread, s.target_bid, s.target_ask)
    fp.store_strategy(si.tolist(), sf.tolist())
    fp.store_risk(si.tolist(), sf.tolist())
    after = state()
    assert after == before and all(type(a) is type(b) for a, b in zip(after, before, strict=True))
