"""A symbol's trading rules from exchangeInfo, in ticks and lots, and the decimal strings of the wire.

`SymbolFilters.from_exchange_info(info, symbol)` reads `symbols[].filters` of a parsed
`GET /fapi/v1/exchangeInfo` body (the WS API answer is the same): PRICE_FILTER, LOT_SIZE,
MARKET_LOT_SIZE, MIN_NOTIONAL, PERCENT_PRICE, MAX_NUM_ORDERS. Inside hftbot a price is an integer
number of ticks (`tickSize`) and a quantity an integer number of lots (`stepSize`), as in every
book record; so the filters are stored in those units and checked with integer comparisons.
Binance's rule "(price − minPrice) % tickSize == 0" assumes a price grid anchored at minPrice; every
USDⓈ-M symbol has minPrice a multiple of tickSize, and one that is not is refused at parse time
(our ticks are anchored at zero) rather than quietly producing -4014 at the venue.

Strings exist only at the gateway's edge: `px_str(ticks)` / `qty_str(lots)` format exact decimal
strings (no float ever touches them: `0.1 + 0.2` never reaches Binance as `0.30000000000000004`,
the -1111 of ccxt/node-binance-api#577), `snap_px(price, side)` / `snap_qty(qty)` turn a float from
a formula (a quoting model, a size in base units) into ticks and lots in the safe direction.

Pure: no I/O. The exchange's documented values: ../shared/reference/binance-usdm.md section 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from hftbot.exec.messages import BUY, SELL

# Binance's default when a symbol lacks the filter (the reference's -4164 "default 5").
DEFAULT_MIN_NOTIONAL = "5"
DEFAULT_MAX_NUM_ORDERS = 200


class FilterError(ValueError):
    """exchangeInfo that cannot be read as a symbol's rules; names the symbol, field and value."""


def _dec(text: object, where: str) -> Decimal:
    try:
        v = Decimal(str(text))
    except InvalidOperation:
        raise FilterError(f"exchangeInfo: {where} is not a decimal number, got {text!r}") from None
    if not v.is_finite() or v < 0:
        raise FilterError(f"exchangeInfo: {where} must be a finite number >= 0, got {text!r}")
    return v


def _units(v: Decimal, unit: Decimal, where: str, round_up: bool = False) -> int:
    """`v` as a whole number of `unit`; exact multiples only unless rounding is asked for."""
    q = v / unit
    if q == q.to_integral_value():
        return int(q)
    if round_up:
        return int(q.to_integral_value(rounding=ROUND_CEILING))
    raise FilterError(f"exchangeInfo: {where} = {v} is not a multiple of {unit}")


def _format(units: int, step: Decimal) -> str:
    """`units × step` as a plain decimal string with exactly the step's number of decimals."""
    exp = step.normalize().as_tuple().exponent  # "0.10" formats as 0.1 steps: "60000.1"
    decimals = -exp if isinstance(exp, int) and exp < 0 else 0
    scaled = units * int(step.scaleb(decimals))
    if decimals == 0:
        return str(scaled)
    sign = "-" if scaled < 0 else ""
    scaled = abs(scaled)
    div = 10**decimals
    return f"{sign}{scaled // div}.{scaled % div:0{decimals}d}"


