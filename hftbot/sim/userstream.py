"""The user data stream: listen keys, and the events our orders and fills send down it.

`ListenKeys` keeps the one active key (Binance gives a user one key at a time: a second `start`
returns the same key and extends it), its 60-minute validity (`ping` extends it), expiry
(`listenKeyExpired`, then -1125 for the dead key) and the REST / WS API endpoints over it.
`UserEvents` turns the matching engine's order events into `ORDER_TRADE_UPDATE` payloads, applies
each fill to the account (its realised PnL goes into the event), follows fills with one
`ACCOUNT_UPDATE`, and keeps the fills as `GET /fapi/v1/userTrades` rows.

Both hand their payloads to `emit(listen_key, payload_bytes)`; the server routes them to the
connections subscribed to that key. Pure: the time comes in from the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal

import orjson

from hftbot.sim.account import Account
from hftbot.sim.errors import api_error, dec
from hftbot.sim.matching import BUY, TRADE, Order
from hftbot.sim.streams import Formatter

Emit = Callable[[str, bytes], None]
MAX_TRADES = 100_000  # fills kept for userTrades; the oldest half goes when full


class ListenKeys:
    """The active listen key and its expiry."""

    def __init__(self, seed: int, validity_ms: Callable[[], int], now_ms: Callable[[], int], emit: Emit) -> None:
        self.seed = seed
        self.validity_ms = validity_ms  # read at every start/ping: faults may shorten it at run time
        self.now_ms = now_ms
        self.emit = emit
        self.key: str | None = None
        self.expiry_ms = 0
        self.counter = 0

    def start(self) -> str:
        if self.key is None:
            self.counter += 1
            self.key = hashlib.sha256(f"{self.seed}:{self.counter}".encode()).hexdigest()
        self.expiry_ms = self.now_ms() + self.validity_ms()
        return self.key

    def _known(self, key: str | None) -> None:
        if self.key is None or (key and key != self.key):
            raise api_error(-1125, "This listenKey does not exist.")

    def ping(self, key: str | None = None) -> str:
        self._known(key)
        self.expiry_ms = self.now_ms() + self.validity_ms()
        assert self.key is not None
        return self.key

    def stop(self, key: str | None = None) -> None:
        self._known(key)
        self.key = None

    def valid(self, key: str) -> bool:
        return key == self.key

    def expire(self) -> None:
        """Expire the active key now (fault injection, and the 60-minute rule)."""
        key = self.key
        if key is None:
            return
        self.emit(key, orjson.dumps({"e": "listenKeyExpired", "E": self.now_ms(), "listenKey": key}))
        self.key = None

    def check(self, now_ms: int) -> None:
        """Expire the key once its time is up (called as the clock advances)."""
        if self.key is not None and now_ms >= self.expiry_ms:
            self.expire()

    # -- endpoints (REST `/fapi/v1/listenKey`, WS API `userDataStream.*`) ----------------------
    def ep_new(self, params: dict) -> dict:
        return {"listenKey": self.start()}

    def ep_ping(self, params: dict) -> dict:
        return {"listenKey": self.ping(params.get("listenKey"))}

    def ep_stop(self, params: dict) -> dict:
        self.stop(params.get("listenKey"))
        return {}


class UserEvents:
    """Order events → account, trade history and user-stream payloads."""

    def __init__(
        self, symbol: str, fmt: Formatter, account: Account, keys: ListenKeys, mark: Callable[[], int]
    ) -> None:
        self.symbol = symbol
        self.fmt = fmt
        self.account = account
        self.keys = keys
        self.mark = mark
        self.trades: list[dict] = []  # our fills, as GET /fapi/v1/userTrades shows them

    def on_order_events(self, events: list, now_ms: int) -> None:
        """Apply and announce one transaction's order events (in engine order)."""
        key = self.keys.key
        emit = self.keys.emit
        fills = False
        for ev in events:
            realized = Decimal(0)
            if ev.exec_type == TRADE:
                realized = self.account.apply_fill(
                    ev.order.side, ev.last_qty, ev.last_px, ev.fee, ev.time_ns // 1_000_000
                )
                fills = True
                self.trades.append(self.trade_row(ev, realized))
                if len(self.trades) > MAX_TRADES:
                    del self.trades[: MAX_TRADES // 2]
            if key:
                emit(key, orjson.dumps(self.order_update(ev, realized, now_ms)))
        if fills and key:
            emit(key, orjson.dumps(self.account_update(now_ms)))

    def order_update(self, ev, realized: Decimal, now_ms: int) -> dict:
        """The `ORDER_TRADE_UPDATE` payload of one order event."""
        o: Order = ev.order
        f = self.fmt
        t_ms = ev.time_ns // 1_000_000
        avg = (o.cum_quote / (Decimal(o.filled) * self.account.lot)) if o.filled else Decimal(0)
        return {
            "e": "ORDER_TRADE_UPDATE",
            "E": now_ms,
            "T": t_ms,
            "o": {
                "s": self.symbol,
                "c": o.client_id,
                "S": "BUY" if o.side == BUY else "SELL",
                "o": o.type,
                "f": o.tif,
                "q": f.qty(o.qty),
                "p": f.px(o.px),
                "ap": dec(avg, 8),
                "sp": "0",
                "x": ev.exec_type,
                "X": ev.status,
                "i": o.order_id,
                "l": f.qty(ev.last_qty),
                "z": f.qty(o.filled),
                "L": f.px(ev.last_px) if ev.last_qty else "0",
                "n": dec(ev.fee, 8) if ev.exec_type == TRADE else "0",
                "N": "USDT",
                "T": t_ms,
                "t": ev.trade_id,
                "b": "0",
                "a": "0",
                "m": ev.maker,
                "R": o.reduce_only,
                "wt": "CONTRACT_PRICE",
                "ot": o.type,
                "ps": "BOTH",
                "cp": False,
                "rp": dec(realized, 8),
                "pP": False,
                "si": 0,
                "ss": 0,
                "V": "EXPIRE_MAKER",
                "pm": "NONE",
                "gtd": 0,
                "er": str(ev.expire_reason),
            },
        }

    def trade_row(self, ev, realized: Decimal) -> dict:
        """One fill as a `GET /fapi/v1/userTrades` row."""
        o, f = ev.order, self.fmt
        quote = Decimal(ev.last_px * ev.last_qty) * self.account.tick * self.account.lot
        return {
            "buyer": o.side == BUY,
            "commission": dec(ev.fee, 8),
            "commissionAsset": "USDT",
            "id": ev.trade_id,
            "maker": ev.maker,
            "orderId": o.order_id,
            "price": f.px(ev.last_px),
            "qty": f.qty(ev.last_qty),
            "quoteQty": dec(quote, 8),
            "realizedPnl": dec(realized, 8),
            "side": "BUY" if o.side == BUY else "SELL",
            "positionSide": "BOTH",
            "symbol": self.symbol,
            "time": ev.time_ns // 1_000_000,
        }

    def account_update(self, now_ms: int) -> dict:
        """The `ACCOUNT_UPDATE` payload after fills: wallet and the position."""
        acc, pos = self.account, self.account.position
        return {
            "e": "ACCOUNT_UPDATE",
            "E": now_ms,
            "T": now_ms,
            "a": {
                "m": "ORDER",
                "B": [{"a": "USDT", "wb": dec(acc.wallet, 8), "cw": dec(acc.wallet, 8), "bc": "0"}],
                "P": [
                    {
                        "s": self.symbol,
                        "pa": self.fmt.qty(pos.lots),
                        "ep": dec(pos.entry, 8),
                        "bep": dec(pos.entry, 8),
                        "cr": dec(pos.realized, 8),
                        "up": dec(acc.unrealized(self.mark()), 8),
                        "mt": "cross",
                        "iw": "0",
                        "ps": "BOTH",
                    }
                ],
            },
        }
