"""Model features from book records: one definition for training and for live inference.

A feature row is one book record turned into 4·N floats in DeepLOB's order — for each level i
(best first): ask_px_i, ask_qty_i, bid_px_i, bid_qty_i — then z-scored with statistics frozen in
the checkpoint (`FeatureSpec.mean`, `FeatureSpec.std`):

- prices are basis points from a reference mid: the previous usable record's mid (`price_ref =
  "prev_mid"`, default: the row then carries the mid's last move as well as the book's shape) or
  the record's own mid (`"mid"`: shape only). The first row of a segment uses its own mid;
- sizes are log1p(quantity in base units);
- an empty level (price 0) repeats the last non-empty price of its side with size 0.

A row depends only on its record and the previous usable record, never on the window it sits in,
so rows computed once can be cached (`hftbot.model.streaming`) and a window is just the last W
rows. A record that is not usable — `flags` lacks BOOK_VALID, a side is empty, or the book is
crossed — ends the segment: the window restarts empty. BOOK_RESYNC also restarts it (the book
before it is not continuous with the one after).

`rows_from_records` (offline, an array at once) and `OnlineWindow` (one record at a time) run the
same numba kernel, so both produce bit-identical rows. This module does no I/O and never looks at
labels or the future.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from hftbot.records import BOOK_RESYNC, BOOK_VALID, book_levels

FEATURE_VERSION = 1
PRICE_REFS = ("prev_mid", "mid")


@dataclass(frozen=True)
class FeatureSpec:
    """What a model's input rows are; stored in every checkpoint and checked at load."""

    levels: int = 10
    window: int = 100
    price_ref: str = "prev_mid"
    mean: tuple[float, ...] = ()  # per column, empty = 0
    std: tuple[float, ...] = ()  # per column, empty = 1
    version: int = FEATURE_VERSION
    columns: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"features: levels must be >= 1, got {self.levels}")
        if self.window < 1:
            raise ValueError(f"features: window must be >= 1, got {self.window}")
        if self.price_ref not in PRICE_REFS:
            raise ValueError(f"features: price_ref must be one of {PRICE_REFS}, got {self.price_ref!r}")
        if self.version != FEATURE_VERSION:
            raise ValueError(f"features: version {self.version} is not the supported {FEATURE_VERSION}")
        n = 4 * self.levels
        for name in ("mean", "std"):
            v = getattr(self, name)
            if len(v) not in (0, n):
                raise ValueError(f"features: {name} needs {n} values (4 x levels), got {len(v)}")
            if not all(math.isfinite(x) for x in v):
                raise ValueError(f"features: {name} has a non-finite value")
        if any(s <= 0 for s in self.std):
            raise ValueError("features: every std must be > 0")
        object.__setattr__(self, "columns", column_names(self.levels))

    @property
    def n_features(self) -> int:
        return 4 * self.levels

    def mean_array(self) -> np.ndarray:
        return np.asarray(self.mean or [0.0] * self.n_features, dtype=np.float64)

    def std_array(self) -> np.ndarray:
        return np.asarray(self.std or [1.0] * self.n_features, dtype=np.float64)

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "levels": self.levels,
            "window": self.window,
            "price_ref": self.price_ref,
            "price_unit": "bps from reference mid",
            "size_transform": "log1p(qty * lot)",
            "columns": list(self.columns),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(
            levels=int(d["levels"]),
            window=int(d["window"]),
            price_ref=str(d["price_ref"]),
            mean=tuple(float(x) for x in d.get("mean", ())),
            std=tuple(float(x) for x in d.get("std", ())),
            version=int(d.get("version", FEATURE_VERSION)),
        )

    def with_stats(self, mean: np.ndarray, std: np.ndarray) -> FeatureSpec:
        return FeatureSpec(self.levels, self.window, self.price_ref, tuple(map(float, mean)),
                           tuple(map(float, std)), self.version)


