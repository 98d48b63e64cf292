"""The promotion gate on real checkpoints and real held-out windows: worse refused, better accepted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hftbot.model import dataset as ds
from hftbot.model.checkpoint import Compat, read_pointer, set_current, write_checkpoint
from hftbot.model.deeplob import DeepLOB
from hftbot.model.features import FeatureSpec
from hftbot.model.gate import (
    decide,
    held_out_period,
    register_scorer,
    run_gate,
    score_on_period,
    torch_model_fn,
)
from hftbot.model.labels import LabelRule
from hftbot.model.metrics import scores

SPEC = FeatureSpec(levels=10, window=30)
RULE = LabelRule(horizon=20, threshold_bps=0.5)
COMPAT = Compat(10, 200)


def always(cls: int, window: int = 30) -> DeepLOB:
    """A real DeepLOB whose head ignores its input and always says `cls`."""
    m = DeepLOB(levels=10, window=window, conv_filters=4, inception_filters=8, lstm_hidden=8, padding="valid")
    with torch.no_grad():
        m.head.weight.zero_()
        m.head.bias.copy_(torch.tensor([5.0 if i == cls else 0.0 for i in range(3)]))
    return m


@pytest.fixture(scope="module")
def held_out(sim_raw):
    rec = ds.open_recordings([sim_raw], log=lambda s: None)
    split = ds.split_by_time(rec, ds.chunk_parts(rec), SPEC, RULE, 0.2, 0.2)
    return rec, split


def test_decide_needs_a_better_score_on_every_shared_score():
    assert decide({"macro_f1": 0.5}, None) == (True, "no current model to beat")
    assert decide({"macro_f1": 0.5}, {"macro_f1": 0.4})[0]
    assert not decide({"macro_f1": 0.4}, {"macro_f1": 0.4})[0]  # a tie keeps the current one
    assert not decide({"macro_f1": 0.45}, {"macro_f1": 0.4}, min_delta=0.1)[0]
    promote, why = decide({"macro_f1": 0.5, "net_pnl": -1.0}, {"macro_f1": 0.4, "net_pnl": 2.0})
    assert not promote and "net_pnl" in why


def test_the_gate_refuses_a_worse_candidate_and_accepts_a_better_one(held_out, tmp_path):
    rec, split = held_out
    period = held_out_period(rec, split.test, [SPEC], RULE)
    counts = np.bincount(period.labels, minlength=3)
    worst, best = int(counts.argmin()), int(counts.argmax())  # always-the-rarest vs always-the-commonest
    assert counts[worst] < counts[best]
    f1 = {c: score_on_period(torch_model_fn(always(c)), SPEC, period, RULE)["macro_f1"] for c in (worst, best)}
    assert f1[best] > f1[worst]

    good = write_checkpoint(always(best), SPEC, tmp_path, trained=True, flip=True)
    d = run_gate(torch_model_fn(always(worst)), SPEC, rec, split.test, RULE, tmp_path, COMPAT)
    assert not d.promote and "does not beat" in d.reason
    assert d.current_model == good.name and d.windows == len(period.labels)
    assert d.candidate["macro_f1"] == pytest.approx(f1[worst]) and d.current["macro_f1"] == pytest.approx(f1[best])
    assert read_pointer(tmp_path) == good  # the gate itself never moves CURRENT
    assert "KEEP CURRENT" in d.text()

    bad = write_checkpoint(always(worst), SPEC, tmp_path, trained=True, flip=False)
    set_current(tmp_path, bad.name)
    d = run_gate(torch_model_fn(always(best)), SPEC, rec, split.test, RULE, tmp_path, COMPAT)
    assert d.promote and d.current_model == bad.name and "beats" in d.reason


def test_a_current_model_with_another_window_is_scored_on_the_common_windows(held_out, tmp_path):
    rec, _ = held_out
    wide = FeatureSpec(levels=10, window=60)
    parts = [ds.Part(2, 0, rec.files[2].n)]  # from a file's start: the wider window starts 30 records later
    write_checkpoint(always(1, window=60), wide, tmp_path, trained=True, flip=True)
    d = run_gate(torch_model_fn(always(1)), SPEC, rec, parts, RULE, tmp_path, COMPAT)
    both = held_out_period(rec, parts, [SPEC, wide], RULE)
    alone = held_out_period(rec, parts, [SPEC], RULE)
    assert d.windows == len(both.labels) == len(alone.labels) - (60 - 30)
    assert not d.promote  # identical predictions tie: the current model stays


def test_no_current_or_a_refused_one_promotes_and_says_why(held_out, tmp_path):
    rec, split = held_out
    d = run_gate(torch_model_fn(always(1)), SPEC, rec, split.test, RULE, tmp_path, COMPAT)
    assert d.promote and d.current is None
    meta = write_checkpoint(always(1), SPEC, tmp_path, trained=True, flip=True)
    (tmp_path / meta.name.replace(".json", ".pt")).write_bytes(b"not a model")
    d = run_gate(torch_model_fn(always(1)), SPEC, rec, split.test, RULE, tmp_path, COMPAT)
    assert d.promote and "refused" in d.reason


def test_a_registered_scorer_joins_the_decision(held_out, tmp_path, monkeypatch):
    rec, split = held_out
    from hftbot.model import gate

    monkeypatch.setattr(gate, "SCORERS", dict(gate.SCORERS))
    write_checkpoint(always(0), SPEC, tmp_path, trained=True, flip=True)
    # a stand-in for the backtester's net PnL: here, the share of windows called "up"
    register_scorer("share_up", lambda probs, period: float((probs.argmax(1) == 2).mean()))
    d = run_gate(torch_model_fn(always(2)), SPEC, rec, split.test, RULE, tmp_path, COMPAT)
    assert set(d.candidate) == {"macro_f1", "share_up"} and d.candidate["share_up"] == 1.0
    f1_up = scores(np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1]]))  # sanity of the scorer plumbing
    assert f1_up["macro_f1"] > 0
