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

# Order record kinds (the "order" ring): what execution sent, and what the venue did with it.
ORDER_PLACE = 1  # order.place written on the socket
ORDER_MODIFY = 2  # order.modify
ORDER_CANCEL = 3  # order.cancel (one per order; a cancel-all is one per open order)
ORDER_FILL = 4  # an execution (user data stream), applied once
ORDER_REJECT = 5  # the venue (or the gateway before sending) refused a request

# Order record flags.
ORDER_REDUCE_ONLY = 1
ORDER_POST_ONLY = 2  # GTX
ORDER_MARKET = 4
ORDER_MAKER = 8  # fills: we provided the liquidity

# Execution engine states in the status record.
EXEC_RUNNING = 0
EXEC_REDUCING = 1
EXEC_HALTED = 2

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


ORDER_DTYPE = np.dtype(
    _HEADER
    + [
        ("kind", "<i8"),  # ORDER_*
        ("send_ns", "<i8"),  # frame written on the socket (fills and rejects: local receive time)
        ("read_ns", "<i8"),  # when execution read the ring record that led to it (signal → frame)
        ("book_recv_ns", "<i8"),  # receive time of the book update behind the order (0: none)
        ("signal_seq", "<i8"),  # the signal record behind it (0: none)
        ("model_id", "<i8"),  # that signal's model (0: none)
        ("order_id", "<i8"),  # the venue's order id (0 while unknown)
        ("trade_id", "<i8"),  # fills
        ("side", "<i8"),  # 1 buy, -1 sell
        ("qty", "<i8"),  # lots (fills: the executed lots)
        ("px", "<i8"),  # ticks (0: MARKET)
        ("flags", "<i8"),  # ORDER_* flag bits
        ("code", "<i8"),  # rejects: the Binance error code
        ("event_ms", "<i8"),  # venue time (fills, rejects)
        ("fee", "<f8"),  # fills: quote currency, positive = paid
        ("tick", "<f8"),
        ("lot", "<f8"),
        ("publish_ns", "<i8"),
        ("client_id", "S40"),  # Binance allows 36 characters
        ("tag", "S16"),  # why: "entry", "exit_horizon", "flatten", ...
        ("approve_ns", "<i8"),  # place/modify: the risk manager approved it (strategy + risk before, send after)
    ]
)

MAX_FAULT_KINDS = 24  # fault kinds the execution status record has room for (hftbot.exec.faults.KINDS)

# Execution status, one record per heartbeat (the "exec" ring; the supervisor shows the newest).
# The heartbeat table holds integers only; PnL needs floats, hence a record.
EXEC_STATUS_DTYPE = np.dtype(
    _HEADER
    + [
        ("publish_ns", "<i8"),
        ("position", "<i8"),  # lots, our ledger
        ("venue_position", "<i8"),  # lots, as the venue last reported it
        ("open_orders", "<i8"),  # open and in-flight
        ("orders", "<i8"),  # placed this run
        ("fills", "<i8"),
        ("trades", "<i8"),  # closed round trips
        ("wins", "<i8"),  # closed trades with net PnL > 0
        ("rejects", "<i8"),
        ("refusals", "<i8"),  # intents the risk manager refused
        ("state", "<i8"),  # EXEC_*
        ("mismatches", "<i8"),  # times our position differed from the venue's once settled
        ("avg_px", "<f8"),  # average entry price of the position (0: flat)
        ("mark_px", "<f8"),  # mid used for the unrealised PnL
        ("realised", "<f8"),  # USDT, gross of fees
        ("unrealised", "<f8"),
        ("fees", "<f8"),
        ("net_pnl", "<f8"),  # realised - fees + unrealised
        ("win_rate", "<f8"),  # over closed trades, net of fees (NaN: none closed)
        ("tick", "<f8"),
        ("lot", "<f8"),
        # the fault report (issue 13), one slot per kind of hftbot.exec.faults.KINDS, by index
        ("fault_count", "<i8", (MAX_FAULT_KINDS,)),  # faults seen
        ("fault_recovered", "<i8", (MAX_FAULT_KINDS,)),  # ... handled to the end
        ("fault_failed", "<i8", (MAX_FAULT_KINDS,)),  # ... whose handling gave up
        ("fault_open", "<i8", (MAX_FAULT_KINDS,)),  # ... in progress now (e.g. unsettled orders)
        ("fault_p50_ms", "<f8", (MAX_FAULT_KINDS,)),  # recovery time, median (NaN: none yet)
        ("fault_max_ms", "<f8", (MAX_FAULT_KINDS,)),  # recovery time, longest
    ]
)


def empty_book(levels: int = DEFAULT_LEVELS) -> np.ndarray:
    """A zeroed 0-d book record, handy as a staging buffer."""
    return np.zeros((), dtype=book_dtype(levels))


def book_levels(dtype: np.dtype) -> int:
    """How many levels a book dtype carries."""
    return int(dtype["bid_px"].shape[0])