def column_names(levels: int) -> tuple[str, ...]:
    return tuple(f"{k}_{i}" for i in range(levels) for k in ("ask_px", "ask_qty", "bid_px", "bid_qty"))


@numba.njit(cache=True, nogil=True)
def _rows_kernel(bid_px, bid_qty, ask_px, ask_qty, tick, lot, flags, n_levels, own_mid_ref,
                 mean, inv_std, prev_mid, out, usable):  # pragma: no cover - compiled
    """Rows for records [0, n); returns the reference mid to carry to the next call (0 = none)."""
    n = bid_px.shape[0]
    for r in range(n):
        fl = flags[r]
        b0 = bid_px[r, 0]
        a0 = ask_px[r, 0]
        if (fl & 1) == 0 or b0 <= 0 or a0 <= 0 or a0 <= b0:  # 1 == BOOK_VALID
            usable[r] = False
            prev_mid = 0.0
            for j in range(out.shape[1]):
                out[r, j] = 0.0
            continue
        if (fl & 2) != 0:  # 2 == BOOK_RESYNC: not continuous with what came before
            prev_mid = 0.0
        usable[r] = True
        tk = tick[r]
        lt = lot[r]
        mid = 0.5 * (a0 + b0) * tk
        ref = mid if (own_mid_ref or prev_mid <= 0.0) else prev_mid
        last_a = a0
        last_b = b0
        for i in range(n_levels):
            a = ask_px[r, i]
            b = bid_px[r, i]
            aq = ask_qty[r, i]
            bq = bid_qty[r, i]
            if a <= 0:
                a = last_a
                aq = 0
            if b <= 0:
                b = last_b
                bq = 0
            last_a = a
            last_b = b
            c = 4 * i
            out[r, c] = ((a * tk / ref - 1.0) * 1e4 - mean[c]) * inv_std[c]
            out[r, c + 1] = (math.log1p(aq * lt) - mean[c + 1]) * inv_std[c + 1]
            out[r, c + 2] = ((b * tk / ref - 1.0) * 1e4 - mean[c + 2]) * inv_std[c + 2]
            out[r, c + 3] = (math.log1p(bq * lt) - mean[c + 3]) * inv_std[c + 3]
        prev_mid = mid
    return prev_mid


def _check_levels(records: np.ndarray, spec: FeatureSpec) -> None:
    have = book_levels(records.dtype)
    if have < spec.levels:
        raise ValueError(f"features: the model needs {spec.levels} book levels, the records carry {have}")


