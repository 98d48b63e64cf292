"""The status panel's book, signal and latency lines: what a person reads, within 80 columns."""

from __future__ import annotations

import numpy as np

from hftbot.records import BOOK_VALID, SIGNAL_DTYPE, SIGNAL_NO_MODEL, SIGNAL_WARMUP, book_dtype
from hftbot.run import PANEL_WIDTH, book_line, latency_lines, signal_line

NOW_NS = 1_764_650_000_000_000_000


def book(bid: int, ask: int, bid_qty: int = 732, ask_qty: int = 14205, tick: float = 0.01) -> np.void:
    rec = np.zeros((), dtype=book_dtype(10))
    rec["tick"], rec["lot"], rec["flags"] = tick, 0.01, BOOK_VALID
    rec["bid_px"][0], rec["ask_px"][0] = bid, ask
    rec["bid_qty"][0], rec["ask_qty"][0] = bid_qty, ask_qty
    rec["recv_ns"] = NOW_NS - 300_000_000
    return rec


def signal(p: tuple[float, float, float], model_id: int = 7483597342001116569, flags: int = 0) -> np.void:
    rec = np.zeros((), dtype=SIGNAL_DTYPE)
    rec["p_down"], rec["p_flat"], rec["p_up"] = p
    rec["model_id"], rec["flags"] = model_id, flags
    return rec


def test_book_line_shows_best_bid_ask_sizes_spread_and_age_in_the_ticks_decimals() -> None:
    line = book_line(book(14992, 14993), NOW_NS)
    assert line.startswith("book    149.92 x 7.32 / 149.93 x 142.05")
    assert "spread 1 tick 0.67 bps" in line and "age 0.3s" in line
    assert len(line) <= PANEL_WIDTH
    assert "149.925" in book_line(book(149925, 149930, tick=0.001), NOW_NS)  # three decimals for 0.001
    assert "no synced book" in book_line(None, NOW_NS)
    assert "one side empty" in book_line(book(0, 14993), NOW_NS)


def test_signal_line_shows_the_three_probabilities_and_the_model_id() -> None:
    line = signal_line(signal((0.488, 0.367, 0.145)))
    assert line == "signal  down 0.488 flat 0.367 up 0.145  model 7483597342001116569"
    assert len(signal_line(signal((0.1, 0.2, 0.7), model_id=-(2**63)))) <= PANEL_WIDTH
    assert signal_line(signal((0.2, 0.5, 0.3), flags=SIGNAL_WARMUP)).endswith("WARMUP")
    assert "NO MODEL" in signal_line(signal((np.nan,) * 3, model_id=0, flags=SIGNAL_NO_MODEL))
    assert "none yet" in signal_line(None)


def test_latency_lines_fold_at_80_columns_and_keep_every_figure() -> None:
    lat = {k: {"n": 10, "p50": 1234.5, "p99": 56789.1, "p99.9": 99999.0}
           for k in ("feed_us", "inference_us", "tick_to_signal_us", "tick_to_order_us", "read_to_order_us")}
    lines = latency_lines(lat)
    assert len(lines) >= 2 and all(len(x) <= PANEL_WIDTH for x in lines)
    text = " ".join(lines)
    for label in ("feed", "infer", "tick>signal", "tick>order", "read>order"):
        assert f"{label} 1234/56789" in text  # p50/p99 in µs, rounded
    assert latency_lines({}) == []
