"""deeplob: the model's class probabilities → a position, when the expected move pays the costs.

The signal gives p(down), p(flat), p(up) of the mid's move over the label horizon. The expected
move is `(p_up − p_down) × deeplob_move_bps`, where `deeplob_move_bps` is the typical size of a
move the model calls up or down (at least the label threshold; the trainer's label statistics
say). A position opens only when that edge beats the round trip's cost (see `directional`), and
closes at the horizon, on a reversal of the edge, or on the stop.

A signal flagged SIGNAL_NO_MODEL or SIGNAL_WARMUP, with non-finite probabilities, or older than
`risk.stale_signal_ms` opens nothing; exits go on (inference died: the stop and the horizon still
close the position). The risk manager checks the same freshness again (`needs_signal`).
"""

from __future__ import annotations

from collections.abc import Sequence

from hftbot.config import ExecConfig, RiskConfig, StrategyConfig
from hftbot.exec.fees import FeeModel
from hftbot.exec.messages import Intent
from hftbot.exec.positions import StrategyView
from hftbot.exec.strategies.directional import Directional
from hftbot.records import SIGNAL_NO_MODEL, SIGNAL_WARMUP

_UNUSABLE = SIGNAL_NO_MODEL | SIGNAL_WARMUP


class DeepLOBStrategy(Directional):
    name = "deeplob"
    needs_signal = True

    def __init__(self, st: StrategyConfig, ex: ExecConfig, risk: RiskConfig, fees: FeeModel) -> None:
        super().__init__(qty=st.deeplob_qty, move_bps=st.deeplob_move_bps, margin_bps=st.deeplob_margin_bps,
                         horizon_updates=st.deeplob_horizon_updates, reversal_bps=st.deeplob_reversal_bps,
                         stop_bps=st.deeplob_stop_bps, ex=ex, risk=risk, fees=fees)
        self.signal_ok = False
        self.signal_ns = 0
        self.model_id = 0
        self.signals = 0
        self.unusable_signals = 0

    def edge_usable(self, now_ns: int) -> bool:
        return self.book_ok and self.signal_ok and now_ns - self.signal_ns <= self.stale_signal_ns

    def on_signal(self, signal, view: StrategyView) -> Sequence[Intent]:
        self.signals += 1
        flags = signal["flags"].item()
        edge = (signal["p_up"].item() - signal["p_down"].item()) * self.move_bps
        self.signal_ns = signal["publish_ns"].item()
        self.model_id = signal["model_id"].item()
        ok = not flags & _UNUSABLE and edge == edge and abs(edge) != float("inf")
        self.signal_ok = ok
        if ok:
            self.edge_bps = edge
        else:
            self.unusable_signals += 1
        return self.decide(view)
