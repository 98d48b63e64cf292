"""Search: two worker processes on one SQLite study, trials judged on validation only."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from hftbot.model.search import storage_url, suggest
from tests.model.trainer import SCRIPT, TINY, env


def test_two_workers_share_one_sqlite_study(sim_raw, tmp_path):
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    flags = list(TINY)  # window, widths, horizon and threshold pinned: trials search price_ref, levels, lr, batch
    cmd = [sys.executable, str(SCRIPT), "--search", "2", "--storage", url, "--study", "shared", "--data",
           str(sim_raw), "--logdir", str(tmp_path / "runs"), "--trial-epochs", "1", *flags]
    workers = [subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outs = []
    try:
        for w in workers:
            out, err = w.communicate(timeout=420)
            outs.append(out)
            assert w.returncode == 0, out[-2000:] + err[-3000:]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    study = optuna.load_study(study_name="shared", storage=url)
    assert len(study.trials) == 4
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                         optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 4
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # both processes ran trials
    done = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all("baseline_val_macro_f1" in t.user_attrs for t in done)
    for t in done:  # objective = validation macro-F1 minus the best baseline's (never the test)
        assert t.value == pytest.approx(t.user_attrs["val_macro_f1"] - t.user_attrs["baseline_val_macro_f1"])
    last = json.loads(outs[-1].strip().splitlines()[-1])
    assert last["study"] == "shared" and last["completed"] >= 1
    assert not (tmp_path / "checkpoints").exists()  # trials never export or touch CURRENT
    assert "test period" not in " ".join(outs)  # no test evaluation, no baseline table on the test


def test_the_space_stays_within_what_the_runtime_serves():
    study = optuna.create_study()
    for _ in range(20):
        p = suggest(study.ask(), max_levels=10, max_window=60)
        assert p["levels"] <= 10 and 23 <= p["window"] <= 60
        assert p["price_ref"] in ("prev_mid", "mid") and p["horizon"] in (20, 50, 100)
        assert 0.2 <= p["threshold_bps"] <= 2.0
    p = suggest(study.ask(), 10, 100, pinned=frozenset({"window", "horizon", "threshold_bps"}))
    assert not {"window", "horizon", "threshold_bps", "threshold_mode"} & set(p) and "lr" in p


def test_default_storage_is_a_sqlite_file_in_the_logdir(tmp_path):
    assert storage_url(None, "", str(tmp_path)) == f"sqlite:///{tmp_path.resolve() / 'search.db'}"
    assert storage_url("postgresql://h/db", "", str(tmp_path)) == "postgresql://h/db"
    assert storage_url(None, "mysql://x", str(tmp_path)) == "mysql://x"
