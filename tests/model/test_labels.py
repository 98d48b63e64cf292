"""Labels on hand-made mid series: both DeepLOB rules, segments, thresholds, the cost tie-in."""

from __future__ import annotations

import numpy as np
import pytest

from hftbot.model.features import FeatureSpec, rows_from_records
from hftbot.model.features import window_ends as features_window_ends
from hftbot.model.labels import (
    DOWN,
    FLAT,
    NO_LABEL,
    UP,
    LabelRule,
    class_counts,
    class_weights,
    classify,
    cost_threshold_bps,
    half_spread_bps,
    labels_for,
    mid_prices,
    segment_ids,
    segments_of,
    smoothed_change,
    usable_mask,
    window_ends,
)
from hftbot.records import BOOK_RESYNC, BOOK_VALID, book_dtype


def books(mid_ticks, flags=None, tick=0.01, spread_ticks=2) -> np.ndarray:
    """One-level books whose mid is mid_ticks × tick (bid and ask spread/2 ticks either side)."""
    n = len(mid_ticks)
    r = np.zeros(n, dtype=book_dtype(1))
    r["tick"] = tick
    r["lot"] = 1.0
    half = spread_ticks // 2
    r["bid_px"][:, 0] = np.asarray(mid_ticks) - half
    r["ask_px"][:, 0] = np.asarray(mid_ticks) + spread_ticks - half
    r["bid_qty"] = r["ask_qty"] = 5
    r["flags"] = BOOK_VALID if flags is None else flags
    return r


def test_next_vs_mid_is_the_mean_of_the_next_k_mids_against_this_mid():
    mids = np.array([100, 100, 102, 104, 100, 100, 100], dtype=np.int64) * 100
    rec = books(mids)
    rule = LabelRule(horizon=2, threshold_bps=0, rule="next_vs_mid")
    ch = smoothed_change(mid_prices(rec), segments_of(rec), rule)
    m = mids.astype(float)
    for t in range(5):
        assert ch[t] == pytest.approx((m[t + 1 : t + 3].mean() - m[t]) / m[t])
    assert np.isnan(ch[5:]).all()  # no k future mids left
    assert list(classify(ch, 0)[:5]) == [UP, UP, FLAT, DOWN, FLAT]  # 102 vs mean(104, 100) is flat


def test_next_vs_prev_compares_the_next_k_with_the_previous_k_mids():
    mids = np.array([100, 101, 102, 103, 103, 103, 99, 99], dtype=np.int64) * 100
    rec = books(mids)
    k = 3
    ch = smoothed_change(mid_prices(rec), segments_of(rec), LabelRule(k, 0, "next_vs_prev"))
    m = mids.astype(float)
    assert np.isnan(ch[: k - 1]).all()  # no k previous mids yet
    for t in range(k - 1, len(m) - k):
        prev = m[t - k + 1 : t + 1].mean()
        assert ch[t] == pytest.approx((m[t + 1 : t + 1 + k].mean() - prev) / prev)
    assert np.isnan(ch[len(m) - k :]).all()


def test_every_length_of_series_gets_the_definition_short_ones_too():
    """A piece of k+1 .. 2k−1 records (a part clipped by the split's gap near a file's end) once
    raised a numpy broadcast error; each length gets the brute-force definition, NaN where it has no
    k previous or next mids."""
    k = 4
    m_all = (10_000 + np.cumsum(np.random.default_rng(3).integers(-2, 3, 3 * k + 2))).astype(np.int64)
    for rule in ("next_vs_prev", "next_vs_mid"):
        for n in range(1, len(m_all) + 1):
            rec = books(m_all[:n])
            ch = smoothed_change(mid_prices(rec), segments_of(rec), LabelRule(k, 0, rule))
            m = mid_prices(rec)
            want = np.full(n, np.nan)
            for t in range(n - k):
                if rule == "next_vs_mid":
                    ref = m[t]
                elif t >= k - 1:
                    ref = m[t - k + 1 : t + 1].mean()
                else:
                    continue
                want[t] = (m[t + 1 : t + 1 + k].mean() - ref) / ref
            assert np.allclose(ch, want, equal_nan=True, rtol=1e-9, atol=1e-15), (rule, n)


