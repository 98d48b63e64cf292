"""Walk-forward: the windows, the cut to the past, chaining, and one tiny real run end to end
(the real trainer on a real capture file, the real replay loop, real report files)."""

from __future__ import annotations

import json
import re
from datetime import datetime

import numpy as np
import pytest

from hftbot.backtest import walkforward as wf
from hftbot.model import dataset as ds
from tests.backtest.build import T0, S, equity, fills, imbalance_tape, result, signals, trade
from tests.model.trainer import TINY

H = 3600 * S


def test_rolling_and_anchored_windows():
    w = wf.windows(0, 10 * H, 4 * H, 2 * H, 2 * H)
    assert [(x.train_start_ns, x.train_end_ns, x.test_start_ns, x.test_end_ns) for x in w] == [
        (0, 4 * H, 4 * H, 6 * H), (2 * H, 6 * H, 6 * H, 8 * H), (4 * H, 8 * H, 8 * H, 10 * H)]
    assert [x.index for x in w] == [1, 2, 3]
    a = wf.windows(0, 10 * H, 4 * H, 2 * H, 3 * H, anchored=True)  # step > test leaves a gap, never an overlap
    assert [(x.train_start_ns, x.train_end_ns, x.test_end_ns) for x in a] == [(0, 4 * H, 6 * H), (0, 7 * H, 9 * H)]


def test_bad_windows_say_why():
    with pytest.raises(ValueError, match=r"step \(3600 s\) must be >= test \(7200 s\)"):
        wf.windows(0, 10 * H, 4 * H, 2 * H, 1 * H)
    with pytest.raises(ValueError, match="shorter than one train \\+ test"):
        wf.windows(0, 5 * H, 4 * H, 2 * H, 2 * H)
    with pytest.raises(ValueError, match="must be > 0"):
        wf.windows(0, 5 * H, 0, 2 * H, 2 * H)


def test_durations_are_hours_unless_a_unit_says_otherwise():
    assert wf.parse_duration_ns("6", "--train") == 6 * H
    assert wf.parse_duration_ns("1.5h", "--train") == int(1.5 * H)
    assert wf.parse_duration_ns("90s", "--test") == 90 * S
    assert wf.parse_duration_ns("30m", "--test") == 1800 * S
    assert wf.parse_duration_ns("1d", "--step") == 24 * H
    with pytest.raises(ValueError, match="--step must be a positive duration.*'-1h'"):
        wf.parse_duration_ns("-1h", "--step")


def test_clip_keeps_the_window_and_chain_joins_windows_end_to_end():
    a = result("a", start_s=0, end_s=20,
               equity=equity([(1, 100, 0, 0, 0, 0), (5, 100, 1, 2, 0.5, 1.5), (12, 100, 0, 4, 1, 3)]),
               fills=fills([(4, 1, 100, 0.1, 0.5, False), (12, 1, 100, 0.1, 0.5, False)]),
               signals=signals([(2, 0.2, 0.5, 0.3, 1), (11, 0.2, 0.5, 0.3, 1)]),
               trades=[trade(1.5, entry_s=4, hold_s=2), trade(2.0, entry_s=9, hold_s=3)], events=7, orders=2)
    c = wf.clip(a, T0 + 0, T0 + 10 * S)
    assert (c.start_ns, c.end_ns) == (T0, T0 + 10 * S)
    assert len(c.equity) == 2 and len(c.fills) == 1 and len(c.signals) == 1
    assert [t.net_pnl for t in c.trades] == [1.5]  # the second closes at 12 s, after the window
    b = result("b", start_s=10, end_s=20, equity=equity([(11, 100, 1, 1, 0.2, 0.8), (15, 100, 0, -1, 0.4, -1.4)]),
               trades=[trade(-1.4, entry_s=11, hold_s=4)], events=5, orders=1)
    ch = wf.chain([c, b], "both")
    # b's samples offset by c's last: realised 2 + (1, -1), fees 0.5 + (0.2, 0.4), equity 1.5 + (0.8, -1.4)
    assert ch.equity["realised"].tolist() == [0, 2, 3, 1]
    assert ch.equity["fees"].tolist() == pytest.approx([0, 0.5, 0.7, 0.9])
    assert ch.equity["equity"].tolist() == pytest.approx([0, 1.5, 2.3, 0.1])
    assert (ch.start_ns, ch.end_ns) == (T0, T0 + 20 * S) and ch.name == "both"
    assert [t.net_pnl for t in ch.trades] == [1.5, -1.4] and (ch.events, ch.orders) == (12, 3)
    assert len(c.equity) == 2 and c.equity["equity"][-1] == 1.5  # the windows themselves untouched


@pytest.fixture(scope="module")
def tape(tmp_path_factory):
    return imbalance_tape(tmp_path_factory.mktemp("tape") / "solusdt.gz", seconds=210.0)


