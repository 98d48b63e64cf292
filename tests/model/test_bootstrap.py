"""The shipped checkpoint: trained by training/train.py, verified, and better than every baseline."""

from __future__ import annotations

import json
from pathlib import Path

from hftbot.config import load_config
from hftbot.model.checkpoint import Compat, load_checkpoint, read_pointer

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_checkpoint_is_trained_and_beats_every_baseline_on_its_test_split():
    cfg = load_config()
    d = ROOT / cfg.runtime.checkpoints_dir
    target = read_pointer(d)
    assert target is not None
    ck = load_checkpoint(target, Compat(cfg.feed.levels, cfg.inference.max_window))  # what `hftbot.run` serves
    meta = ck.meta
    assert meta["trained"] is True
    command = meta["training"]["command"]
    assert command.startswith("python training/train.py ") and "--seed" in command
    test = meta["metrics"]["test"]
    model = test["deeplob"]["macro_f1"]
    for name in ("majority", "queue_imbalance_lr", "mlofi_lr"):
        assert model > test[name]["macro_f1"], name
    assert test["deeplob"]["accuracy"] > meta["metrics"]["majority_floor"]
    assert meta["data"]["source"] == "sim" and meta["gate"]["promote"] is True
    # the only checkpoint in the folder: the untrained plumbing model is gone
    assert [p.name for p in d.glob("*.json")] == [target.name]
    assert all(json.loads(p.read_text())["trained"] for p in d.glob("*.json"))
