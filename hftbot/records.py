"""Every record that crosses a process boundary, defined once.

Each record is a numpy structured dtype with a fixed size, so it can live in a shared-memory ring
(`hftbot.ipc.ring`) and be written to Parquet column by column. Prices are integer ticks and
quantities integer lots (exact comparisons, no float keys); every book and trade record carries
its own `tick` and `lot` so a reader converts to floats without asking anyone. Clock fields say
their unit in their name: `_ms` exchange milliseconds, `_ns` local `time.time_ns()` nanoseconds.

Nothing here does I/O. Change a layout here and every process, test and file writer follows.
"""

from __future__ import annotations

from functools import cache

import numpy as np

# Book record flags.
BOOK_VALID = 1  # the book is in sync; a record without it is a "resync in progress" marker
BOOK_RESYNC = 2  # first valid record after a (re)sync: the window before it is not continuous
BOOK_REPLAY = 4  # produced by replaying a recording, not from a live socket

# Signal record flags.
SIGNAL_NO_MODEL = 1  # no usable checkpoint: probabilities are NaN, execution must not act
SIGNAL_WARMUP = 2  # the window is not full yet (after start or a resync): do not act
SIGNAL_NONFINITE = 4  # the model's output was NaN/inf (probabilities NaN): do not act

DEFAULT_LEVELS = 10

_HEADER = [
    ("seq", "<i8"),  # ring sequence number, set by the ring writer (1, 2, 3, ...)
]


@cache
def book_dtype(levels: int = DEFAULT_LEVELS) -> np.dtype:
    """Top-N book snapshot published after every applied depth event."""
    if levels < 1:
        raise ValueError(f"book levels must be >= 1, got {levels}")
    return np.dtype(
        _HEADER
        + [
            ("event_ms", "<i8"),  # exchange event time `E`
            ("txn_ms", "<i8"),  # exchange transaction time `T`
            ("recv_ns", "<i8"),  # local receive time of the message that produced this book
            ("publish_ns", "<i8"),  # when this record was written into the ring
            ("update_id", "<i8"),  # last applied update id `u`
            ("flags", "<i8"),  # BOOK_* bits
            ("tick", "<f8"),  # price = px * tick
            ("lot", "<f8"),  # quantity = qty * lot
            ("bid_px", "<i8", (levels,)),  # best first; 0 where the level is empty
            ("bid_qty", "<i8", (levels,)),
            ("ask_px", "<i8", (levels,)),
            ("ask_qty", "<i8", (levels,)),
        ],
        align=False,
    )


TRADE_DTYPE = np.dtype(
    _HEADER
    + [
        ("event_ms", "<i8"),
        ("trade_ms", "<i8"),  # `T`
        ("recv_ns", "<i8"),
        ("publish_ns", "<i8"),
        ("trade_id", "<i8"),  # aggregate trade id `a` (or trade id `t`)
        ("px", "<i8"),
        ("qty", "<i8"),
        ("buyer_is_maker", "<i8"),  # 1: the taker sold
        ("tick", "<f8"),
        ("lot", "<f8"),
    ]
)

SIGNAL_DTYPE = np.dtype(
    _HEADER
    + [
        ("book_seq", "<i8"),  # the book record this signal was computed from
        ("book_recv_ns", "<i8"),  # that book's local receive time (tick-to-signal latency)
        ("model_id", "<i8"),  # 0 = no model; else the checkpoint's id (see hftbot.model.checkpoint)
        ("flags", "<i8"),  # SIGNAL_* bits
        ("p_down", "<f4"),
        ("p_flat", "<f4"),
        ("p_up", "<f4"),
        ("infer_start_ns", "<i8"),
        ("infer_end_ns", "<i8"),
        ("publish_ns", "<i8"),
    ]
)


def empty_book(levels: int = DEFAULT_LEVELS) -> np.ndarray:
    """A zeroed 0-d book record, handy as a staging buffer."""
    return np.zeros((), dtype=book_dtype(levels))


def book_levels(dtype: np.dtype) -> int:
    """How many levels a book dtype carries."""
    return int(dtype["bid_px"].shape[0])