def test_the_trainers_records_stop_before_the_cut(tape):
    rec = ds.open_recordings([tape], 10, log=lambda s: None)
    first = rec.files[0].first_ns
    cut = first + 60 * S
    past = rec.between(None, cut)
    t = past.files[0].open()["recv_ns"]
    assert len(t) == past.n_records > 500 and t.max() < cut and past.files[0].last_ns == t[-1]
    full = rec.files[0].open()["recv_ns"]
    assert np.array_equal(t, full[full < cut])  # every record before the cut, none after
    mid = rec.between(cut, cut + 10 * S)
    m = mid.files[0].open()
    assert m["recv_ns"].min() >= cut and m["recv_ns"].max() < cut + 10 * S
    assert np.array_equal(m, rec.files[0].open()[(full >= cut) & (full < cut + 10 * S)])
    with pytest.raises(ds.DatasetError, match="no book record received in"):
        rec.between(first - 100 * S, first - 50 * S)


def iso_s(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_tiny_walk_forward_end_to_end(tape, tmp_path, capsys):
    cfg = tmp_path / "wf.toml"  # no fees and a large expected move, so the baseline trades on this tape
    cfg.write_text("[exec]\nmaker_fee = 0.0\ntaker_fee = 0.0\n[strategy]\ndeeplob_move_bps = 50.0\n"
                   "[backtest]\ninference_latency_us = 0.0\n")
    small = [*TINY, "--epoch-windows", "300", "--val-windows", "100", "--baseline-fit-windows", "500"]
    rc = wf.main([str(tape), "--train", "100s", "--test", "50s", "--config", str(cfg), "--out", str(tmp_path / "r"),
                  "--", *small])
    out = capsys.readouterr().out
    assert rc == 0, out
    line = json.loads([x for x in out.splitlines() if x.startswith("{\"walkforward\"")][-1])
    folder = tmp_path / "r" / line["walkforward"].rsplit("/", 1)[-1]
    doc = json.loads((folder / "walkforward.json").read_text())
    assert len(doc["windows"]) == line["windows"] == 2  # 210 s: tests at 100..150 and 150..200 s
    for w in doc["windows"]:
        ck = folder / "models" / w["checkpoint_name"]
        assert ck.is_file() and ck.with_suffix(".pt").is_file()
        # trained only on the past: the checkpoint's own record of its data ends before the test starts
        assert iso_s(w["trained_on"]["end"]) < w["test_start_ns"] / 1e9
        assert iso_s(w["trained_on"]["start"]) >= w["train_start_ns"] / 1e9
        assert w["train_end_ns"] == w["test_start_ns"] and w["test_end_ns"] - w["test_start_ns"] == 50 * S
        assert w["metrics"]["start_ns"] == w["test_start_ns"] and w["metrics"]["end_ns"] == w["test_end_ns"]
        assert "signal" in w["metrics"] and w["metrics"]["signal"]["labelled"] > 100  # the model's outputs
        for sub in (w["report"], f"{w['report']}-imbalance"):
            assert (folder / "windows" / sub / "report.html").is_file()
    b1, b2 = (w["baseline"] for w in doc["windows"])
    ob = doc["overall_baseline"]
    assert b1["trades"] + b2["trades"] == ob["trades"] > 0
    assert ob["net_pnl"] == pytest.approx(b1["net_pnl"] + b2["net_pnl"])
    o = doc["overall"]
    assert o["net_pnl"] == pytest.approx(sum(w["metrics"]["net_pnl"] for w in doc["windows"]))
    assert o["start_ns"] == doc["windows"][0]["test_start_ns"] and o["end_ns"] == doc["windows"][1]["test_end_ns"]
    assert ("beats the imbalance" in doc["verdict"]) == (o["net_pnl"] > ob["net_pnl"])
    page = (folder / "walkforward.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 1
    for link in re.findall(r"href='([^']+)'", page):
        assert (folder / link).is_file(), link
    assert (folder / "overall" / "metrics.json").is_file()
    assert (folder / "overall-imbalance" / "trades.parquet").is_file()


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert wf.main([str(tmp_path / "nothing.gz")]) == 2
    assert "nothing.gz: no such file or folder" in capsys.readouterr().err
    assert wf.main([str(tmp_path), "--step", "0"]) == 2
    assert "--step must be a positive duration" in capsys.readouterr().err


def test_the_trainers_time_flags_refuse_bad_values(tape, tmp_path, capsys):
    from tests.model.trainer import script_module

    mod = script_module()
    args = ["--data", str(tape), "--out", str(tmp_path / "ck"), "--logdir", str(tmp_path / "runs"), *TINY]
    assert mod.main([*args, "--data-end", "soon"]) == 2
    assert "train: --data-end 'soon' is neither an ISO-8601 time nor integer ns" in capsys.readouterr().err
    assert mod.main([*args, "--data-end", "2024-07-26T13:00:00"]) == 2  # before the tape starts
    assert "no book record received in [-, 2024-07-26T13:00:00" in capsys.readouterr().err
    assert not (tmp_path / "ck").exists() or not list((tmp_path / "ck").glob("*.json"))
