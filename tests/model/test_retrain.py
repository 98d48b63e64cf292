"""Auto-retrain: schedule parsing, retiring old checkpoints (never CURRENT's), one real watch cycle."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from hftbot.model.checkpoint import read_pointer, set_current, write_checkpoint
from hftbot.model.deeplob import DeepLOB
from hftbot.model.features import FeatureSpec
from hftbot.model.retrain import child_argv, parse_every, retire
from tests.model.trainer import TINY, script_module


def old_checkpoint(d: Path, days: float, seed: int) -> Path:
    torch.manual_seed(seed)
    m = DeepLOB(levels=10, window=30, conv_filters=4, inception_filters=8, lstm_hidden=8, padding="valid")
    meta = write_checkpoint(m, FeatureSpec(levels=10, window=30), d, trained=False, flip=False, seed=seed)
    j = json.loads(meta.read_text())
    j["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - days * 86400))
    meta.write_text(json.dumps(j))  # the sha256 covers the .pt, so the checkpoint stays valid
    return meta


def test_every_takes_units_and_refuses_nonsense():
    assert parse_every("6h") == 21600 and parse_every("30m") == 1800 and parse_every("90") == 90
    assert parse_every("1.5d") == 1.5 * 86400
    for bad in ("", "0h", "-1h", "6 hours", "h"):
        with pytest.raises(ValueError, match="--every"):
            parse_every(bad)


def test_the_child_command_is_the_training_command_without_the_watch_flags():
    argv = ["--watch", "--every", "6h", "--data", "d", "--watch-runs=2", "--epochs", "3", "--every=1h"]
    assert child_argv(argv) == ["--data", "d", "--epochs", "3"]


def test_retire_deletes_old_checkpoints_but_never_current_or_new_ones(tmp_path):
    cur = old_checkpoint(tmp_path, 30, 1)
    old = old_checkpoint(tmp_path, 30, 2)
    kept = old_checkpoint(tmp_path, 30, 3)
    young = old_checkpoint(tmp_path, 1, 4)
    set_current(tmp_path, cur.name)
    gone = retire(tmp_path, 7, keep={kept.name}, log=lambda s: None)
    assert gone == [old]
    assert not old.exists() and not old.with_suffix(".pt").exists()
    for p in (cur, kept, young):
        assert p.exists() and p.with_suffix(".pt").exists()
    (tmp_path / "CURRENT").write_text("../../etc/passwd\n")  # a broken pointer: keep everything
    assert retire(tmp_path, 7, log=lambda s: None) == []


def test_one_watch_cycle_trains_gates_promotes_and_retires(sim_raw, tmp_path, capsys):
    ck = tmp_path / "ck"
    cur = old_checkpoint(ck, 30, 1)
    stale = old_checkpoint(ck, 30, 2)
    set_current(ck, cur.name)
    rc = script_module().main(["--watch", "--every", "1s", "--watch-runs", "1", "--data", str(sim_raw),
                               "--out", str(ck), "--logdir", str(tmp_path / "runs"), "--retire-after-days", "7",
                               *TINY])
    out = capsys.readouterr().out
    assert rc == 0, out[-2000:]
    metas = sorted(ck.glob("*.json"))
    target = read_pointer(ck)
    new = [m for m in metas if m not in (cur, stale)]
    assert len(new) == 1 and json.loads(new[0].read_text())["trained"] is True
    assert not stale.exists()  # old and not serving: retired
    assert target is not None and target.exists()
    if target == new[0]:  # promoted: the untrained old CURRENT is no longer protected
        assert not cur.exists()
    else:
        assert cur.exists()