def rows_from_records(records: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Offline: (rows float32 (n, 4·levels), usable bool (n,)) for a 1-d array of book records."""
    records = np.atleast_1d(records)
    _check_levels(records, spec)
    n, lv = len(records), spec.levels
    out = np.empty((n, 4 * lv), dtype=np.float32)
    usable = np.empty(n, dtype=np.bool_)
    _rows_kernel(
        np.ascontiguousarray(records["bid_px"][:, :lv]), np.ascontiguousarray(records["bid_qty"][:, :lv]),
        np.ascontiguousarray(records["ask_px"][:, :lv]), np.ascontiguousarray(records["ask_qty"][:, :lv]),
        np.ascontiguousarray(records["tick"], dtype=np.float64),
        np.ascontiguousarray(records["lot"], dtype=np.float64),
        np.ascontiguousarray(records["flags"]), lv, spec.price_ref == "mid",
        spec.mean_array(), 1.0 / spec.std_array(), 0.0, out, usable,
    )
    return out, usable


def window_ends(usable: np.ndarray, window: int, resync: np.ndarray | None = None) -> np.ndarray:
    """Indices i whose window (rows i-window+1 .. i) lies inside one segment of usable rows.

    A segment ends at an unusable row and restarts at a row flagged BOOK_RESYNC (`resync`).
    """
    run = np.zeros(len(usable), dtype=np.int64)  # usable rows since the last break, this one included
    count = 0
    for i, u in enumerate(usable):  # plain loop: offline only, and obviously right
        if resync is not None and resync[i]:
            count = 0
        count = count + 1 if u else 0
        run[i] = count
    return np.flatnonzero(run >= window)


def windows_from_records(records: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Offline batch: (windows (m, W, 4·levels) float32 view, end index (m,)) of every complete window."""
    records = np.atleast_1d(records)
    rows, usable = rows_from_records(records, spec)
    ends = window_ends(usable, spec.window, (records["flags"] & BOOK_RESYNC) != 0)
    if len(ends) == 0:
        return np.empty((0, spec.window, rows.shape[1]), np.float32), ends
    view = np.lib.stride_tricks.sliding_window_view(rows, spec.window, axis=0)  # (n-W+1, F, W)
    return view[ends - spec.window + 1].transpose(0, 2, 1), ends


def fit_normalisation(rows_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per column of un-normalised rows (training data only), std floored at 1e-6."""
    mean = rows_raw.mean(axis=0, dtype=np.float64)
    std = np.maximum(rows_raw.std(axis=0, dtype=np.float64), 1e-6)
    return mean, std


class OnlineWindow:
    """Live: the last W rows, fed one record at a time; a break in the book empties it.

    `rows` is a (2W, F) double buffer: each row is written twice so `window()` is always one
    contiguous slice, whatever the position.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.window_len = spec.window
        f = spec.n_features
        self._buf = np.zeros((2 * spec.window, f), dtype=np.float32)
        self._pos = 0  # next slot in [0, W)
        self.filled = 0  # usable rows since the last break (capped at nothing: a counter)
        self._prev_mid = 0.0
        self._mean = spec.mean_array()
        self._inv_std = 1.0 / spec.std_array()
        self._row = np.zeros((1, f), dtype=np.float32)
        self._usable = np.zeros(1, dtype=np.bool_)
        self.resets = 0

    def reset(self) -> None:
        if self.filled:
            self.resets += 1
        self.filled = 0
        self._prev_mid = 0.0

    def push(self, rec: np.ndarray | np.void) -> bool:
        """Add one book record; returns False (and empties the window) when it is not usable."""
        lv = self.spec.levels
        if rec.dtype["bid_px"].shape[0] < lv:
            raise ValueError(f"features: the model needs {lv} book levels, the record carries "
                             f"{rec.dtype['bid_px'].shape[0]}")
        if int(rec["flags"]) & BOOK_RESYNC:
            self.reset()
        self._prev_mid = _rows_kernel(
            np.asarray(rec["bid_px"])[None, :lv], np.asarray(rec["bid_qty"])[None, :lv],
            np.asarray(rec["ask_px"])[None, :lv], np.asarray(rec["ask_qty"])[None, :lv],
            np.asarray(rec["tick"], dtype=np.float64).reshape(1),
            np.asarray(rec["lot"], dtype=np.float64).reshape(1),
            np.asarray(rec["flags"]).reshape(1), lv, self.spec.price_ref == "mid",
            self._mean, self._inv_std, self._prev_mid, self._row, self._usable,
        )
        if not self._usable[0]:
            self.reset()
            return False
        w = self.window_len
        self._buf[self._pos] = self._row[0]
        self._buf[self._pos + w] = self._row[0]
        self._pos = (self._pos + 1) % w
        self.filled += 1
        return True

    @property
    def full(self) -> bool:
        return self.filled >= self.window_len

    @property
    def last_row(self) -> np.ndarray:
        return self._row[0]

    def window(self) -> np.ndarray:
        """The last W rows, oldest first (a view: copy it to keep it). Only meaningful when `full`."""
        return self._buf[self._pos : self._pos + self.window_len]


__all__ = ["BOOK_VALID", "FEATURE_VERSION", "FeatureSpec", "OnlineWindow", "column_names",
           "fit_normalisation", "rows_from_records", "window_ends", "windows_from_records"]
