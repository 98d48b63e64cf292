"""Labels for the mid-price direction: DeepLOB's smoothed rules, pure numpy over book records.

A label says where the mid goes over the next `horizon` book events (records), from the mid now:

- ``next_vs_mid`` (FI-2010): l_t = (m+(t) − p_t) / p_t;
- ``next_vs_prev`` (DeepLOB's LSE rule): l_t = (m+(t) − m−(t)) / m−(t);

with p_t the mid of record t, m+(t) the mean of the mids of records t+1 .. t+k and m−(t) the mean
of the mids of records t−k+1 .. t (the previous k mids, this one included: the paper's printed
sum runs over k+1 terms but divides by k; we take k terms). Classes: 0 down (l < −α), 1 flat,
2 up (l > α), in the order of `hftbot.model.checkpoint.CLASSES`; α is given in basis points.

A label exists only where every record it reads lies in one *segment* — a run of usable records
(`hftbot.model.features`: BOOK_VALID, both sides present, not crossed) that a BOOK_RESYNC does not
cut — so no label ever spans a gap in the book. Elsewhere the change is NaN and the class −1.

`cost_threshold_bps` ties α to what a trade costs: the taker fee paid both ways plus the
half-spread (crossing it once from the mid), so "up" means "up by more than a round trip costs".

Everything here is pure and deterministic: the trainer, the backtester and the walk-forward all
label with this module, and it never reads files or the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hftbot.records import BOOK_RESYNC, BOOK_VALID

RULES = ("next_vs_mid", "next_vs_prev")
DOWN, FLAT, UP = 0, 1, 2
N_CLASSES = 3
NO_LABEL = -1


@dataclass(frozen=True)
class LabelRule:
    """How a change is measured and cut into classes; written into the checkpoint's `labels`."""

    horizon: int = 50  # k, in book events (records)
    threshold_bps: float = 1.0  # α, basis points of the reference mid
    rule: str = "next_vs_prev"

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"labels: horizon must be >= 1 record, got {self.horizon}")
        if not (self.threshold_bps >= 0 and np.isfinite(self.threshold_bps)):
            raise ValueError(f"labels: threshold_bps must be a finite number >= 0, got {self.threshold_bps}")
        if self.rule not in RULES:
            raise ValueError(f"labels: rule must be one of {RULES}, got {self.rule!r}")

    @property
    def lookback(self) -> int:
        """Records before t (t included) a label reads: k for next_vs_prev, 1 for next_vs_mid."""
        return self.horizon if self.rule == "next_vs_prev" else 1

    def to_dict(self) -> dict:
        return {"classes": ["down", "flat", "up"], "horizon": self.horizon, "horizon_unit": "book events",
                "threshold": self.threshold_bps * 1e-4, "threshold_bps": self.threshold_bps, "rule": self.rule}


def usable_mask(records: np.ndarray) -> np.ndarray:
    """The feature kernel's rule for a usable record (valid, both sides present, not crossed)."""
    b0 = records["bid_px"][:, 0]
    a0 = records["ask_px"][:, 0]
    return ((records["flags"] & BOOK_VALID) != 0) & (b0 > 0) & (a0 > 0) & (a0 > b0)


def mid_prices(records: np.ndarray) -> np.ndarray:
    """Mid price (quote units, float64) of each record; NaN where the record is not usable."""
    mid = 0.5 * (records["bid_px"][:, 0] + records["ask_px"][:, 0]) * records["tick"]
    return np.where(usable_mask(records), mid, np.nan)


def segment_ids(usable: np.ndarray, resync: np.ndarray | None = None) -> np.ndarray:
    """Id of the segment each record belongs to (−1: not usable). A new segment starts after an
    unusable record and at every record flagged BOOK_RESYNC; ids grow with time."""
    usable = np.asarray(usable, dtype=bool)
    n = len(usable)
    start = np.zeros(n, dtype=bool)
    if n:
        start[0] = usable[0]
        start[1:] = usable[1:] & ~usable[:-1]
        if resync is not None:
            start |= usable & np.asarray(resync, dtype=bool)
    seg = np.cumsum(start) - 1
    return np.where(usable, seg, -1).astype(np.int64)


def segments_of(records: np.ndarray) -> np.ndarray:
    return segment_ids(usable_mask(records), (records["flags"] & BOOK_RESYNC) != 0)


