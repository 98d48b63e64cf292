"""The order-rate limiter stays under the venue's limits in every window; client ids are unique."""

from __future__ import annotations

import pytest

from hftbot.exec.ids import VALID, ClientIds
from hftbot.exec.ratelimit import NS, Limit, RateLimiter, TokenBucket, parse_rate_limits
from hftbot.sim.market import ModelParams
from hftbot.sim.venue import VenueSettings, exchange_info


def test_bucket_refills_with_the_given_clock_and_never_above_capacity():
    b = TokenBucket(10, 2.0, now_ns=0)
    assert all(b.take(1, 0) for _ in range(10)) and not b.take(1, 0)
    assert not b.take(1, NS // 4)  # 0.5 token
    assert b.take(1, NS // 2)  # 1 token after 0.5 s
    assert b.level(100 * NS) == 10  # capped
    assert b.level(50 * NS) == 10  # a clock going back refills nothing and takes nothing


def test_never_more_than_the_budget_in_any_window():
    """Greedy sender against ORDERS 300/10 s at f = 0.8: at most 240 in every 10 s window."""
    lim = RateLimiter([Limit("ORDERS", 10 * NS, 300)], fraction=0.8, burst_fraction=0.5)
    sent = []
    for t in range(0, 60 * NS, NS // 100):  # every 10 ms, as many as it lets through
        while lim.allow(1, 0, t) == "":
            sent.append(t)
    assert len(sent) > 240  # it does send, well past one window's budget over a minute
    j = 0
    for i, t in enumerate(sent):
        while sent[j] <= t - 10 * NS:
            j += 1
        assert i - j + 1 <= 240, f"{i - j + 1} orders within 10 s ending at {t / NS:.2f} s"
    assert sent.count(0) == 120  # the burst: half the budget at once
    assert len(sent) == pytest.approx(120 + 12 * 60, abs=2)  # then (240 − 120) per 10 s


def test_refusal_names_the_limit_and_spends_nothing():
    lim = RateLimiter([Limit("ORDERS", 10 * NS, 20), Limit("REQUEST_WEIGHT", 60 * NS, 200)], fraction=1.0,
                      burst_fraction=0.5, cancel_reserve=0.1)
    for _ in range(10):
        assert lim.allow(1, 0, 0) == ""
    assert lim.allow(1, 0, 0) == "rate_orders"
    assert lim.weight[0].level(0) == 100  # the refused order spent no weight
    # weight: orders keep a reserve of 10 for cancels, cancels may use it
    lim2 = RateLimiter([Limit("REQUEST_WEIGHT", 60 * NS, 200)], fraction=1.0, burst_fraction=0.5,
                       cancel_reserve=0.1)
    assert lim2.allow(0, 90, 0) == ""
    assert lim2.allow(0, 1, 0) == "rate_weight"  # an order would eat into the cancels' reserve
    assert all(lim2.allow(0, 1, 0, cancel=True) == "" for _ in range(10))
    assert lim2.allow(0, 1, 0, cancel=True) == "rate_weight"  # empty: even a cancel waits


def test_limits_read_from_exchange_info_and_learned_from_the_venue():
    info = exchange_info(ModelParams(), VenueSettings(), 0)
    limits = parse_rate_limits(info["rateLimits"])
    assert {(x.kind, x.interval_ns) for x in limits} == {
        ("ORDERS", 10 * NS), ("ORDERS", 60 * NS), ("REQUEST_WEIGHT", 60 * NS)
    }
    lim = RateLimiter(limits, fraction=1.0, burst_fraction=0.5)
    ten_s = next(x for x in limits if x.kind == "ORDERS" and x.interval_ns == 10 * NS)
    lim.learn("ORDERS", 10 * NS, ten_s.limit - 2, now_ns=0)  # another client used all but 2
    assert lim.allow(1, 0, 0) == "" and lim.allow(1, 0, 0) == "" and lim.allow(1, 0, 0) == "rate_orders"
    with pytest.raises(ValueError, match="cannot read"):
        parse_rate_limits([{"rateLimitType": "ORDERS", "interval": "FORTNIGHT", "limit": 1}])


def test_client_ids_unique_within_and_across_runs_and_valid_for_binance():
    a = ClientIds(start_ns=1_767_225_600_000_000_000)
    b = ClientIds(start_ns=1_767_225_600_000_000_001)  # a restart one nanosecond later
    ids_a = {a.next() for _ in range(5000)}
    ids_b = {b.next() for _ in range(5000)}
    assert len(ids_a) == 5000 and len(ids_b) == 5000 and not ids_a & ids_b
    assert all(VALID.match(i) and len(i) <= 36 for i in ids_a | ids_b)
    assert a.owns(next(iter(ids_a))) and not a.owns(next(iter(ids_b)))
    salted = ClientIds(start_ns=1_767_225_600_000_000_000, salt="x7")
    assert salted.next() != ClientIds(start_ns=1_767_225_600_000_000_000).next()
    with pytest.raises(ValueError, match="leave 6 of 36"):
        ClientIds(start_ns=1, salt="s" * 30)
    with pytest.raises(ValueError, match=r"must use"):
        ClientIds(start_ns=1, salt="bad id")


def test_a_burst_share_of_one_would_never_refill_and_is_refused():
    with pytest.raises(ValueError, match=r"burst_fraction in \(0, 1\)"):
        RateLimiter(burst_fraction=1.0)
