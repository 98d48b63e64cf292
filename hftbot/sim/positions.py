"""Account and position endpoints: how the simulated `Account` looks through the API.

Position risk (v2, v3), balance, account information, commission rate, leverage brackets and
the account settings a one-way cross-margin account answers (leverage, margin type, position
mode, multi-assets mode). The state itself lives in `hftbot.sim.account.Account` (fills are
applied there); the mark price is the venue's (the mid, see `Venue.mark`).

Pure: the time comes in through `now_ms`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from hftbot.sim.account import Account
from hftbot.sim.errors import api_error, check_symbol, dec, int_param
from hftbot.sim.matching import MatchingEngine
from hftbot.sim.streams import Formatter

# leverage brackets: (max initial leverage, notional cap, maintenance margin ratio)
BRACKETS = ((75, 5000, 0.005), (50, 50000, 0.01), (25, 250000, 0.02), (10, 1000000, 0.05))


class AccountDesk:
    """The account endpoints of one symbol's account."""

    def __init__(
        self,
        symbol: str,
        fmt: Formatter,
        account: Account,
        engine: MatchingEngine,
        mark: Callable[[], int],
        now_ms: Callable[[], int],
    ) -> None:
        self.symbol = symbol
        self.fmt = fmt
        self.account = account
        self.engine = engine
        self.mark = mark
        self.now_ms = now_ms

    def position_v2(self) -> dict:
        acc, pos, f = self.account, self.account.position, self.fmt
        mark = self.mark()
        notional = Decimal(pos.lots) * acc.lot * Decimal(mark) * acc.tick
        return {
            "symbol": self.symbol,
            "positionAmt": f.qty(pos.lots),
            "entryPrice": dec(pos.entry, 8),
            "breakEvenPrice": dec(pos.entry, 8),
            "markPrice": dec(Decimal(mark) * acc.tick, 8),
            "unRealizedProfit": dec(acc.unrealized(mark), 8),
            "liquidationPrice": "0",
            "leverage": str(acc.leverage),
            "maxNotionalValue": "1000000",
            "marginType": "cross",
            "isolatedMargin": "0.00000000",
            "isAutoAddMargin": "false",
            "positionSide": "BOTH",
            "notional": dec(notional, 8),
            "isolatedWallet": "0",
            "updateTime": pos.update_ms,
        }

    def position_v3(self) -> dict:
        v2 = self.position_v2()
        im = self.account.initial_margin(self.mark())
        return {
            "symbol": v2["symbol"],
            "positionSide": "BOTH",
            "positionAmt": v2["positionAmt"],
            "entryPrice": v2["entryPrice"],
            "breakEvenPrice": v2["breakEvenPrice"],
            "markPrice": v2["markPrice"],
            "unRealizedProfit": v2["unRealizedProfit"],
            "liquidationPrice": "0",
            "isolatedMargin": "0",
            "notional": v2["notional"],
            "marginAsset": "USDT",
            "isolatedWallet": "0",
            "initialMargin": dec(im, 8),
            "maintMargin": dec(im / 4, 8),
            "positionInitialMargin": dec(im, 8),
            "openOrderInitialMargin": "0",
            "adl": 0,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": v2["updateTime"],
        }

    def ep_position_v2(self, params: dict) -> list:
        check_symbol(params, self.symbol, required=False)
        return [self.position_v2()]

    def ep_position_v3(self, params: dict) -> list:
        check_symbol(params, self.symbol, required=False)
        if self.account.position.lots == 0 and not self.engine.open_orders():
            return []
        return [self.position_v3()]

    def balance_row(self) -> dict:
        acc = self.account
        mark = self.mark()
        avail = acc.available(mark)
        return {
            "accountAlias": "SimAcct",
            "asset": "USDT",
            "balance": dec(acc.wallet, 8),
            "crossWalletBalance": dec(acc.wallet, 8),
            "crossUnPnl": dec(acc.unrealized(mark), 8),
            "availableBalance": dec(avail, 8),
            "maxWithdrawAmount": dec(avail, 8),
            "marginAvailable": True,
            "updateTime": self.now_ms(),
        }

    def ep_balance(self, params: dict) -> list:
        return [self.balance_row()]

    def ep_account(self, params: dict) -> dict:
        acc = self.account
        mark = self.mark()
        row = self.balance_row()
        upnl = acc.unrealized(mark)
        return {
            "totalInitialMargin": dec(acc.initial_margin(mark), 8),
            "totalMaintMargin": "0",
            "totalWalletBalance": row["balance"],
            "totalUnrealizedProfit": row["crossUnPnl"],
            "totalMarginBalance": dec(acc.wallet + upnl, 8),
            "totalPositionInitialMargin": dec(acc.initial_margin(mark), 8),
            "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": row["balance"],
            "totalCrossUnPnl": row["crossUnPnl"],
            "availableBalance": row["availableBalance"],
            "maxWithdrawAmount": row["maxWithdrawAmount"],
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "feeTier": 0,
            "updateTime": 0,
            "multiAssetsMargin": False,
            "assets": [
                {
                    "asset": "USDT",
                    "walletBalance": row["balance"],
                    "unrealizedProfit": row["crossUnPnl"],
                    "marginBalance": dec(acc.wallet + upnl, 8),
                    "maintMargin": "0",
                    "initialMargin": dec(acc.initial_margin(mark), 8),
                    "positionInitialMargin": dec(acc.initial_margin(mark), 8),
                    "openOrderInitialMargin": "0",
                    "crossWalletBalance": row["balance"],
                    "crossUnPnl": row["crossUnPnl"],
                    "availableBalance": row["availableBalance"],
                    "maxWithdrawAmount": row["maxWithdrawAmount"],
                    "marginAvailable": True,
                    "updateTime": self.now_ms(),
                }
            ],
            "positions": [self.position_v3()] if self.account.position.lots else [],
        }

    def ep_commission(self, params: dict) -> dict:
        check_symbol(params, self.symbol)
        fees = self.engine.fees
        return {
            "symbol": self.symbol,
            "makerCommissionRate": str(fees.maker),
            "takerCommissionRate": str(fees.taker),
        }

    def ep_leverage_bracket(self, params: dict) -> list:
        check_symbol(params, self.symbol, required=False)
        brackets, floor, cum = [], 0, 0.0
        for i, (lev, cap, mmr) in enumerate(BRACKETS, 1):
            if i > 1:
                cum += floor * (mmr - BRACKETS[i - 2][2])
            brackets.append(
                {
                    "bracket": i,
                    "initialLeverage": lev,
                    "notionalCap": cap,
                    "notionalFloor": floor,
                    "maintMarginRatio": mmr,
                    "cum": round(cum, 8),
                }
            )
            floor = cap
        return [{"symbol": self.symbol, "notionalCoef": 1.0, "brackets": brackets}]

    def ep_leverage(self, params: dict) -> dict:
        check_symbol(params, self.symbol)
        lev = int_param(params, "leverage", None)
        if lev is None or not 1 <= lev <= 125:
            raise api_error(-4028, f"Leverage {params.get('leverage')} is not valid")
        self.account.leverage = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": self.symbol}

    def ep_margin_type(self, params: dict) -> dict:
        check_symbol(params, self.symbol)
        if params.get("marginType", "").upper() == "CROSSED":
            raise api_error(-4046, "No need to change margin type.")
        raise api_error(-4048, "Margin type cannot be changed if there exists position.")

    def ep_dual(self, params: dict) -> dict:
        return {"dualSidePosition": False}

    def ep_multi_assets(self, params: dict) -> dict:
        return {"multiAssetsMargin": False}
