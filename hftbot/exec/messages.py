"""The messages execution components exchange: strategy → risk → gateway → positions.

Explicit, small, immutable messages (nautilus_trader's habit) so each component can be tested
alone and the backtester can put its matching engine where the gateway is:

    strategy.on_*(...)  -> [Intent]          what the strategy would like (Place, Cancel, Modify, CancelAll)
    risk.check(intent)  -> Request | Refused   the only door: nothing reaches a gateway unapproved
    gateway.send(Request)                      OrderRequest (with its client order id), CancelRequest,
                                               ModifyRequest, CancelAllRequest
    gateway events      -> OrderUpdate, Fill, Rejected, VenuePosition   what the venue says happened

Units, as everywhere inside hftbot: prices in integer ticks, quantities in integer lots (the
exchange's decimal strings exist only at the gateway's edge), clocks with their unit in the name.
Nothing here does I/O or holds state.
"""

from __future__ import annotations

from dataclasses import dataclass

BUY = 1
SELL = -1

# Order types and times in force, spelled as Binance spells them.
LIMIT = "LIMIT"
MARKET = "MARKET"
GTC = "GTC"
IOC = "IOC"
FOK = "FOK"
GTX = "GTX"  # post-only: rejected (-5022) rather than taking liquidity

# Order statuses, as Binance reports them.
NEW = "NEW"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
EXPIRED = "EXPIRED"
EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"
OPEN_STATUSES = (NEW, PARTIALLY_FILLED)
FINAL_STATUSES = (FILLED, CANCELED, EXPIRED, EXPIRED_IN_MATCH)
# Local statuses (never sent by Binance): approved by risk, not yet acknowledged by the venue; and
# sent but its fate unknown (a timeout, a 503 "unknown"; issue 13 settles it by a query). Both
# count against the position and open-order limits as if open.
PENDING_NEW = "PENDING_NEW"
UNKNOWN = "UNKNOWN"
REJECTED = "REJECTED"  # local final status of an order the venue or the gateway refused


def side_name(side: int) -> str:
    return "BUY" if side == BUY else "SELL"


# ------------------------------------------------------------------------- strategy → risk


@dataclass(frozen=True, slots=True)
class Place:
    """Open a new order. `px` is ignored (0) for MARKET orders."""

    side: int  # BUY / SELL
    qty: int  # lots, > 0
    px: int = 0  # ticks
    type: str = LIMIT
    tif: str = GTC
    reduce_only: bool = False
    tag: str = ""  # why, for the trade log: "entry", "exit_horizon", "stop", "quote_bid", ...


@dataclass(frozen=True, slots=True)
class Cancel:
    client_id: str
    tag: str = ""


@dataclass(frozen=True, slots=True)
class Modify:
    """Change price and/or quantity of a resting LIMIT order (Binance `order.modify`)."""

    client_id: str
    qty: int
    px: int
    tag: str = ""


@dataclass(frozen=True, slots=True)
class CancelAll:
    tag: str = ""


Intent = Place | Cancel | Modify | CancelAll


# ------------------------------------------------------------------------- risk → gateway


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An approved order, ready for the wire. `client_id` is unique per run and per restart."""

    client_id: str
    side: int
    qty: int
    px: int
    type: str
    tif: str
    reduce_only: bool
    tag: str
    strategy: str
    model_id: int  # the model whose signal led here (0: none)
    book_recv_ns: int  # receive time of the book update that led here (tick-to-order latency)
    created_ns: int


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """An approved cancel (Binance `order.cancel` by `origClientOrderId`)."""

    client_id: str
    tag: str
    created_ns: int


@dataclass(frozen=True, slots=True)
class ModifyRequest:
    """An approved amendment (Binance `order.modify`: side, quantity and price are all mandatory)."""

    client_id: str
    side: int
    qty: int  # new total quantity, lots
    px: int  # ticks
    tag: str
    created_ns: int


@dataclass(frozen=True, slots=True)
class CancelAllRequest:
    """An approved cancel of every open order of the symbol (`DELETE /fapi/v1/allOpenOrders`)."""

    tag: str
    created_ns: int


Request = OrderRequest | CancelRequest | ModifyRequest | CancelAllRequest


@dataclass(frozen=True, slots=True)
class Refused:
    """The risk manager's no: `reason` is one of `hftbot.exec.risk.REASONS` (counted per reason)."""

    reason: str
    detail: str
    intent: Intent


# ------------------------------------------------------------------------- gateway → positions


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """The venue's view of one order after an event (ORDER_TRADE_UPDATE or a WS API answer)."""

    client_id: str
    order_id: int
    status: str  # NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, EXPIRED_IN_MATCH
    exec_type: str  # NEW, TRADE, CANCELED, EXPIRED, AMENDMENT
    side: int
    qty: int  # original quantity, lots
    px: int  # limit price, ticks
    filled: int  # cumulative filled lots
    event_ms: int


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. Idempotency key: (order_id, trade_id)."""

    client_id: str
    order_id: int
    trade_id: int
    side: int
    qty: int  # lots
    px: int  # ticks
    fee: float  # quote currency (USDT), positive = paid
    maker: bool
    time_ms: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """The venue (or the gateway before sending) refused a request."""

    client_id: str
    code: int  # Binance error code, e.g. -5022 post-only would take, -2019 margin
    msg: str
    time_ms: int
    request: str = "place"  # what was refused: "place", "cancel" or "modify"


@dataclass(frozen=True, slots=True)
class VenuePosition:
    """The venue's own position for the symbol (ACCOUNT_UPDATE, account.position): the reference
    local positions must equal. Entry price is an average, so a float price, not ticks."""

    lots: int  # signed: > 0 long, < 0 short
    entry_px: float  # quote currency per unit, 0.0 when flat
    time_ms: int  # venue time of the update (0: never traded)
