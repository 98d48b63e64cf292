"""`bench e2e`'s breakdown: tick-to-order split into stages from the records' own stamps (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from hftbot.bench.e2e import breakdown
from hftbot.records import ORDER_DTYPE, ORDER_FILL, ORDER_MODIFY, ORDER_PLACE, SIGNAL_DTYPE, book_dtype

US = 1_000


def books(*rows: tuple[int, int, int]) -> np.ndarray:
    b = np.zeros(len(rows), dtype=book_dtype(10))
    for i, (seq, recv, pub) in enumerate(rows):
        b[i]["seq"], b[i]["recv_ns"], b[i]["publish_ns"] = seq, recv, pub
    return b


def test_a_signal_order_splits_into_six_stages_that_add_up_to_its_tick_to_order() -> None:
    b = books((1, 1000 * US, 1050 * US))
    s = np.zeros(1, dtype=SIGNAL_DTYPE)
    s[0]["seq"], s[0]["book_seq"], s[0]["book_recv_ns"], s[0]["model_id"] = 7, 1, 1000 * US, 42
    s[0]["infer_start_ns"], s[0]["infer_end_ns"], s[0]["publish_ns"] = 1150 * US, 1550 * US, 1560 * US
    o = np.zeros(3, dtype=ORDER_DTYPE)
    o[0]["kind"], o[0]["signal_seq"], o[0]["book_recv_ns"] = ORDER_PLACE, 7, 1000 * US
    o[0]["read_ns"], o[0]["approve_ns"], o[0]["send_ns"] = 1700 * US, 1720 * US, 1800 * US
    o[1]["kind"], o[1]["send_ns"], o[1]["book_recv_ns"] = ORDER_FILL, 2000 * US, 1000 * US  # not an order sent
    o[2]["kind"], o[2]["send_ns"], o[2]["book_recv_ns"] = ORDER_PLACE, 9000 * US, 1000 * US  # a timer's: no read
    out = breakdown(b, s, o)
    assert out["tick_to_order_us"]["n"] == 1 and out["tick_to_order_us"]["p50"] == pytest.approx(800.0)
    assert out["untriggered"] == 1 and out["unmatched"] == 0
    st = out["signal_path"]["stages_us"]
    want = {"feed": 50, "ring_to_inference": 100, "inference": 400, "ring_to_execution": 150,
            "strategy_risk": 20, "send": 80}
    assert {k: v["p50"] for k, v in st.items()} == pytest.approx(want)
    assert sum(v["share"] for v in st.values()) == pytest.approx(1.0, abs=1e-3)
    assert out["signal_path"]["total_us"]["p50"] == pytest.approx(800.0)
    assert out["every_signal"]["stages_us"]["inference"]["p50"] == pytest.approx(400.0)
    assert "book_path" not in out


def test_a_book_order_splits_into_four_stages_and_an_unknown_record_is_counted() -> None:
    b = books((1, 1000 * US, 1040 * US), (2, 2000 * US, 2030 * US))
    o = np.zeros(2, dtype=ORDER_DTYPE)
    o[0]["kind"], o[0]["book_recv_ns"] = ORDER_MODIFY, 2000 * US
    o[0]["read_ns"], o[0]["approve_ns"], o[0]["send_ns"] = 2100 * US, 2110 * US, 2300 * US
    o[1]["kind"], o[1]["book_recv_ns"] = ORDER_PLACE, 500 * US  # its book is not among the records
    o[1]["read_ns"], o[1]["approve_ns"], o[1]["send_ns"] = 600 * US, 610 * US, 700 * US
    out = breakdown(b, np.zeros(0, dtype=SIGNAL_DTYPE), o)
    assert out["tick_to_order_us"]["n"] == 2 and out["unmatched"] == 1
    st = out["book_path"]["stages_us"]
    assert {k: v["p50"] for k, v in st.items()} == pytest.approx(
        {"feed": 30, "ring_to_execution": 70, "strategy_risk": 10, "send": 190})
    assert out["book_path"]["n"] == 1 and "signal_path" not in out


def test_execution_policy_names_the_scheduling_of_a_live_pid_and_nothing_for_a_gone_one() -> None:
    import os
    import subprocess
    import sys

    from hftbot.bench.e2e import execution_policy

    own = execution_policy(os.getpid())
    assert own["policy"] == "SCHED_OTHER" and own["realtime"] is False and own["priority"] == 0
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no thread now
    assert execution_policy(child.pid) == {}
