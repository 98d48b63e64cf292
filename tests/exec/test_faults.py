"""The fault table, the fault report, and what the risk manager does about faults (pure logic)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hftbot.exec.faults import ACTIONS, CODES, DEAD, INDEX, KINDS, FaultLog, classify
from hftbot.exec.journal import Journal, fault_report, last_status
from hftbot.exec.positions import Positions
from hftbot.exec.ratelimit import NS, Limit, RateLimiter, usage_from_headers
from hftbot.exec.status import ExecMonitor
from hftbot.ipc.ring import Ring
from hftbot.ipc.shm import segment_name, unlink_segment
from hftbot.records import EXEC_STATUS_DTYPE, MAX_FAULT_KINDS
from tests.exec.helpers import MS, book, fill, signal
from tests.exec.test_risk import NOW, buy, make, refused, sell


@pytest.mark.parametrize(
    ("status", "code", "request_", "kind"),
    [
        (503, -1000, "place", "unknown_outcome"),  # "Unknown error": it may have executed
        (503, 0, "modify", "unknown_outcome"),
        (500, -1006, "place", "unknown_outcome"),
        (408, -1007, "cancel", "unknown_outcome"),
        (400, -1021, "place", "timestamp"),
        (400, -5028, "place", "timestamp"),
        (429, -1015, "place", "rate_limit"),
        (429, -1003, "cancel", "rate_limit"),
        (418, -1003, "place", "rate_limit"),  # the IP ban
        (503, -1008, "place", "rate_limit"),  # throttled: a definite failure, back off
        (400, -2019, "place", "margin"),
        (400, -5022, "place", "post_only"),
        (400, -4164, "place", "min_notional"),
        (400, -1111, "place", "precision"),
        (400, -4014, "modify", "precision"),
        (400, -2011, "cancel", "unknown_order"),
        (400, -2013, "modify", "unknown_order"),
        (400, -2013, "place", "rejected"),  # a query's -2013 is the settle logic's, not the table's
        (400, -1125, "sync", "listen_key"),
        (400, -2022, "place", "rejected"),
        (400, -4116, "place", "rejected"),
    ],
)
def test_every_refusal_maps_to_one_kind(status, code, request_, kind) -> None:
    assert classify(status, code, request_) == kind


def test_the_table_is_complete_and_fits_the_status_record() -> None:
    assert set(ACTIONS) == set(KINDS) and len(set(KINDS)) == len(KINDS) <= MAX_FAULT_KINDS
    assert set(CODES.values()) <= set(KINDS) and set(KINDS) >= DEAD
    assert [INDEX[k] for k in KINDS] == list(range(len(KINDS)))
    assert ACTIONS["precision"] == "halt" and ACTIONS["unknown_outcome"] == "settle"
    assert ACTIONS["timestamp"] == "resync_retry" and ACTIONS["rate_limit"] == "backoff"


def test_fault_log_counts_episodes_and_recovery_times() -> None:
    f = FaultLog()
    assert f.observe("unknown_outcome", 0, "a") and not f.observe("unknown_outcome", 5 * MS, "a")
    assert f.observe("unknown_outcome", 1 * MS, "b")
    assert f.open_count("unknown_outcome") == 2 and f.is_open("unknown_outcome", "a")
    assert f.recover("unknown_outcome", 10 * MS, "a") == 10.0
    assert f.recover("unknown_outcome", 10 * MS, "a") is None  # closed already
    f.fail("unknown_outcome", "b")
    f.event("duplicate_fill", 3)
    s = f.summary()
    assert s["unknown_outcome"] == {
        "count": 3, "recovered": 1, "failed": 1, "open": 0, "action": "settle",
        "recovery_ms": {"p50": 10.0, "max": 10.0},
    }
    assert s["duplicate_fill"]["count"] == 3 == s["duplicate_fill"]["recovered"]
    assert "timestamp" not in s and math.isnan(f.p50_ms("timestamp"))
    f.seed({"restart": 2, "nonsense": 9}, {"restart": 2})
    assert f.counts["restart"] == 2 and f.recovered["restart"] == 2


def test_fault_report_travels_through_the_status_ring_and_survives_a_restart() -> None:
    name = segment_name("fault-status-test")
    ring = Ring.create(name, EXEC_STATUS_DTYPE, 64)
    try:
        j = Journal(None, ring, 0.01, 0.01)
        assert j.previous is None  # nothing published yet: a first run
        f = FaultLog()
        f.observe("timestamp", 0, "x")
        f.recover("timestamp", 7 * MS, "x")
        f.observe("unknown_outcome", 0, "y")  # still open
        risk, pos = make()
        mon = ExecMonitor({"exec": Ring.attach(name)})  # the supervisor's reader: from the next record
        j.publish_status(pos, risk, 0, 0, 0, 0, 15000.5, f)
        mon.poll()
        faults = mon.summary()["faults"]
        assert faults["timestamp"]["recovery_ms"] == {"p50": 7.0, "max": 7.0}
        assert faults["unknown_outcome"]["open"] == 1 and faults["unknown_outcome"]["recovery_ms"]["p50"] is None
        assert any(line == "faults unknown 1 ts 1" for line in mon.panel_lines())
        assert all(len(line) <= 80 for line in mon.panel_lines())
        assert any("timestamp" in line and "resync_retry" in line for line in mon.print_lines())
        mon.close()
        again = Journal(None, ring, 0.01, 0.01)  # the restarted process reads its predecessor's report
        report = fault_report(again.previous)
        assert report["counts"]["timestamp"] == 1 == report["recovered"]["timestamp"]
        assert report["counts"]["unknown_outcome"] == 1 and report["max_ms"]["timestamp"] == 7.0
        carried = FaultLog()
        carried.seed(**report)
        carried.observe("timestamp", 0, "z")
        carried.recover("timestamp", 9 * MS, "z")
        assert carried.counts["timestamp"] == 2 and carried.max_ms["timestamp"] == 9.0
        assert carried.p50_ms("timestamp") == 8.0  # the earlier run's median stands for its one recovery
        assert last_status(ring)["fault_count"][INDEX["timestamp"]] == 1
    finally:
        ring.close()
        unlink_segment(name)


def test_limiter_learns_the_venues_counts_and_limits() -> None:
    lim = RateLimiter([Limit("ORDERS", 10 * NS, 300), Limit("REQUEST_WEIGHT", 60 * NS, 2400)], fraction=0.8)
    assert lim.orders[0].level(0) == 120  # burst half of 240
    answer = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400, "count": 100},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300, "count": 230},
    ]
    lim.learn_from(answer, 0)
    assert lim.orders[0].level(0) == pytest.approx(10)  # 240 − 230: another client used the account's orders
    assert sum(lim.allow(1, 0, 0) == "" for _ in range(20)) == 10
    # the venue says this account's limit is smaller: adopted (and the count applied)
    lim.learn_from([{**answer[1], "limit": 50, "count": 0}], 0)
    assert [x.limit for x in lim.limits if x.kind == "ORDERS"] == [50] and lim.orders[0].capacity == 20
    # REST headers
    used = usage_from_headers({"X-MBX-USED-WEIGHT-1M": "2000", "x-mbx-order-count-10s": "3", "X-MBX-WHATEVER": "1",
                               "X-MBX-USED-WEIGHT-XM": "7"})
    assert sorted(used) == [("ORDERS", 10 * NS, 3), ("REQUEST_WEIGHT", 60 * NS, 2000)]
    for kind, interval, n in used:
        lim.learn(kind, interval, n, 0)
    assert lim.weight[0].level(0) == pytest.approx(2400 * 0.8 - 2000) and lim.learned >= 4


def test_backoff_refuses_until_the_venues_retry_time() -> None:
    lim = RateLimiter([Limit("ORDERS", 10 * NS, 300), Limit("REQUEST_WEIGHT", 60 * NS, 2400)])
    lim.pause(5 * NS)
    assert lim.allow(1, 0, NS) == "backoff" and lim.allow(0, 1, NS, cancel=True) == ""  # cancels still go
    assert lim.allow(1, 0, 5 * NS) == ""
    lim.pause(9 * NS, weight=True)  # the weight limit or a ban: every request waits
    assert lim.allow(0, 1, 6 * NS, cancel=True) == "backoff" and lim.allow(0, 1, 9 * NS, cancel=True) == ""


def test_risk_backoff_uses_the_venue_time_or_doubles_its_own() -> None:
    risk, _ = make()
    b = book(recv_ns=NOW)
    assert risk.backoff(NOW, NOW + 3 * NS) == NOW + 3 * NS
    assert refused(risk.check(buy(), b, NOW + NS), "backoff")
    assert risk.check(buy(), book(recv_ns=NOW + 3 * NS), NOW + 3 * NS).client_id
    # no retry time: rate_backoff_ms (1 s), doubling on repeats within a minute
    first = risk.backoff(100 * NS, 0) - 100 * NS  # over a minute after the last one: a new streak
    second = risk.backoff(101 * NS, 0) - 101 * NS
    assert (first, second) == (NS, 2 * NS)
    assert risk.backoff(300 * NS, 0) - 300 * NS == NS


def test_reconciling_holds_everything_margin_holds_entries_only() -> None:
    risk, pos = make()
    b = book(recv_ns=NOW)
    risk.hold("reconciling")
    assert refused(risk.check(buy(), b, NOW), "reconciling")
    risk.release("reconciling")
    r = risk.check(buy(), b, NOW)
    assert r.client_id
    pos.on_fill(fill(1, 100, 15000, trade_id=1, client_id=r.client_id))
    risk.hold("margin", NOW + 5 * NS, entries_only=True)
    assert refused(risk.check(buy(), b, NOW), "margin")  # would grow the position
    assert risk.check(sell(100), b, NOW).client_id  # an exit goes on
    assert risk.check(buy(), book(recv_ns=NOW + 5 * NS), NOW + 5 * NS).client_id  # the hold ran out
    assert risk.refusals["reconciling"] == 1 and risk.refusals["margin"] == 1
    with pytest.raises(ValueError, match="not one of REASONS"):
        risk.hold("coffee")


def test_book_and_signal_problems_name_the_reason() -> None:
    risk, _ = make(needs_signal=True)
    assert risk.book_problem(None, NOW) == "invalid_book"
    assert risk.book_problem(book(recv_ns=NOW), NOW + 3000 * MS) == "stale_book"
    assert risk.book_problem(book(recv_ns=NOW), NOW) == ""
    assert "old" in risk.signal_problem(signal(0.1, 0.1, 0.8, publish_ns=NOW), NOW + 2000 * MS)
    assert risk.signal_problem(signal(0.1, 0.1, 0.8, publish_ns=NOW), NOW) == ""


def test_positions_still_count_an_unknown_order_on_both_limits() -> None:
    """Until settled, an UNKNOWN order counts as open: position limit and open-order limit."""
    risk, pos = make(max_position=1.0, max_open_orders=2)  # 100 lots
    b = book(recv_ns=NOW)
    r = risk.check(buy(100), b, NOW)
    pos.set_status(r.client_id, "UNKNOWN")
    assert refused(risk.check(buy(1), b, NOW), "max_position")
    assert isinstance(pos, Positions) and pos.open_lots() == (100, 0)
    assert risk.check(sell(50), b, NOW).client_id  # the other side has room
    assert refused(risk.check(sell(10), b, NOW), "max_open_orders")


def test_status_record_fault_slots_are_zero_by_default() -> None:
    rec = np.zeros((), EXEC_STATUS_DTYPE)
    assert rec["fault_count"].shape == (MAX_FAULT_KINDS,)
    assert ExecMonitor({}).summary() == {}