def test_threshold_in_basis_points_cuts_the_classes():
    ch = np.array([0.00021, 0.0002, -0.00019, -0.00021, np.nan])
    assert list(classify(ch, 2.0)) == [UP, FLAT, FLAT, DOWN, NO_LABEL]


def test_no_label_spans_a_gap_or_a_resync():
    mids = np.full(12, 10_000, dtype=np.int64)
    flags = np.full(12, BOOK_VALID)
    flags[5] = 0  # resync marker: not usable
    flags[8] = BOOK_VALID | BOOK_RESYNC  # a new segment starts here
    rec = books(mids, flags)
    rule = LabelRule(2, 0, "next_vs_mid")
    lab = labels_for(rec, rule)
    # t reads t .. t+2: t=3,4 reach the marker; 5 is it; t=6,7 reach the resync at 8
    assert list(lab) == [FLAT, FLAT, FLAT, NO_LABEL, NO_LABEL, NO_LABEL, NO_LABEL, NO_LABEL,
                         FLAT, FLAT, NO_LABEL, NO_LABEL]
    lab_prev = labels_for(rec, LabelRule(2, 0, "next_vs_prev"))
    assert lab_prev[8] == NO_LABEL  # its previous mid is across the resync
    assert lab_prev[9] == FLAT


def test_segments_and_window_ends_agree_with_the_feature_module():
    rng = np.random.default_rng(3)
    for _ in range(20):
        usable = rng.random(300) > 0.05
        resync = rng.random(300) > 0.97
        seg = segment_ids(usable, resync)
        for w in (1, 5, 23):
            assert np.array_equal(window_ends(seg, w), features_window_ends(usable, w, resync))


def test_usable_mask_is_the_feature_kernels_rule(real_books):
    rec = real_books.copy()
    rec["flags"][::97] = 0
    rec["ask_px"][5::89, 0] = rec["bid_px"][5::89, 0]  # locked
    rec["bid_px"][7::101, 0] = 0  # empty side
    _, usable = rows_from_records(rec, FeatureSpec(levels=10, window=10))
    assert np.array_equal(usable_mask(rec), usable)
    assert not usable.all()


def test_cost_threshold_is_taker_fee_both_ways_plus_the_half_spread():
    rec = books(np.full(9, 15_000, dtype=np.int64), spread_ticks=2)  # 150.00, spread 0.02
    hs = half_spread_bps(rec)
    assert hs == pytest.approx(0.01 / 150.0 * 1e4)
    assert cost_threshold_bps(0.0005, hs) == pytest.approx(10.0 + hs)
    with pytest.raises(ValueError, match="no usable"):
        half_spread_bps(books(np.full(3, 100, dtype=np.int64), flags=np.zeros(3, dtype=np.int64)))


def test_class_weights_balance_the_classes():
    counts = class_counts(np.array([0, 1, 1, 1, 1, 1, 2, 2, -1], dtype=np.int8))
    assert list(counts) == [1, 5, 2]
    w = class_weights(counts)
    assert (w * counts).sum() == pytest.approx(counts.sum())  # weighted mean 1
    assert w[0] * counts[0] == pytest.approx(w[1] * counts[1]) == pytest.approx(w[2] * counts[2])
    assert class_weights(np.array([0, 4, 4]))[0] == 0.0


def test_rule_refuses_bad_values():
    with pytest.raises(ValueError, match="horizon"):
        LabelRule(0, 1.0)
    with pytest.raises(ValueError, match="threshold"):
        LabelRule(10, -1.0)
    with pytest.raises(ValueError, match="rule"):
        LabelRule(10, 1.0, "sideways")
