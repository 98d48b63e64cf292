"""The promotion gate's net-PnL score: a model's probabilities over the held-out period, traded.

`hftbot.model.gate` scores a candidate and the current model on the same held-out windows; with
`register(cfg, rec)` (training/train.py calls it before the gate) it also asks this module for
each model's net PnL: the model's probabilities at those windows become a `SignalSource` (keyed by
each window's last book record's receive time), and the `deeplob` strategy trades them through the
backtester over the period — the same strategy, risk, fees, queue and latency models as any
backtest (`[exec]`, `[strategy]`, `[risk]`, `[backtest]`), the book built from the raw data before
the period. The score is the equity at the period's end (realised − fees + the open position
marked at the mid), USDT; larger is better, and the gate needs the candidate strictly better.

Signals not at a held-out window (the period's gaps, the training data) are "no signal": the
strategy opens nothing there. The inference latency charged is `[backtest] inference_latency_us`
(0 when it is -1, "measured": a gate has no streaming runtime to measure).

Needs the raw frames (raw recordings or .gz captures under the trainer's data paths): data given
only as book records cannot be replayed against the matching engine, and then the gate decides
on macro-F1 alone (`register` returns False and says why).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from hftbot.backtest.signals import SignalSource
from hftbot.config import Config


def raw_paths(roots: list[str]) -> list[Path]:
    """The raw recordings and captures under the trainer's data paths."""
    from hftbot.feed.recording import _expand

    files = _expand([Path(r) for r in roots], "raw")
    return [f for f in files if f.name.endswith(".gz") or f.name.startswith("raw-")]


def window_times(period) -> np.ndarray:
    """Receive time (ns) of each scored window's last book record, in the gate's order."""
    out = [np.asarray(period.rec.files[p.file].open()["recv_ns"][e], dtype=np.int64)
           for p, e in zip(period.parts, period.ends, strict=True)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def net_pnl_scorer(cfg: Config, paths: list[Path]) -> Callable[[np.ndarray, object], float]:
    """fn(probs (n, 3), period) -> net PnL (USDT) of `deeplob` trading those probabilities."""

    prepared = []

    def score(probs: np.ndarray, period) -> float:
        from hftbot.backtest.engine import prepare_recording, run_backtest

        if not prepared:  # decode the raw data once for both models' runs, not once per run
            prepared.append(prepare_recording(paths, cfg))
        t = window_times(period)
        if len(t) != len(probs):
            raise ValueError(f"net_pnl: {len(probs)} probabilities for {len(t)} windows")
        order = np.argsort(t, kind="stable")
        labels = np.asarray(period.labels, np.int8)[order] if len(period.labels) == len(t) else None
        src = SignalSource.from_probs(t[order], np.asarray(probs)[order], model_id=1, labels=labels)
        r = run_backtest(paths, strategy="deeplob", cfg=cfg, start_ns=int(t.min()), end_ns=int(t.max()) + 1,
                         signals=src)
        return float(r.equity["equity"][-1]) if len(r.equity) else 0.0

    return score


def register(cfg: Config, rec) -> tuple[bool, str]:
    """Register "net_pnl" with the gate for the trainer's data `rec`; (done, why not)."""
    from hftbot.model import gate

    paths = raw_paths(list(rec.roots))
    if not paths:
        gate.SCORERS.pop("net_pnl", None)
        return False, f"no raw frames under {', '.join(map(str, rec.roots))}: the gate decides on macro-F1 alone"
    gate.register_scorer("net_pnl", net_pnl_scorer(cfg, paths))
    return True, ""
