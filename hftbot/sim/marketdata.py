"""Public market-data endpoints: ping, server time, exchangeInfo, depth snapshot, book ticker.

`exchange_info` is also what other code reads the simulated symbol's filters from (the
execution tests build `SymbolFilters` from it). Pure: the time comes in through `now_ms`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hftbot.sim.errors import api_error, check_symbol, int_param
from hftbot.sim.market import MarketModel, ModelParams
from hftbot.sim.matching import MatchingEngine
from hftbot.sim.ratelimit import Limits
from hftbot.sim.streams import Formatter, MarketPublisher, decimals_of

if TYPE_CHECKING:
    from hftbot.sim.venue import VenueSettings

MS = 1_000_000
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


def depth_weight(params: dict) -> int:
    """Request weight of a depth snapshot by its `limit` (an unreadable limit is refused later)."""
    try:
        limit = int(params.get("limit", 500))
    except ValueError:
        return 2
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def exchange_info(p: ModelParams, s: VenueSettings | Limits, now_ms: int) -> dict:
    """`GET /fapi/v1/exchangeInfo` for the one simulated symbol (`s`: the venue's settings or limits)."""
    f = Formatter(p.tick, p.lot)
    sym = p.symbol.upper()
    base = sym[:-4] if sym.endswith("USDT") else sym[:-3]
    lim = s if isinstance(s, Limits) else s.limits
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": lim.weight_1m,
            },
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": lim.orders_1m},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": lim.orders_10s},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [
            {
                "symbol": sym,
                "pair": sym,
                "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000,
                "status": "TRADING",
                "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000",
                "baseAsset": base,
                "quoteAsset": "USDT",
                "marginAsset": "USDT",
                "pricePrecision": decimals_of(p.tick),
                "quantityPrecision": decimals_of(p.lot),
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "underlyingType": "COIN",
                "underlyingSubType": ["Layer-1"],
                "settlePlan": 0,
                "triggerProtect": "0.0500",
                "liquidationFee": "0.012500",
                "marketTakeBound": "0.05",
                "maxMoveOrderLimit": 10000,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": f.px(1),
                        "maxPrice": "100000",
                        "tickSize": f.px(1),
                    },
                    {"filterType": "LOT_SIZE", "minQty": f.qty(1), "maxQty": "1000000", "stepSize": f.qty(1)},
                    {
                        "filterType": "MARKET_LOT_SIZE",
                        "minQty": f.qty(1),
                        "maxQty": "5000",
                        "stepSize": f.qty(1),
                    },
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    {
                        "filterType": "PERCENT_PRICE",
                        "multiplierUp": "1.0500",
                        "multiplierDown": "0.9500",
                        "multiplierDecimal": "4",
                    },
                ],
                "orderTypes": ["LIMIT", "MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
                "permissionSets": ["GRID", "COPY"],
            }
        ],
    }


class MarketDesk:
    """The public endpoints of one symbol's market."""

    def __init__(
        self,
        params: ModelParams,
        limits: Limits,
        engine: MatchingEngine,
        model: MarketModel,
        pub: MarketPublisher,
        now_ms: Callable[[], int],
    ) -> None:
        self.params = params
        self.limits = limits
        self.symbol = params.symbol.upper()
        self.engine = engine
        self.model = model
        self.pub = pub
        self.fmt = pub.fmt
        self.now_ms = now_ms

    def ep_ping(self, params: dict) -> dict:
        return {}

    def ep_time(self, params: dict) -> dict:
        return {"serverTime": self.now_ms()}

    def ep_exchange_info(self, params: dict) -> dict:
        return exchange_info(self.params, self.limits, self.now_ms())

    def ep_depth(self, params: dict) -> dict:
        check_symbol(params, self.symbol)
        limit = int_param(params, "limit", 500)
        if limit not in DEPTH_LIMITS:
            raise api_error(-1130, f"Invalid data sent for a parameter: limit={limit}.")
        return self.pub.snapshot(limit, self.now_ms(), self.model.time_ns // MS)

    def ep_book_ticker(self, params: dict) -> dict | list:
        e, f = self.engine, self.fmt
        one = {
            "symbol": self.symbol,
            "bidPrice": f.px(e.best_bid),
            "bidQty": f.qty(e.bids.get(e.best_bid, 0)),
            "askPrice": f.px(e.best_ask),
            "askQty": f.qty(e.asks.get(e.best_ask, 0)),
            "time": self.now_ms(),
            "lastUpdateId": e.update_id,
        }
        if check_symbol(params, self.symbol, required=False):
            return one
        return [one]
