"""What a strategy is: records in, intents out, nothing else.

    strategy = make_strategy(cfg.exec, cfg.strategy, cfg.risk)   # or None for strategy = "none"
    view.now_ns = now_ns                                          # view: positions.view
    intents = strategy.on_book(book_record, view)                 # once per book update
    intents = strategy.on_signal(signal_record, view)             # once per signal
    intents = strategy.on_trade(trade_record, view)               # once per public trade

Records are the ring's numpy records (`hftbot.records`: `book_dtype(levels)`, `SIGNAL_DTYPE`,
`TRADE_DTYPE`), 0-d arrays or `np.void` rows. The view (`positions.StrategyView`) is read-only
to the strategy: `now_ns`, `position` (lots), `avg_px` (ticks), `orders` (client id →
`OrderState`, every order from the risk manager's approval until the venue says it is final).
A strategy keeps no belief about its orders beyond what the view says: an intent the risk manager
refuses never shows up there, so the strategy simply decides again on the next record. Hence the
one rule for callers: pass a call's intents through `risk.check` (which enters approved orders in
the view at once) before making the next call, or a strategy may ask for the same thing twice.

Intents (`hftbot.exec.messages`) say what the strategy would like; the risk manager decides. A
call returns `NOTHING` (a shared empty tuple) when there is nothing to do, so the common path
allocates nothing; otherwise a short list.

The backtester replays a whole capture through these calls, so each is a few µs: plain attributes,
numpy fields read once per call (a field read of a record costs ~0.2 µs on a 0-d array and ~0.7 µs
on an `np.void` row), no pandas, no per-call allocation beyond the returned intents.

Pure: no I/O, no clock (time is `view.now_ns`), no randomness. State lives in plain attributes,
best numbers, strings, numpy arrays and flat dicts, lists or sets of immutable values: what
`rehearsal_copy` copies cheaply for the execution loop's rehearsal (anything else it deep-copies).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from hftbot.config import ExecConfig, RiskConfig, StrategyConfig
from hftbot.exec.fees import FeeModel
from hftbot.exec.messages import Intent
from hftbot.exec.positions import StrategyView

NOTHING: tuple = ()


_IMMUTABLE = frozenset((int, float, complex, bool, str, bytes, type(None), frozenset, range))


def _frozen(x) -> bool:
    """Immutable all the way down, as far as a rehearsal needs: a scalar, or a tuple of scalars
    (mm's (price, time) pairs)."""
    t = type(x)
    return t in _IMMUTABLE or (t is tuple and all(type(y) in _IMMUTABLE for y in x))


class Strategy:
    """The interface. Every hook may be called in any order; each returns intents (or NOTHING)."""

    name = "base"
    needs_signal = False  # the risk manager's stale-signal guard applies to its entries

    def on_book(self, book, view: StrategyView) -> Sequence[Intent]:
        return NOTHING

    def on_signal(self, signal, view: StrategyView) -> Sequence[Intent]:
        return NOTHING

    def on_trade(self, trade, view: StrategyView) -> Sequence[Intent]:
        return NOTHING

    @property
    def reads_trades(self) -> bool:
        """Whether this strategy overrides `on_trade`. One that does not is not called per public
        trade (most of a market's records): the execution loop and the backtester count trade
        records but skip the call, which would return NOTHING."""
        return type(self).on_trade is not Strategy.on_trade

    def rehearsal_copy(self) -> Strategy:
        """A copy whose calls leave this strategy exactly as it was: the execution loop runs the
        decision code on one while idle, so the record that follows finds that code in the caches
        (docs/exec.md "Rehearsal").

        The flat state the module docstring asks for is copied cheaply (every ~1 ms while idle):
        immutable attributes are shared, a dict, list or set of immutable values is copied one
        level deep, a numpy array is copied. Anything else — a deque, a nested container, an
        object of the strategy's own — is deep-copied, so that a strategy that keeps richer state
        is never changed by a rehearsal, only rehearsed more slowly. A strategy may override this
        with a cheaper copy of its own."""
        c = copy.copy(self)
        for k, v in list(vars(c).items()):
            if _frozen(v):
                continue
            t = type(v)
            flat = t is np.ndarray or (t in (dict, list, set) and all(map(_frozen, v.values() if t is dict else v)))
            setattr(c, k, v.copy() if flat else copy.deepcopy(v))
        return c


def fee_model(ex: ExecConfig) -> FeeModel:
    """Our fee estimates, from `[exec]` (one definition for strategies, positions and the backtester)."""
    return FeeModel(ex.maker_fee, ex.taker_fee)


def make_strategy(ex: ExecConfig, st: StrategyConfig, risk: RiskConfig,
                  fees: FeeModel | None = None) -> Strategy | None:
    """The strategy `[exec] strategy` names, built from its section; None for "none"."""
    fees = fees or fee_model(ex)
    name = ex.strategy
    if name == "none":
        return None
    if name == "deeplob":
        from hftbot.exec.strategies.deeplob import DeepLOBStrategy

        return DeepLOBStrategy(st, ex, risk, fees)
    if name == "imbalance":
        from hftbot.exec.strategies.imbalance import ImbalanceStrategy

        return ImbalanceStrategy(st, ex, risk, fees)
    if name == "mm":
        from hftbot.exec.strategies.mm import MarketMaker

        return MarketMaker(st, ex, risk, fees)
    raise ValueError(f"exec.strategy: unknown strategy {name!r}; known: deeplob, imbalance, mm, none")
