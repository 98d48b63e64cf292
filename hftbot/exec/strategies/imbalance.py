"""imbalance: the multi-level order-book imbalance rule, the baseline every model must beat.

    imbalance = Σ wᵢ (bid_qtyᵢ − ask_qtyᵢ) / Σ wᵢ (bid_qtyᵢ + ask_qtyᵢ),   wᵢ = decayⁱ, i < levels

(the depth-weighted form of ../shared/reference/lob-models.md section 6; decay 1 weighs all levels
alike, levels 1 is the queue imbalance). Enter long at imbalance ≥ `imbalance_threshold`, short
at ≤ −threshold, when the edge `imbalance × imbalance_move_bps` also pays the round trip: the same
cost rule, exits and order handling as `deeplob` (see `directional`), so a comparison between them
measures the signal and nothing else. Reads no signal records and no trades.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import mul

from hftbot.config import ExecConfig, RiskConfig, StrategyConfig
from hftbot.exec.fees import FeeModel
from hftbot.exec.messages import Intent
from hftbot.exec.positions import StrategyView
from hftbot.exec.strategies.directional import Directional
from hftbot.records import BOOK_VALID


class ImbalanceStrategy(Directional):
    name = "imbalance"

    def __init__(self, st: StrategyConfig, ex: ExecConfig, risk: RiskConfig, fees: FeeModel) -> None:
        super().__init__(qty=st.imbalance_qty, move_bps=st.imbalance_move_bps,
                         margin_bps=st.imbalance_margin_bps, horizon_updates=st.imbalance_horizon_updates,
                         reversal_bps=st.imbalance_reversal_bps, stop_bps=st.imbalance_stop_bps, ex=ex, risk=risk,
                         fees=fees)
        self.weights = [st.imbalance_decay**i for i in range(st.imbalance_levels)]
        self.threshold = st.imbalance_threshold
        self.imbalance = 0.0

    def on_book(self, book, view: StrategyView) -> Sequence[Intent]:
        if self._read_book(book) & BOOK_VALID and self.book_ok:
            w = self.weights
            b = sum(map(mul, w, book["bid_qty"].tolist()))  # map stops at the shorter: `levels` levels
            a = sum(map(mul, w, book["ask_qty"].tolist()))
            imb = (b - a) / (b + a) if b + a > 0 else 0.0
            self.imbalance = imb
            self.edge_bps = imb * self.move_bps
            self.entry_gate = abs(imb) >= self.threshold - 1e-12  # 0.5 computed as 0.4999999999999999
        return self.decide(view)