def window_ends(seg: np.ndarray, window: int) -> np.ndarray:
    """Indices t whose window t−W+1 .. t lies inside one segment (same as features.window_ends)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    t = np.arange(window - 1, len(seg))
    ok = (seg[t] >= 0) & (seg[t - window + 1] == seg[t])
    return t[ok]


def _window_mean(x: np.ndarray, k: int) -> np.ndarray:
    """mean(x[i .. i+k−1]) at i, for i in 0 .. n−k (float64 cumulative sums; NaN-free input)."""
    c = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    return (c[k:] - c[:-k]) / k


def smoothed_change(mid: np.ndarray, seg: np.ndarray, rule: LabelRule) -> np.ndarray:
    """l_t for every record (float64, NaN where the label would leave t's segment)."""
    k = rule.horizon
    n = len(mid)
    out = np.full(n, np.nan)
    if n <= k:
        return out
    filled = np.where(seg >= 0, mid, 0.0)  # NaN-free for the sums; such positions are masked below
    ahead = _window_mean(filled, k)  # ahead[i] = mean(mid[i .. i+k−1])
    t = np.arange(n - k)
    ok = (seg[t] >= 0) & (seg[t + k] == seg[t])
    if rule.rule == "next_vs_mid":
        ref = mid[t]
    else:
        ok &= t >= k - 1
        ok[ok] &= seg[t[ok] - k + 1] == seg[t[ok]]
        ref = np.full(len(t), np.nan)  # no k previous mids before t = k−1
        if len(t) > k - 1:  # a short piece (k < n < 2k) has none at all
            ref[k - 1 :] = ahead[: len(t) - (k - 1)]  # mean(mid[t−k+1 .. t])
    m_plus = ahead[t + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        change = (m_plus - ref) / ref
    out[t] = np.where(ok, change, np.nan)
    return out


def classify(change: np.ndarray, threshold_bps: float) -> np.ndarray:
    """0 down / 1 flat / 2 up at ±α (bps); −1 where the change is NaN."""
    a = threshold_bps * 1e-4
    out = np.full(change.shape, FLAT, dtype=np.int8)
    out[change > a] = UP
    out[change < -a] = DOWN
    out[np.isnan(change)] = NO_LABEL
    return out


def labels_for(records: np.ndarray, rule: LabelRule) -> np.ndarray:
    """Class per record of a contiguous array of book records (−1 where there is none)."""
    return classify(smoothed_change(mid_prices(records), segments_of(records), rule), rule.threshold_bps)


def half_spread_bps(records: np.ndarray) -> float:
    """Median half-spread of the usable records, in basis points of the mid."""
    u = usable_mask(records)
    if not u.any():
        raise ValueError("labels: no usable book record to measure the spread on")
    b = records["bid_px"][u, 0].astype(np.float64)
    a = records["ask_px"][u, 0].astype(np.float64)
    return float(np.median((a - b) / (a + b) * 1e4))


def cost_threshold_bps(taker_fee: float, half_spread: float) -> float:
    """α that a move must clear to pay for a taker round trip: 2 × fee (fraction) + half-spread (bps)."""
    if taker_fee < 0 or half_spread < 0:
        raise ValueError(f"labels: fee and half-spread must be >= 0, got {taker_fee}, {half_spread}")
    return 2 * taker_fee * 1e4 + half_spread


def class_counts(labels: np.ndarray) -> np.ndarray:
    """Windows per class (down, flat, up); labels −1 are not counted."""
    lab = np.asarray(labels)
    return np.bincount(lab[lab >= 0].astype(np.int64), minlength=N_CLASSES)[:N_CLASSES]


def class_weights(counts: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights, normalised so the weighted mean over the data is 1; an empty
    class gets weight 0 (it cannot be learnt from this data)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        raise ValueError("labels: no labelled window to weight")
    present = c > 0
    w = np.zeros_like(c)
    w[present] = total / (present.sum() * c[present])
    return w


def balance_text(counts: np.ndarray) -> str:
    """'down 31.0% (1,234)  flat ...' for logs and the trainer's report."""
    c = np.asarray(counts)
    total = max(int(c.sum()), 1)
    return "  ".join(f"{name} {100 * n / total:.1f}% ({int(n):,})" for name, n in zip(("down", "flat", "up"), c,
                                                                                  strict=True))
