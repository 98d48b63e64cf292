"""The gate's net-PnL scorer: held-out probabilities traded by deeplob through the backtester."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hftbot.backtest.scorer import net_pnl_scorer, raw_paths, register, window_times
from hftbot.config import load_config
from hftbot.model import dataset as ds
from hftbot.model import gate
from hftbot.model.checkpoint import Compat
from hftbot.model.deeplob import DeepLOB
from hftbot.model.features import FeatureSpec
from hftbot.model.labels import LabelRule
from tests.model.simdata import write_sim_raw

SPEC = FeatureSpec(levels=10, window=30)
RULE = LabelRule(horizon=20, threshold_bps=0.5)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    root = write_sim_raw(tmp_path_factory.mktemp("simraw"), 240.0, seed=5)
    rec = ds.open_recordings([root], log=lambda s: None)
    split = ds.split_by_time(rec, ds.chunk_parts(rec), SPEC, RULE, 0.2, 0.3)
    return rec, split


def cfg():
    # an edge that pays its costs on a confident signal: the scorer must see trades to mean anything
    return load_config(env={}).override("strategy", deeplob_move_bps=500.0, deeplob_qty=0.1,
                                        deeplob_horizon_updates=20)


def test_foresight_trades_and_a_flat_model_scores_zero(held_out):
    rec, split = held_out
    period = gate.held_out_period(rec, split.test, [SPEC], RULE)
    n = len(period.labels)
    assert n > 200 and len(window_times(period)) == n
    score = net_pnl_scorer(cfg(), raw_paths(rec.roots))
    flat = np.tile([0.0, 1.0, 0.0], (n, 1))
    assert score(flat, period) == 0.0  # no edge: nothing opens, nothing is paid
    lab = np.where(period.labels < 0, 1, period.labels)
    foresight = np.eye(3)[lab]  # certain of the realised move at every window
    contrarian = np.eye(3)[2 - lab]
    good, bad = score(foresight, period), score(contrarian, period)
    assert np.isfinite(good) and np.isfinite(bad) and good != 0.0
    assert good > bad  # knowing the move beats betting against it


def test_the_trainer_gate_uses_net_pnl_when_registered(held_out, tmp_path, monkeypatch):
    rec, split = held_out
    monkeypatch.setattr(gate, "SCORERS", dict(gate.SCORERS))
    ok, why = register(cfg(), rec)
    assert ok and why == "" and "net_pnl" in gate.SCORERS
    torch.manual_seed(0)
    model = DeepLOB(levels=10, window=30, conv_filters=4, inception_filters=8, lstm_hidden=8, padding="valid")
    d = gate.run_gate(gate.torch_model_fn(model.eval()), SPEC, rec, split.test, RULE, tmp_path, Compat(10, 200))
    assert "net_pnl" in d.candidate and np.isfinite(d.candidate["net_pnl"]) and d.promote


def test_without_raw_frames_the_gate_keeps_macro_f1_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(gate, "SCORERS", {**gate.SCORERS, "net_pnl": lambda p, q: 0.0})

    from types import SimpleNamespace

    ok, why = register(cfg(), SimpleNamespace(roots=[str(tmp_path)]))
    assert not ok and "no raw frames" in why and "net_pnl" not in gate.SCORERS


def test_net_pnl_must_not_be_worse_and_a_tie_lets_the_better_classifier_on():
    assert gate.decide({"macro_f1": 0.5, "net_pnl": 0.0}, {"macro_f1": 0.4, "net_pnl": 0.0})[0]
    promote, why = gate.decide({"macro_f1": 0.5, "net_pnl": -0.5}, {"macro_f1": 0.4, "net_pnl": 0.0})
    assert not promote and "net_pnl -0.5000 < 0.0000" in why
    assert not gate.decide({"macro_f1": 0.4, "net_pnl": 9.0}, {"macro_f1": 0.4, "net_pnl": 0.0})[0]
