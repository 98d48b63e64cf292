"""Market model and message stream: determinism, stylised facts, and an exact update-id chain."""

from __future__ import annotations

import hashlib
import itertools

import orjson
import pytest

from hftbot.sim.generate import generate_messages
from hftbot.sim.market import MarketModel, ModelParams
from hftbot.sim.matching import BUY, SELL
from hftbot.sim.streams import Formatter, MarketPublisher


def _digest(params: ModelParams, seconds: float = 60.0) -> str:
    h = hashlib.sha256()
    generate_messages(params, seconds, lambda ns, s, p: h.update(b"%d %s %s\n" % (ns, s.encode(), p)))
    return h.hexdigest()


def test_same_seed_gives_identical_messages() -> None:
    assert _digest(ModelParams(seed=11)) == _digest(ModelParams(seed=11))


def test_different_seed_gives_different_messages() -> None:
    assert _digest(ModelParams(seed=11)) != _digest(ModelParams(seed=12))


def test_bad_parameter_names_the_field() -> None:
    with pytest.raises(ValueError, match="predictability"):
        ModelParams(predictability=1.5)


def test_stylised_facts_hold_over_ten_minutes() -> None:
    m = MarketModel(ModelParams(seed=5))
    eng = m.engine
    spreads, imb_before, moves = [], [], []
    end = m.time_ns + 600 * 10**9
    last_mid = eng.best_bid + eng.best_ask
    while m.time_ns < end:
        qb, qa = eng.bids[eng.best_bid], eng.asks[eng.best_ask]
        imb = (qb - qa) / (qb + qa)
        m.step()
        eng.drain()
        mid = eng.best_bid + eng.best_ask
        spreads.append(eng.best_ask - eng.best_bid)
        if mid != last_mid:
            imb_before.append(imb)
            moves.append(mid > last_mid)
            last_mid = mid
    one_tick = sum(s == 1 for s in spreads) / len(spreads)
    assert one_tick > 0.7  # spread mostly one tick
    assert all(s >= 1 for s in spreads)  # never crossed or locked
    up_when_bid_heavy = [mv for i, mv in zip(imb_before, moves, strict=True) if i > 0.5]
    up_when_ask_heavy = [mv for i, mv in zip(imb_before, moves, strict=True) if i < -0.5]
    # queue imbalance carries information about the next mid move
    assert sum(up_when_bid_heavy) / len(up_when_bid_heavy) > 0.6
    assert sum(up_when_ask_heavy) / len(up_when_ask_heavy) < 0.4


def test_formatter_round_trips_and_refuses_extra_precision() -> None:
    f = Formatter(0.01, 0.001)
    assert f.px(15001) == "150.01" and f.qty(1234) == "1.234" and f.qty(5) == "0.005"
    assert f.parse_px("150.01") == 15001 and f.parse_px("150.010") == 15001
    assert f.parse_px("150.015") is None and f.parse_qty("0.0001") is None
    with pytest.raises(ValueError):
        f.parse_px("1e3")


def _rebuild(snapshot: dict, diffs: list[dict]) -> tuple[dict, dict, int]:
    """The documented futures procedure; asserts every rule it relies on."""
    last = snapshot["lastUpdateId"]
    bids = {p: q for p, q in snapshot["bids"]}
    asks = {p: q for p, q in snapshot["asks"]}
    applied = 0
    prev_u = None
    for d in diffs:
        if d["u"] < last:
            continue
        if prev_u is None:
            assert d["U"] <= last <= d["u"], (d["U"], last, d["u"])
        else:
            assert d["pu"] == prev_u
        for side, book in (("b", bids), ("a", asks)):
            for p, q in d[side]:
                if float(q) == 0:
                    book.pop(p, None)
                else:
                    book[p] = q
        prev_u = d["u"]
        applied += 1
    return bids, asks, applied


@pytest.mark.parametrize("speed", [0, 100, 250, 500])
@pytest.mark.parametrize("gap", [0, 7])
def test_snapshot_plus_diffs_rebuild_the_book_exactly(speed: int, gap: int) -> None:
    m = MarketModel(ModelParams(seed=3, rate_hz=300))
    eng = m.engine
    eng.update_gap = gap
    pub = MarketPublisher(eng, "SOLUSDT", speeds_ms=(speed,))
    name = pub.diff_name(speed)
    diffs: list[dict] = []
    tickers: list[dict] = []
    snapshot = None
    t_end = m.time_ns + 20 * 10**9
    while m.time_ns < t_end:
        t = m.next_event_ns()
        for msg in pub.due(t // 1_000_000, m.time_ns // 1_000_000):
            if msg.stream == name:
                diffs.append(orjson.loads(msg.payload))
        m.step()
        ch = eng.drain()
        if ch:
            for msg in pub.on_changes(ch, t // 1_000_000, t // 1_000_000):
                if msg.stream == name:
                    diffs.append(orjson.loads(msg.payload))
                elif msg.stream.endswith("bookTicker"):
                    tickers.append(orjson.loads(msg.payload))
        if snapshot is None and m.time_ns > t_end - 15 * 10**9:
            snapshot = pub.snapshot(1000, 0, 0)
    for msg in pub.due(t_end // 1_000_000 + 1000, 0):
        if msg.stream == name:
            diffs.append(orjson.loads(msg.payload))
    bids, asks, applied = _rebuild(snapshot, diffs)
    assert applied > 10
    f = pub.fmt
    assert bids == {f.px(p): f.qty(q) for p, q in eng.depth(BUY, 1000)}
    assert asks == {f.px(p): f.qty(q) for p, q in eng.depth(SELL, 1000)}
    # the chain: every message's pu is the previous message's u, ids strictly increase
    for a, b in itertools.pairwise(diffs):
        assert b["pu"] == a["u"] and b["U"] > a["u"] and b["u"] >= b["U"]
    # bookTicker ids are transaction ids, increasing
    us = [t["u"] for t in tickers]
    assert us == sorted(us) and len(set(us)) == len(us)
