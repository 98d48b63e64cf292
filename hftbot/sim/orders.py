"""Orders through the API: parsing, the symbol's filters, and the order endpoints.

`parse_order` reads a new-order request into an `Order` in ticks and lots, refusing what Binance
refuses with its codes (side, type, timeInForce, positionSide, precision, quantity and price
bounds, client order id). `OrderDesk.check_filters` applies the symbol's filters against the
current book and account: PERCENT_PRICE (±5 % of the mark), MIN_NOTIONAL (5, reduce-only
exempt), reduce-only direction, and initial margin against the available balance. The endpoints
place, amend, cancel and query orders in the matching engine, then let the venue publish what
changed (market messages and user events) through `publish(now_ns)`.

Pure: the time comes in through `clock_ns`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal

from hftbot.sim.account import Account
from hftbot.sim.errors import ApiError, UnknownStatus, api_error, check_symbol, dec, int_param, mandatory
from hftbot.sim.faults import Faults
from hftbot.sim.matching import BUY, NEW, SELL, MatchingEngine, Order, RejectError
from hftbot.sim.streams import Formatter

MS = 1_000_000
RESP_TYPES = ("ACK", "RESULT")
ORDER_TYPES = {
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
}
TIFS = {"GTC", "IOC", "FOK", "GTX", "GTD"}
MAX_OPEN_ORDERS = 200  # MAX_NUM_ORDERS
MAX_MODIFY = 10_000  # amendments per order
MAX_PLACED = 100_000  # client ids counted for duplicates; the oldest half goes when full
MAX_QTY = 1_000_000  # LOT_SIZE.maxQty
PERCENT_PRICE = (0.95, 1.05)  # multiplierDown, multiplierUp
MIN_NOTIONAL = Decimal("5")


def parse_qty(params: dict, fmt: Formatter, lot: float, name: str = "quantity") -> int:
    """A quantity parameter in lots (-1102 missing, -1111 precision, -4003 / -4005 bounds)."""
    text = params.get(name)
    if not text:
        raise mandatory(name)
    try:
        lots = fmt.parse_qty(text)
    except ValueError:
        raise mandatory(name) from None
    if lots is None:
        raise api_error(-1111, "Precision is over the maximum defined for this asset.")
    if lots <= 0:
        raise api_error(-4003, "Quantity less than or equal to zero.")
    if lots > int(MAX_QTY / lot):
        raise api_error(-4005, "Quantity greater than max quantity.")
    return lots


def parse_price(params: dict, fmt: Formatter) -> int:
    """The `price` parameter in ticks (-1102 missing, -1111 precision, -4013 not positive)."""
    text = params.get("price")
    if not text:
        raise mandatory("price")
    try:
        ticks = fmt.parse_px(text)
    except ValueError:
        raise mandatory("price") from None
    if ticks is None:
        raise api_error(-1111, "Precision is over the maximum defined for this asset.")
    if ticks <= 0:
        raise api_error(-4013, "Price less than min price.")
    return ticks


def parse_order(
    params: dict, symbol: str, fmt: Formatter, lot: float, default_client_id: str, time_ns: int
) -> Order:
    """A new-order request as an `Order` (order id 0: the engine assigns one when it is placed)."""
    check_symbol(params, symbol)
    side_s = params.get("side")
    if not side_s:
        raise mandatory("side")
    if side_s not in ("BUY", "SELL"):
        raise api_error(-1117, "Invalid side.")
    typ = params.get("type")
    if not typ:
        raise mandatory("type")
    if typ not in ORDER_TYPES:
        raise api_error(-1116, "Invalid orderType.")
    if typ not in ("LIMIT", "MARKET"):
        raise api_error(
            -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints."
        )
    if params.get("positionSide", "BOTH") != "BOTH":
        raise api_error(-4061, "Order's position side does not match user's setting.")
    tif = params.get("timeInForce", "GTC" if typ == "MARKET" else "")
    if typ == "LIMIT":
        if not tif:
            raise mandatory("timeInForce")
        if tif not in TIFS or tif == "GTD":  # GTD is not simulated
            raise api_error(-1115, "Invalid timeInForce.")
    elif "price" in params and params["price"] not in ("", "0"):
        raise api_error(-1106, "Parameter 'price' sent when not required.")
    qty = parse_qty(params, fmt, lot)
    px = parse_price(params, fmt) if typ == "LIMIT" else 0
    cid = params.get("newClientOrderId") or default_client_id
    if len(cid) > 36:
        raise api_error(-4015, "Client order id is not valid.")
    return Order(
        order_id=0,
        client_id=cid,
        side=BUY if side_s == "BUY" else SELL,
        type=typ,
        tif=tif or "GTC",
        px=px,
        qty=qty,
        time_ns=time_ns,
        reduce_only=params.get("reduceOnly", "false").lower() == "true",
    )


class OrderDesk:
    """The order endpoints (REST and WS API) of one symbol."""

    def __init__(
        self,
        symbol: str,
        fmt: Formatter,
        lot: float,
        engine: MatchingEngine,
        account: Account,
        mark: Callable[[], int],
        clock_ns: Callable[[], int],
        publish: Callable[[int], None],
        faults: Callable[[], Faults],
        trades: list[dict],
        counters: dict[str, int],
    ) -> None:
        self.symbol = symbol
        self.fmt = fmt
        self.lot = lot
        self.engine = engine
        self.account = account
        self.mark = mark
        self.clock_ns = clock_ns
        self.publish = publish
        self.faults = faults  # read per request: faults change at run time
        self.trades = trades  # our fills (UserEvents keeps them)
        self.counters = counters
        self.requests = 0  # order requests seen (fault injection counts these)
        self.countdown_ms = 0  # countdownCancelAll deadline (0: off)
        self.placed: dict[str, int] = {}  # client order id → orders placed with it (> 1: a duplicate order)
        self.duplicate_ids = 0  # client order ids placed more than once

    # -- shared pieces -----------------------------------------------------------------------------
    def order_json(self, o: Order) -> dict:
        f = self.fmt
        avg = (o.cum_quote / (Decimal(o.filled) * self.account.lot)) if o.filled else Decimal(0)
        return {
            "orderId": o.order_id,
            "symbol": self.symbol,
            "status": o.status,
            "clientOrderId": o.client_id,
            "price": f.px(o.px),
            "avgPrice": dec(avg, 8),
            "origQty": f.qty(o.qty),
            "executedQty": f.qty(o.filled),
            "cumQty": f.qty(o.filled),
            "cumQuote": dec(o.cum_quote, 5),
            "timeInForce": o.tif,
            "type": o.type,
            "reduceOnly": o.reduce_only,
            "closePosition": False,
            "side": "BUY" if o.side == BUY else "SELL",
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": o.type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": o.time_ns // MS,
            "updateTime": o.update_ns // MS,
        }

    def check_filters(self, o: Order) -> None:
        """The symbol's filters and the margin check; a reduce-only order is cut to the position."""
        mark = self.mark()
        acc = self.account
        if o.type == "LIMIT":
            down, up = PERCENT_PRICE
            if o.side == BUY and o.px > mark * up:
                raise api_error(-4016, f"Limit price can't be higher than {self.fmt.px(int(mark * up))}.")
            if o.side == SELL and o.px < mark * down:
                raise api_error(-4024, f"Limit price can't be lower than {self.fmt.px(int(mark * down) + 1)}.")
        ref = o.px if o.type == "LIMIT" else mark
        notional = Decimal(ref * o.qty) * acc.tick * acc.lot
        pos = acc.position.lots
        if o.reduce_only:
            if pos == 0 or (pos > 0) == (o.side == BUY):
                raise api_error(-2022, "ReduceOnly Order is rejected.")
            if o.qty > abs(pos):
                o.qty = abs(pos)
            return
        if notional < MIN_NOTIONAL:
            raise api_error(-4164, "Order's notional must be no smaller than 5 (unless you choose reduce only).")
        # initial margin of the position this order could open, against what is available
        open_margin = Decimal(0)
        for r in self.engine.open_orders():
            open_margin += Decimal(r.px * r.remaining) * acc.tick * acc.lot
        open_margin /= acc.leverage
        signed_after = pos + (o.qty if o.side == BUY else -o.qty)
        growth = max(0, abs(signed_after) - abs(pos))
        need = Decimal(ref * growth) * acc.tick * acc.lot / acc.leverage
        if need > 0 and need > acc.available(mark, open_margin):
            raise api_error(-2019, "Margin is insufficient.")

    def _maybe_fault(self) -> int:
        """Order-request faults: raise the configured reject or rate limit (nothing executed);
        returns the unknown-status code the answer must carry after executing (0: none)."""
        f = self.faults()
        self.requests += 1
        n = self.requests
        if f.reject_code and f.reject_every and n % f.reject_every == 0:
            raise api_error(f.reject_code, f"Rejected by fault injection (code {f.reject_code}).")
        if f.rate_limit_every and n % f.rate_limit_every == 0:
            e = api_error(f.rate_limit_code, f"Too many requests (fault injection, code {f.rate_limit_code}).")
            e.retry_at_ms = self.clock_ns() // MS + int(f.clock_skew_ms) + int(f.retry_after_ms)  # venue time
            raise e
        if f.unknown_status_every and n % f.unknown_status_every == 0:
            return f.unknown_code or -1000
        return 0

    def _find(self, params: dict) -> Order:
        check_symbol(params, self.symbol)
        oid = params.get("orderId")
        cid = params.get("origClientOrderId")
        if not oid and not cid:
            raise api_error(-1102, "Either orderId or origClientOrderId must be sent.")
        if oid:
            try:
                o = self.engine.orders.get(int(oid))
            except ValueError:
                raise mandatory("orderId") from None
        else:
            o = self.engine.order_by_client(cid)
        if o is None:
            raise api_error(-2013, "Order does not exist.")
        return o

    def cancel_all(self, now_ns: int) -> int:
        orders = self.engine.open_orders()
        if not orders:
            return 0
        self.engine.begin()
        for o in orders:
            self.engine.cancel_order(o, now_ns)
        self.publish(now_ns)
        return len(orders)

    def check_countdown(self, now_ms: int) -> None:
        """countdownCancelAll: cancel every open order once the deadline passes."""
        if self.countdown_ms and now_ms >= self.countdown_ms:
            self.countdown_ms = 0
            self.counters["countdown_cancels"] += self.cancel_all(self.clock_ns())

    # -- endpoints -----------------------------------------------------------------------------------
    def ep_new(self, params: dict) -> dict:
        unknown = self._maybe_fault()
        default_cid = f"sim{self.engine._next_order_id}"
        o = parse_order(params, self.symbol, self.fmt, self.lot, default_cid, self.clock_ns())
        resp_type = params.get("newOrderRespType", "ACK")
        if resp_type not in RESP_TYPES:
            raise mandatory("newOrderRespType")
        if self.engine.open_order(o.client_id) is not None:
            raise api_error(-4116, "ClientOrderId is duplicated.")
        if len(self.engine.open_orders()) >= MAX_OPEN_ORDERS:
            raise api_error(-2025, "Reach max open order limit.")
        self.check_filters(o)
        o.order_id = self.engine.new_order_id()
        now = self.clock_ns()
        self.engine.begin()
        try:
            self.engine.place(o)
        except RejectError as e:  # raised before any change: no update id was used
            raise api_error(e.code, e.msg) from None
        ack = self.order_json(o)
        if resp_type == "ACK":
            ack.update(status=NEW, executedQty=self.fmt.qty(0), cumQty=self.fmt.qty(0), cumQuote="0.00000")
            ack["avgPrice"] = "0.00"
        self.publish(now)
        self.counters["orders"] += 1
        placed = self.placed
        used = placed[o.client_id] = placed.get(o.client_id, 0) + 1
        if used == 2:
            self.duplicate_ids += 1
        if len(placed) > MAX_PLACED:  # bounded: a resend comes within seconds, not 100,000 orders later
            for cid in list(itertools.islice(placed, MAX_PLACED // 2)):
                del placed[cid]
        if unknown:
            raise UnknownStatus(unknown)
        return ack

    def ep_cancel(self, params: dict) -> dict:
        try:
            o = self._find(params)
        except ApiError as e:
            if e.code == -2013:
                raise api_error(-2011, "Unknown order sent.") from None
            raise
        if not o.is_open:
            raise api_error(-2011, "Unknown order sent.")
        now = self.clock_ns()
        self.engine.begin()
        self.engine.cancel_order(o, now)
        self.publish(now)
        return self.order_json(o)

    def ep_get(self, params: dict) -> dict:
        return self.order_json(self._find(params))

    def ep_modify(self, params: dict) -> dict:
        unknown = self._maybe_fault()
        o = self._find(params)
        side = params.get("side")
        if side not in ("BUY", "SELL") or (BUY if side == "BUY" else SELL) != o.side:
            raise api_error(-1117, "Invalid side.")
        qty = parse_qty(params, self.fmt, self.lot)
        px = parse_price(params, self.fmt)
        if not o.is_open:
            raise api_error(-2013, "Order does not exist.")
        if o.modify_count >= MAX_MODIFY:
            raise api_error(-5026, "Exceed maximum modify order limit.")
        self.check_filters(Order(0, o.client_id, o.side, o.type, o.tif, px, qty, 0))
        now = self.clock_ns()
        self.engine.begin()
        try:
            self.engine.modify_order(o, px, qty, now)
        except RejectError as e:  # raised before any change
            raise api_error(e.code, e.msg) from None
        self.publish(now)
        if unknown:
            raise UnknownStatus(unknown)
        return self.order_json(o)

    def ep_open_orders(self, params: dict) -> list:
        check_symbol(params, self.symbol, required=False)
        return [self.order_json(o) for o in self.engine.open_orders()]

    def ep_open_order(self, params: dict) -> dict:
        o = self._find(params)
        if not o.is_open:
            raise api_error(-2013, "Order does not exist.")
        return self.order_json(o)

    def ep_all_orders(self, params: dict) -> list:
        check_symbol(params, self.symbol)
        limit = min(1000, int_param(params, "limit", 500) or 500)
        start = int_param(params, "orderId", 0) or 0
        rows = [o for o in self.engine.orders.values() if o.order_id >= start]
        picked = rows[:limit] if start else rows[-limit:]
        return [self.order_json(o) for o in picked]

    def duplicates(self) -> dict[str, int]:
        """Client order ids used by more than one order (a resent order: what must never happen)."""
        return {cid: n for cid, n in self.placed.items() if n > 1}

    def ep_user_trades(self, params: dict) -> list:
        check_symbol(params, self.symbol)
        limit = min(1000, int_param(params, "limit", 500) or 500)
        oid = int_param(params, "orderId", None)
        from_id = int_param(params, "fromId", None)
        rows = self.trades
        if oid is not None:
            rows = [t for t in rows if t["orderId"] == oid]
        if from_id is not None:
            rows = [t for t in rows if t["id"] >= from_id]
            return rows[:limit]
        return rows[-limit:]

    def ep_cancel_all(self, params: dict) -> dict:
        check_symbol(params, self.symbol)
        self.cancel_all(self.clock_ns())
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def ep_countdown(self, params: dict) -> dict:
        check_symbol(params, self.symbol)
        ms = int_param(params, "countdownTime", None)
        if ms is None or ms < 0:
            raise mandatory("countdownTime")
        now_ms = self.clock_ns() // MS
        self.countdown_ms = now_ms + ms if ms else 0
        return {"symbol": self.symbol, "countdownTime": str(ms)}