@dataclass(frozen=True)
class SymbolFilters:
    """One symbol's rules in ticks and lots. Built by `from_exchange_info` (or `from_tick_lot`)."""

    symbol: str
    tick_size: Decimal  # price of one tick
    step_size: Decimal  # quantity of one lot
    min_px: int  # ticks; 0 = no minimum
    max_px: int  # ticks; 0 = no maximum
    min_qty: int  # lots (LIMIT orders)
    max_qty: int  # lots; 0 = no maximum
    market_min_qty: int  # lots (MARKET orders: MARKET_LOT_SIZE)
    market_max_qty: int  # lots; 0 = no maximum
    market_step: int  # lots per MARKET_LOT_SIZE step (1 when it equals LOT_SIZE's)
    min_notional: Decimal  # USDT; reduce-only orders are exempt (Binance's rule)
    percent_up: float  # PERCENT_PRICE: a BUY may not be above mark × up (0 = no limit)
    percent_down: float  # a SELL may not be below mark × down (0 = no limit)
    max_num_orders: int
    # floats of the above, computed once: checks run on every order
    tick: float = field(init=False, repr=False)
    lot: float = field(init=False, repr=False)
    min_notional_usdt: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tick", float(self.tick_size))
        object.__setattr__(self, "lot", float(self.step_size))
        object.__setattr__(self, "min_notional_usdt", float(self.min_notional))

    # ----------------------------------------------------------------------------- building

    @classmethod
    def from_exchange_info(cls, info: dict, symbol: str) -> SymbolFilters:
        """The rules of `symbol` from a parsed exchangeInfo body; a clear error for anything missing."""
        sym = symbol.upper()
        for s in info.get("symbols", []) if isinstance(info, dict) else []:
            if str(s.get("symbol", "")).upper() == sym:
                return cls._from_symbol(s, sym)
        raise FilterError(f"exchangeInfo has no symbol {sym!r}")

    @classmethod
    def _from_symbol(cls, s: dict, sym: str) -> SymbolFilters:
        filters = {f.get("filterType"): f for f in s.get("filters", []) if isinstance(f, dict)}
        for need in ("PRICE_FILTER", "LOT_SIZE"):
            if need not in filters:
                raise FilterError(f"exchangeInfo for {sym} lacks the {need} filter")

        def get(ftype: str, key: str, default: object | None = None) -> Decimal:
            f = filters.get(ftype, {})
            if key not in f:
                if default is None:
                    raise FilterError(f"exchangeInfo for {sym} lacks {ftype}.{key}")
                return _dec(default, f"{sym} {ftype}.{key}")
            return _dec(f[key], f"{sym} {ftype}.{key}")

        tick = get("PRICE_FILTER", "tickSize")
        step = get("LOT_SIZE", "stepSize")
        if tick <= 0 or step <= 0:
            raise FilterError(f"exchangeInfo for {sym}: tickSize {tick} and stepSize {step} must be > 0")
        min_px = _units(get("PRICE_FILTER", "minPrice", "0"), tick, f"{sym} PRICE_FILTER.minPrice")
        max_px = int(get("PRICE_FILTER", "maxPrice", "0") // tick)
        min_qty = _units(get("LOT_SIZE", "minQty", "0"), step, f"{sym} LOT_SIZE.minQty", round_up=True)
        max_qty = int(get("LOT_SIZE", "maxQty", "0") // step)
        if "MARKET_LOT_SIZE" in filters:
            mstep_d = get("MARKET_LOT_SIZE", "stepSize", str(step))
            mstep = _units(mstep_d, step, f"{sym} MARKET_LOT_SIZE.stepSize") if mstep_d > 0 else 1
            mmin = _units(get("MARKET_LOT_SIZE", "minQty", "0"), step, f"{sym} MARKET_LOT_SIZE.minQty", True)
            mmax = int(get("MARKET_LOT_SIZE", "maxQty", "0") // step)
        else:
            mstep, mmin, mmax = 1, min_qty, max_qty
        min_notional = get("MIN_NOTIONAL", "notional", DEFAULT_MIN_NOTIONAL)
        up = float(get("PERCENT_PRICE", "multiplierUp", "0"))
        down = float(get("PERCENT_PRICE", "multiplierDown", "0"))
        max_orders = filters.get("MAX_NUM_ORDERS", {}).get("limit", DEFAULT_MAX_NUM_ORDERS)
        try:
            max_orders = int(max_orders)
        except (TypeError, ValueError):
            raise FilterError(
                f"exchangeInfo for {sym}: MAX_NUM_ORDERS.limit {max_orders!r} is not an integer"
            ) from None
        return cls(sym, tick, step, min_px, max_px, max(min_qty, 1), max_qty, max(mmin, 1), mmax,
                   max(mstep, 1), min_notional, up, down, max_orders)

    @classmethod
    def from_tick_lot(cls, symbol: str, tick: float | str, lot: float | str,
                      min_notional: str = DEFAULT_MIN_NOTIONAL) -> SymbolFilters:
        """Rules known only from a record's tick and lot (a capture without exchangeInfo, a backtest):
        the grid and a minimum notional; no price range, quantity range or percent band."""
        t, q = Decimal(repr(tick)) if isinstance(tick, float) else Decimal(tick), (
            Decimal(repr(lot)) if isinstance(lot, float) else Decimal(lot))
        if not (t > 0 and q > 0):
            raise FilterError(f"filters for {symbol}: tick {tick!r} and lot {lot!r} must be > 0")
        return cls(symbol.upper(), t, q, 0, 0, 1, 0, 1, 0, 1, Decimal(min_notional), 0.0, 0.0,
                   DEFAULT_MAX_NUM_ORDERS)

    # ----------------------------------------------------------------------------- units

    def matches(self, tick: float, lot: float) -> bool:
        """Whether a book record's tick and lot are this grid (the feed read the same exchangeInfo)."""
        return math.isclose(tick, self.tick, rel_tol=1e-9) and math.isclose(lot, self.lot, rel_tol=1e-9)

    def notional(self, px: int, qty: int) -> float:
        """USDT value of `qty` lots at `px` ticks."""
        return px * qty * self.tick * self.lot

    # ----------------------------------------------------------------------------- snapping

    def snap_px(self, price: float, side: int) -> int:
        """Ticks for a float price, rounded to the passive side: a BUY down, a SELL up.

        A quote computed as 99.999999 for a 0.01 tick must not become 100.00 when it is a bid (it
        would pay a tick more than the model asked); a whisker of float noise (1e-9 of a tick) is
        not a tick, so 100.00000000001 stays 100.00 either way.
        """
        x = price / self.tick
        r = round(x)
        if abs(x - r) <= 1e-9 * max(1.0, abs(x)):
            return int(r)
        if side == BUY:
            return math.floor(x)
        if side == SELL:
            return math.ceil(x)
        raise ValueError(f"snap_px: side must be BUY (1) or SELL (-1), got {side!r}")

    def snap_qty(self, qty: float, market: bool = False) -> int:
        """Lots for a float quantity in base units, rounded down to the step (never more than asked)."""
        x = qty / self.lot
        r = round(x)
        lots = int(r) if abs(x - r) <= 1e-9 * max(1.0, abs(x)) else math.floor(x)
        step = self.market_step if market else 1
        return lots - lots % step

    # ----------------------------------------------------------------------------- strings

    def px_str(self, ticks: int) -> str:
        """The exact decimal string of `ticks` (tickSize's decimals: "150.01")."""
        return _format(int(ticks), self.tick_size)

    def qty_str(self, lots: int) -> str:
        """The exact decimal string of `lots` (stepSize's decimals: "0.01", "3")."""
        return _format(int(lots), self.step_size)

    def parse_px(self, text: str) -> int:
        """Ticks of a price string from the venue; an error if it is off the grid."""
        return _units(_dec(text, f"{self.symbol} price"), self.tick_size, f"{self.symbol} price")

    def parse_qty(self, text: str) -> int:
        """Lots of a quantity string from the venue; an error if it is off the grid."""
        return _units(_dec(text, f"{self.symbol} quantity"), self.step_size, f"{self.symbol} quantity")

    # ----------------------------------------------------------------------------- checks

    def check(self, side: int, qty: int, px: int, market: bool, reduce_only: bool,
              mark_px: float) -> tuple[str, str] | None:
        """The first rule an order breaks, as (reason, detail), or None when the venue would take it.

        `mark_px` (ticks, float) stands in for the mark price of MIN_NOTIONAL on MARKET orders and of
        PERCENT_PRICE; the book's mid is what we have (the mark follows it within a few ticks).
        """
        if market:
            if qty < self.market_min_qty or (self.market_max_qty and qty > self.market_max_qty):
                return "lot_size", (f"MARKET qty {qty} lots outside MARKET_LOT_SIZE "
                                    f"[{self.market_min_qty}, {self.market_max_qty or 'inf'}]")
            if qty % self.market_step:
                return "lot_size", f"MARKET qty {qty} lots not a multiple of {self.market_step}"
            ref = mark_px
        else:
            if qty < self.min_qty or (self.max_qty and qty > self.max_qty):
                return "lot_size", f"qty {qty} lots outside LOT_SIZE [{self.min_qty}, {self.max_qty or 'inf'}]"
            if px <= 0 or px < self.min_px or (self.max_px and px > self.max_px):
                return "price_filter", f"price {px} ticks outside PRICE_FILTER [{self.min_px}, {self.max_px or 'inf'}]"
            ref = px
            if mark_px > 0:
                if side == BUY and self.percent_up and px > mark_px * self.percent_up:
                    return "percent_price", f"BUY {px} ticks above mark {mark_px:.1f} × {self.percent_up}"
                if side == SELL and self.percent_down and px < mark_px * self.percent_down:
                    return "percent_price", f"SELL {px} ticks below mark {mark_px:.1f} × {self.percent_down}"
        if not reduce_only and ref > 0:
            notional = ref * qty * self.tick * self.lot
            if notional < self.min_notional_usdt * (1 - 1e-12):
                return "min_notional", f"notional {notional:.4f} USDT below MIN_NOTIONAL {self.min_notional}"
        return None
